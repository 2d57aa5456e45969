/* engine/loader.h — batches from a vita dataset: split/fold selection, deterministic epoch
 * order sharded over ranks, crops, augmentation, image-task degradations, and background
 * prefetch threads that fill a bounded queue.
 *
 * Determinism: every random draw of a sample depends only on (seed, epoch, position of the
 * sample in this rank's epoch stream, rank) — never on the model, the worker count or thread
 * timing. The epoch order is a function of (seed, epoch) shared by all ranks; rank r of world w
 * takes positions r, r+w, r+2w, ... (the order is wrapped so every rank gets ceil(N/w)).
 * Workers fill queue slots by batch index; loader_next hands them out in index order.
 * State = (epoch, pos): loader_seek to a saved state continues with identical batches.
 *
 * Splits: fold < 0 uses /split; fold = k: cases of split train or val with fold k are val,
 * those with another fold >= 0 are train, cases with fold -1 keep their /split; test and probe
 * cases are never moved. Classification drops cases with cls = -1 from train; image tasks drop
 * cases whose target channel is missing.
 *
 * Train split: shuffled each epoch (class-balanced for classify when balance = 1), random crops
 * (pos/neg, sampler.h), augmentation when augment = 1, degradations drawn per sample. An epoch
 * has ceil(ceil(n_items * samples_per_case / world) / batch) batches; the last one is completed
 * with the cases from the start of the epoch's stream (fresh random draws) so every batch is full.
 * Other splits: dataset order, each case once, centre crop, degradations fixed per case (seeded
 * by the case index only); the last batch may be short (Batch.n < B, unused rows zero with
 * case -1). augment = 1 still augments them (seeded per sample, off by default for val).
 *
 * Channels: `channels` picks the model's input sequences by name and order (ProFound:
 * "t2w,hbv,adc"; ProViCNet: one sequence, e.g. "t2w"); a name the dataset lacks gives a zero
 * channel with present 0 (ProFound's T2-only input [t2w, 0, 0]). C below = that count.
 *
 * Modes. volume: img [B, C, d, h, w] = crop of the case grid (crop[a] <= 0: whole axis).
 * slice: a sample is one slice z with `context` adjacent slices of every channel, stacked as
 * channels c * context + t (slices z - (context-1)/2 + t, clamped at the volume ends:
 * edge slices repeat), img [B, C*context, 1, h, w]; seg/target are slice z; slice_idx/cnt give
 * z and the slice count in the case's original geometry (z + crop_offset[0], shape_original[0]),
 * ProViCNet's extra tokens. Rotation/zoom/elastic are in-plane only in slice mode.
 *
 * Tasks. classify: cls [B]. segment: seg [B, d, h, w] int32 (labels of /seg). images
 * (pretraining): the images only; no labels needed, no case dropped.
 * Image tasks keep the dataset's channel layout; unused channels are zero with present = 0:
 *   superres   input = channel `superres_channel` (default t2w) averaged over blocks of
 *              `superres_factor` slices (block phase drawn per sample) and linearly upsampled
 *              back; target = the clean channel.
 *   undistort  input = channels in `undistort_channels` (default hbv) resampled along the
 *              phase-encode axis (default y) by a smooth random field (cubic B-spline, control
 *              points every undistort_spacing voxels, max |v| ~ U(0.5, 1) * undistort_mag)
 *              with Jacobian intensity modulation; target = the clean first such channel.
 *   synthesize input = the present channels of `synth_inputs` (default "t2w,hbv");
 *              target = `synth_target` (default adc).
 * A dataset with /targets/<task name> (superres, undistort, synthesize) supplies the target
 * (channel 0, same grid) and its images are used undegraded. Degradations act on the whole
 * case in its native grid, before crop and augmentation; spatial augmentation moves input and
 * target together; intensity augmentation is not applied for image tasks (it would change the
 * mapping to learn). */
#ifndef VITA_LOADER_H
#define VITA_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "augment.h"
#include "dataset.h"

enum { LOADER_VOLUME = 0, LOADER_SLICE = 1 };
enum { LOADER_CLASSIFY = 0, LOADER_SEGMENT, LOADER_SUPERRES, LOADER_UNDISTORT,
       LOADER_SYNTHESIZE, LOADER_IMAGES };

typedef struct {
    char superres_channel[DS_NAME];   /* "t2w" */
    int superres_factor;              /* 2 */
    int superres_axis;                /* 0 (z, through-plane) */
    char undistort_channels[64];      /* "hbv" (comma list) */
    double undistort_mag;             /* 3 voxels */
    double undistort_spacing[3];      /* control points every {4, 24, 24} voxels */
    int undistort_axis;               /* 1 (y: A-P phase encode of axial prostate DWI) */
    char synth_inputs[64];            /* "t2w,hbv" */
    char synth_target[DS_NAME];       /* "adc" */
} DegradeConfig;

