/* engine/safetensors.c — safetensors reader and writer (SPEC.md §3).
 *
 * Reader invariants: after st_open returns 0, every tensor has a known dtype (F32/F16/BF16),
 * 0..ST_MAX_DIMS non-negative dims, numel*dtype_size == end-begin without overflow, and the
 * tensors sorted by (begin, end) tile [0, data_len) exactly; so st_read_f32 needs no checks.
 * On failure st_open fills err with one line "<file>: [tensor 'x': ]what is wrong (fix)" and
 * leaves f zeroed. It never exits: a bad file is a user error the caller reports.
 * Numbers in the header go through valuedouble only (valueint saturates at INT_MAX) and must
 * be finite, integral, 0 <= v <= 2^53, so every accepted value is exact in a double.
 * Writer invariants: header = JSON (F32 only, offsets printed as integers by snprintf) padded
 * with spaces to a multiple of 8 bytes like the reference implementation; the file appears
 * at `path` only complete (temp file in the same directory, fsync, rename). */
#define _GNU_SOURCE
#include "safetensors.h"
#include "errfmt.h"
#include "atomic.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* the data buffer is little-endian; F32 reads and writes are plain memcpy / fwrite */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "vita's safetensors I/O assumes a little-endian host");

#define ST_MAX_HEADER 100000000ull
#define ST_MAX_INT 9007199254740992.0 /* 2^53: the largest integer every double holds exactly */

static int dtype_size(int dt) { return dt == ST_F32 ? 4 : 2; }

