/* engine/import.c — `vita import` after the layout listed the cases (import_layouts.c):
 *
 * per case (pass 1): read the T2w image (its grid is the case's native grid, volume.h);
 *   with --spacing, resample it to that spacing (same origin and direction, shape
 *   round(n * spacing / target)); resample ADC and hbv onto that grid with cubic B-splines
 *   and the label images with nearest neighbour (points outside a source are NaN / 0);
 *   z-score T2w and hbv over the case's grid; crop/pad to --size D,H,W centred on the gland
 *   mask centroid (picai --gland, prostate158 anatomy) or on the grid centre; spool the
 *   cropped channels and labels to a temp file (all cases would not fit in memory).
 * ADC statistics (between the passes, over the spooled ADC voxels that lie inside the
 *   source images of every case with ADC): the 0.5 / 99.5 percentiles from a 2^20-bin
 *   histogram over [min, max] (resolution (max - min) / 2^20, far below ADC noise), then the
 *   mean and standard deviation of the clipped values (exact sums).
 * pass 2: clip + normalise ADC with those global numbers, padding (NaN) -> 0, write the
 *   dataset (atomically; dataset.c) with per-case geometry and the statistics + the import
 *   report as root attributes (adc_clip [2], adc_mean, adc_std, normalization, import_report).
 * Splits: a CSV split column wins; else --test-fold / --val-fold; else a seeded shuffle with
 *   --test-frac / --val-frac. */
#include "import.h"
#include "check.h"
#include "dataset.h"
#include "rng.h"
#include "volume.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ADC_BINS (1 << 20)
static const double ADC_PCT[2] = {0.5, 99.5};

typedef struct {
    double spacing[3], origin[3], dir[9], grid_spacing[3];
    int32_t shape[3], crop[3];
    uint8_t present[IMP_CH];
    int cls, written;
} CaseOut;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void progress(const ImportOptions* o, const char* what, int done, int n, double t0) {
    if (o->quiet) return;
    double el = now_s() - t0, rate = el > 0 ? done / el : 0;
    double eta = rate > 0 ? (n - done) / rate : 0;
    fprintf(stderr, "\rvita import: %s %d/%d cases  %.2f cases/s  ETA %dm%02ds   ", what, done, n,
            rate, (int)eta / 60, (int)eta % 60);
    if (done == n) fprintf(stderr, "\n");
}

/* src resampled onto g (data allocated), then src freed */
static int onto(Volume* src, const Volume* g, int interp, float fill, Volume* out, char* err, size_t errlen) {
    *out = *g;
    out->data = NULL;
    out->is_integer = src->is_integer;
    int rc = volume_resample(src, out, interp, fill, err, errlen);
    volume_free(src);
    return rc;
}

static void zscore(float* x, size_t n) {
    double s = 0, s2 = 0;
    size_t m = 0;
    for (size_t k = 0; k < n; k++)
        if (!isnan(x[k])) s += x[k], s2 += (double)x[k] * x[k], m++;
    double mean = m ? s / m : 0, var = m ? s2 / m - mean * mean : 0;
    double sd = var > 1e-12 ? sqrt(var) : 1;   /* a constant image stays finite (all zeros) */
    for (size_t k = 0; k < n; k++)
        if (!isnan(x[k])) x[k] = (float)((x[k] - mean) / sd);
}

/* dst[D,H,W] = src[(z+o0, y+o1, x+o2)] or fill outside */
static void crop(const float* src, const int n[3], const int off[3], const int size[3], float fill, float* dst) {
    for (int z = 0; z < size[0]; z++)
        for (int y = 0; y < size[1]; y++)
            for (int x = 0; x < size[2]; x++) {
                int sz = z + off[0], sy = y + off[1], sx = x + off[2];
                int in = sz >= 0 && sz < n[0] && sy >= 0 && sy < n[1] && sx >= 0 && sx < n[2];
                dst[((size_t)z * size[1] + y) * size[2] + x] =
                    in ? src[((size_t)sz * n[1] + sy) * n[2] + sx] : fill;
            }
}

static int count_labels(const char* names) {
    int n = 1;
    for (const char* p = names; *p; p++) n += *p == ',';
    return n;
}