typedef struct {
    int mode;                  /* LOADER_VOLUME | LOADER_SLICE */
    int context;               /* slice mode: adjacent slices per channel (1 or 3) */
    int crop[3];               /* d, h, w (slice mode: d ignored); <= 0: the whole axis */
    int batch;
    double pos_fraction;       /* 0.33 */
    int fg_label;              /* -1: the label named "lesion" if any, else any label > 0 */
    int task;                  /* LOADER_CLASSIFY ... */
    char channels[128];        /* the model's channels in its order, e.g. "t2w,hbv,adc" (ProFound);
                                  names the dataset lacks are zero with present 0; "" = all
                                  dataset channels in dataset order */
    int split;                 /* SPLIT_TRAIN | SPLIT_VAL | ... */
    int fold;                  /* -1: /split; k: fold k is val */
    int augment;               /* 1 */
    int balance;               /* classify + train: class-balanced order (1) */
    int samples_per_case;      /* train: samples per case per epoch (1) */
    int with_probe;            /* train split: the probe-only cases (split 3) join it (0) */
    uint64_t view;             /* 0: the sample draws of (seed, epoch, position); v > 0 another
                                  independent set of draws (crop, augmentation) for the same
                                  cases in the same order: the second view of contrastive
                                  pretraining */
    uint64_t seed;
    int rank, world;
    int workers;               /* prefetch threads >= 1 */
    int queue;                 /* queue depth (batches) >= 1 (2: each slot holds a batch) */
    AugmentConfig aug;
    DegradeConfig deg;
} LoaderConfig;

typedef struct {
    int B, C, D, H, W;         /* img shape (C = channels x context in slice mode, D = 1) */
    int n;                     /* valid rows (< B only for the last batch of a non-train pass) */
    long epoch, pos;           /* which batch this is */
    float* img;                /* [B, C, D, H, W] */
    uint8_t* present;          /* [B, C] */
    int32_t* seg;              /* [B, D, H, W] (segment) or NULL */
    int32_t* cls;              /* [B] (classify) or NULL */
    float* target;             /* [B, 1, D, H, W] (image tasks) or NULL */
    int32_t* case_idx;         /* [B] dataset index, -1 for padding rows */
    int32_t* slice_idx;        /* [B] (slice mode) or NULL */
    int32_t* slice_cnt;        /* [B] (slice mode) or NULL */
} Batch;

typedef struct { long epoch, pos; } LoaderState;

typedef struct LoaderPriv LoaderPriv;
typedef struct {
    LoaderConfig cfg;
    Dataset* ds;
    int n_items;               /* cases in the split */
    int* items;                /* [n_items] dataset indices */
    int per_rank;              /* samples per epoch on this rank */
    int n_batches;             /* batches per epoch */
    int C, D, H, W;            /* batch img shape */
    int C_in;                  /* dataset channels */
    int C_seq;                 /* model channels (sequences) before the slice context */
    int seq_src[DS_MAX_CHANNELS];   /* dataset channel of each model channel, -1 absent */
    int chan_identity;         /* model channels = dataset channels */
    int fg_label;              /* resolved */
    int target_ch;             /* image tasks: channel of the target (-1: explicit /targets) */
    char target_name[DS_NAME]; /* explicit /targets/<name> or "" */
    uint8_t chan_mask[DS_MAX_CHANNELS];  /* image tasks: input channels kept */
    LoaderPriv* p;
} Loader;

void loader_defaults(LoaderConfig* c);
/* validates the config against the dataset, selects the split, starts the workers at (0, 0);
 * returns 0, or 1 with one line in err. The workers keep L and ds: neither may move or be
 * closed before loader_close. */
int loader_open(Loader* L, Dataset* ds, const LoaderConfig* cfg, char* err, size_t errlen);
/* the next batch into out (buffers allocated on first use, then swapped with the queue's; a
 * Batch must start zeroed; one of another shape is reallocated). 0, or 1 with err (read error). */
int loader_next(Loader* L, Batch* out, char* err, size_t errlen);
/* the (epoch, pos) the next loader_next returns */
LoaderState loader_state(const Loader* L);
/* restarts the workers at s (pos in [0, n_batches)) */
void loader_seek(Loader* L, LoaderState s);
void loader_close(Loader* L);
void batch_free(Batch* b);

/* whole case i (dataset index) for sliding-window evaluation, degraded with its fixed per-case
 * seed and in the model's channel order: img [C_seq, D, H, W] (the dataset grid),
 * present [C_seq], seg [D, H, W] (NULL skips), target [D, H, W] (image tasks; NULL skips).
 * Thread-safe with respect to the workers. */
int loader_case(Loader* L, int i, float* img, uint8_t* present, int32_t* seg, float* target,
                char* err, size_t errlen);
/* slice mode: the input stack of slice z of a whole case img [C_seq, D, H, W] -> out
 * [C_seq * context, H, W] (same clamping as the batches) */
void loader_slice_stack(const Loader* L, const float* img, int z, float* out);

#endif
