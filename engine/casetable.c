/* engine/casetable.c — per-case metrics rows, their CSV and the overall numbers (casetable.h).
 * The CSV text is built in memory (open_memstream) and committed with write_file_atomic, so a
 * reader never sees a half-written table. */
#include "casetable.h"
#include "check.h"
#include "checkpoint.h"
#include "metrics.h"
#include "slidewin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void casetab_init(CaseTable* t, int task, int K, int cap) {
    memset(t, 0, sizeof *t);
    t->task = task;
    t->K = K;
    t->cap = cap > 0 ? cap : 1;
    t->ids = xcalloc(t->cap, sizeof *t->ids);
    t->labels = xmalloc(sizeof(int32_t) * t->cap);
    t->vals = xmalloc(sizeof(double) * CASE_MAX_METRICS * t->cap);
}

void casetab_free(CaseTable* t) {
    free(t->ids);
    free(t->labels);
    free(t->vals);
    memset(t, 0, sizeof *t);
}

const double* casetab_add(CaseTable* t, const Dataset* ds, int ci, const float* out,
                          const int32_t* seg, int32_t cls, const float* target) {
    CHECK(t->n < t->cap, "case table full (%d rows)", t->cap);
    const double* sp = dataset_case_spacing(ds, ci);
    const char* names[CASE_MAX_METRICS];
    double* mv = t->vals + (long)t->n * CASE_MAX_METRICS;
    /* a segment case without labels (vita predict on unlabelled data) has no metrics */
    int n = t->task == HEAD_SEGMENT && !seg ? 0 :
            slide_case_metrics(t->task, t->K, out, t->task == HEAD_CLASSIFY ? &cls : seg, target,
                               ds->D, ds->H, ds->W, sp, mv, names, CASE_MAX_METRICS);
    CHECK(n <= CASE_MAX_METRICS, "%d metrics", n);
    if (t->n == 0) {
        t->nmet = n;
        for (int k = 0; k < n; k++) {
            int lab;
            /* dice_<k> -> dice_<label name>: the CSV names the structure, not its number */
            if (t->task == HEAD_SEGMENT && sscanf(names[k], "dice_%d", &lab) == 1 && lab < ds->n_labels)
                snprintf(t->names[k], sizeof t->names[k], "dice_%s", ds->label_names[lab]);
            else
                snprintf(t->names[k], sizeof t->names[k], "%s", names[k]);
        }
    }
    CHECK(n == t->nmet, "case %s: %d metrics, the table has %d", ds->case_id[ci], n, t->nmet);
    snprintf(t->ids[t->n], sizeof t->ids[t->n], "%s", ds->case_id[ci]);
    t->labels[t->n] = cls;
    t->n++;
    return mv;
}

double casetab_overall(const CaseTable* t, int k, int* ninf) {
    double* col = xmalloc(sizeof(double) * (t->n ? t->n : 1));
    int ni = 0;
    for (int i = 0; i < t->n; i++) {
        double v = t->vals[(long)i * CASE_MAX_METRICS + k];
        /* an infinite hd95 (a structure missed or hallucinated) would swamp the mean; psnr is
         * +inf only for a perfect case and stays in */
        if (isinf(v) && strcmp(t->names[k], "psnr")) { ni++; v = NAN; }
        col[i] = v;
    }
    double m = metric_nanmean(col, t->n);
    free(col);
    if (ninf) *ninf = ni;
    return m;
}

static void csv_num(FILE* f, double v) {
    if (isnan(v)) fprintf(f, ",nan");
    else if (isinf(v)) fprintf(f, v > 0 ? ",inf" : ",-inf");
    else fprintf(f, ",%.9g", v);
}

