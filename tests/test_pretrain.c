/* tests/test_pretrain.c — `vita pretrain` end to end on a tiny phantom (32 cases of 16x32x32,
 * a 2-block dim-32 3D ViT with 8 patch tokens):
 *   1. MAE and contrastive each lower their own training loss (mean step loss of the last epoch
 *      vs the first) and validation loss (last epoch vs epoch 0) by at least 5 %;
 *   2. encoder.safetensors holds exactly the encoder's tensors under timm names with metadata
 *      vita_version / model / objective, and `vita train` with model.weights = it starts
 *      (log attr init = pretrained, weights_sha256 = the file's);
 *   3. train.epochs = 0 writes the freshly initialised encoder (bit-equal to vit_init_weights);
 *   4. SIGUSR1 mid-run -> exit 75; --resume gives per-step losses and final weights bit-identical
 *      to an uninterrupted run (run.deterministic: true, 2 threads);
 *   5. bad pretrain keys give one line naming the key (pretrain keys in vita train, fine-tuning
 *      keys in vita pretrain, out-of-range and unknown values, a typo).
 * Every run is a forked child (the parent never starts OpenMP or BLAS threads), as test_train. */
#include "testing.h"
#include "run_child.h"
#include "../engine/pretrain.h"
#include "../engine/phantom.h"
#include "../engine/safetensors.h"

#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

static char g_root[256], g_data[320];

/* the pretrain config of the tests; 0 or the config error printed */
static int make_cfg(Config* c, const char* name, const char* objective, const char* const* extra,
                    int n_extra) {
    char run_out[300], data[340], nm[128], obj[64];
    snprintf(run_out, sizeof run_out, "run.out=%s", g_root);
    snprintf(data, sizeof data, "data.path=%s", g_data);
    snprintf(nm, sizeof nm, "run.name=%s", name);
    snprintf(obj, sizeof obj, "pretrain.objective=%s", objective);
    const char* base[] = {
        nm, run_out, data, obj, "run.deterministic=true", "run.seed=3",
        "model.preset=vit-tiny-3d", "model.img_size=[16,32,32]", "model.patch=[8,16,16]",
        "model.dim=32", "model.depth=2", "model.heads=2", "model.drop_path=0.0",
        "data.batch=4", "data.workers=1", "data.augment=true",
        "train.epochs=5", "train.steps_per_epoch=8", "train.lr=2.0e-3", "train.min_lr=1.0e-4",
        "train.warmup_epochs=1", "train.clip_grad=1.0", "train.weight_decay=0.05",
        "pretrain.mask_ratio=0.75", "pretrain.decoder.dim=36", "pretrain.decoder.depth=1",
        "pretrain.decoder.heads=2", "pretrain.proj.hidden=64", "pretrain.proj.dim=32",
        "pretrain.temperature=0.2",
    };
    char err[1024];
    if (child_load_cfg(c, config_load_pretrain, base, (int)(sizeof base / sizeof base[0]), extra,
                       n_extra, err, sizeof err)) {
        printf("config: %s\n", err);
        return 1;
    }
    return 0;
}

/* runs cfg in a child (pretrain_run, or train_run when train = 1; tests/run_child.h);
 * the exit code or 128 + signal */
static int run_child(const Config* cfg, int train, int resume, ChildHook* hook) {
    return run_in_child(g_root, train ? train_run : pretrain_run, cfg, resume, hook);
}

static void show_err(const char* name) { child_show_err(g_root, name); }

/* a 1-D or 2-D dataset of a log as doubles (malloc'd), n values */
static double* h5_all(const char* path, const char* name, long* n) {
    *n = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    double* out = NULL;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d >= 0) {
        hid_t sp = H5Dget_space(d);
        hssize_t k = H5Sget_simple_extent_npoints(sp);
        out = calloc(k > 0 ? (size_t)k : 1, sizeof(double));
        if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0) *n = (long)k;
        H5Sclose(sp);
        H5Dclose(d);
    }
    H5Fclose(f);
    return out;
}