static char* dupstr(const char* s) {
    size_t n = strlen(s) + 1;
    char* d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int cmp_str_ptr(const void* a, const void* b) {
    return strcmp(*(const char* const*)a, *(const char* const*)b);
}

/* returns the first name that occurs twice, or NULL; names[] is reordered */
static const char* find_duplicate(const char** names, int n) {
    if (n < 2) return NULL;
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

/* ============================== reader =================================================== */

/* an exact non-negative integer <= 2^53; 0 on success */
static int json_uint(const cJSON* v, uint64_t* out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d > ST_MAX_INT || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* a JSON value in a few characters, for error messages */
static void json_brief(const cJSON* v, char* buf, size_t n) {
    if (cJSON_IsNumber(v)) snprintf(buf, n, "%.17g", v->valuedouble);
    else if (cJSON_IsString(v)) snprintf(buf, n, "\"%.40s\"", v->valuestring);
    else if (cJSON_IsArray(v)) snprintf(buf, n, "an array");
    else if (cJSON_IsObject(v)) snprintf(buf, n, "an object");
    else if (cJSON_IsBool(v)) snprintf(buf, n, "a boolean");
    else if (cJSON_IsNull(v)) snprintf(buf, n, "null");
    else snprintf(buf, n, "an invalid value");
}

typedef struct { uint64_t begin, end; int idx; } Range;

static int cmp_range(const void* a, const void* b) {
    const Range* x = a;
    const Range* y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

/* parses one tensor entry into t (name not set); 0 or fills err */
static int parse_entry(const char* path, const char* name, const cJSON* e, uint64_t data_len,
                       StTensor* t, char* err, size_t errlen) {
    char b[64];
    if (!cJSON_IsObject(e)) {
        json_brief(e, b, sizeof b);
        vita_fail_line(err, errlen, "%s: tensor '%s': header entry is %s, expected an object with dtype, "
                       "shape and data_offsets (the file is corrupt; re-export it)", path, name, b);
        return -1;
    }
    const cJSON* dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON* sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON* of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt || !sh || !of) {
        vita_fail_line(err, errlen, "%s: tensor '%s': header entry has no \"%s\" (every tensor needs dtype, "
                       "shape and data_offsets; the file is corrupt)", path, name,
                       !dt ? "dtype" : !sh ? "shape" : "data_offsets");
        return -1;
    }
    if (!cJSON_IsString(dt)) {
        json_brief(dt, b, sizeof b);
        vita_fail_line(err, errlen, "%s: tensor '%s': dtype is %s, expected a string such as \"F32\"",
                       path, name, b);
        return -1;
    }
    if (strcmp(dt->valuestring, "F32") == 0) t->dtype = ST_F32;
    else if (strcmp(dt->valuestring, "F16") == 0) t->dtype = ST_F16;
    else if (strcmp(dt->valuestring, "BF16") == 0) t->dtype = ST_BF16;
    else {
        vita_fail_line(err, errlen, "%s: tensor '%s': dtype %.40s is not supported (vita reads F32, F16 "
                       "and BF16 weights; convert the file, e.g. with safetensors in Python)",
                       path, name, dt->valuestring);
        return -1;
    }
    if (!cJSON_IsArray(sh)) {
        json_brief(sh, b, sizeof b);
        vita_fail_line(err, errlen, "%s: tensor '%s': shape is %s, expected an array of non-negative integers",
                       path, name, b);
        return -1;
    }
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS) {
        vita_fail_line(err, errlen, "%s: tensor '%s': shape has %d dimensions, vita supports at most %d",
                       path, name, nd, ST_MAX_DIMS);
        return -1;
    }
    t->ndim = nd;
    int zero = 0;
    const cJSON* d;
    int k = 0;
    cJSON_ArrayForEach(d, sh) {
        uint64_t v;
        if (json_uint(d, &v)) {
            json_brief(d, b, sizeof b);
            vita_fail_line(err, errlen, "%s: tensor '%s': shape[%d] is %s, expected an integer in [0, 2^53] "
                           "(the file is corrupt)", path, name, k, b);
            return -1;
        }
        t->shape[k++] = (int64_t)v;
        if (v == 0) zero = 1;
    }
    /* numel, overflow-checked; a zero dim makes it 0 whatever the others are */
    uint64_t numel = 1;
    if (zero) numel = 0;
    else
        for (int i = 0; i < nd; i++) {
            uint64_t v = (uint64_t)t->shape[i];
            if (numel > (uint64_t)INT64_MAX / v) {
                vita_fail_line(err, errlen, "%s: tensor '%s': shape has more than 2^63 elements "
                               "(the file is corrupt)", path, name);
                return -1;
            }
            numel *= v;
        }
    uint64_t es = (uint64_t)dtype_size(t->dtype);
    if (numel > (uint64_t)INT64_MAX / es) {
        vita_fail_line(err, errlen, "%s: tensor '%s': shape has more than 2^63 bytes of data "
                       "(the file is corrupt)", path, name);
        return -1;
    }
    t->numel = (int64_t)numel;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2) {
        json_brief(of, b, sizeof b);
        vita_fail_line(err, errlen, "%s: tensor '%s': data_offsets is %s%s, expected [begin, end]", path,
                       name, b, cJSON_IsArray(of) ? " of the wrong length" : "");
        return -1;
    }
    uint64_t be[2];
    for (int i = 0; i < 2; i++) {
        const cJSON* v = cJSON_GetArrayItem(of, i);
        if (json_uint(v, &be[i])) {
            json_brief(v, b, sizeof b);
            vita_fail_line(err, errlen, "%s: tensor '%s': data_offsets[%d] is %s, expected an integer in "
                           "[0, 2^53] (the file is corrupt)", path, name, i, b);
            return -1;
        }
    }
    t->begin = be[0];
    t->end = be[1];
    if (t->begin > t->end) {
        vita_fail_line(err, errlen, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before "
                       "begin (the file is corrupt)", path, name, t->begin, t->end);
        return -1;
    }
    if (t->end > data_len) {
        vita_fail_line(err, errlen, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] reach past "
                       "the %" PRIu64 "-byte data buffer: the file is truncated (copy or download it again)",
                       path, name, t->begin, t->end, data_len);
        return -1;
    }
    if (t->end - t->begin != numel * es) {
        vita_fail_line(err, errlen, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                       " bytes but shape x %s needs %" PRIu64 " (the file is corrupt)", path, name,
                       t->begin, t->end, t->end - t->begin, dt->valuestring, numel * es);
        return -1;
    }
    return 0;
}

