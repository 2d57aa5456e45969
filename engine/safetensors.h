/* engine/safetensors.h — safetensors reader and writer (SPEC.md §3), host memory only.
 *
 * File: u64 little-endian header length N (rejected above 100 MB), N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
 * data buffer; offsets are relative to the buffer, exact integers <= 2^53, and the tensors
 * must tile the buffer exactly (no holes, no overlaps, nothing after the last one).
 * Reads F32, F16, BF16 (converted to fp32 on read); writes F32 only, atomically
 * (temporary file in the same directory + fsync + rename).
 * Errors are one line in `err`, naming the file, the tensor or key, and what is wrong. */
#ifndef VITA_SAFETENSORS_H
#define VITA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 };
#define ST_MAX_DIMS 8

typedef struct {
    char* name;
    int dtype;                 /* ST_F32 | ST_F16 | ST_BF16 */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;       /* byte range inside the data buffer */
} StTensor;

typedef struct {
    char* path;
    int n;                     /* tensors, in file order */
    StTensor* t;
    int n_meta;                /* __metadata__ entries */
    char** meta_key;
    char** meta_val;
    unsigned char* data;       /* the data buffer (whole file read into memory) */
    uint64_t data_len;
    void* file_buf;            /* owning allocation */
} StFile;

/* returns 0 on success; on failure fills err (one line) and leaves f empty */
int st_open(StFile* f, const char* path, char* err, size_t errlen);
void st_close(StFile* f);
const StTensor* st_find(const StFile* f, const char* name);
const char* st_meta(const StFile* f, const char* key);   /* NULL if absent */
/* converts to fp32 into dst (host, numel floats); data may be unaligned (memcpy) */
void st_read_f32(const StFile* f, const StTensor* t, float* dst);

typedef struct {
    const char* name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float* data;         /* host memory, numel floats */
} StWriteTensor;

/* meta: n_meta (key, value) pairs as meta[2i], meta[2i+1]; returns 0 or fills err */
int st_write_f32(const char* path, const StWriteTensor* t, int n, const char* const* meta,
                 int n_meta, char* err, size_t errlen);

#endif