/* a string attribute of the log root into out ("" when absent) */
static void h5_str_attr(const char* path, const char* attr, char* out, size_t n) {
    out[0] = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return;
    H5E_BEGIN_TRY {
        hid_t a = H5Aopen_by_name(f, "/", attr, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            hid_t ty = H5Aget_type(a);
            if (H5Tis_variable_str(ty) > 0) {
                char* s = NULL;
                hid_t mt = H5Tcopy(H5T_C_S1);
                H5Tset_size(mt, H5T_VARIABLE);
                H5Tset_cset(mt, H5Tget_cset(ty));
                if (H5Aread(a, mt, &s) >= 0 && s) { snprintf(out, n, "%s", s); H5free_memory(s); }
                H5Tclose(mt);
            } else {
                size_t sz = H5Tget_size(ty);
                char* s = calloc(sz + 1, 1);
                if (H5Aread(a, ty, s) >= 0) snprintf(out, n, "%s", s);
                free(s);
            }
            H5Tclose(ty);
            H5Aclose(a);
        }
    } H5E_END_TRY;
    H5Fclose(f);
}

static void path_of(char* out, size_t n, const char* run, const char* file) {
    snprintf(out, n, "%s/%s/%s", g_root, run, file);
}

/* ---- 1 + 2: each objective lowers its own losses; the encoder file ------------------------- */

static double mean(const double* x, long a, long b) {
    double s = 0;
    for (long i = a; i < b; i++) s += x[i];
    return b > a ? s / (b - a) : NAN;
}

static void test_objective(const char* objective) {
    char name[64], what[400], p[600];
    snprintf(name, sizeof name, "learn-%s", objective);
    Config c;
    if (!t_true("pretrain config loads", make_cfg(&c, name, objective, NULL, 0) == 0)) return;
    int rc = run_child(&c, 0, 0, NULL);
    snprintf(what, sizeof what, "%s: run exits 0", objective);
    if (!t_true(what, rc == 0)) { show_err(name); return; }
    path_of(p, sizeof p, name, "log.h5");
    long ns = 0, ne = 0;
    double* loss = h5_all(p, "/steps/loss", &ns);
    double* vl = h5_all(p, "/epochs/val_loss", &ne);
    double* vm = h5_all(p, "/epochs/val_metric", &ne);
    long S = c.steps_per_epoch;
    snprintf(what, sizeof what, "%s: %d x %ld steps and epochs 0..%d logged", objective, c.epochs, S, c.epochs);
    t_true(what, ns == c.epochs * S && ne == c.epochs + 1);
    if (ns == c.epochs * S && ne == c.epochs + 1) {
        /* 5 %: the validation loss uses fixed masks / views, so its change is not sampling noise;
         * the training means average 8 steps of fresh masks each. A run that only drifts (wrong
         * gradient sign, optimizer not applied, lr 0) stays within a few % of where it started
         * or rises; learning the phantoms' shared anatomy takes the loss well past that: MAE
         * (normalised pixels) starts near 1 (an untrained decoder predicts ~0 against unit-
         * variance targets), InfoNCE near log(2B - 1) = 1.95 (random features). */
        double tr = mean(loss, ns - S, ns) / mean(loss, 0, S);
        snprintf(what, sizeof what, "%s: train loss last epoch / first epoch (%.3f -> %.3f)", objective,
                 mean(loss, 0, S), mean(loss, ns - S, ns));
        t_check(what, tr, 0.95);
        snprintf(what, sizeof what, "%s: val loss epoch %d / epoch 0 (%.3f -> %.3f)", objective, c.epochs,
                 vl[0], vl[ne - 1]);
        t_check(what, vl[ne - 1] / vl[0], 0.95);
        int same = 1;
        for (long i = 0; i < ne; i++) same &= vl[i] == vm[i];
        snprintf(what, sizeof what, "%s: /epochs/val_metric = val_loss", objective);
        t_true(what, same);
    }
    free(loss); free(vl); free(vm);
    char task[64], obj[32], want[64];
    h5_str_attr(p, "task", task, sizeof task);
    h5_str_attr(p, "objective", obj, sizeof obj);
    snprintf(want, sizeof want, "pretrain-%s", objective);
    snprintf(what, sizeof what, "%s: log attrs task = %s, objective = %s (got %s, %s)", objective, want,
             objective, task, obj);
    t_true(what, !strcmp(task, want) && !strcmp(obj, objective));

    /* the encoder file: exactly the encoder's tensors, timm names, metadata */
    path_of(p, sizeof p, name, "encoder.safetensors");
    StFile f;
    char err[512];
    snprintf(what, sizeof what, "%s: encoder.safetensors opens", objective);
    if (!t_true(what, st_open(&f, p, err, sizeof err) == 0)) { printf("  %s\n", err); return; }
    int n_enc = 0, n_other = 0, has_core = 1;
    for (int i = 0; i < f.n; i++) {
        const char* nm = f.t[i].name;
        int enc = !strcmp(nm, "cls_token") || !strcmp(nm, "pos_embed") || !strncmp(nm, "patch_embed.", 12) ||
                  !strncmp(nm, "blocks.", 7) || !strncmp(nm, "norm.", 5);
        n_enc += enc;
        n_other += !enc;
    }
    static const char* const core[] = {"patch_embed.proj.weight", "pos_embed", "cls_token",
                                       "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias", "norm.weight"};
    for (int i = 0; i < 6; i++) has_core &= st_find(&f, core[i]) != NULL;
    snprintf(what, sizeof what, "%s: encoder tensors only (%d timm-named, %d others), core names present",
             objective, n_enc, n_other);
    t_true(what, n_other == 0 && n_enc > 0 && has_core);
    const char* mo = st_meta(&f, "objective");
    const char* mm = st_meta(&f, "model");
    const char* mv = st_meta(&f, "vita_version");
    snprintf(what, sizeof what, "%s: metadata objective = %s, model (JSON with dim 32), vita_version", objective, objective);
    t_true(what, mo && !strcmp(mo, objective) && mm && strstr(mm, "\"dim\":32") && mv && mv[0]);
    st_close(&f);
}

