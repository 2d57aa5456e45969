/* engine/cmd_eval.c — `vita eval RUN_DIR|CKPT.safetensors --data DATA.h5`: whole-volume
 * sliding-window evaluation of every case of a split (slidewin.h), a per-case CSV and the
 * overall metrics.
 *
 * Model: the checkpoint's "model" metadata (else the run's config.yaml model), head from its
 * "head" metadata (headmeta.h; else the run's task + head config), input channels / mode from
 * its "input" metadata (else the run config's data.channels / data.input, else inferred from
 * the model: 3D -> volume mode with the model's channel names; 2D -> slice mode, and channels
 * named X_prev, X, X_next are sequence X with context 3). RUN_DIR uses
 * checkpoints/best.safetensors when present, else the newest complete step checkpoint.
 *
 * Overall: mean over cases of each per-case metric (NaN skipped, as MONAI's aggregation);
 * hd95 over the cases where it is finite, the number with a missed / hallucinated structure
 * (inf) reported next to it. Classify (K = 2): AUROC, AP and the case-level (AUROC + AP)/2 over
 * the cases with a label, accuracy, balanced accuracy; K > 2: accuracy and balanced accuracy. */
#include "check.h"
#include "checkpoint.h"
#include "config.h"
#include "dataset.h"
#include "headmeta.h"
#include "loader.h"
#include "metrics.h"
#include "safetensors.h"
#include "slidewin.h"
#include "../models/vit_weights.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int cmd_eval(int argc, char** argv);

static const char* EVAL_USAGE =
    "usage: vita eval RUN_DIR|CKPT.safetensors --data DATA.h5 [options]\n"
    "\n"
    "Evaluates a fine-tuned model on every case of a split by sliding-window inference over the\n"
    "whole volume (Gaussian-weighted blending, MONAI semantics) and writes one CSV row per case.\n"
    "  RUN_DIR        a `vita train` run: config.yaml + checkpoints/best.safetensors (else the\n"
    "                 newest complete checkpoint)\n"
    "  CKPT           a checkpoint whose metadata holds the model and head config\n"
    "\n"
    "options:\n"
    "  --data D.h5            dataset (default: the run's data.path)\n"
    "  --split NAME           train | val | test | probe (default test)\n"
    "  --csv F                per-case CSV (default RUN_DIR/eval_<split>.csv, or\n"
    "                         CKPT-without-.safetensors.eval_<split>.csv)\n"
    "  --overlap R            window overlap in [0, 1) (default: the run's, else 0.5)\n"
    "  --weighting W          gaussian | constant (default: the run's, else gaussian)\n"
    "  --batch N              windows per forward (default: the run's data.batch, else 2)\n"
    "  --device cpu|cuda|auto --threads N  --quiet  --help\n"
    "metrics: classify score/pred/correct per case, AUROC/AP/accuracy overall; segment dice per\n"
    "foreground class, dice_mean, hd95 (mm, union foreground); image tasks psnr, ssim, mae\n"
    "(data range = max - min of the target case)\n"
    "exit codes: 0 ok, 1 user error, 2 internal error\n";

#define EVAL_MAX_METRICS 24

#define EV_ERR(...) do { fprintf(stderr, "vita: "); fprintf(stderr, __VA_ARGS__); \
                         fprintf(stderr, "\n"); rc = 1; goto done; } while (0)