static int parse_metadata(const char* path, StFile* f, const cJSON* m, char* err, size_t errlen) {
    char b[64];
    if (!cJSON_IsObject(m)) {
        json_brief(m, b, sizeof b);
        vita_fail_line(err, errlen, "%s: __metadata__ is %s, expected an object of string values", path, b);
        return -1;
    }
    int n = cJSON_GetArraySize(m);
    f->meta_key = calloc((size_t)n + 1, sizeof(char*));
    f->meta_val = calloc((size_t)n + 1, sizeof(char*));
    if (!f->meta_key || !f->meta_val) {
        vita_fail_line(err, errlen, "%s: out of host memory reading __metadata__", path);
        return -1;
    }
    const cJSON* e;
    cJSON_ArrayForEach(e, m) {
        if (!cJSON_IsString(e)) {
            json_brief(e, b, sizeof b);
            vita_fail_line(err, errlen, "%s: __metadata__ key '%s' is %s, expected a string (safetensors "
                           "metadata values are strings)", path, e->string, b);
            return -1;
        }
        int i = f->n_meta;
        f->meta_key[i] = dupstr(e->string);
        f->meta_val[i] = dupstr(e->valuestring);
        f->n_meta++; /* counted before the check so st_close frees a half-filled pair */
        if (!f->meta_key[i] || !f->meta_val[i]) {
            vita_fail_line(err, errlen, "%s: out of host memory reading __metadata__", path);
            return -1;
        }
    }
    const char** keys = malloc(((size_t)f->n_meta + 1) * sizeof *keys);
    if (!keys) {
        vita_fail_line(err, errlen, "%s: out of host memory reading __metadata__", path);
        return -1;
    }
    for (int i = 0; i < f->n_meta; i++) keys[i] = f->meta_key[i];
    const char* dup = find_duplicate(keys, f->n_meta);
    if (dup)
        vita_fail_line(err, errlen, "%s: __metadata__ key '%s' appears twice (duplicate keys are not "
                       "allowed; the file is corrupt)", path, dup);
    free(keys);
    return dup ? -1 : 0;
}

/* reads the whole file into *buf; 0 or fills err */
static int read_file(const char* path, unsigned char** buf, uint64_t* len, char* err, size_t errlen) {
    FILE* fp = fopen(path, "rb");
    if (!fp) {
        vita_fail_line(err, errlen, "%s: cannot open: %s (check the weights path)", path, strerror(errno));
        return -1;
    }
    off_t size = -1;
    if (fseeko(fp, 0, SEEK_END) == 0) size = ftello(fp);
    if (size < 0 || fseeko(fp, 0, SEEK_SET) != 0) {
        vita_fail_line(err, errlen, "%s: cannot determine the file size: %s (is it a regular file?)", path,
                       strerror(errno));
        fclose(fp);
        return -1;
    }
    if ((uint64_t)size > (uint64_t)SIZE_MAX - 1) {
        vita_fail_line(err, errlen, "%s: file too large for this machine's address space", path);
        fclose(fp);
        return -1;
    }
    unsigned char* b = malloc((size_t)size + 1);
    if (!b) {
        vita_fail_line(err, errlen, "%s: out of host memory reading %lld bytes", path, (long long)size);
        fclose(fp);
        return -1;
    }
    size_t got = fread(b, 1, (size_t)size, fp);
    int rerr = ferror(fp);
    int cerr = fclose(fp);
    if (got != (size_t)size || rerr || cerr) {
        vita_fail_line(err, errlen, "%s: read %zu of %lld bytes: %s (the file changed while reading or "
                       "the disk failed)", path, got, (long long)size, rerr ? strerror(errno) : "short read");
        free(b);
        return -1;
    }
    *buf = b;
    *len = (uint64_t)size;
    return 0;
}

