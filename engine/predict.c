/* engine/predict.c — `vita predict`'s work (predict.h): case selection, the per-case outputs
 * mapped back to native geometry, predictions.csv (classify) and metrics.csv.
 * Outputs are host-side work on slide_case's result (already copied off the device). */
#include "predict.h"
#include "check.h"
#include "checkpoint.h"
#include "runutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int predict_to_native(const Dataset* ds, int ci, const float* grid_data, int interp,
                      Volume* native, char* err, size_t errlen) {
    Volume grid;
    volume_dataset_grids(ds, ci, native, &grid);
    grid.data = (float*)grid_data;   /* read only: volume_resample never writes its source */
    native->data = NULL;
    native->is_integer = interp == VOL_NEAREST;
    char e2[512];
    if (volume_resample(&grid, native, interp, 0.0f, e2, sizeof e2)) {
        volume_free(native);
        return vita_fail(err, errlen, "case %s: mapping back to the native grid: %s", ds->case_id[ci], e2);
    }
    return 0;
}

int predict_select(const Infer* I, const PredictOptions* po, int** items, int* n, char* err,
                   size_t errlen) {
    const Loader* L = &I->L;
    int* sel = xmalloc(sizeof(int) * L->n_items);
    int k = 0;
    if (!po->cases) {
        for (int i = 0; i < L->n_items; i++) sel[k++] = L->items[i];
    } else {
        const char* p = po->cases;
        while (*p) {
            size_t len = strcspn(p, ",");
            int found = -1;
            for (int i = 0; i < L->n_items && found < 0; i++) {
                const char* id = I->ds.case_id[L->items[i]];
                if (strlen(id) == len && !strncmp(id, p, len)) found = L->items[i];
            }
            if (found < 0) {
                free(sel);
                return vita_fail(err, errlen, "--cases: '%.*s' is not a case of split %s of %s (vita info "
                            "%s lists the cases per split)", (int)len, p, I->a.split_name, I->ds.path,
                            I->ds.path);
            }
            int dup = 0;
            for (int j = 0; j < k; j++) dup |= sel[j] == found;
            if (!dup) {
                CHECK(k < L->n_items, "selection overflow");
                sel[k++] = found;
            }
            p += len;
            if (*p == ',') p++;
        }
        if (!k) { free(sel); return vita_fail(err, errlen, "--cases: no case ids given"); }
    }
    if (po->limit > 0 && k > po->limit) k = po->limit;
    *items = sel;
    *n = k;
    return 0;
}

/* the case id as a file name part: [A-Za-z0-9._-] kept, every other byte written as %XX (an
 * id is free text; '/' would escape DIR). Escaping '%' too keeps the map injective, so two
 * different case ids never share an output file. */
static void file_stem(const char* id, char* out, size_t n) {
    size_t k = 0;
    for (const unsigned char* p = (const unsigned char*)id; *p && k + 4 < n; p++) {
        unsigned char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (ok) out[k++] = (char)c;
        else k += (size_t)snprintf(out + k, n - k, "%%%02X", c);
    }
    out[k] = '\0';
    if (!strcmp(out, ".") || !strcmp(out, "..") || !k) snprintf(out, n, "case_%s", k ? "dots" : "empty");
}

typedef struct {
    const PredictOptions* po;
    FILE* pcsv;                /* classify: predictions.csv text (memory stream) */
    float* tmp;                /* [D*H*W] */
    int written;
} PredictState;

/* grid_data on case ci's dataset grid -> DIR/<case><suffix> in native geometry */
static int write_native(const Infer* I, const char* dir, int ci, const float* grid_data,
                        int interp, const char* suffix, char* err, size_t errlen) {
    Volume v;
    if (predict_to_native(&I->ds, ci, grid_data, interp, &v, err, errlen)) return 1;
    char stem[256], path[4096], e2[1024];
    file_stem(I->ds.case_id[ci], stem, sizeof stem);
    snprintf(path, sizeof path, "%s/%s%s", dir, stem, suffix);
    int rc = volume_write(path, &v, interp == VOL_NEAREST, e2, sizeof e2);
    volume_free(&v);
    return rc ? vita_fail(err, errlen, "%s", e2) : 0;
}