static int ends_with(const char* s, const char* suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static int parse_split(const char* s) {
    static const char* names[] = {"train", "val", "test", "probe"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

/* channels / mode / context from the model config alone (see the file comment) */
static void infer_input(const VitConfig* vc, int context_hint, char* ch, size_t chlen, int* mode,
                        int* context) {
    *mode = vc->spatial_dims == 2 ? LOADER_SLICE : LOADER_VOLUME;
    *context = 1;
    ch[0] = '\0';
    size_t k = 0;
    if (*mode == LOADER_SLICE && vc->in_chans % 3 == 0 && context_hint != 1) {
        int triples = 1;
        for (int i = 0; i + 2 < vc->in_chans; i += 3) {
            char prev[40], next[40];
            snprintf(prev, sizeof prev, "%s_prev", vc->channels[i + 1]);
            snprintf(next, sizeof next, "%s_next", vc->channels[i + 1]);
            if (strcmp(prev, vc->channels[i]) || strcmp(next, vc->channels[i + 2])) triples = 0;
        }
        if (triples || context_hint == 3) {
            *context = 3;
            for (int i = 0; i + 2 < vc->in_chans; i += 3)
                k += snprintf(ch + k, k < chlen ? chlen - k : 0, "%s%s", k ? "," : "",
                              vc->channels[i + 1]);
            return;
        }
    }
    for (int i = 0; i < vc->in_chans; i++)
        k += snprintf(ch + k, k < chlen ? chlen - k : 0, "%s%s", k ? "," : "", vc->channels[i]);
}

static void csv_num(FILE* f, double v) {
    if (isnan(v)) fprintf(f, ",nan");
    else if (isinf(v)) fprintf(f, v > 0 ? ",inf" : ",-inf");
    else fprintf(f, ",%.9g", v);
}

int cmd_eval(int argc, char** argv) {
    const char *src = NULL, *data = NULL, *csv = NULL, *device = NULL, *weighting = NULL;
    const char* split_name = "test";
    double overlap = -1;
    int threads = 0, quiet = 0, batch = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { printf("%s", EVAL_USAGE); return 0; }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) USER_ERROR("%s needs a value (vita eval --help)", a);
            const char* v = argv[++i];
            char* end;
            if (!strcmp(a, "--data")) data = v;
            else if (!strcmp(a, "--split")) split_name = v;
            else if (!strcmp(a, "--csv")) csv = v;
            else if (!strcmp(a, "--device")) device = v;
            else if (!strcmp(a, "--weighting")) weighting = v;
            else if (!strcmp(a, "--overlap")) {
                errno = 0;
                overlap = strtod(v, &end);
                if (errno || end == v || *end || !(overlap >= 0 && overlap < 1))
                    USER_ERROR("--overlap '%s': expected a number in [0, 1)", v);
            } else if (!strcmp(a, "--threads") || !strcmp(a, "--batch")) {
                errno = 0;
                long n = strtol(v, &end, 10);
                if (errno || end == v || *end || n < (a[2] == 't' ? 0 : 1) || n > 4096)
                    USER_ERROR("%s '%s': expected an integer in [%d, 4096]", a, v, a[2] == 't' ? 0 : 1);
                if (a[2] == 't') threads = (int)n; else batch = (int)n;
            } else {
                USER_ERROR("unknown option '%s' (vita eval --help)", a);
            }
            continue;
        }
        if (src) USER_ERROR("one RUN_DIR or checkpoint expected, got '%s' and '%s'", src, a);
        src = a;
    }
    if (!src) { fprintf(stderr, "%s", EVAL_USAGE); return VITA_EXIT_USER; }
    int split = parse_split(split_name);
    if (split < 0) USER_ERROR("--split '%s': expected train, val, test or probe", split_name);
    if (weighting && strcmp(weighting, "gaussian") && strcmp(weighting, "constant"))
        USER_ERROR("--weighting '%s': expected gaussian or constant", weighting);

    int rc = 0;
    char err[1024], weights[2048], csv_path[2200];
    Config* cfg = NULL;
    StFile st;
    int st_ok = 0, ds_ok = 0, L_ok = 0, c_ok = 0, m_ok = 0, h_ok = 0;
    Dataset ds;
    Loader L;
    Ctx ctx;
    Vit m;
    Head h;
    FILE* fcsv = NULL;
    float *out = NULL, *target = NULL;
    int32_t* seg = NULL;
    double* allm = NULL;
    int32_t* labels = NULL;
    char (*mnames)[64] = NULL;
    memset(&st, 0, sizeof st);

    /* ---- the source: run dir or checkpoint ---- */
    struct stat sb;
    if (stat(src, &sb)) EV_ERR("%s: %s (expected a run directory or a .safetensors checkpoint)", src, strerror(errno));
    int run_dir = S_ISDIR(sb.st_mode);
    if (run_dir) {
        cfg = xcalloc(1, sizeof *cfg);
        char cpath[2048];
        snprintf(cpath, sizeof cpath, "%s/config.yaml", src);
        if (config_load(cfg, cpath, NULL, 0, err, sizeof err)) EV_ERR("%s", err);
        snprintf(weights, sizeof weights, "%s/checkpoints/best.safetensors", src);
        if (stat(weights, &sb)) {
            long step = -1;
            CkptState cs;
            memset(&cs, 0, sizeof cs);
            if (ckpt_find_latest(src, weights, sizeof weights, &step, &cs, err, sizeof err))
                EV_ERR("%s: no best.safetensors and no usable step checkpoint (%s)", src, err);
            ckpt_state_free(&cs);
        }
    } else {
        if (!ends_with(src, ".safetensors"))
            EV_ERR("%s: expected a run directory or a .safetensors checkpoint", src);
        snprintf(weights, sizeof weights, "%s", src);
    }
    if (st_open(&st, weights, err, sizeof err)) EV_ERR("%s", err);
    st_ok = 1;

    /* ---- model, head, input ---- */
    VitConfig vc;
    const char* js = st_meta(&st, "model");
    if (js) {
        if (vit_config_from_json(&vc, js, err, sizeof err)) EV_ERR("%s: %s", weights, err);
    } else if (cfg) {
        vc = cfg->vit;
    } else {
        EV_ERR("%s: no 'model' config in its metadata; evaluate the run directory instead", weights);
    }
    HeadConfig hc;
    js = st_meta(&st, "head");
    if (js) {
        if (head_config_from_json(&hc, js, vc.spatial_dims, err, sizeof err)) EV_ERR("%s: %s", weights, err);
    } else if (cfg) {
        hc = cfg->head;
        hc.task = cfg->task;
    } else {
        EV_ERR("%s: no 'head' config in its metadata; evaluate the run directory instead", weights);
    }
    if (head_config_check(&hc, &vc, err, sizeof err)) EV_ERR("%s: %s", weights, err);
    int task = hc.task;
    char channels[128];
    int mode, context;
    js = st_meta(&st, "input");
    if (js) {
        if (input_meta_from_json(js, channels, sizeof channels, &mode, &context, err, sizeof err))
            EV_ERR("%s: %s", weights, err);
    } else if (cfg) {
        infer_input(&vc, cfg->input_context, channels, sizeof channels, &mode, &context);
        mode = cfg->input_mode;
        if (mode == LOADER_VOLUME) context = 1;
        else context = cfg->input_context;
        if (cfg->channels[0]) snprintf(channels, sizeof channels, "%s", cfg->channels);
    } else {
        infer_input(&vc, 0, channels, sizeof channels, &mode, &context);
    }

    SlideConfig sc = {0.5, 1, 2};
    if (cfg) {
        sc.overlap = cfg->sw_overlap;
        sc.gaussian = strcmp(cfg->sw_weighting, "constant") != 0;
        if (cfg->batch > 0) sc.batch = cfg->batch;
    }
    if (overlap >= 0) sc.overlap = overlap;
    if (weighting) sc.gaussian = strcmp(weighting, "constant") != 0;
    if (batch > 0) sc.batch = batch;
    if (!data) {
        if (cfg && cfg->data_path[0]) data = cfg->data_path;
        else EV_ERR("--data DATA.h5 is required with a checkpoint (vita eval --help)");
    }

    /* ---- data ---- */
    if (dataset_open(&ds, data, err, sizeof err)) EV_ERR("%s", err);
    ds_ok = 1;
    if (task == HEAD_SEGMENT) {
        if (!ds.has_seg) EV_ERR("%s has no /seg labels; segment evaluation needs them", data);
        if (ds.n_labels > hc.num_classes)
            EV_ERR("%s has %d labels (%s, ...) but the model predicts %d classes; evaluate on a "
                   "dataset with the model's label set", data, ds.n_labels, ds.label_names[0],
                   hc.num_classes);
    }
    LoaderConfig lc;
    loader_defaults(&lc);
    lc.mode = mode;
    lc.context = context;
    for (int a = 0; a < 3; a++) lc.crop[a] = vc.img[a];
    lc.batch = 1;
    lc.task = task;   /* LOADER_* follow HEAD_* */
    snprintf(lc.channels, sizeof lc.channels, "%s", channels);
    lc.split = split;
    lc.fold = cfg ? cfg->fold : -1;
    lc.augment = 0;
    lc.balance = 0;
    lc.workers = 1;
    lc.queue = 1;
    lc.seed = cfg ? cfg->seed : 0;
    if (loader_open(&L, &ds, &lc, err, sizeof err)) EV_ERR("%s", err);
    L_ok = 1;
    if (L.n_items == 0) EV_ERR("%s: no cases in split %s", data, split_name);
    if (!quiet)
        for (int c = 0; c < L.C_seq; c++)
            if (L.seq_src[c] < 0) {
                char nm[sizeof channels];
                const char* p = channels;
                for (int k = 0; k < c && p; k++) { p = strchr(p, ','); if (p) p++; }
                snprintf(nm, sizeof nm, "%s", p ? p : "?");
                char* q = strchr(nm, ',');
                if (q) *q = '\0';
                printf("note: model channel '%s' is not in %s: zeros, as in training\n", nm, data);
            }

    /* ---- model ---- */
    if (ctx_open(&ctx, device ? device : (cfg && cfg->device[0] ? cfg->device : "auto"), threads, 1))
        EV_ERR("cannot open device '%s'", device ? device : "auto");
    c_ok = 1;
    vit_create(&m, &ctx, &vc);
    vit_alloc_activations(&m, sc.batch);
    m_ok = 1;
    VitLoadReport rep;
    if (vit_load_weights(&m, weights, 0, &rep)) { rc = 1; goto done; }
    if (rep.missing) EV_ERR("%s: %d encoder tensors missing; not a fine-tuned checkpoint of this model", weights, rep.missing);
    head_create(&h, &ctx, &hc, &m);
    head_alloc_activations(&h, sc.batch);
    h_ok = 1;
    if (head_load_weights(&h, weights, err, sizeof err)) EV_ERR("%s", err);

    /* ---- cases ---- */
    long vol = (long)ds.D * ds.H * ds.W;
    int K = task == HEAD_CLASSIFY || task == HEAD_SEGMENT ? hc.num_classes : 1;
    out = xmalloc(sizeof(float) * (task == HEAD_CLASSIFY ? K : K * vol));
    seg = xmalloc(sizeof(int32_t) * vol);
    target = task >= HEAD_SUPERRES ? xmalloc(sizeof(float) * vol) : NULL;
    allm = xmalloc(sizeof(double) * EVAL_MAX_METRICS * L.n_items);
    labels = xmalloc(sizeof(int32_t) * L.n_items);
    mnames = xcalloc(EVAL_MAX_METRICS, sizeof *mnames);
    int nmet = 0;
    if (csv) snprintf(csv_path, sizeof csv_path, "%s", csv);
    else if (run_dir) snprintf(csv_path, sizeof csv_path, "%s/eval_%s.csv", src, split_name);
    else snprintf(csv_path, sizeof csv_path, "%.*s.eval_%s.csv", (int)(strlen(src) - 12), src, split_name);
    fcsv = fopen(csv_path, "w");
    if (!fcsv) EV_ERR("%s: cannot write: %s", csv_path, strerror(errno));
    if (!quiet)
        printf("eval %s on %s split %s: %d cases, task %s, %s mode, windows %dx%dx%d overlap %.2f "
               "%s, device %s\n", weights, data, split_name, L.n_items, head_task_name(task),
               mode == LOADER_SLICE ? "slice" : "volume", vc.img[0], vc.img[1], vc.img[2], sc.overlap,
               sc.gaussian ? "gaussian" : "constant", ctx_device_name(&ctx));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int it = 0; it < L.n_items; it++) {
        int ci = L.items[it];
        int32_t cls = -1;
        if (slide_case(&m, &h, &L, ci, &sc, out, task == HEAD_SEGMENT ? seg : NULL, &cls, target,
                       err, sizeof err))
            EV_ERR("case %s: %s", ds.case_id[ci], err);
        labels[it] = cls;
        const double* sp = ds.g_spacing ? ds.g_spacing + (long)ci * 3 : ds.spacing_zyx;
        const char* names[EVAL_MAX_METRICS];
        double* mv = allm + (long)it * EVAL_MAX_METRICS;
        int n = slide_case_metrics(task, K, out, task == HEAD_CLASSIFY ? &cls : seg, target, ds.D,
                                   ds.H, ds.W, sp, mv, names, EVAL_MAX_METRICS);
        CHECK(n <= EVAL_MAX_METRICS, "%d metrics", n);
        if (it == 0) {
            nmet = n;
            fprintf(fcsv, "case_id");
            if (task == HEAD_CLASSIFY) fprintf(fcsv, ",label");
            for (int k = 0; k < n; k++) {
                int lab;
                if (task == HEAD_SEGMENT && sscanf(names[k], "dice_%d", &lab) == 1 && lab < ds.n_labels)
                    snprintf(mnames[k], sizeof mnames[k], "dice_%s", ds.label_names[lab]);
                else
                    snprintf(mnames[k], sizeof mnames[k], "%s", names[k]);
                fprintf(fcsv, ",%s", mnames[k]);
            }
            fprintf(fcsv, "\n");
        }
        fprintf(fcsv, "%s", ds.case_id[ci]);
        if (task == HEAD_CLASSIFY) fprintf(fcsv, ",%d", cls);
        for (int k = 0; k < nmet; k++) csv_num(fcsv, mv[k]);
        fprintf(fcsv, "\n");
        fflush(fcsv);
        if (!quiet) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double el = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
            double per = el / (it + 1);
            printf("[%d/%d] %-20s", it + 1, L.n_items, ds.case_id[ci]);
            for (int k = 0; k < nmet && k < 4; k++) printf(" %s %.4g", mnames[k], mv[k]);
            printf("  (%.2f s/case, ETA %.0f s)\n", per, per * (L.n_items - it - 1));
            fflush(stdout);
        }
    }
    if (fclose(fcsv)) { fcsv = NULL; EV_ERR("%s: write failed: %s", csv_path, strerror(errno)); }
    fcsv = NULL;

    /* ---- overall ---- */
    int N = L.n_items;
    double* col = xmalloc(sizeof(double) * N);
    printf("overall (%d cases, split %s):\n", N, split_name);
    if (task == HEAD_CLASSIFY) {
        double* score = xmalloc(sizeof(double) * N);
        int32_t *y = xmalloc(sizeof(int32_t) * N), *pred = xmalloc(sizeof(int32_t) * N),
                *yb = xmalloc(sizeof(int32_t) * N);
        int nl = 0;
        for (int i = 0; i < N; i++) {
            if (labels[i] < 0) continue;
            score[nl] = allm[(long)i * EVAL_MAX_METRICS + 0];
            pred[nl] = (int32_t)allm[(long)i * EVAL_MAX_METRICS + 1];
            y[nl] = labels[i];
            yb[nl] = labels[i] != 0;
            nl++;
        }
        printf("  labelled cases     %d\n", nl);
        int bad = 0;
        for (int i = 0; i < nl; i++) bad |= y[i] >= K;
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
    } else {
        for (int k = 0; k < nmet; k++) {
            int ninf = 0;
            for (int i = 0; i < N; i++) {
                double v = allm[(long)i * EVAL_MAX_METRICS + k];
                if (isinf(v) && strcmp(mnames[k], "psnr")) { ninf++; v = NAN; }
                col[i] = v;
            }
            double mean = metric_nanmean(col, N);
            printf("  %-18s %.6f", mnames[k], mean);
            if (ninf) printf("  (%d case%s infinite: a structure missed or hallucinated; excluded)",
                             ninf, ninf > 1 ? "s" : "");
            printf("\n");
        }
    }
    free(col);
    printf("per-case metrics: %s\n", csv_path);

done:
    if (fcsv) fclose(fcsv);
    free(out); free(seg); free(target); free(allm); free(labels); free(mnames);
    if (h_ok) head_free(&h);
    if (m_ok) vit_free(&m);
    if (c_ok) ctx_close(&ctx);
    if (L_ok) loader_close(&L);
    if (ds_ok) dataset_close(&ds);
    if (st_ok) st_close(&st);
    free(cfg);
    return rc;
}