static int st_open_impl(StFile* f, const char* path, cJSON** rootp, char* err, size_t errlen) {
    unsigned char* buf = NULL;
    uint64_t size = 0;
    if (read_file(path, &buf, &size, err, errlen)) return -1;
    f->file_buf = buf;
    if (!(f->path = dupstr(path))) {
        vita_fail_line(err, errlen, "%s: out of host memory", path);
        return -1;
    }
    if (size < 8) {
        vita_fail_line(err, errlen, "%s: file is %" PRIu64 " bytes, shorter than the 8-byte header length: "
                       "truncated or not a safetensors file", path, size);
        return -1;
    }
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = (hn << 8) | buf[i];
    if (hn > ST_MAX_HEADER) {
        vita_fail_line(err, errlen, "%s: header length %" PRIu64 " exceeds the 100000000-byte limit: not a "
                       "safetensors file, or a corrupt one", path, hn);
        return -1;
    }
    if (hn > size - 8) {
        vita_fail_line(err, errlen, "%s: header length %" PRIu64 " but only %" PRIu64 " bytes follow: the "
                       "file is truncated (copy or download it again)", path, hn, size - 8);
        return -1;
    }
    const char* hdr = (const char*)buf + 8;
    const char* end = NULL;
    cJSON* root = cJSON_ParseWithLengthOpts(hdr, (size_t)hn, &end, 0);
    *rootp = root;
    if (!root) {
        long pos = end ? (long)(end - hdr) : -1;
        vita_fail_line(err, errlen, "%s: header is not valid JSON (error near byte %ld of %" PRIu64
                       "): the file is corrupt or not a safetensors file", path, pos, hn);
        return -1;
    }
    /* only whitespace may follow the JSON value (the reference pads with spaces) */
    for (const char* p = end; p < hdr + hn; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            vita_fail_line(err, errlen, "%s: header has bytes after the JSON object at byte %ld (only "
                           "space padding is allowed): the file is corrupt", path, (long)(p - hdr));
            return -1;
        }
    if (!cJSON_IsObject(root)) {
        vita_fail_line(err, errlen, "%s: header is JSON but not an object of tensors: not a safetensors "
                       "file", path);
        return -1;
    }
    f->data = buf + 8 + hn;
    f->data_len = size - 8 - hn;

    /* keys: duplicates must be found explicitly (cJSON keeps both in the child list) */
    int nkeys = cJSON_GetArraySize(root);
    const char** keys = malloc(((size_t)nkeys + 1) * sizeof *keys);
    f->t = calloc((size_t)nkeys + 1, sizeof *f->t);
    if (!keys || !f->t) {
        free(keys);
        vita_fail_line(err, errlen, "%s: out of host memory for %d header entries", path, nkeys);
        return -1;
    }
    int k = 0;
    const cJSON* e;
    cJSON_ArrayForEach(e, root) keys[k++] = e->string;
    const char* dup = find_duplicate(keys, nkeys);
    if (dup) {
        vita_fail_line(err, errlen, "%s: key '%s' appears twice in the header (duplicate keys are "
                       "not allowed; the file is corrupt)", path, dup);
        free(keys);
        return -1;
    }
    free(keys);

    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (parse_metadata(path, f, e, err, errlen)) return -1;
            continue;
        }
        StTensor* t = &f->t[f->n];
        if (parse_entry(path, e->string, e, f->data_len, t, err, errlen)) return -1;
        if (!(t->name = dupstr(e->string))) {
            vita_fail_line(err, errlen, "%s: out of host memory", path);
            return -1;
        }
        f->n++;
    }

    /* the tensors must tile the data buffer exactly */
    Range* r = malloc(((size_t)f->n + 1) * sizeof *r);
    if (!r) {
        vita_fail_line(err, errlen, "%s: out of host memory", path);
        return -1;
    }
    for (int i = 0; i < f->n; i++) r[i] = (Range){f->t[i].begin, f->t[i].end, i};
    qsort(r, (size_t)f->n, sizeof *r, cmp_range);
    uint64_t at = 0;
    int rc = 0;
    for (int i = 0; i < f->n && !rc; i++) {
        const StTensor* t = &f->t[r[i].idx];
        if (r[i].begin < at) {
            const StTensor* p = &f->t[r[i - 1].idx];
            vita_fail_line(err, errlen, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] overlap "
                           "tensor '%s' [%" PRIu64 ", %" PRIu64 "] (the file is corrupt)", path, t->name,
                           t->begin, t->end, p->name, p->begin, p->end);
            rc = -1;
        } else if (r[i].begin > at) {
            vita_fail_line(err, errlen, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] leave a "
                           "hole of %" PRIu64 " bytes at [%" PRIu64 ", %" PRIu64 ") in the data buffer "
                   "(the file is corrupt)", path, t->name, t->begin, t->end, r[i].begin - at, at,
                   r[i].begin);
            rc = -1;
        }
        at = r[i].end;
    }
    free(r);
    if (rc) return -1;
    if (at != f->data_len) {
        vita_fail_line(err, errlen, "%s: %" PRIu64 " trailing bytes after the last tensor (data buffer is "
                       "%" PRIu64 " bytes, tensors end at %" PRIu64 "): the file is corrupt", path,
                       f->data_len - at, f->data_len, at);
        return -1;
    }
    return 0;
}

