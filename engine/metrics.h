/* engine/metrics.h — evaluation metrics on host arrays, accumulated in double, deterministic
 * (fixed summation orders; OpenMP only over independent lines, never in a reduction).
 *
 * Conventions (what each value means when a case is degenerate):
 *   - An undefined value is NaN (a class absent from the ground truth, a single-class label
 *     set for AUROC/AP, ...). Means over cases or classes skip NaN (metric_nanmean), as
 *     MONAI's DiceMetric(ignore_empty=True) and its aggregation do.
 *   - Segmentation label maps are int32 in [0, K); binary masks are uint8 (non-zero = inside).
 *   - Volumes are [D, H, W] row-major (z, y, x); D = 1 is a 2D image and is treated as 2D
 *     (in-plane neighbours and filters only). Spacing is (z, y, x) in mm.
 *   - Binary classification labels are int32 (non-zero = positive), scores double (higher =
 *     more positive).
 */
#ifndef VITA_METRICS_H
#define VITA_METRICS_H

#include <stdint.h>

/* mean over the non-NaN entries; NaN when there are none */
double metric_nanmean(const double* x, long n);

/* ---- segmentation ------------------------------------------------------------------------ */
/* Dice of each class k < K from label maps: out[k] = 2|P_k ∩ G_k| / (|P_k| + |G_k|), NaN when
 * class k is absent from the ground truth (whatever the prediction; MONAI ignore_empty=True).
 * Per case: average cases with metric_nanmean per class. Labels outside [0, K) abort (exit 2). */
void metric_dice_per_class(const int32_t* pred, const int32_t* gt, long n, int K, double* out);
/* the same for one binary mask pair */
double metric_dice_mask(const uint8_t* pred, const uint8_t* gt, long n);

/* Percentile Hausdorff distance in mm (MONAI compute_hausdorff_distance, directed=False):
 *   surface = mask voxels with a 6-neighbour (4 in 2D) outside the mask or outside the volume
 *             (MONAI: binary_erosion XOR mask, scipy border_value 0);
 *   directed distances: from each surface voxel of one mask to the nearest surface voxel of
 *             the other, exact Euclidean distance transform with anisotropic spacing;
 *   value   = max(percentile of pred->gt, percentile of gt->pred) — the max of the two
 *             DIRECTED percentiles (MONAI's definition), not the percentile of their union;
 *             percentile with linear interpolation (numpy / torch.quantile default).
 * Both masks empty: NaN (as MONAI). Exactly one empty: +INFINITY — MONAI's plain HD gives inf
 * there too, but its percentile path gives NaN (torch.quantile of all-inf distances computes
 * inf − inf); vita does not let a missed or hallucinated structure pass as a missing value:
 * the caller counts such cases separately or excludes them explicitly.
 * percentile in [0, 100]; 100 is the Hausdorff distance. */
double metric_hausdorff(const uint8_t* pred, const uint8_t* gt, int D, int H, int W,
                        const double spacing_zyx[3], double percentile);
double metric_hd95(const uint8_t* pred, const uint8_t* gt, int D, int H, int W,
                   const double spacing_zyx[3]);

/* ---- classification ---------------------------------------------------------------------- */
/* AUROC = Mann-Whitney U / (n_pos n_neg) with midranks for tied scores (= sklearn
 * roc_auc_score). NaN if either class is absent or a score is NaN. */
double metric_auroc(const double* score, const int32_t* label, long n);
/* average precision, sklearn's step-wise definition: Σ_t (R_t − R_{t−1}) P_t over the distinct
 * score thresholds t in decreasing order (tied scores enter together). NaN without positives
 * (sklearn returns 0 with a warning there) or with a NaN score. */
double metric_average_precision(const double* score, const int32_t* label, long n);
/* PI-CAI-style ranking score at CASE level: (AUROC + AP) / 2 of the case scores. PI-CAI's own
 * score uses lesion-level AP (detections matched at IoU > 0.1); this is not that: label it
 * "case-level" when reporting. */
double metric_picai_case_score(const double* score, const int32_t* label, long n);
/* fraction of pred == gt */
double metric_accuracy(const int32_t* pred, const int32_t* gt, long n);
/* mean over the classes present in gt of recall_k = #(pred = gt = k) / #(gt = k) (sklearn
 * balanced_accuracy_score: classes only predicted do not count). Labels in [0, K). */
double metric_balanced_accuracy(const int32_t* pred, const int32_t* gt, long n, int K);

/* ---- image-to-image ---------------------------------------------------------------------- */
/* max − min of x */
double metric_data_range(const float* x, long n);
/* mean |pred − target| */
double metric_mae(const float* pred, const float* target, long n);
/* PSNR = 10 log10(R² / MSE), R = data_range if > 0 else max − min of the target (pass the
 * volume's range to score slices consistently). IEEE arithmetic: identical images give +inf,
 * a constant target (R = 0) with errors −inf, both NaN. (= skimage peak_signal_noise_ratio
 * with data_range=R.) */
double metric_psnr(const float* pred, const float* target, long n, double data_range);
/* SSIM as skimage structural_similarity(gaussian_weights=True, sigma=1.5, truncate=3.5 (an
 * 11-tap window), use_sample_covariance=False, K1=0.01, K2=0.03, data_range=R): local
 * Gaussian-weighted means, population (co)variances, the SSIM map averaged over the interior
 * (pad = 5 cropped on every side of every filtered axis). 2D when D = 1, else 3D (isotropic
 * window in voxels). R as for PSNR. NaN when a filtered axis is shorter than 11 or R = 0. */
double metric_ssim(const float* pred, const float* target, int D, int H, int W, double data_range);

#endif