/* vita train loads the MAE encoder as model.weights */
static void test_finetune_from_encoder(void) {
    char enc[600], w[700], run_out[300], data[340], p[600];
    path_of(enc, sizeof enc, "learn-mae", "encoder.safetensors");
    snprintf(w, sizeof w, "model.weights=%s", enc);
    snprintf(run_out, sizeof run_out, "run.out=%s", g_root);
    snprintf(data, sizeof data, "data.path=%s", g_data);
    const char* sets[] = {
        "run.name=ft", run_out, data, w, "run.deterministic=true", "model.preset=vit-tiny-3d",
        "model.img_size=[16,32,32]", "model.patch=[8,16,16]", "model.dim=32", "model.depth=2",
        "model.heads=2", "task.name=classify", "task.head.hidden=16", "data.batch=4",
        "data.workers=1", "train.epochs=1", "train.steps_per_epoch=2", "train.warmup_epochs=0",
        "align.layers=[]",
    };
    Config c;
    char err[1024];
    if (!t_true("fine-tuning config with model.weights = encoder.safetensors loads",
                config_load(&c, NULL, sets, sizeof sets / sizeof sets[0], err, sizeof err) == 0)) {
        printf("  %s\n", err);
        return;
    }
    int rc = run_child(&c, 1, 0, NULL);
    if (!t_true("vita train from the pretrained encoder exits 0", rc == 0)) { show_err("ft"); return; }
    path_of(p, sizeof p, "ft", "log.h5");
    char init[32], wp[700];
    h5_str_attr(p, "init", init, sizeof init);
    h5_str_attr(p, "weights", wp, sizeof wp);
    t_true("fine-tuning log: init = pretrained, weights = the encoder file",
           !strcmp(init, "pretrained") && !strcmp(wp, enc));
}

/* ---- 3: epochs 0 ----------------------------------------------------------------------------- */

