/* engine/slidewin.h — whole-volume inference by sliding window (MONAI's
 * sliding_window_inference semantics): windows of the model's input size with the configured
 * overlap, the last window of each axis flush with the border, predictions blended with
 * Gaussian weights (σ = 1/8 of the window per axis, MONAI's default) or constant weights;
 * volumes smaller than the window are zero-padded. Slice-mode (2D) models run slice by slice.
 * Used for validation every epoch (never a centre crop alone), test, eval and predict. */
#ifndef VITA_SLIDEWIN_H
#define VITA_SLIDEWIN_H

#include "../models/head.h"
#include "loader.h"

typedef struct {
    double overlap;            /* 0.5 */
    int gaussian;              /* 1: Gaussian weighting, 0: constant */
    int batch;                 /* windows per forward */
} SlideConfig;

/* which extra token carries the slice index and which the slice count (-1: none): named
 * tokens "slice_index"/"slice_count" win; unnamed, E = 2 means (index, count), E = 1 index. */
void slide_extra_slots(const VitConfig* vc, int* idx_slot, int* cnt_slot);

/* Runs encoder + head over case i of the loader's dataset (whole volume, degraded like the
 * loader's validation inputs) and returns the blended output on the case grid: dense tasks
 * out [K, D, H, W] (segment: softmax probabilities; image tasks: the predicted image, 1 channel);
 * classify: out [num_classes] = softmax of the logits averaged over windows. Also the ground
 * truth of the case (seg [D,H,W] / cls / target [D,H,W]) via loader_case. 0, or 1 with err. */
int slide_case(Vit* m, Head* h, Loader* L, int case_idx, const SlideConfig* sc, float* out,
               int32_t* seg, int32_t* cls, float* target, char* err, size_t errlen);

/* per-case metrics of a task from slide_case's output (names in metric_names order):
 * classify: the score (p of class 1, or the argmax prob) for AUROC over cases; segment: Dice per
 * foreground class, mean Dice, HD95; image: PSNR, SSIM, MAE.
 * Details (engine/slidewin.c): classify reads the case label through `seg` (&cls, one int32,
 * -1 unknown; NULL = unknown) and gives score (K = 2: p of class 1, else the argmax prob),
 * pred (argmax), correct (1/0, NaN without a label); segment gives dice_k for k = 1..K-1
 * (argmax of the probabilities; NaN when class k is absent from the truth), dice_mean (mean
 * over the non-NaN foreground classes) and hd95 (mm, case spacing) of the union foreground
 * (label > 0); image tasks give psnr and ssim with data range = max − min of the target case,
 * ssim 3D when D >= 11 else the mean of 2D per-slice values, and mae. Returns the metric count
 * (may exceed max_metrics: only the first max_metrics are written); names are static strings. */
int slide_case_metrics(int task, int K, const float* out, const int32_t* seg, const float* target,
                       int D, int H, int W, const double spacing[3], double* metrics,
                       const char** names, int max_metrics);

#endif