int st_open(StFile* f, const char* path, char* err, size_t errlen) {
    memset(f, 0, sizeof *f);
    if (err && errlen) err[0] = 0;
    if (!path) {
        vita_fail_line(err, errlen, "(null): no weights path given");
        return -1;
    }
    cJSON* root = NULL;
    int rc = st_open_impl(f, path, &root, err, errlen);
    cJSON_Delete(root);
    if (rc) st_close(f);
    return rc;
}

void st_close(StFile* f) {
    if (!f) return;
    if (f->t)
        for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    if (f->meta_key)
        for (int i = 0; i < f->n_meta; i++) free(f->meta_key[i]);
    if (f->meta_val)
        for (int i = 0; i < f->n_meta; i++) free(f->meta_val[i]);
    free(f->meta_key);
    free(f->meta_val);
    free(f->path);
    free(f->file_buf);
    memset(f, 0, sizeof *f);
}

const StTensor* st_find(const StFile* f, const char* name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char* st_meta(const StFile* f, const char* key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

/* IEEE half -> single, exact for every input (subnormals normalised, inf/NaN kept) */
static uint32_t f16_to_f32_bits(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return sign;
        int ee = 113; /* exponent of 2^-14 in single precision is 127-14 */
        while (!(m & 0x400u)) { m <<= 1; ee--; }
        return sign | ((uint32_t)ee << 23) | ((m & 0x3ffu) << 13);
    }
    if (e == 31) return sign | 0x7f800000u | (m << 13);
    return sign | ((e + 112u) << 23) | (m << 13);
}

void st_read_f32(const StFile* f, const StTensor* t, float* dst) {
    const unsigned char* src = f->data + t->begin;
    size_t n = (size_t)t->numel;
    if (t->dtype == ST_F32) {
        if (n) memcpy(dst, src, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
        uint32_t bits = t->dtype == ST_F16 ? f16_to_f32_bits(h) : (uint32_t)h << 16;
        memcpy(&dst[i], &bits, 4);
    }
}

/* ============================== writer =================================================== */

typedef struct { char* s; size_t len, cap; int oom; } Buf;

static void buf_put(Buf* b, const char* s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char* p = realloc(b->s, cap);
        if (!p) { b->oom = 1; return; }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}
static void buf_str(Buf* b, const char* s) { buf_put(b, s, strlen(s)); }
static void buf_u64(Buf* b, uint64_t v) {
    char t[32];
    int n = snprintf(t, sizeof t, "%" PRIu64, v);
    buf_put(b, t, (size_t)n);
}
/* a JSON string literal; bytes >= 0x80 pass through (names are UTF-8) */
static void buf_json_str(Buf* b, const char* s) {
    buf_put(b, "\"", 1);
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        char t[8];
        if (*p == '"') buf_put(b, "\\\"", 2);
        else if (*p == '\\') buf_put(b, "\\\\", 2);
        else if (*p == '\n') buf_put(b, "\\n", 2);
        else if (*p == '\t') buf_put(b, "\\t", 2);
        else if (*p == '\r') buf_put(b, "\\r", 2);
        else if (*p < 0x20) { snprintf(t, sizeof t, "\\u%04x", *p); buf_put(b, t, 6); }
        else buf_put(b, (const char*)p, 1);
    }
    buf_put(b, "\"", 1);
}

static int check_write_args(const char* path, const StWriteTensor* t, int n,
                            const char* const* meta, int n_meta, uint64_t* nbytes, char* err,
                            size_t errlen) {
    if (n < 0 || n_meta < 0 || (n > 0 && !t) || (n_meta > 0 && !meta)) {
        vita_fail_line(err, errlen, "%s: st_write_f32 called with %d tensors, %d metadata entries "
                       "(a bug in vita)", path, n, n_meta);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char* nm = t[i].name;
        if (!nm || !nm[0]) {
            vita_fail_line(err, errlen, "%s: tensor #%d has an empty name (every tensor needs a name)",
                           path, i);
            return -1;
        }
        if (strcmp(nm, "__metadata__") == 0) {
            vita_fail_line(err, errlen, "%s: tensor '%s': the name is reserved for safetensors metadata",
                           path, nm);
            return -1;
        }
        if (t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS) {
            vita_fail_line(err, errlen, "%s: tensor '%s': %d dimensions (0..%d allowed)", path, nm,
                           t[i].ndim, ST_MAX_DIMS);
            return -1;
        }
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            int64_t v = t[i].shape[d];
            if (v < 0 || (uint64_t)v > (1ull << 53)) {
                vita_fail_line(err, errlen, "%s: tensor '%s': shape[%d] = %lld is not in [0, 2^53]", path,
                               nm, d, (long long)v);
                return -1;
            }
            if (v && numel > (1ull << 50) / (uint64_t)v) numel = UINT64_MAX; /* flagged below */
            else numel *= (uint64_t)v;
        }
        if (numel > (1ull << 50)) {
            vita_fail_line(err, errlen, "%s: tensor '%s': too many elements", path, nm);
            return -1;
        }
        if (numel && !t[i].data) {
            vita_fail_line(err, errlen, "%s: tensor '%s': no data (a bug in vita)", path, nm);
            return -1;
        }
        nbytes[i] = numel * 4;
    }
    for (int i = 0; i < 2 * n_meta; i++)
        if (!meta[i]) {
            vita_fail_line(err, errlen, "%s: metadata entry %d has a NULL %s (a bug in vita)", path, i / 2,
                           i % 2 ? "value" : "key");
            return -1;
        }
    /* duplicate tensor names / metadata keys */
    size_t nn = (size_t)(n > n_meta ? n : n_meta) + 1;
    const char** names = malloc(nn * sizeof *names);
    if (!names) {
        vita_fail_line(err, errlen, "%s: out of host memory", path);
        return -1;
    }
    for (int i = 0; i < n; i++) names[i] = t[i].name;
    const char* dup = find_duplicate(names, n);
    if (dup) {
        vita_fail_line(err, errlen, "%s: tensor '%s': name given twice (tensor names must be unique)",
                       path, dup);
        free(names);
        return -1;
    }
    for (int i = 0; i < n_meta; i++) names[i] = meta[2 * i];
    dup = find_duplicate(names, n_meta);
    free(names);
    if (dup) {
        vita_fail_line(err, errlen, "%s: metadata key '%s' given twice (keys must be unique)", path, dup);
        return -1;
    }
    return 0;
}