/* reads a label image of the case and puts it on grid g (nearest); checks it overlaps */
static int label_onto(const char* path, const char* what, const Volume* g, Volume* out, char* err, size_t errlen) {
    Volume v;
    if (volume_read(path, &v, -1, err, errlen)) return 1;
    size_t nv = (size_t)v.nx * v.ny * v.nz, nz_src = 0;
    for (size_t k = 0; k < nv; k++) nz_src += v.data[k] != 0;
    if (onto(&v, g, VOL_NEAREST, 0, out, err, errlen)) return 1;
    size_t ng = (size_t)g->nx * g->ny * g->nz, nz_dst = 0;
    for (size_t k = 0; k < ng; k++) nz_dst += out->data[k] != 0;
    if (nz_src && !nz_dst) {
        volume_free(out);
        return vita_fail(err, errlen, "%s: the %s lies entirely outside the T2w image (origin / "
                     "direction / spacing inconsistent with the T2w file)", path, what);
    }
    return 0;
}

/* pass 1 for one case: img [IMP_CH, D, H, W] (NaN = padding), seg [D, H, W] */
static int process_case(const ImportOptions* o, const ImportList* L, const ImportCase* c, const int size[3],
                        float* img, uint8_t* seg, CaseOut* co, char* err, size_t errlen) {
    Volume t2, g;
    if (volume_read(c->img[0], &t2, -1, err, errlen)) return 1;
    for (int a = 0; a < 3; a++) {
        co->spacing[a] = t2.spacing[a];
        co->origin[a] = t2.origin[a];
    }
    memcpy(co->dir, t2.dir, sizeof co->dir);
    co->shape[0] = t2.nz; co->shape[1] = t2.ny; co->shape[2] = t2.nx;
    g = t2;
    g.data = NULL;
    if (o->spacing[0] > 0) {
        int n[3] = {t2.nz, t2.ny, t2.nx};
        for (int a = 0; a < 3; a++) {
            long m = lround(n[a] * t2.spacing[a] / o->spacing[a]);
            n[a] = m < 1 ? 1 : (int)m;
            g.spacing[a] = o->spacing[a];
        }
        g.nz = n[0]; g.ny = n[1]; g.nx = n[2];
    }
    memcpy(co->grid_spacing, g.spacing, sizeof co->grid_spacing);
    Volume ch[IMP_CH];
    memset(ch, 0, sizeof ch);
    int rc = 0;
    if (o->spacing[0] > 0) rc = onto(&t2, &g, VOL_BSPLINE, NAN, &ch[0], err, errlen);
    else ch[0] = t2;
    size_t ng = (size_t)g.nx * g.ny * g.nz;
    co->present[0] = 1;
    for (int k = 1; k < IMP_CH && !rc; k++) {
        co->present[k] = c->img[k][0] != 0;
        if (!co->present[k]) continue;
        Volume v;
        rc = volume_read(c->img[k], &v, -1, err, errlen);
        if (!rc) rc = onto(&v, &g, VOL_BSPLINE, NAN, &ch[k], err, errlen);
        if (!rc) {
            size_t inside = 0;
            for (size_t q = 0; q < ng; q++) inside += !isnan(ch[k].data[q]);
            if (inside * 2 < ng)
                rc = vita_fail(err, errlen, "%s: only %.0f%% of the T2w grid lies inside this image "
                           "(origin / direction / spacing inconsistent with the T2w file)",
                           c->img[k], 100.0 * inside / ng);
        }
    }
    /* labels and the centring mask on the grid */
    Volume lab = g, les, gl;
    lab.data = NULL;
    memset(&les, 0, sizeof les);
    memset(&gl, 0, sizeof gl);
    const float* centre_mask = NULL;
    if (!rc && L->label_names) lab.data = xcalloc(ng, sizeof(float));
    if (!rc && c->seg_kind == SEG_PICAI) {
        int lesion_label = c->gland[0] ? 2 : 1;
        if (c->gland[0] && !(rc = label_onto(c->gland, "gland mask", &g, &gl, err, errlen))) {
            for (size_t q = 0; q < ng; q++) lab.data[q] = gl.data[q] > 0;
            centre_mask = gl.data;
        }
        if (!rc && c->lesion[0] && !(rc = label_onto(c->lesion, "lesion label", &g, &les, err, errlen))) {
            int any = 0;
            for (size_t q = 0; q < ng; q++)
                if (les.data[q] > 0) lab.data[q] = (float)lesion_label, any = 1;
            if (co->cls < 0) co->cls = any;   /* no marksheet entry: csPCa = any lesion voxel */
        }
    } else if (!rc && c->seg_kind == SEG_P158) {
        if (!(rc = label_onto(c->gland, "anatomy label", &g, &gl, err, errlen))) {
            for (size_t q = 0; q < ng; q++) {
                float a = gl.data[q];
                if (a != 0 && a != 1 && a != 2) {
                    rc = vita_fail(err, errlen, "%s: anatomy label %g; Prostate158 anatomy holds 0, 1 (TZ), 2 (PZ)",
                               c->gland, a);
                    break;
                }
                lab.data[q] = a;
            }
            centre_mask = gl.data;
        }
        co->cls = 0;
        if (!rc && c->lesion[0] && !(rc = label_onto(c->lesion, "tumour label", &g, &les, err, errlen)))
            for (size_t q = 0; q < ng; q++)
                if (les.data[q] > 0) lab.data[q] = 3, co->cls = 1;
    } else if (!rc && c->seg_kind == SEG_FLAT) {
        int nl = count_labels(L->label_names);
        if (!(rc = label_onto(c->seg, "label image", &g, &les, err, errlen)))
            for (size_t q = 0; q < ng; q++) {
                float a = roundf(les.data[q]);
                if (a < 0 || a >= nl) {
                    rc = vita_fail(err, errlen, "%s: label %g outside label_names (0..%d: %s); fix the "
                               "image or pass --label-names", c->seg, les.data[q], nl - 1, L->label_names);
                    break;
                }
                lab.data[q] = a;
            }
    }
    int n[3] = {g.nz, g.ny, g.nx};
    if (!rc && o->size[0] == 0 && (n[0] != size[0] || n[1] != size[1] || n[2] != size[2]))
        rc = vita_fail(err, errlen, "%s: grid %dx%dx%d (z,y,x) differs from the first case's %dx%dx%d; "
                   "pass --size D,H,W (and --spacing) for one common grid", c->img[0], n[0], n[1],
                   n[2], size[0], size[1], size[2]);
    if (!rc) {
        double cen[3] = {(n[0] - 1) / 2.0, (n[1] - 1) / 2.0, (n[2] - 1) / 2.0};
        if (centre_mask) {
            double s[3] = {0, 0, 0};
            size_t m = 0;
            for (int z = 0; z < n[0]; z++)
                for (int y = 0; y < n[1]; y++)
                    for (int x = 0; x < n[2]; x++)
                        if (centre_mask[((size_t)z * n[1] + y) * n[2] + x] > 0) s[0] += z, s[1] += y, s[2] += x, m++;
            if (m)
                for (int a = 0; a < 3; a++) cen[a] = s[a] / m;
        }
        int off[3];
        for (int a = 0; a < 3; a++) {
            /* without --size the grid is kept whole (every case has the first case's shape) */
            off[a] = o->size[0] ? (int)floor(cen[a] - (size[a] - 1) / 2.0 + 0.5) : 0;
            co->crop[a] = off[a];
        }
        size_t vox = (size_t)size[0] * size[1] * size[2];
        for (int k = 0; k < IMP_CH; k++) {
            if (!co->present[k]) {
                for (size_t q = 0; q < vox; q++) img[k * vox + q] = NAN;
                continue;
            }
            if (k != 1) zscore(ch[k].data, ng);   /* T2w and hbv per case; ADC globally later */
            crop(ch[k].data, n, off, size, NAN, img + k * vox);
        }
        if (lab.data) {
            float* tmp = xmalloc(vox * sizeof(float));
            crop(lab.data, n, off, size, 0, tmp);
            for (size_t q = 0; q < vox; q++) seg[q] = (uint8_t)tmp[q];
            free(tmp);
        }
    }
    for (int k = 0; k < IMP_CH; k++) volume_free(&ch[k]);
    volume_free(&lab);
    volume_free(&les);
    volume_free(&gl);
    return rc;
}