int casetab_write_csv(const CaseTable* t, const char* path, const char* split_name,
                      int overall_row, char* err, size_t errlen) {
    char* buf = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    CHECK_ERRNO(f != NULL, "open_memstream for the CSV text");
    int cls = t->task == HEAD_CLASSIFY;
    fprintf(f, "case_id,split%s", cls ? ",label" : "");
    for (int k = 0; k < t->nmet; k++) fprintf(f, ",%s", t->names[k]);
    fprintf(f, "\n");
    for (int i = 0; i < t->n; i++) {
        fprintf(f, "%s,%s", t->ids[i], split_name);
        if (cls) fprintf(f, ",%d", t->labels[i]);
        for (int k = 0; k < t->nmet; k++) csv_num(f, t->vals[(long)i * CASE_MAX_METRICS + k]);
        fprintf(f, "\n");
    }
    if (overall_row) {
        fprintf(f, "overall,%s%s", split_name, cls ? "," : "");
        for (int k = 0; k < t->nmet; k++) csv_num(f, casetab_overall(t, k, NULL));
        fprintf(f, "\n");
    }
    CHECK_ERRNO(fclose(f) == 0, "closing the CSV memory stream");
    int rc = write_file_atomic(path, buf, len, err, errlen);
    free(buf);
    return rc;
}

void casetab_print_progress(const CaseTable* t, int total, double elapsed_s) {
    if (t->n < 1) return;
    const double* mv = t->vals + (long)(t->n - 1) * CASE_MAX_METRICS;
    double per = elapsed_s / t->n;
    printf("[%d/%d] %-20s", t->n, total, t->ids[t->n - 1]);
    for (int k = 0; k < t->nmet && k < 4; k++) printf(" %s %.4g", t->names[k], mv[k]);
    printf("  (%.2f s/case, ETA %.0f s)\n", per, per * (total - t->n));
    fflush(stdout);
}

void casetab_print_overall(const CaseTable* t, const char* split_name) {
    int N = t->n, K = t->K;
    printf("overall (%d cases, split %s):\n", N, split_name);
    if (t->task != HEAD_CLASSIFY) {
        for (int k = 0; k < t->nmet; k++) {
            int ninf;
            double mean = casetab_overall(t, k, &ninf);
            printf("  %-18s %.6f", t->names[k], mean);
            if (ninf) printf("  (%d case%s infinite: a structure missed or hallucinated; excluded)",
                             ninf, ninf > 1 ? "s" : "");
            printf("\n");
        }
        return;
    }
    /* classify: score = column 0, pred = column 1 (slide_case_metrics) */
    double* score = xmalloc(sizeof(double) * (N ? N : 1));
    int32_t *y = xmalloc(sizeof(int32_t) * (N ? N : 1)), *pred = xmalloc(sizeof(int32_t) * (N ? N : 1)),
            *yb = xmalloc(sizeof(int32_t) * (N ? N : 1));
    int nl = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        if (t->labels[i] < 0) continue;
        score[nl] = t->vals[(long)i * CASE_MAX_METRICS + 0];
        pred[nl] = (int32_t)t->vals[(long)i * CASE_MAX_METRICS + 1];
        y[nl] = t->labels[i];
        yb[nl] = t->labels[i] != 0;
        bad |= y[nl] >= K;
        nl++;
    }
    printf("  labelled cases     %d\n", nl);
    if (bad) {
        printf("  (labels >= num_classes %d present: accuracy not computed)\n", K);
    } else if (nl) {
        if (K == 2) {
            printf("  auroc              %.6f\n", metric_auroc(score, yb, nl));
            printf("  ap                 %.6f\n", metric_average_precision(score, yb, nl));
            printf("  picai_case_score   %.6f  (case-level (AUROC + AP) / 2)\n",
                   metric_picai_case_score(score, yb, nl));
        }
        printf("  accuracy           %.6f\n", metric_accuracy(pred, y, nl));
        printf("  balanced_accuracy  %.6f\n", metric_balanced_accuracy(pred, y, nl, K));
    }
    free(score); free(y); free(pred); free(yb);
}