static void test_epochs0(void) {
    const char* extra[] = {"train.epochs=0"};
    Config c;
    if (!t_true("epochs 0 config loads", make_cfg(&c, "init0", "contrastive", extra, 1) == 0)) return;
    int rc = run_child(&c, 0, 0, NULL);
    if (!t_true("epochs 0: run exits 0", rc == 0)) { show_err("init0"); return; }
    char p[600];
    path_of(p, sizeof p, "init0", "encoder.safetensors");
    /* compare with vit_init_weights(seed) in a child (OpenMP stays out of the parent) */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        Ctx ctx;
        if (ctx_open(&ctx, "cpu", 1, 1)) _exit(3);
        Vit m;
        vit_create(&m, &ctx, &c.vit);
        vit_init_weights(&m, c.seed);
        float* w = malloc(sizeof(float) * m.n_floats);
        copy_d2h(&ctx, w, m.w, sizeof(float) * m.n_floats);
        StFile f;
        char err[512];
        if (st_open(&f, p, err, sizeof err)) _exit(4);
        int bad = f.n != m.n_params;
        for (int i = 0; i < m.n_params && !bad; i++) {
            const StTensor* t = st_find(&f, m.params[i].name);
            if (!t || t->numel != m.params[i].numel) { bad = 1; break; }
            float* x = malloc(sizeof(float) * t->numel);
            st_read_f32(&f, t, x);
            bad = memcmp(x, w + m.params[i].offset, sizeof(float) * t->numel) != 0;
            free(x);
        }
        _exit(bad ? 1 : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    t_true("epochs 0: encoder.safetensors == vit_init_weights(run.seed), bit for bit",
           WIFEXITED(st) && WEXITSTATUS(st) == 0);
    path_of(p, sizeof p, "init0", "log.h5");
    long ne = 0, ns = 0;
    double* vl = h5_all(p, "/epochs/val_loss", &ne);
    free(h5_all(p, "/steps/loss", &ns));
    t_true("epochs 0: one epoch row (finite val loss), no steps", ne == 1 && isfinite(vl[0]) && ns == 0);
    free(vl);
}

/* ---- 4: SIGUSR1 + --resume ---------------------------------------------------------------------- */

static int read_trace(const char* path, long* step, double* loss, int max) {
    FILE* f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    while (n < max && fscanf(f, "%ld %la", &step[n], &loss[n]) == 2) n++;
    fclose(f);
    return n;
}

static int same_file(const char* a, const char* b) {
    FILE* fa = fopen(a, "rb");
    FILE* fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int x = fgetc(fa), y = fgetc(fb);
        if (x != y) same = 0;
        if (x == EOF || y == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void test_resume(const char* objective) {
    char na[64], nb[64], ta[600], tb[600], what[200];
    snprintf(na, sizeof na, "res-a-%s", objective);
    snprintf(nb, sizeof nb, "res-b-%s", objective);
    const char* extra[] = {"train.epochs=3", "train.steps_per_epoch=4", "train.accum_steps=2",
                           "train.checkpoint_every=1"};
    Config A, B;
    if (make_cfg(&A, na, objective, extra, 4) || make_cfg(&B, nb, objective, extra, 4)) {
        t_true("resume configs load", 0);
        return;
    }
    snprintf(ta, sizeof ta, "%s/%s.trace", g_root, na);
    snprintf(tb, sizeof tb, "%s/%s.trace", g_root, nb);
    ChildHook ha = {ta, -1, 0};
    int rc = run_child(&A, 0, 0, &ha);
    snprintf(what, sizeof what, "%s: uninterrupted run exits 0", objective);
    if (!t_true(what, rc == 0)) { show_err(na); return; }
    ChildHook hb = {tb, 5, SIGUSR1};   /* mid epoch 2 (4 steps per epoch) */
    rc = run_child(&B, 0, 0, &hb);
    snprintf(what, sizeof what, "%s: SIGUSR1 at step 5 -> exit 75", objective);
    if (!t_true(what, rc == 75)) { show_err(nb); return; }
    ChildHook hb2 = {tb, -1, 0};
    rc = run_child(&B, 0, 1, &hb2);
    snprintf(what, sizeof what, "%s: --resume exits 0", objective);
    if (!t_true(what, rc == 0)) { show_err(nb); return; }
    long sa[64], sb[64];
    double la[64], lb[64];
    int n_a = read_trace(ta, sa, la, 64), n_b = read_trace(tb, sb, lb, 64);
    int same = n_a == 12 && n_b == 12;
    for (int i = 0; i < n_a && same; i++) same = sa[i] == sb[i] && memcmp(&la[i], &lb[i], sizeof(double)) == 0;
    snprintf(what, sizeof what, "%s: per-step losses interrupted+resumed == uninterrupted (%d, %d steps)",
             objective, n_a, n_b);
    t_true(what, same);
    char pa[600], pb[600];
    path_of(pa, sizeof pa, na, "log.h5");
    path_of(pb, sizeof pb, nb, "log.h5");
    static const char* const dsn[] = {"/steps/loss", "/steps/grad_norm", "/steps/lr", "/epochs/val_loss"};
    for (int d = 0; d < 4; d++) {
        long n1 = 0, n2 = 0;
        double* x = h5_all(pa, dsn[d], &n1);
        double* y = h5_all(pb, dsn[d], &n2);
        snprintf(what, sizeof what, "%s: log %s identical (%ld values)", objective, dsn[d], n1);
        t_true(what, n1 > 0 && n1 == n2 && !memcmp(x, y, sizeof(double) * n1));
        free(x); free(y);
    }
    path_of(pa, sizeof pa, na, "encoder.safetensors");
    path_of(pb, sizeof pb, nb, "encoder.safetensors");
    snprintf(what, sizeof what, "%s: encoder.safetensors byte-identical", objective);
    t_true(what, same_file(pa, pb));
}

/* ---- 5: config errors ---------------------------------------------------------------------------- */

static void expect(const char* what, int pretrain, const char* set, const char* n1, const char* n2) {
    Config c;
    char err[1024] = "";
    const char* sets[] = {set};
    int rc = pretrain ? config_load_pretrain(&c, NULL, sets, 1, err, sizeof err)
                      : config_load(&c, NULL, sets, 1, err, sizeof err);
    int ok = rc == 1 && !strchr(err, '\n') && strstr(err, n1) && (!n2 || strstr(err, n2));
    char w[300];
    snprintf(w, sizeof w, "%s: one line naming %s", what, n1);
    t_true(w, ok);
    printf("  -> %s\n", err);
}

static void test_errors(void) {
    expect("pretrain key in vita train", 0, "pretrain.mask_ratio=0.5", "pretrain.mask_ratio", "vita pretrain");
    expect("fine-tuning key in vita pretrain", 1, "task.name=segment", "task.name", "vita pretrain");
    expect("mask_ratio out of range", 1, "pretrain.mask_ratio=1.5", "pretrain.mask_ratio", NULL);
    expect("unknown objective", 1, "pretrain.objective=simclr", "pretrain.objective", "contrastive");
    expect("typo", 1, "pretrain.mask_ration=0.5", "pretrain.mask_ratio", "did you mean");
    expect("temperature 0", 1, "pretrain.temperature=0", "pretrain.temperature", NULL);
    expect("train.epochs 0 in vita train", 0, "train.epochs=0", "train.epochs", "vita pretrain");
    Config c;
    char err[1024] = "";
    const char* sets[] = {"pretrain.decoder.dim=30", "pretrain.decoder.heads=4"};
    int rc = config_load_pretrain(&c, NULL, sets, 2, err, sizeof err);
    t_true("decoder.dim not a multiple of decoder.heads: one line naming both",
           rc == 1 && strstr(err, "pretrain.decoder.dim") && strstr(err, "pretrain.decoder.heads") && !strchr(err, '\n'));
    printf("  -> %s\n", err);
    /* the emitted pretrain config reads back to the same struct; a train config has no pretrain */
    Config a, b;
    const char* s2[] = {"pretrain.objective=contrastive", "train.epochs=0", "pretrain.pool=cls"};
    rc = config_load_pretrain(&a, NULL, s2, 3, err, sizeof err);
    char* y = rc ? NULL : config_to_yaml(&a);
    char yp[400];
    snprintf(yp, sizeof yp, "%s/rt.yaml", g_root);
    FILE* f = y ? fopen(yp, "w") : NULL;
    if (f) { fputs(y, f); fclose(f); }
    int rc2 = f ? config_load_pretrain(&b, yp, NULL, 0, err, sizeof err) : 1;
    char* y2 = rc2 ? NULL : config_to_yaml(&b);
    t_true("pretrain config: emitted YAML has the pretrain section, no task/align, and reads back identically",
           y && y2 && !strcmp(y, y2) && strstr(y, "pretrain:") && strstr(y, "objective: contrastive") &&
           !strstr(y, "\ntask:") && !strstr(y, "\nalign:"));
    free(y); free(y2);
    config_load(&a, NULL, NULL, 0, err, sizeof err);
    y = config_to_yaml(&a);
    t_true("train config: emitted YAML has no pretrain section", !strstr(y, "\npretrain:"));
    free(y);
}

int main(void) {
    if (child_workdir(g_root, sizeof g_root, g_data, sizeof g_data, "test_pretrain")) return 1;
    if (!t_true("phantom dataset written", child_phantom(g_data, "test_pretrain"))) return t_summary();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_errors();
    test_objective("mae");
    test_objective("contrastive");
    test_finetune_from_encoder();
    test_epochs0();
    test_resume("mae");
    test_resume("contrastive");
    child_cleanup(g_root, t_failed);
    return t_summary();
}