static int spool_io(FILE* f, void* p, size_t n, int write) {
    return (write ? fwrite(p, 1, n, f) : fread(p, 1, n, f)) != n;
}

int import_run(const ImportOptions* o) {
    char err[2048];
    ImportList L;
    if (import_list_cases(o, &L, err, sizeof err)) {
        fprintf(stderr, "vita: import: %s\n", err);
        return VITA_EXIT_USER;
    }
    int N = L.n, has_seg = L.label_names != NULL;
    int size[3] = {o->size[0], o->size[1], o->size[2]};
    CaseOut* co = xcalloc(N, sizeof *co);
    char** skipped = xcalloc(N, sizeof(char*));
    int n_skipped = 0, n_written = 0;
    char spool_path[IMP_PATH + 32];
    snprintf(spool_path, sizeof spool_path, "%s.spool.%d", o->out, (int)getpid());
    FILE* sp = fopen(spool_path, "w+b");
    if (!sp) {
        fprintf(stderr, "vita: import: cannot create %s: %s (is the output directory writable?)\n",
                spool_path, strerror(errno));
        import_list_free(&L);
        return VITA_EXIT_USER;
    }
    unlink(spool_path);   /* anonymous from now on: removed even if vita is killed */
    float* img = NULL;
    uint8_t* seg = NULL;
    size_t vox = 0;
    double adc_min = INFINITY, adc_max = -INFINITY;
    double t0 = now_s();
    int rc = 0;
    for (int i = 0; i < N && !rc; i++) {
        const ImportCase* c = &L.cases[i];
        co[i].cls = c->cls;
        int fail = 0;
        if (c->bad[0]) {
            snprintf(err, sizeof err, "%s", c->bad);
            fail = 1;
        } else {
            if (!img && size[0]) {
                vox = (size_t)size[0] * size[1] * size[2];
                img = xmalloc(IMP_CH * vox * sizeof(float));
                seg = xcalloc(vox, 1);
            }
            if (!img) {   /* no --size: the first good case's grid (its T2w header decides) */
                int sz[3] = {0, 0, 0};
                Volume t2;
                fail = volume_read(c->img[0], &t2, -1, err, sizeof err);
                if (!fail) {
                    sz[0] = t2.nz; sz[1] = t2.ny; sz[2] = t2.nx;
                    for (int a = 0; a < 3 && o->spacing[0] > 0; a++) {
                        long m = lround(sz[a] * t2.spacing[a] / o->spacing[a]);
                        sz[a] = m < 1 ? 1 : (int)m;
                    }
                    volume_free(&t2);
                    memcpy(size, sz, sizeof sz);
                    vox = (size_t)size[0] * size[1] * size[2];
                    img = xmalloc(IMP_CH * vox * sizeof(float));
                    seg = xcalloc(vox, 1);
                }
            }
            if (!fail) fail = process_case(o, &L, c, size, img, seg, &co[i], err, sizeof err);
        }
        if (fail) {
            if (!o->skip_bad) {
                if (!o->quiet) fprintf(stderr, "\n");
                fprintf(stderr, "vita: import: case %s: %s (fix it, or pass --skip-bad to leave it "
                        "out and list it in the report)\n", c->case_id, err);
                rc = VITA_EXIT_USER;
                break;
            }
            char line[2200];
            snprintf(line, sizeof line, "%s: %s", c->case_id, err);
            skipped[n_skipped++] = strdup(line);
        } else {
            co[i].written = 1;
            n_written++;
            for (size_t q = 0; q < vox && co[i].present[1]; q++) {
                float a = img[vox + q];
                if (!isnan(a)) {
                    if (a < adc_min) adc_min = a;
                    if (a > adc_max) adc_max = a;
                }
            }
            if (spool_io(sp, img, IMP_CH * vox * sizeof(float), 1) || (has_seg && spool_io(sp, seg, vox, 1))) {
                fprintf(stderr, "vita: import: writing the temp spool next to %s failed (disk full?)\n", o->out);
                rc = VITA_EXIT_USER;
            }
        }
        progress(o, "pass 1/2 (resample, crop):", i + 1, N, t0);
    }
    if (!rc && !n_written) {
        fprintf(stderr, "vita: import: no case could be imported (%d skipped); see the reasons above\n", n_skipped);
        for (int k = 0; k < n_skipped; k++) fprintf(stderr, "  %s\n", skipped[k]);
        rc = VITA_EXIT_USER;
    }
    /* ADC statistics over the spool */
    double clip[2] = {0, 0}, adc_mean = 0, adc_sd = 1;
    int have_adc = adc_min <= adc_max;
    if (!rc && have_adc) {
        uint64_t* hist = xcalloc(ADC_BINS, sizeof(uint64_t));
        double width = (adc_max - adc_min) / ADC_BINS;
        if (!(width > 0)) width = 1;
        uint64_t total = 0;
        for (int pass = 0; pass < 2 && !rc; pass++) {
            double s = 0, s2 = 0;
            uint64_t m = 0;
            CHECK(fseek(sp, 0, SEEK_SET) == 0, "seek spool");
            for (int i = 0; i < N; i++) {
                if (!co[i].written) continue;
                if (spool_io(sp, img, IMP_CH * vox * sizeof(float), 0) ||
                    (has_seg && spool_io(sp, seg, vox, 0)))
                    CHECK(0, "re-reading the import spool failed");
                if (!co[i].present[1]) continue;
                const float* a = img + vox;
                for (size_t q = 0; q < vox; q++) {
                    if (isnan(a[q])) continue;
                    if (pass == 0) {
                        long b = (long)((a[q] - adc_min) / width);
                        hist[b < 0 ? 0 : b >= ADC_BINS ? ADC_BINS - 1 : b]++;
                        total++;
                    } else {
                        double x = a[q] < clip[0] ? clip[0] : a[q] > clip[1] ? clip[1] : a[q];
                        s += x, s2 += x * x, m++;
                    }
                }
            }
            if (pass == 0) {
                /* percentile p: the value below which p% of the voxels lie, interpolated in its bin */
                for (int k = 0; k < 2; k++) {
                    double target = ADC_PCT[k] / 100.0 * total;
                    uint64_t cum = 0;
                    int b = 0;
                    while (b < ADC_BINS - 1 && cum + hist[b] < target) cum += hist[b++];
                    double frac = hist[b] ? (target - cum) / hist[b] : 0;
                    clip[k] = adc_min + (b + frac) * width;
                }
            } else {
                adc_mean = s / m;
                double var = s2 / m - adc_mean * adc_mean;
                adc_sd = var > 1e-12 ? sqrt(var) : 1;
            }
        }
        free(hist);
    }
    /* pass 2: splits, normalise, write */
    DatasetWriter* w = NULL;
    if (!rc) {
        int* order = xmalloc(N * sizeof(int));
        int m = 0;
        for (int i = 0; i < N; i++)
            if (co[i].written && L.cases[i].split < 0 && !(o->val_fold >= 0 || o->test_fold >= 0)) order[m++] = i;
        Rng r = rng_stream(o->seed, 0x5b11);
        for (int k = m - 1; k > 0; k--) {
            int j = (int)(rng_uniform(&r) * (k + 1));
            int t = order[k]; order[k] = order[j]; order[j] = t;
        }
        int n_test = (int)lround(o->test_frac * m), n_val = (int)lround(o->val_frac * m);
        for (int k = 0; k < m; k++)
            L.cases[order[k]].split = k < n_test ? SPLIT_TEST : k < n_test + n_val ? SPLIT_VAL : SPLIT_TRAIN;
        for (int i = 0; i < N; i++) {
            ImportCase* c = &L.cases[i];
            if (!co[i].written || c->split >= 0) continue;
            c->split = c->fold >= 0 && c->fold == o->test_fold ? SPLIT_TEST
                       : c->fold >= 0 && c->fold == o->val_fold ? SPLIT_VAL
                                                                : SPLIT_TRAIN;
        }
        free(order);
        DatasetSpec s = {.n = n_written, .C = IMP_CH, .D = size[0], .H = size[1], .W = size[2],
                         .channels = "t2w,adc,hbv", .label_names = L.label_names,
                         .class_names = L.class_names, .source = o->command, .gzip = o->gzip};
        int first = 0;
        while (!co[first].written) first++;
        for (int a = 0; a < 3; a++) s.spacing_zyx[a] = co[first].grid_spacing[a];
        w = dataset_create(o->out, &s, err, sizeof err);
        if (!w) {
            fprintf(stderr, "vita: import: %s\n", err);
            rc = VITA_EXIT_USER;
        }
    }
    int spacing_varies = 0;
    if (!rc) {
        CHECK(fseek(sp, 0, SEEK_SET) == 0, "seek spool");
        int j = 0;
        double t1 = now_s();
        int first = -1;
        for (int i = 0; i < N; i++) {
            if (!co[i].written) continue;
            if (first < 0) first = i;
            for (int a = 0; a < 3; a++)
                if (fabs(co[i].grid_spacing[a] - co[first].grid_spacing[a]) > 0.01 * co[first].grid_spacing[a])
                    spacing_varies = 1;
            if (spool_io(sp, img, IMP_CH * vox * sizeof(float), 0) || (has_seg && spool_io(sp, seg, vox, 0)))
                CHECK(0, "re-reading the import spool failed");
            for (size_t q = 0; q < vox; q++) {
                float* a = img + vox + q;
                if (!isnan(*a)) {
                    double x = *a < clip[0] ? clip[0] : *a > clip[1] ? clip[1] : *a;
                    *a = (float)((x - adc_mean) / adc_sd);
                }
            }
            for (size_t q = 0; q < IMP_CH * vox; q++)
                if (isnan(img[q])) img[q] = 0;   /* padding and missing channels: the mean */
            const ImportCase* c = &L.cases[i];
            dataset_write_case(w, j, c->case_id, img, has_seg ? seg : NULL, co[i].cls, c->split, c->fold,
                               co[i].present, co[i].spacing, co[i].origin, co[i].dir, co[i].shape, co[i].crop);
            if (o->spacing[0] > 0) dataset_set_grid_spacing(w, j, co[i].grid_spacing);
            j++;
            progress(o, "pass 2/2 (normalise, write):", j, n_written, t1);
        }
    }
    /* report */
    if (!rc) {
        size_t cap = 4096 + (size_t)n_skipped * 2300;
        char* rep = xmalloc(cap);
        int p = snprintf(rep, cap, "vita import --layout %s %s: %d cases written to %s, %d skipped",
                         o->layout, o->src, n_written, o->out, n_skipped);
        for (int k = 0; k < n_skipped; k++) p += snprintf(rep + p, cap - p, "\n  skipped %s", skipped[k]);
        char norm[512];
        if (have_adc)
            snprintf(norm, sizeof norm, "t2w, hbv: z-score per case; adc: clipped to the dataset's "
                     "%.1f/%.1f percentiles [%.6g, %.6g], then (x - %.6g) / %.6g (mean/std of the "
                     "clipped values); padding 0", ADC_PCT[0], ADC_PCT[1], clip[0], clip[1], adc_mean, adc_sd);
        else
            snprintf(norm, sizeof norm, "t2w, hbv: z-score per case; no case has ADC; padding 0");
        p += snprintf(rep + p, cap - p, "\n  normalisation: %s", norm);
        p += snprintf(rep + p, cap - p, "\n  grid: %dx%dx%d (D,H,W) at %.4g,%.4g,%.4g mm%s", size[0], size[1],
                      size[2], o->spacing[0] > 0 ? o->spacing[0] : co[0].grid_spacing[0],
                      o->spacing[0] > 0 ? o->spacing[1] : co[0].grid_spacing[1],
                      o->spacing[0] > 0 ? o->spacing[2] : co[0].grid_spacing[2],
                      spacing_varies ? " (spacing_zyx is the first case's: the cases' spacings differ; "
                                       "pass --spacing for one common spacing)" : "");
        printf("%s\n", rep);
        double cnt[2] = {n_written, n_skipped}, mstd[2] = {adc_mean, adc_sd};
        dataset_writer_attr_str(w, "import_report", rep);
        dataset_writer_attr_str(w, "normalization", norm);
        dataset_writer_attr_num(w, "import_cases", 2, cnt);
        if (have_adc) {
            dataset_writer_attr_num(w, "adc_clip", 2, clip);
            dataset_writer_attr_num(w, "adc_percentiles", 2, ADC_PCT);
            dataset_writer_attr_num(w, "adc_mean_std", 2, mstd);
        }
        free(rep);
        if (dataset_finish(w, err, sizeof err)) {
            fprintf(stderr, "vita: import: %s\n", err);
            rc = VITA_EXIT_USER;
        }
    }
    fclose(sp);
    for (int k = 0; k < n_skipped; k++) free(skipped[k]);
    free(skipped);
    free(co);
    free(img);
    free(seg);
    import_list_free(&L);
    return rc;
}
