/* engine/predict.h — `vita predict`: sliding-window predictions of every case of a split written
 * in each case's NATIVE geometry (the original T2w grid, engine/volume.h "Dataset geometry"),
 * so they overlay the original image in any viewer, plus the per-case metrics.
 *
 * Outputs in DIR (every file atomic: temp + fsync + rename):
 *   segment     <case>_seg.nii.gz     uint8 labels (argmax of the blended softmax on the dataset
 *                                     grid, nearest neighbour back to native; voxels outside the
 *                                     dataset grid 0 = background)
 *               <case>_prob.nii.gz    with --probs: float32 foreground probability 1 − p(label 0),
 *                                     linear back to native (0 outside)
 *   superres / undistort / synthesize
 *               <case>_<task>.nii.gz  float32 predicted image (in the dataset's normalised
 *                                     intensities), linear back to native (0 outside)
 *   classify    predictions.csv       case_id,split,p_<class>...,pred,label
 *   all         metrics.csv           the per-case metrics on the dataset grid (casetable.h,
 *                                     the columns of `vita eval`'s CSV) and an "overall" row
 * <case> is the case id with characters other than [A-Za-z0-9._-] replaced by '_'.
 * The map back: each native voxel centre goes to world (origin + dir·diag(spacing)·index) and
 * into the dataset grid (grid origin moved by crop_offset in the grid_spacing grid), where the
 * prediction is sampled (volume_resample). */
#ifndef VITA_PREDICT_H
#define VITA_PREDICT_H

#include <stddef.h>

#include "dataset.h"
#include "infer.h"
#include "volume.h"

typedef struct {
    const char* out_dir;
    const char* cases;         /* comma list of case ids (NULL: every case of the split) */
    int limit;                 /* > 0: the first `limit` cases (after `cases`) */
    int probs;                 /* segment: also the foreground probability map */
} PredictOptions;

/* grid_data [D, H, W] on dataset case ci's grid -> *native (geometry of the case's native grid,
 * data allocated here; the caller volume_free's it); interp VOL_NEAREST (labels) or VOL_LINEAR;
 * native voxels outside the dataset grid get 0. 0, or 1 with err. */
int predict_to_native(const Dataset* ds, int ci, const float* grid_data, int interp,
                      Volume* native, char* err, size_t errlen);

/* the cases of the opened split that po selects (dataset indices, malloc'd) into *items; 0, or
 * 1 with err naming a case id that is not in the split */
int predict_select(const Infer* I, const PredictOptions* po, int** items, int* n, char* err,
                   size_t errlen);

/* runs the selected cases and writes everything above; 0, or 1 with err */
int predict_run(Infer* I, const PredictOptions* po, char* err, size_t errlen);

#endif
