/* engine/casetable.h — the per-case metrics of an evaluation (`vita eval`, `vita predict`):
 * one row per case, written as CSV for paired tests and case-level bootstraps, and the
 * overall numbers.
 *
 * CSV (one header line, then one row per case, in the order the cases were evaluated):
 *   case_id,split[,label],<metric>,...
 *   classify:  label (-1 unknown), score (K = 2: p of class 1, else the argmax probability),
 *              pred (argmax), correct (1/0, nan without a label)
 *   segment:   dice_<label name> per foreground class (nan when absent from the truth),
 *              dice_mean (over the non-nan classes), hd95 (mm, union foreground, inf when one
 *              side is empty)
 *   image:     psnr, ssim, mae (data range = max - min of the target case)
 * Numbers are %.9g; nan / inf / -inf spelled so. An optional last row "overall" holds, per
 * column, the mean over cases (nan skipped, as MONAI's aggregation; infinite values excluded
 * except for psnr), so classify's overall `correct` is the accuracy; the label column is
 * empty there. AUROC / AP are case-set metrics: printed by casetab_print_overall. */
#ifndef VITA_CASETABLE_H
#define VITA_CASETABLE_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

#define CASE_MAX_METRICS 24

typedef struct {
    int task, K;               /* HEAD_* and classes (1 for image tasks) */
    int n, cap, nmet;          /* rows, capacity, metric columns */
    char names[CASE_MAX_METRICS][64];
    char (*ids)[64];           /* [cap] case ids */
    int32_t* labels;           /* [cap] classify case labels (-1 unknown) */
    double* vals;              /* [cap, CASE_MAX_METRICS] */
} CaseTable;

void casetab_init(CaseTable* t, int task, int K, int cap);
void casetab_free(CaseTable* t);
/* scores dataset case ci from slide_case's output (out, and the truth: seg for segment, cls
 * for classify, target for image tasks; spacing from the case's geometry) and appends the
 * row; returns the row's values */
const double* casetab_add(CaseTable* t, const Dataset* ds, int ci, const float* out,
                          const int32_t* seg, int32_t cls, const float* target);
/* the overall value of column k (see the file comment); *ninf: infinite values excluded */
double casetab_overall(const CaseTable* t, int k, int* ninf);
/* the CSV, written atomically (temp + fsync + rename); 0, or 1 with err */
int casetab_write_csv(const CaseTable* t, const char* path, const char* split_name,
                      int overall_row, char* err, size_t errlen);
/* "[i/total] case  m1 v1 ... (s/case, ETA)" for the last row */
void casetab_print_progress(const CaseTable* t, int total, double elapsed_s);
/* the overall block on stdout (classify: AUROC, AP, PI-CAI case score for K = 2, accuracy,
 * balanced accuracy over the labelled cases; others: the overall row's values) */
void casetab_print_overall(const CaseTable* t, const char* split_name);

#endif
