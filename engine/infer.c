/* engine/infer.c — a fine-tuned model opened for whole-volume inference (infer.h): the shared
 * options of `vita eval` / `vita predict`, the model / head / input reconstruction, the loader of
 * the split and the per-case loop. */
#include "infer.h"
#include "errfmt.h"
#include "check.h"
#include "checkpoint.h"
#include "headmeta.h"
#include "../models/vit_weights.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char* const INFER_OPTIONS_HELP =
    "  --data D.h5            dataset (default: the run's data.path)\n"
    "  --split NAME           train | val | test | probe (default test)\n"
    "  --overlap R            window overlap in [0, 1) (default: the run's, else 0.5)\n"
    "  --weighting W          gaussian | constant (default: the run's, else gaussian)\n"
    "  --batch N              windows per forward (default: the run's data.batch, else 2)\n"
    "  --device cpu|cuda|auto --threads N  --quiet  --help\n";

static int ends_with(const char* s, const char* suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

int infer_check_writable(const char* path, int is_dir, char* err, size_t errlen) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    if (!is_dir) {
        char* slash = strrchr(dir, '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == dir) dir[1] = '\0';
        else *slash = '\0';
    }
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return vita_fail(err, errlen, "%s: exists and is not a directory (choose another path)", dir);
    if (access(dir, W_OK) != 0)
        return vita_fail(err, errlen, "%s: cannot write there: %s (choose a writable location)", path,
                         strerror(errno));
    return 0;
}

int infer_split_index(const char* s) {
    static const char* names[] = {"train", "val", "test", "probe"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

void infer_args_default(InferArgs* a) {
    memset(a, 0, sizeof *a);
    a->split_name = "test";
    a->overlap = -1;
}

int infer_parse_option(InferArgs* a, int argc, char** argv, int* i, const char* cmd) {
    const char* o = argv[*i];
    if (!strcmp(o, "--quiet")) { a->quiet = 1; return 1; }
    static const char* valued[] = {"--data", "--split", "--device", "--weighting", "--overlap",
                                   "--batch", "--threads"};
    int which = -1;
    for (int k = 0; k < 7; k++)
        if (!strcmp(o, valued[k])) which = k;
    if (which < 0) return 0;
    if (*i + 1 >= argc) USER_ERROR("%s needs a value (vita %s --help)", o, cmd);
    const char* v = argv[++*i];
    char* end;
    switch (which) {
    case 0: a->data = v; break;
    case 1:
        if (infer_split_index(v) < 0) USER_ERROR("--split '%s': expected train, val, test or probe", v);
        a->split_name = v;
        break;
    case 2: a->device = v; break;
    case 3:
        if (strcmp(v, "gaussian") && strcmp(v, "constant"))
            USER_ERROR("--weighting '%s': expected gaussian or constant", v);
        a->weighting = v;
        break;
    case 4:
        errno = 0;
        a->overlap = strtod(v, &end);
        if (errno || end == v || *end || !(a->overlap >= 0 && a->overlap < 1))
            USER_ERROR("--overlap '%s': expected a number in [0, 1)", v);
        break;
    default: {
        int lo = which == 6 ? 0 : 1;   /* --threads 0 = all cores */
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < lo || n > 4096)
            USER_ERROR("%s '%s': expected an integer in [%d, 4096]", o, v, lo);
        if (which == 6) a->threads = (int)n; else a->batch = (int)n;
    }
    }
    return 1;
}

/* channels / mode / context from the model config alone (see infer.h) */
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

/* the checkpoint of src (run directory or .safetensors) and the run config */
static int open_source(Infer* I, char* err, size_t errlen) {
    const char* src = I->a.src;
    struct stat sb;
    if (stat(src, &sb))
        return vita_fail(err, errlen, "%s: %s (expected a run directory or a .safetensors checkpoint)",
                    src, strerror(errno));
    I->run_dir = S_ISDIR(sb.st_mode);
    if (I->run_dir) {
        I->cfg = xcalloc(1, sizeof *I->cfg);
        char cpath[2048], e2[1024];
        snprintf(cpath, sizeof cpath, "%s/config.yaml", src);
        if (config_load(I->cfg, cpath, NULL, 0, e2, sizeof e2)) return vita_fail(err, errlen, "%s", e2);
        snprintf(I->weights, sizeof I->weights, "%s/checkpoints/best.safetensors", src);
        if (stat(I->weights, &sb)) {
            long step = -1;
            CkptState cs;
            memset(&cs, 0, sizeof cs);
            if (ckpt_find_latest(src, I->weights, sizeof I->weights, &step, &cs, e2, sizeof e2))
                return vita_fail(err, errlen, "%s: no best.safetensors and no usable step checkpoint (%s)",
                            src, e2);
            ckpt_state_free(&cs);
        }
    } else {
        if (!ends_with(src, ".safetensors"))
            return vita_fail(err, errlen, "%s: expected a run directory or a .safetensors checkpoint", src);
        snprintf(I->weights, sizeof I->weights, "%s", src);
    }
    if (st_open(&I->st, I->weights, err, errlen)) return 1;
    I->ok_st = 1;
    return 0;
}

/* model, head and input configs from the checkpoint metadata, else the run config */
static int model_configs(Infer* I, char* err, size_t errlen) {
    const Config* cfg = I->cfg;
    const char* w = I->weights;
    char e2[1024];
    const char* js = st_meta(&I->st, "model");
    if (js) {
        if (vit_config_from_json(&I->vc, js, e2, sizeof e2)) return vita_fail(err, errlen, "%s: %s", w, e2);
    } else if (cfg) {
        I->vc = cfg->vit;
    } else {
        return vita_fail(err, errlen, "%s: no 'model' config in its metadata; use the run directory instead", w);
    }
    js = st_meta(&I->st, "head");
    if (js) {
        if (head_config_from_json(&I->hc, js, I->vc.spatial_dims, e2, sizeof e2))
            return vita_fail(err, errlen, "%s: %s", w, e2);
    } else if (cfg) {
        I->hc = cfg->head;
        I->hc.task = cfg->task;
    } else {
        return vita_fail(err, errlen, "%s: no 'head' config in its metadata; use the run directory instead", w);
    }
    if (head_config_check(&I->hc, &I->vc, e2, sizeof e2)) return vita_fail(err, errlen, "%s: %s", w, e2);
    I->task = I->hc.task;
    I->K = I->task == HEAD_CLASSIFY || I->task == HEAD_SEGMENT ? I->hc.num_classes : 1;
    js = st_meta(&I->st, "input");
    if (js) {
        if (input_meta_from_json(js, I->channels, sizeof I->channels, &I->mode, &I->context, e2, sizeof e2))
            return vita_fail(err, errlen, "%s: %s", w, e2);
    } else if (cfg) {
        infer_input(&I->vc, cfg->input_context, I->channels, sizeof I->channels, &I->mode, &I->context);
        I->mode = cfg->input_mode;
        I->context = I->mode == LOADER_VOLUME ? 1 : cfg->input_context;
        if (cfg->channels[0]) snprintf(I->channels, sizeof I->channels, "%s", cfg->channels);
    } else {
        infer_input(&I->vc, 0, I->channels, sizeof I->channels, &I->mode, &I->context);
    }
    SlideConfig sc = {0.5, 1, 2};
    if (cfg) {
        sc.overlap = cfg->sw_overlap;
        sc.gaussian = strcmp(cfg->sw_weighting, "constant") != 0;
        if (cfg->batch > 0) sc.batch = cfg->batch;
    }
    if (I->a.overlap >= 0) sc.overlap = I->a.overlap;
    if (I->a.weighting) sc.gaussian = strcmp(I->a.weighting, "constant") != 0;
    if (I->a.batch > 0) sc.batch = I->a.batch;
    I->sc = sc;
    return 0;
}

/* the dataset and the loader of the split */
static int open_data(Infer* I, char* err, size_t errlen) {
    const char* data = I->a.data;
    if (!data) {
        if (I->cfg && I->cfg->data_path[0]) data = I->a.data = I->cfg->data_path;
        else return vita_fail(err, errlen, "--data DATA.h5 is required with a checkpoint");
    }
    if (dataset_open(&I->ds, data, err, errlen)) return 1;
    I->ok_ds = 1;
    if (I->task == HEAD_SEGMENT) {
        if (!I->ds.has_seg && !I->a.allow_unlabelled)
            return vita_fail(err, errlen, "%s has no /seg labels; a segmentation model is evaluated "
                        "against them (add /seg, use a dataset that has it, or vita predict, "
                        "which predicts unlabelled cases)", data);
        I->no_labels = !I->ds.has_seg;
        if (I->ds.has_seg && I->ds.n_labels > I->hc.num_classes)
            return vita_fail(err, errlen, "%s has %d labels (%s, ...) but the model predicts %d classes; "
                        "use a dataset with the model's label set", data, I->ds.n_labels,
                        I->ds.label_names[0], I->hc.num_classes);
    }
    LoaderConfig lc;
    loader_defaults(&lc);
    lc.mode = I->mode;
    lc.context = I->context;
    for (int a = 0; a < 3; a++) lc.crop[a] = I->vc.img[a];
    lc.batch = 1;
    lc.task = I->no_labels ? LOADER_IMAGES : I->task;   /* LOADER_* follow HEAD_* */
    snprintf(lc.channels, sizeof lc.channels, "%s", I->channels);
    lc.split = I->split;
    lc.fold = I->cfg ? I->cfg->fold : -1;
    lc.augment = 0;
    lc.balance = 0;
    lc.workers = 1;
    lc.queue = 1;
    lc.seed = I->cfg ? I->cfg->seed : 0;
    if (loader_open(&I->L, &I->ds, &lc, err, errlen)) return 1;
    I->ok_L = 1;
    if (I->L.n_items == 0)
        return vita_fail(err, errlen, "%s: no cases in split %s (vita info %s lists the splits)", data,
                    I->a.split_name, data);
    if (!I->a.quiet)
        for (int c = 0; c < I->L.C_seq; c++)
            if (I->L.seq_src[c] < 0) {
                char nm[sizeof I->channels];
                const char* p = I->channels;
                for (int k = 0; k < c && p; k++) { p = strchr(p, ','); if (p) p++; }
                snprintf(nm, sizeof nm, "%s", p ? p : "?");
                char* q = strchr(nm, ',');
                if (q) *q = '\0';
                printf("note: model channel '%s' is not in %s: zeros, as in training\n", nm, data);
            }
    return 0;
}

int infer_open(Infer* I, const InferArgs* a, char* err, size_t errlen) {
    memset(I, 0, sizeof *I);
    I->a = *a;
    err[0] = '\0';
    I->split = infer_split_index(a->split_name);
    if (I->split < 0) return vita_fail(err, errlen, "--split '%s': expected train, val, test or probe", a->split_name);
    if (open_source(I, err, errlen) || model_configs(I, err, errlen) || open_data(I, err, errlen))
        return 1;
    const char* dev = a->device ? a->device : (I->cfg && I->cfg->device[0] ? I->cfg->device : "auto");
    if (ctx_open(&I->ctx, dev, a->threads, 1)) return vita_fail(err, errlen, "cannot open device '%s'", dev);
    I->ok_ctx = 1;
    vit_create(&I->m, &I->ctx, &I->vc);
    vit_alloc_activations(&I->m, I->sc.batch);
    I->ok_m = 1;
    VitLoadReport rep;
    if (vit_load_weights(&I->m, I->weights, 0, &rep)) return 1;   /* printed its own line */
    if (rep.missing)
        return vita_fail(err, errlen, "%s: %d encoder tensors missing; not a fine-tuned checkpoint of this model",
                    I->weights, rep.missing);
    head_create(&I->h, &I->ctx, &I->hc, &I->m);
    head_alloc_activations(&I->h, I->sc.batch);
    I->ok_h = 1;
    if (head_load_weights(&I->h, I->weights, err, errlen)) return 1;
    long vol = (long)I->ds.D * I->ds.H * I->ds.W;
    I->out = xmalloc(sizeof(float) * (I->task == HEAD_CLASSIFY ? I->K : I->K * vol));
    I->seg = xmalloc(sizeof(int32_t) * vol);
    I->target = I->task >= HEAD_SUPERRES ? xmalloc(sizeof(float) * vol) : NULL;
    return 0;
}

void infer_close(Infer* I) {
    free(I->out); free(I->seg); free(I->target);
    if (I->ok_h) head_free(&I->h);
    if (I->ok_m) vit_free(&I->m);
    if (I->ok_ctx) ctx_close(&I->ctx);
    if (I->ok_L) loader_close(&I->L);
    if (I->ok_ds) dataset_close(&I->ds);
    if (I->ok_st) st_close(&I->st);
    free(I->cfg);
    memset(I, 0, sizeof *I);
}

int infer_cases(Infer* I, const int* items, int n, CaseTable* t, InferCaseFn fn, void* user,
                char* err, size_t errlen) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char e2[1024];
    for (int it = 0; it < n; it++) {
        int ci = items[it];
        I->cls = -1;
        if (slide_case(&I->m, &I->h, &I->L, ci, &I->sc, I->out,
                       I->task == HEAD_SEGMENT && !I->no_labels ? I->seg : NULL,
                       &I->cls, I->target, e2, sizeof e2))
            return vita_fail(err, errlen, "case %s: %s", I->ds.case_id[ci], e2);
        casetab_add(t, &I->ds, ci, I->out, I->no_labels ? NULL : I->seg, I->cls, I->target);
        if (fn && fn(user, I, ci, err, errlen)) return 1;
        if (!I->a.quiet) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            casetab_print_progress(t, n, (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
        }
    }
    return 0;
}
