/* engine/checkpoint.h — checkpoints of a run (SPEC.md §4):
 *   RUN_DIR/checkpoints/step_XXXXXXXX.safetensors  weights (encoder + head, timm / head.* names,
 *                                                   metadata: vita_version, model, task, step)
 *   RUN_DIR/checkpoints/step_XXXXXXXX.state        everything else needed to resume exactly
 *   RUN_DIR/checkpoints/latest                     name of the newest COMPLETE checkpoint,
 *                                                   written last (temp + fsync + rename)
 *   RUN_DIR/checkpoints/best.safetensors           best validation metric so far
 * The state file is a small binary container of named blobs (magic, version, count, then per
 * blob: name, byte length, CRC-32 of the bytes, bytes) so a truncated or corrupt file is
 * detected on load; loading falls back to the previous complete checkpoint with a message. */
#ifndef VITA_CHECKPOINT_H
#define VITA_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "atomic.h"        /* write_file_atomic: small files, temp + fsync + rename */
#include "safetensors.h"

typedef struct {
    const char* name;
    const void* data;          /* host memory */
    size_t bytes;
} CkptBlob;

typedef struct {
    int n;
    char** name;
    void** data;               /* malloc'd copies */
    size_t* bytes;
} CkptState;

/* writes step_XXXXXXXX.safetensors (tensors given as safetensors writer input) and
 * step_XXXXXXXX.state (blobs) atomically, then `latest`, then deletes all but the newest
 * `keep` step checkpoints (keep <= 0: none deleted). Before writing it deletes temporary files a
 * killed writer left and any step_* at or after `step` (stale, from before a resume that fell
 * back to an older checkpoint). Never touches best.safetensors. 0, or 1 with err. */
int ckpt_save(const char* run_dir, long step, const StWriteTensor* tensors,
              int n_tensors, const char* const* meta, int n_meta, const CkptBlob* blobs,
              int n_blobs, int keep, char* err, size_t errlen);
/* finds the newest loadable checkpoint: reads `latest`, validates its .state (CRC) and that
 * the .safetensors opens; on failure prints why and tries older step_* files. Fills the
 * weights path (for vit_load_weights / head loading) and the state. 0 found, 1 none / error. */
int ckpt_find_latest(const char* run_dir, char* weights_path, size_t wlen, long* step,
                     CkptState* st, char* err, size_t errlen);
const void* ckpt_blob(const CkptState* st, const char* name, size_t* bytes);   /* NULL if absent */
void ckpt_state_free(CkptState* st);
/* CRC-32 (IEEE, as zlib's crc32): pass 0 to start, the previous value to continue */
uint32_t ckpt_crc32(uint32_t crc, const void* data, size_t n);

#endif