int st_write_f32(const char* path, const StWriteTensor* t, int n, const char* const* meta,
                 int n_meta, char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!path || !path[0]) {
        vita_fail_line(err, errlen, "(empty path): st_write_f32 needs an output path");
        return -1;
    }
    uint64_t* nbytes = calloc((size_t)(n > 0 ? n : 0) + 1, sizeof *nbytes);
    if (!nbytes) {
        vita_fail_line(err, errlen, "%s: out of host memory", path);
        return -1;
    }
    if (check_write_args(path, t, n, meta, n_meta, nbytes, err, errlen)) {
        free(nbytes);
        return -1;
    }

    /* header: __metadata__ first (as the reference writes it), then tensors in the given order */
    Buf h = {0};
    buf_str(&h, "{");
    if (n_meta > 0) {
        buf_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) buf_str(&h, ",");
            buf_json_str(&h, meta[2 * i]);
            buf_str(&h, ":");
            buf_json_str(&h, meta[2 * i + 1]);
        }
        buf_str(&h, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (i || n_meta > 0) buf_str(&h, ",");
        buf_json_str(&h, t[i].name);
        buf_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++) {
            if (d) buf_str(&h, ",");
            buf_u64(&h, (uint64_t)t[i].shape[d]);
        }
        buf_str(&h, "],\"data_offsets\":[");
        buf_u64(&h, off);
        buf_str(&h, ",");
        buf_u64(&h, off + nbytes[i]);
        buf_str(&h, "]}");
        off += nbytes[i];
    }
    buf_str(&h, "}");
    while (!h.oom && h.len % 8) buf_str(&h, " ");
    if (h.oom || h.len > ST_MAX_HEADER) {
        vita_fail_line(err, errlen, "%s: %s", path, h.oom ? "out of host memory building the header"
                                                  : "header exceeds 100000000 bytes (too many tensors)");
        free(h.s);
        free(nbytes);
        return -1;
    }

    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    int rc = -1;
    AtomicFile w;
    if (atomic_open(&w, path, err, errlen) == 0) {
        atomic_write(&w, len8, 8);
        atomic_write(&w, h.s, h.len);
        for (int i = 0; i < n; i++) atomic_write(&w, t[i].data, (size_t)nbytes[i]);
        if (atomic_commit(&w, err, errlen) == 0) rc = 0;
    }
    free(h.s);
    free(nbytes);
    return rc;
}
