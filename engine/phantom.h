/* engine/phantom.h — synthetic prostate mpMRI phantoms (`vita phantom`, SPEC.md §1), written as
 * a vita dataset (SPEC.md §2) on which all five tasks are learnable and not trivial.
 *
 * Each case: 3 channels (t2w, adc, hbv) on a common grid covering a fixed field of view of
 * PHANTOM_FOV_Z x PHANTOM_FOV_Y x PHANTOM_FOV_X mm (so --size changes the resolution, not the
 * anatomy); an ellipsoidal gland (random size, position, rotation) with a central transition
 * zone and a posterior peripheral-zone shell, a thin capsule, rectum, bladder, pelvic muscles
 * and textured fat around it; 0–3 lesions (low T2, low ADC, high hbv; ~70 % in the PZ) of
 * random size and conspicuity; a smooth multiplicative bias field on T2w and hbv; Rician
 * noise (magnitude of complex Gaussian) on T2w and hbv, Gaussian on ADC; through-plane
 * partial volume (a slice-profile blur along z whose width follows the case's native slice
 * thickness). T2w and hbv are z-scored per case, ADC is mapped with a fixed global affine
 * ((ADC[µm²/ms] − 1.0) / 0.6) as PI-CAI-style pipelines do.
 * Labels: seg 0 background, 1 tz, 2 pz, 3 lesion; cls 1 (csPCa) when any lesion's volume
 * inside the gland is at least PHANTOM_CSPCA_ML mL (about 40 % of cases).
 * Deterministic: case i draws from its own streams rng_stream(seed, ...), so the output (to
 * the byte) does not depend on the thread count. */
#ifndef VITA_PHANTOM_H
#define VITA_PHANTOM_H

#include <stddef.h>
#include <stdint.h>

#define PHANTOM_FOV_Z 96.0
#define PHANTOM_FOV_Y 80.0
#define PHANTOM_FOV_X 80.0
#define PHANTOM_CSPCA_ML 0.5   /* a lesion of this volume (mL) or more makes the case csPCa */
#define PHANTOM_MAX_LESIONS 3

typedef struct {
    int n, D, H, W;            /* cases and grid (default 200 of 32x64x64) */
    uint64_t seed;
    int gzip;                  /* 0 none (default), 1..9 */
    int quiet;                 /* no progress line */
    int clean;                 /* 1: no noise (tests: the noise floor of the image tasks);
                                  anatomy, bias and labels are the same as with noise */
} PhantomSpec;

/* per-case ground truth beyond the voxel labels */
typedef struct {
    int n_lesions;
    double lesion_ml[PHANTOM_MAX_LESIONS];   /* volume inside the gland, mL */
    int lesion_zone[PHANTOM_MAX_LESIONS];    /* 1 tz, 2 pz (where the centre lies) */
    int32_t cls;                             /* 1 = csPCa */
    double spacing[3], origin[3], direction[9];   /* native geometry (z,y,x), see dataset.c */
    int32_t shape_original[3], crop_offset[3];
} PhantomInfo;

void phantom_default(PhantomSpec* ps);
/* common-grid spacing (z,y,x) mm: the field of view over the grid size */
void phantom_grid_spacing(const PhantomSpec* ps, double sp[3]);
/* the case's parameters only (cheap: no voxels) */
void phantom_info(const PhantomSpec* ps, int i, PhantomInfo* info);
/* generates case i: img [3, D, H, W] (t2w, adc, hbv), seg [D, H, W] (may be NULL), info (may
 * be NULL). Thread-safe (no shared state). */
void phantom_case(const PhantomSpec* ps, int i, float* img, uint8_t* seg, PhantomInfo* info);
/* stratified (by cls) splits 60/15/15/10 % train/val/test/probe; folds 0–4 over train+val,
 * -1 for test and probe */
void phantom_splits(const PhantomSpec* ps, const int32_t* cls, uint8_t* split, int8_t* fold);
/* writes the whole dataset (OpenMP over cases, in-order writes) */
int phantom_write(const char* path, const PhantomSpec* ps, const char* source, char* err,
                  size_t errlen);
/* `vita phantom --out DATA.h5 [--cases N] [--size D,H,W] [--seed S] [--gzip L] [--quiet]`;
 * argv[0] is "phantom" */
int cmd_phantom(int argc, char** argv);

#endif