static int on_case(void* user, Infer* I, int ci, char* err, size_t errlen) {
    PredictState* S = user;
    const char* dir = S->po->out_dir;
    long vol = (long)I->ds.D * I->ds.H * I->ds.W;
    int K = I->K;
    const float* out = I->out;
    if (I->task == HEAD_CLASSIFY) {
        /* the same argmax as slide_case_metrics' pred (first maximum wins) */
        int am = 0;
        for (int k = 1; k < K; k++)
            if (out[k] > out[am]) am = k;
        fprintf(S->pcsv, "%s,%s", I->ds.case_id[ci], I->a.split_name);
        for (int k = 0; k < K; k++) fprintf(S->pcsv, ",%.9g", out[k]);
        fprintf(S->pcsv, ",%d,%d\n", am, I->cls);
        return 0;
    }
    if (I->task == HEAD_SEGMENT) {
        for (long v = 0; v < vol; v++) {
            int am = 0;
            float best = out[v];
            for (int k = 1; k < K; k++)
                if (out[k * vol + v] > best) { best = out[k * vol + v]; am = k; }
            S->tmp[v] = (float)am;
        }
        if (write_native(I, dir, ci, S->tmp, VOL_NEAREST, "_seg.nii.gz", err, errlen)) return 1;
        S->written++;
        if (S->po->probs) {
            for (long v = 0; v < vol; v++) S->tmp[v] = 1.0f - out[v];
            if (write_native(I, dir, ci, S->tmp, VOL_LINEAR, "_prob.nii.gz", err, errlen)) return 1;
            S->written++;
        }
        return 0;
    }
    char suffix[64];
    snprintf(suffix, sizeof suffix, "_%s.nii.gz", head_task_name(I->task));
    if (write_native(I, dir, ci, out, VOL_LINEAR, suffix, err, errlen)) return 1;
    S->written++;
    return 0;
}

int predict_run(Infer* I, const PredictOptions* po, char* err, size_t errlen) {
    int *items = NULL, n = 0, rc = 1;
    if (predict_select(I, po, &items, &n, err, errlen)) return 1;
    if (run_mkdir_p(po->out_dir)) {
        free(items);
        return vita_fail(err, errlen, "--out %s: cannot create the directory: %s", po->out_dir, strerror(errno));
    }
    if (infer_check_writable(po->out_dir, 1, err, errlen)) { free(items); return 1; }
    PredictState S;
    memset(&S, 0, sizeof S);
    S.po = po;
    S.tmp = xmalloc(sizeof(float) * (size_t)I->ds.D * I->ds.H * I->ds.W);
    char *pbuf = NULL, path[4096];
    size_t plen = 0;
    if (I->task == HEAD_CLASSIFY) {
        S.pcsv = open_memstream(&pbuf, &plen);
        CHECK_ERRNO(S.pcsv != NULL, "open_memstream for predictions.csv");
        fprintf(S.pcsv, "case_id,split");
        int named = I->ds.n_classes == I->K;
        for (int k = 0; k < I->K; k++) {
            if (named) fprintf(S.pcsv, ",p_%s", I->ds.class_names[k]);
            else fprintf(S.pcsv, ",p_%d", k);
        }
        fprintf(S.pcsv, ",pred,label\n");
    }
    CaseTable t;
    casetab_init(&t, I->task, I->K, n);
    if (!I->a.quiet)
        printf("predict %s on %s split %s: %d cases, task %s, windows %dx%dx%d overlap %.2f %s, "
               "device %s -> %s\n", I->weights, I->a.data, I->a.split_name, n, head_task_name(I->task),
               I->vc.img[0], I->vc.img[1], I->vc.img[2], I->sc.overlap,
               I->sc.gaussian ? "gaussian" : "constant", ctx_device_name(&I->ctx), po->out_dir);
    if (infer_cases(I, items, n, &t, on_case, &S, err, errlen)) goto done;
    if (S.pcsv) {
        CHECK_ERRNO(fclose(S.pcsv) == 0, "closing the predictions.csv memory stream");
        S.pcsv = NULL;
        snprintf(path, sizeof path, "%s/predictions.csv", po->out_dir);
        if (write_file_atomic(path, pbuf, plen, err, errlen)) goto done;
        S.written++;
    }
    snprintf(path, sizeof path, "%s/metrics.csv", po->out_dir);
    if (casetab_write_csv(&t, path, I->a.split_name, 1, err, errlen)) goto done;
    casetab_print_overall(&t, I->a.split_name);
    printf("wrote %d prediction file%s and metrics.csv (%d cases) to %s\n", S.written,
           S.written == 1 ? "" : "s", n, po->out_dir);
    rc = 0;
done:
    if (S.pcsv) fclose(S.pcsv);
    free(pbuf);
    free(S.tmp);
    free(items);
    casetab_free(&t);
    return rc;
}
