/* tests/slow_learning_tasks.c — learning tests of `vita train`, calibrated against PyTorch
 * (make test-slow).
 *
 * For each of the five tasks, on phantoms of 32x64x64 (vit-tiny-3d's input, so validation is
 * one window per case; 120 cases, 600 for classify, whose label is gland size: see
 * write_derived), vita trains vit-tiny-3d from scratch on the CPU for a fixed number of steps
 * (classify 135 steps of 8, dense tasks 72 steps of 4: about a minute each) with run.seed 0,
 * and its final validation metric (/epochs/val_metric, last epoch) must lie within the band
 * of a PyTorch peer (tests/oracle/learn_peer.py: vit_oracle.ViT + head_oracle.Head, the same
 * loss, AdamW, MAE schedule, clipping, batches and steps) and above the trivial predictor by
 * the task's margin (classify AUROC 0.10 over 0.5; segment Dice 0.05 over 0; image tasks
 * 2 dB PSNR over the mean training target). Both numbers are printed per task.
 *
 * Same inputs: the image tasks read explicit datasets written here (inputs = loader_case's
 * degraded case, /targets/<task> = its target), so vita and PyTorch see the same numbers.
 * Same init and data order: the harness builds vita's encoder + head for the config and
 * initialises them as train.c does (written as a safetensors file the peer loads), and records
 * vita's loader order (one line of dataset indices per step) for the peer; the test checks that
 * vita's own run starts from the same weights (checkpoints/init.safetensors, bit-identical)
 * and that its first-step loss equals the peer's (same weights, batch and loss).
 * What cannot be mirrored: float summation orders (vita's kernels vs torch's), so trajectories
 * diverge after some steps as any two seeds' would; the band is therefore the spread of three
 * PyTorch seeds (peer seed s = vita's init and loader order for run.seed s), not a tolerance
 * on identical numbers.
 *
 * Calibration: tests/oracle/learn_calibration.json holds, per task, the peer's final metric
 * for seeds 0, 1, 2, their mean and SD, the band mean +- max(3 SD, floor), the trivial
 * predictor's value and the command that produced it; the band and margin checked are this
 * file's floor and margin applied to the stored mean and SD. VITA_CALIBRATE=1 reruns the
 * peers of the tasks run and rewrites their entries (then checks vita against them). VITA_LEARN_TASKS=a,b runs a
 * subset. VITA_BUILD (set by tests/run.sh) locates vita; work files go to $VITA_BUILD/learn. */
#include "testing.h"

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <time.h>

#include "../engine/config.h"
#include "../engine/dataset.h"
#include "../engine/loader.h"
#include "../engine/phantom.h"
#include "../engine/safetensors.h"
#include "../engine/train.h"
#include "../models/head.h"
#include "../models/vit.h"

#define N_SEEDS 3
#define CALIB "tests/oracle/learn_calibration.json"
#define PEER "tests/oracle/learn_peer.py"

/* ---- the tasks ---------------------------------------------------------------------------- */
typedef struct {
    const char* name;
    const char* metric;        /* vita's main metric name */
    const char* loss;          /* peer loss: ce | dice_ce | l1 | mse */
    const char* yaml_task;     /* the task: block of the config */
    int epochs, batch;
    double lr, min_lr, warmup;
    int num_classes, feature_size, input_channel, identity_channel;   /* head (peer spec) */
    double floor;              /* smallest half-width of the band (metric units) */
    double margin;             /* vita must beat the trivial predictor by this much */
} Task;

static const Task TASKS[] = {
    {"classify", "auroc", "ce",
     "task: {name: classify, num_classes: 2, head: {kind: mlp, pool: mean, batchnorm: false}, "
     "loss: {kind: ce}, metric: auroc}",
     3, 8, 1.0e-3, 1.0e-5, 0.3, 2, 0, 0, -1, 0.05, 0.10},
    {"segment", "dice", "dice_ce",
     "task: {name: segment, num_classes: 4, head: {kind: unetr, feature_size: 8}, "
     "loss: {kind: dice_ce}, metric: dice}",
     4, 4, 1.0e-3, 1.0e-5, 0.5, 4, 8, 0, -1, 0.03, 0.05},
    {"superres", "psnr", "l1",
     "task: {name: superres, head: {kind: unetr, feature_size: 8, input_channel: 0}, loss: {kind: l1}, "
     "metric: psnr}",
     4, 4, 1.0e-3, 1.0e-5, 0.5, 1, 8, 0, 0, 0.5, 2.0},
    /* the displacement-field head (starts at the identity) resampling hbv along y */
    {"undistort", "psnr", "l1",
     "task: {name: undistort, head: {kind: unetr, feature_size: 8, output: field, input_channel: 2, "
     "pe_axis: 1}, loss: {kind: l1}, metric: psnr}",
     4, 4, 1.0e-3, 1.0e-5, 0.5, 1, 8, 2, 2, 0.5, 2.0},
    {"synthesize", "psnr", "l1",
     "task: {name: synthesize, head: {kind: unetr, feature_size: 8}, loss: {kind: l1}, metric: psnr}",
     4, 4, 1.0e-3, 1.0e-5, 0.5, 1, 8, 0, -1, 0.5, 2.0},
};
#define N_TASKS ((int)(sizeof TASKS / sizeof TASKS[0]))

static const double WEIGHT_DECAY = 0.05, CLIP = 1.0;
/* dense tasks: 120 cases (72 train / 18 val: validation is most of a dense run's cost);
 * classify: 600 cases (360 train / 90 val: AUROC on 18 cases is too coarse) */
static const int PHANTOM_CASES = 120, PHANTOM_CLS_CASES = 600, PHANTOM_SEED = 0;

static char g_build[512], g_work[700], g_vita[700], g_python[256];

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int want_task(const char* name) {
    const char* sel = getenv("VITA_LEARN_TASKS");
    if (!sel || !*sel) return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", sel);
    for (char* t = strtok(buf, ","); t; t = strtok(NULL, ","))
        if (!strcmp(t, name)) return 1;
    return 0;
}

/* runs cmd with output to log; prints the log's tail on failure; returns the exit status */
static int run_logged(const char* cmd, const char* log) {
    char full[4096];
    snprintf(full, sizeof full, "%s > %s 2>&1", cmd, log);
    fflush(stdout);
    int st = system(full);
    int rc = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (rc) {
        printf("command failed (exit %d): %s\n--- last lines of %s:\n", rc, cmd, log);
        char tail[1200];
        snprintf(tail, sizeof tail, "tail -n 15 %s", log);
        fflush(stdout);
        if (system(tail) == -1) printf("(tail failed)\n");
    }
    return rc;
}

static char* read_text(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* s = malloc(n + 1);
    if (!s || fread(s, 1, n, f) != (size_t)n) { fclose(f); free(s); return NULL; }
    s[n] = 0;
    fclose(f);
    return s;
}

static int write_text(const char* path, const char* text) {
    FILE* f = fopen(path, "wb");
    if (!f) return 1;
    int bad = fputs(text, f) < 0;
    return fclose(f) || bad;
}

/* ---- datasets ----------------------------------------------------------------------------- */
static int loader_task(const char* name) {
    static const char* n[] = {"classify", "segment", "superres", "undistort", "synthesize"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(n[i], name)) return i;
    return -1;
}

/* the dataset a task trains on, derived from a phantom file:
 *  classify    the images, /cls = 1 when the case's gland (seg > 0) is larger than the median
 *              over cases: the phantom's own csPCa label (a lesion volume >= 0.5 mL) is not
 *              learnable from scratch in minutes (measured: vita val AUROC 0.46-0.54 after 450
 *              steps on 600 training cases, train loss falling = memorised), so the test uses a
 *              global anatomical label that a ViT learns in ~100 steps
 *  image tasks explicit inputs: /images = loader_case's input (degraded, unused channels zero
 *              with channel_present 0), /targets/<task> [N, 1, D, H, W] = its target
 * the rest (seg, splits, folds, geometry) copied */
static int write_derived(const char* src, const char* dst, const char* task) {
    char err[512];
    Dataset ds;
    if (dataset_open(&ds, src, err, sizeof err)) { printf("%s\n", err); return 1; }
    LoaderConfig lc;
    loader_defaults(&lc);
    lc.task = loader_task(task);
    lc.augment = 0;
    lc.batch = 1;
    lc.split = SPLIT_VAL;
    Loader L;
    if (loader_open(&L, &ds, &lc, err, sizeof err)) { printf("%s\n", err); dataset_close(&ds); return 1; }
    int classify = lc.task == LOADER_CLASSIFY;
    char chans[DS_MAX_CHANNELS * DS_NAME + 8] = "", labels[DS_MAX_LABELS * DS_NAME + 8] = "",
         classes[DS_MAX_LABELS * DS_NAME + 8] = "", source[1400];
    for (int c = 0; c < ds.C; c++) { if (c) strcat(chans, ","); strcat(chans, ds.channels[c]); }
    for (int k = 0; k < ds.n_labels; k++) { if (k) strcat(labels, ","); strcat(labels, ds.label_names[k]); }
    for (int k = 0; k < ds.n_classes; k++) { if (k) strcat(classes, ","); strcat(classes, ds.class_names[k]); }
    if (classify) snprintf(classes, sizeof classes, "small_gland,large_gland");
    snprintf(source, sizeof source, "slow_learning_tasks: %s %s of %s (loader_case)", task,
             classify ? "gland-size labels" : "inputs/targets", src);
    DatasetSpec sp = {ds.n, L.C_seq, ds.D, ds.H, ds.W, chans, ds.has_seg ? labels : NULL,
                      ds.has_cls || classify ? classes : NULL, {ds.spacing_zyx[0], ds.spacing_zyx[1], ds.spacing_zyx[2]},
                      source, 0};
    DatasetWriter* w = dataset_create(dst, &sp, err, sizeof err);
    if (!w) { printf("%s\n", err); loader_close(&L); dataset_close(&ds); return 1; }
    long vol = (long)ds.D * ds.H * ds.W;
    int32_t* relabel = calloc(ds.n, sizeof(int32_t));
    if (classify) {   /* gland volume > median */
        long* gv = calloc(ds.n, sizeof(long));
        long* sorted = calloc(ds.n, sizeof(long));
        int32_t* sg = malloc(sizeof(int32_t) * vol);
        float* tmp = malloc(sizeof(float) * L.C_seq * vol);
        for (int i = 0; i < ds.n; i++) {
            if (loader_case(&L, i, tmp, NULL, sg, NULL, err, sizeof err)) { printf("%s\n", err); break; }
            for (long v = 0; v < vol; v++) gv[i] += sg[v] > 0;
            sorted[i] = gv[i];
        }
        for (int i = 1; i < ds.n; i++)   /* insertion sort: small n */
            for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) { long x = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = x; }
        double med = ds.n % 2 ? (double)sorted[ds.n / 2] : 0.5 * (sorted[ds.n / 2 - 1] + sorted[ds.n / 2]);
        for (int i = 0; i < ds.n; i++) relabel[i] = gv[i] > med;
        free(gv); free(sorted); free(sg); free(tmp);
    }
    float* img = malloc(sizeof(float) * L.C_seq * vol);
    float* tgt = malloc(sizeof(float) * (size_t)(classify ? 1 : ds.n) * vol);
    int32_t* seg = malloc(sizeof(int32_t) * vol);
    uint8_t* seg8 = malloc(vol);
    uint8_t present[DS_MAX_CHANNELS];
    int rc = 0;
    for (int i = 0; i < ds.n && !rc; i++) {
        if (loader_case(&L, i, img, present, ds.has_seg ? seg : NULL, classify ? NULL : tgt + (size_t)i * vol,
                        err, sizeof err)) {
            printf("%s\n", err);
            rc = 1;
            break;
        }
        for (long v = 0; v < vol; v++) seg8[v] = (uint8_t)seg[v];
        rc = dataset_write_case(w, i, ds.case_id[i], img, ds.has_seg ? seg8 : NULL,
                                classify ? relabel[i] : ds.has_cls ? ds.cls[i] : -1, ds.split[i], ds.fold[i], present,
                                ds.g_spacing + 3 * i, ds.g_origin + 3 * i, ds.g_direction + 9 * i,
                                ds.g_shape_original + 3 * i, ds.g_crop_offset + 3 * i);
    }
    loader_close(&L);
    int n = ds.n, D = ds.D, H = ds.H, W = ds.W;
    dataset_close(&ds);
    if (dataset_finish(w, err, sizeof err)) { printf("%s\n", err); rc = 1; }
    if (!rc && !classify) {   /* /targets/<task>, one chunk per case */
        hid_t f = H5Fopen(dst, H5F_ACC_RDWR, H5P_DEFAULT);
        hsize_t dims[5] = {(hsize_t)n, 1, (hsize_t)D, (hsize_t)H, (hsize_t)W}, chunk[5] = {1, 1, dims[2], dims[3], dims[4]};
        hid_t g = f >= 0 ? H5Gcreate2(f, "/targets", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
        hid_t s = H5Screate_simple(5, dims, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(pl, 5, chunk);
        char nm[64];
        snprintf(nm, sizeof nm, "/targets/%s", task);
        hid_t d = g >= 0 ? H5Dcreate2(f, nm, H5T_NATIVE_FLOAT, s, H5P_DEFAULT, pl, H5P_DEFAULT) : -1;
        if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, tgt) < 0) {
            printf("%s: cannot write %s\n", dst, nm);
            rc = 1;
        }
        if (d >= 0) H5Dclose(d);
        H5Pclose(pl);
        H5Sclose(s);
        if (g >= 0) H5Gclose(g);
        if (f >= 0) H5Fclose(f);
    }
    free(img); free(tgt); free(seg); free(seg8); free(relabel);
    return rc;
}

/* ---- config ------------------------------------------------------------------------------- */
static void write_config(const Task* t, const char* data, int seed, const char* path) {
    char y[4096];
    snprintf(y, sizeof y,
             "# written by tests/slow_learning_tasks.c\n"
             "run: {name: %s_s%d, out: %s/runs, seed: %d, overwrite: true, device: cpu}\n"
             "model: {preset: vit-tiny-3d, weights: null}\n"
             "%s\n"
             "data: {path: %s, fold: -1, augment: false, batch: %d, workers: 1}\n"
             "train: {epochs: %d, lr: %.6e, min_lr: %.6e, warmup_epochs: %.6e, weight_decay: %.6e,\n"
             "        layer_decay: 1.0, clip_grad: %.6e, drop_path: 0.0, accum_steps: 1,\n"
             "        precision: fp32, checkpoint_every: 1, keep_checkpoints: 1, early_stop_patience: 0}\n"
             "align: {every: 0}\n"
             "log: {swmr: off}\n",
             t->name, seed, g_work, seed, t->yaml_task, data, t->batch, t->epochs, t->lr, t->min_lr,
             t->warmup, WEIGHT_DECAY, CLIP);
    if (write_text(path, y)) printf("cannot write %s\n", path);
}

/* the peer's spec: the same numbers as the config (vit-tiny-3d written out as vit_oracle keys) */
static void write_spec(const Task* t, const char* data, const char* path) {
    char s[4096], head[512];
    if (!strcmp(t->name, "classify"))
        snprintf(head, sizeof head, "{\"kind\": \"mlp\", \"num_classes\": 2, \"hidden\": 256, \"pool\": \"mean\", \"batchnorm\": 0}");
    else
        snprintf(head, sizeof head, "{\"kind\": \"unetr\", \"num_classes\": %d, \"feature_size\": %d, "
                 "\"input_channel\": %d, \"output\": \"%s\", \"pe_axis\": 1}", t->num_classes, t->feature_size,
                 t->input_channel, !strcmp(t->name, "undistort") ? "field" : "image");
    snprintf(s, sizeof s,
             "{\"data\": \"%s\", \"task\": \"%s\",\n"
             " \"model\": {\"spatial_dims\": 3, \"img_size\": [32, 64, 64], \"patch\": [8, 16, 16], \"in_chans\": 3,"
             " \"dim\": 128, \"depth\": 4, \"heads\": 4, \"mlp_ratio\": 4.0, \"qkv_bias\": true, \"ln_eps\": 1e-06,"
             " \"cls_token\": true, \"num_registers\": 0, \"extra_tokens\": [], \"pos_embed\": \"learned\","
             " \"layerscale_init\": 0.0},\n"
             " \"head\": %s, \"identity_channel\": %d,\n"
             " \"loss\": \"%s\", \"w_ce\": 1.0, \"w_dice\": 1.0, \"epochs\": %d, \"batch\": %d, \"lr\": %.9g,"
             " \"min_lr\": %.9g, \"warmup_epochs\": %.9g, \"weight_decay\": %.9g, \"layer_decay\": 1.0,"
             " \"clip_grad\": %.9g, \"threads\": 2}\n",
             data, t->name, head, t->identity_channel, t->loss, t->epochs, t->batch, t->lr, t->min_lr,
             t->warmup, WEIGHT_DECAY, CLIP);
    if (write_text(path, s)) printf("cannot write %s\n", path);
}

/* ---- vita's init and data order for a seed (as engine/train.c builds them) ---------------- */
static int load_cfg(const char* yaml, Config* cfg) {
    char err[512];
    config_default(cfg);
    if (config_load(cfg, yaml, NULL, 0, err, sizeof err)) { printf("%s\n", err); return 1; }
    return 0;
}

static int write_init(const char* yaml, const char* path) {
    Config cfg;
    if (load_cfg(yaml, &cfg)) return 1;
    Ctx c;
    ctx_open(&c, "cpu", 0, 1);
    Vit m;
    vit_create(&m, &c, &cfg.vit);
    vit_init_weights(&m, cfg.seed);
    HeadConfig hc = cfg.head;
    hc.task = cfg.task;
    Head h;
    head_create(&h, &c, &hc, &m);
    head_init_weights(&h, cfg.seed);
    char err[512];
    int rc = train_save_weights(path, &m, &h, NULL, 0, err, sizeof err);
    if (rc) printf("%s\n", err);
    head_free(&h);
    vit_free(&m);
    ctx_close(&c);
    return rc;
}

/* the dataset indices of every training step, one line per step */
static int write_order(const char* yaml, const char* path, long* steps_out) {
    Config cfg;
    if (load_cfg(yaml, &cfg)) return 1;
    char err[512];
    Dataset ds;
    if (dataset_open(&ds, cfg.data_path, err, sizeof err)) { printf("%s\n", err); return 1; }
    LoaderConfig lc;
    loader_defaults(&lc);
    lc.task = cfg.task;           /* as engine/train.c's loader_cfg */
    for (int a = 0; a < 3; a++) lc.crop[a] = cfg.vit.img[a];
    lc.batch = cfg.batch;
    lc.pos_fraction = cfg.pos_fraction;
    lc.augment = cfg.augment;
    if (!cfg.augment) augment_none(&lc.aug);
    lc.split = SPLIT_TRAIN;
    lc.fold = cfg.fold;
    lc.seed = cfg.seed;
    lc.workers = 1;
    for (int c = 0; c < cfg.vit.in_chans; c++)
        snprintf(lc.channels + strlen(lc.channels), sizeof lc.channels - strlen(lc.channels), "%s%s",
                 c ? "," : "", cfg.vit.channels[c]);
    Loader L;
    if (loader_open(&L, &ds, &lc, err, sizeof err)) { printf("%s\n", err); dataset_close(&ds); return 1; }
    FILE* f = fopen(path, "w");
    Batch b;
    memset(&b, 0, sizeof b);
    long steps = (long)cfg.epochs * L.n_batches;
    int rc = !f;
    for (long s = 0; s < steps && !rc; s++) {
        if (loader_next(&L, &b, err, sizeof err)) { printf("%s\n", err); rc = 1; break; }
        for (int j = 0; j < b.n; j++) fprintf(f, "%s%d", j ? " " : "", b.case_idx[j]);
        fputc('\n', f);
    }
    if (f && fclose(f)) rc = 1;
    batch_free(&b);
    loader_close(&L);
    dataset_close(&ds);
    *steps_out = steps;
    return rc;
}

/* 0 when every tensor of a is in b with identical bits (and the counts agree) */
static long st_diff(const char* a, const char* b, char* what, size_t wlen) {
    char err[512];
    StFile fa, fb;
    if (st_open(&fa, a, err, sizeof err)) { snprintf(what, wlen, "%s", err); return -1; }
    if (st_open(&fb, b, err, sizeof err)) { snprintf(what, wlen, "%s", err); st_close(&fa); return -1; }
    long bad = 0;
    snprintf(what, wlen, "identical (%d tensors)", fa.n);
    if (fa.n != fb.n) { snprintf(what, wlen, "%d vs %d tensors", fa.n, fb.n); bad = 1; }
    for (int i = 0; i < fa.n && !bad; i++) {
        const StTensor* ta = &fa.t[i];
        const StTensor* tb = st_find(&fb, ta->name);
        if (!tb || tb->numel != ta->numel) { snprintf(what, wlen, "%s missing or resized", ta->name); bad = 1; break; }
        float* x = malloc(sizeof(float) * ta->numel);
        float* y = malloc(sizeof(float) * ta->numel);
        st_read_f32(&fa, ta, x);
        st_read_f32(&fb, tb, y);
        if (memcmp(x, y, sizeof(float) * ta->numel)) { snprintf(what, wlen, "%s differs", ta->name); bad = 1; }
        free(x); free(y);
    }
    st_close(&fa);
    st_close(&fb);
    return bad;
}

/* ---- the log ------------------------------------------------------------------------------ */
static int read_1d(const char* path, const char* name, double** out, long* n) {
    *out = NULL;
    *n = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) { H5Fclose(f); return 1; }
    hid_t s = H5Dget_space(d);
    hsize_t dims[4] = {0};
    int nd = H5Sget_simple_extent_dims(s, dims, NULL);
    long len = nd >= 1 ? (long)dims[0] : 0;
    for (int k = 1; k < nd; k++) len *= (long)dims[k];
    *out = malloc(sizeof(double) * (len ? len : 1));
    int rc = H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0;
    *n = nd >= 1 ? (long)dims[0] : 0;
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    return rc;
}

/* ---- peer runs and calibration ------------------------------------------------------------ */
static double jnum(const cJSON* o, const char* k) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static double mean_of(const double* x, int n) { double s = 0; for (int i = 0; i < n; i++) s += x[i]; return s / n; }
static double sd_of(const double* x, int n) {
    double m = mean_of(x, n), s = 0;
    for (int i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return n > 1 ? sqrt(s / (n - 1)) : 0;
}

/* runs the peer for seeds 0..N_SEEDS-1 and returns the task's calibration entry (NULL on failure) */
static cJSON* calibrate_task(const Task* t, const char* data, const char* dir) {
    cJSON* e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "metric", t->metric);
    cJSON *finals = cJSON_AddArrayToObject(e, "final"), *bests = cJSON_AddArrayToObject(e, "best"),
          *l0 = cJSON_AddArrayToObject(e, "first_step_loss"), *curves = cJSON_AddArrayToObject(e, "curves"),
          *times = cJSON_AddArrayToObject(e, "time_s");
    double fin[N_SEEDS], triv = NAN, ident = NAN;
    long steps = 0;
    for (int s = 0; s < N_SEEDS; s++) {
        char yaml[1024], init[1024], order[1024], spec[1024], res[1024], log[1024], cmd[8192];
        snprintf(yaml, sizeof yaml, "%s/%s_s%d.yaml", dir, t->name, s);
        snprintf(init, sizeof init, "%s/%s_s%d.init.safetensors", dir, t->name, s);
        snprintf(order, sizeof order, "%s/%s_s%d.order.txt", dir, t->name, s);
        snprintf(spec, sizeof spec, "%s/%s.spec.json", dir, t->name);
        snprintf(res, sizeof res, "%s/%s_s%d.peer.json", dir, t->name, s);
        snprintf(log, sizeof log, "%s/%s_s%d.peer.log", dir, t->name, s);
        write_config(t, data, s, yaml);
        write_spec(t, data, spec);
        if (write_init(yaml, init) || write_order(yaml, order, &steps)) { cJSON_Delete(e); return NULL; }
        snprintf(cmd, sizeof cmd, "%s %s --spec %s --seed %d --init %s --order %s --out %s", g_python, PEER,
                 spec, s, init, order, res);
        printf("peer %s seed %d: %ld steps ...\n", t->name, s, steps);
        if (run_logged(cmd, log)) { cJSON_Delete(e); return NULL; }
        char* txt = read_text(res);
        cJSON* r = txt ? cJSON_Parse(txt) : NULL;
        free(txt);
        if (!r) { printf("cannot read %s\n", res); cJSON_Delete(e); return NULL; }
        fin[s] = jnum(r, "final");
        triv = jnum(r, "trivial");
        ident = jnum(r, "identity");
        cJSON_AddItemToArray(finals, cJSON_CreateNumber(fin[s]));
        cJSON_AddItemToArray(bests, cJSON_CreateNumber(jnum(r, "best")));
        const cJSON* sl = cJSON_GetObjectItemCaseSensitive(r, "step_loss");
        cJSON_AddItemToArray(l0, cJSON_CreateNumber(cJSON_IsArray(sl) && cJSON_GetArraySize(sl) > 0
                                                        ? cJSON_GetArrayItem(sl, 0)->valuedouble : NAN));
        cJSON_AddItemToArray(curves, cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r, "val_metric"), 1));
        cJSON_AddItemToArray(times, cJSON_CreateNumber(jnum(r, "time_s")));
        printf("peer %s seed %d: final %s %.4f (best %.4f), trivial %.4f, %.0f s\n", t->name, s, t->metric, fin[s],
               jnum(r, "best"), triv, jnum(r, "time_s"));
        cJSON_Delete(r);
    }
    double m = mean_of(fin, N_SEEDS), sd = sd_of(fin, N_SEEDS), hw = fmax(3 * sd, t->floor);
    cJSON_AddNumberToObject(e, "steps", (double)steps);
    cJSON_AddNumberToObject(e, "mean", m);
    cJSON_AddNumberToObject(e, "sd", sd);
    cJSON_AddNumberToObject(e, "floor", t->floor);
    cJSON_AddNumberToObject(e, "lo", m - hw);
    cJSON_AddNumberToObject(e, "hi", m + hw);
    cJSON_AddNumberToObject(e, "trivial", triv);
    if (ident == ident) cJSON_AddNumberToObject(e, "identity", ident);
    cJSON_AddNumberToObject(e, "margin", t->margin);
    return e;
}

/* ---- main --------------------------------------------------------------------------------- */
int main(void) {
    const char* b = getenv("VITA_BUILD");
    snprintf(g_build, sizeof g_build, "%s", b && *b ? b : "build");
    snprintf(g_work, sizeof g_work, "%s/learn", g_build);
    snprintf(g_vita, sizeof g_vita, "%s/vita", g_build);
    const char* py = getenv("PYTHON");
    snprintf(g_python, sizeof g_python, "%s", py && *py ? py : "/usr/bin/python3");
    int calibrate = getenv("VITA_CALIBRATE") && !strcmp(getenv("VITA_CALIBRATE"), "1");
    double t_start = now_s();
    char cmd[4096], err[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/runs", g_work, g_work);
    if (system(cmd)) { printf("cannot make %s\n", g_work); return 1; }

    /* (1) phantoms of 32x64x64 (vit-tiny-3d's input) */
    char phantom[1024], phantom_cls[1024];
    snprintf(phantom, sizeof phantom, "%s/phantom.h5", g_work);
    snprintf(phantom_cls, sizeof phantom_cls, "%s/phantom_cls.h5", g_work);
    PhantomSpec ps;
    phantom_default(&ps);
    ps.seed = PHANTOM_SEED;
    ps.quiet = 1;
    ps.n = PHANTOM_CASES;
    int ok = !phantom_write(phantom, &ps, "slow_learning_tasks", err, sizeof err);
    if (ok && want_task("classify")) {
        ps.n = PHANTOM_CLS_CASES;
        ok = !phantom_write(phantom_cls, &ps, "slow_learning_tasks", err, sizeof err);
    }
    if (!t_true("phantom datasets written", ok)) {
        printf("%s\n", err);
        return t_summary();
    }

    /* (4) calibration: the committed file, or a new one */
    cJSON* cal = NULL;
    if (!calibrate) {
        char* txt = read_text(CALIB);
        cal = txt ? cJSON_Parse(txt) : NULL;
        free(txt);
        if (!t_true("calibration " CALIB " read (VITA_CALIBRATE=1 writes it)", cal != NULL)) return t_summary();
    } else {   /* rewrites the tasks run (VITA_LEARN_TASKS), keeps the other entries */
        char* txt = read_text(CALIB);
        cJSON* old = txt ? cJSON_Parse(txt) : NULL;
        free(txt);
        cJSON* old_tasks = old ? cJSON_DetachItemFromObjectCaseSensitive(old, "tasks") : NULL;
        cJSON_Delete(old);
        cal = cJSON_CreateObject();
        char date[64];
        time_t now = time(NULL);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        cJSON_AddStringToObject(cal, "what",
            "PyTorch peer (tests/oracle/learn_peer.py) of vita train on phantoms, vit-tiny-3d from scratch on "
            "the CPU: per task the final val metric for seeds 0,1,2 (seed s = vita's init and loader order "
            "for run.seed s), mean, SD, band [lo, hi] = mean +- max(3 SD, floor), the trivial predictor "
            "(classify: constant score; segment: all background; image tasks: the mean training target), "
            "identity = the degraded input as the prediction (superres, undistort), margin = how far above "
            "trivial vita must be");
        cJSON_AddStringToObject(cal, "command", "VITA_CALIBRATE=1 make test-slow  (or VITA_CALIBRATE=1 "
                                                "VITA_BUILD=build build/tests/slow_learning_tasks)");
        cJSON_AddStringToObject(cal, "produced", date);
        cJSON_AddNumberToObject(cal, "phantom_cases", PHANTOM_CASES);
        cJSON_AddNumberToObject(cal, "phantom_cases_classify", PHANTOM_CLS_CASES);
        cJSON_AddNumberToObject(cal, "phantom_seed", PHANTOM_SEED);
        cJSON_AddStringToObject(cal, "phantom_size", "32,64,64");
        cJSON_AddItemToObject(cal, "tasks", cJSON_IsObject(old_tasks) ? old_tasks : cJSON_CreateObject());
        if (!cJSON_IsObject(old_tasks)) cJSON_Delete(old_tasks);
    }
    cJSON* ctasks = cJSON_GetObjectItemCaseSensitive(cal, "tasks");

    double res_vita[N_TASKS], res_mean[N_TASKS], res_sd[N_TASKS], res_triv[N_TASKS], res_time[N_TASKS];
    int ran[N_TASKS] = {0};
    for (int k = 0; k < N_TASKS; k++) {
        const Task* t = &TASKS[k];
        if (!want_task(t->name)) continue;
        printf("=== %s (%s)\n", t->name, t->metric);
        /* (2) data */
        char data[1024];
        if (!strcmp(t->name, "segment")) {
            snprintf(data, sizeof data, "%s", phantom);
        } else {
            snprintf(data, sizeof data, "%s/%s.h5", g_work, t->name);
            char what[128];
            snprintf(what, sizeof what, "%s: dataset %s written", t->name,
                     strcmp(t->name, "classify") ? "with explicit inputs + targets" : "with gland-size labels");
            if (!t_true(what, !write_derived(strcmp(t->name, "classify") ? phantom : phantom_cls, data, t->name)))
                continue;
        }
        if (calibrate) {
            cJSON* e = calibrate_task(t, data, g_work);
            char what[128];
            snprintf(what, sizeof what, "%s: %d PyTorch seeds ran", t->name, N_SEEDS);
            if (!t_true(what, e != NULL)) continue;
            cJSON_DeleteItemFromObjectCaseSensitive(ctasks, t->name);
            cJSON_AddItemToObject(ctasks, t->name, e);
        }
        cJSON* e = cJSON_GetObjectItemCaseSensitive(ctasks, t->name);
        {
            char what[128];
            snprintf(what, sizeof what, "%s: calibration entry present", t->name);
            if (!t_true(what, e != NULL)) continue;
        }
        /* (3) vita, seed 0 */
        char yaml[1024], log[1024], logh5[1024], init[1024], vinit[1024];
        snprintf(yaml, sizeof yaml, "%s/%s_s0.yaml", g_work, t->name);
        snprintf(log, sizeof log, "%s/%s_s0.vita.log", g_work, t->name);
        snprintf(logh5, sizeof logh5, "%s/runs/%s_s0/log.h5", g_work, t->name);
        snprintf(init, sizeof init, "%s/%s_s0.init.safetensors", g_work, t->name);
        snprintf(vinit, sizeof vinit, "%s/runs/%s_s0/checkpoints/init.safetensors", g_work, t->name);
        write_config(t, data, 0, yaml);
        double t0 = now_s();
        snprintf(cmd, sizeof cmd, "%s train %s --quiet --threads 2", g_vita, yaml);
        int rc = run_logged(cmd, log);
        res_time[k] = now_s() - t0;
        char what[256];
        snprintf(what, sizeof what, "%s: vita train exits 0 (%.0f s)", t->name, res_time[k]);
        if (!t_true(what, rc == 0)) continue;
        double *curve = NULL, *sloss = NULL;
        long n = 0, ns = 0;
        snprintf(what, sizeof what, "%s: /epochs/val_metric read (epochs 0..%d)", t->name, t->epochs);
        if (!t_true(what, !read_1d(logh5, "/epochs/val_metric", &curve, &n) && n == t->epochs + 1)) {
            free(curve);
            continue;
        }
        read_1d(logh5, "/steps/loss", &sloss, &ns);
        /* same start as the peer: vita's init == the harness's, first-step loss == the peer's */
        if (access(init, R_OK) && write_init(yaml, init)) printf("cannot write %s\n", init);
        char diff[600];
        long bad = st_diff(init, vinit, diff, sizeof diff);
        snprintf(what, sizeof what, "%s: vita's init.safetensors = the peer's init (%.150s)", t->name, diff);
        t_true(what, bad == 0);
        const cJSON* l0 = cJSON_GetObjectItemCaseSensitive(e, "first_step_loss");
        double pl0 = cJSON_IsArray(l0) && cJSON_GetArraySize(l0) ? cJSON_GetArrayItem(l0, 0)->valuedouble : NAN;
        double vl0 = ns > 0 ? sloss[0] : NAN;
        snprintf(what, sizeof what, "%s: first-step loss vita %.6f vs peer %.6f (relative difference)", t->name, vl0, pl0);
        t_check(what, fabs(vl0 - pl0) / fmax(fabs(pl0), 1e-12), 1e-3);
        /* (5) the checks */
        double fin = curve[n - 1], best = -INFINITY;
        for (long i = 1; i < n; i++) best = fmax(best, curve[i]);
        /* the band and margin use this file's floor and margin (the JSON records the values used
         * when it was written) */
        double mean = jnum(e, "mean"), sd = jnum(e, "sd"), hw = fmax(3 * sd, t->floor), lo = mean - hw,
               hi = mean + hw, triv = jnum(e, "trivial"), margin = t->margin, ident = jnum(e, "identity");
        printf("%s: vita final %s %.4f (best %.4f, epoch 0 %.4f) | PyTorch %.4f +- %.4f (3 seeds), band "
               "[%.4f, %.4f] | trivial %.4f%s", t->name, t->metric, fin, best, curve[0], mean, sd, lo, hi, triv,
               ident == ident ? "" : "\n");
        if (ident == ident) printf(" | identity %.4f\n", ident);
        const cJSON* pf = cJSON_GetObjectItemCaseSensitive(e, "final");
        if (cJSON_IsArray(pf) && cJSON_GetArraySize(pf) > 0)   /* same init and order: informative, not a check */
            printf("%s: vita seed 0 %.4f vs PyTorch seed 0 %.4f (same init and batches; float summation orders differ)\n",
                   t->name, fin, cJSON_GetArrayItem(pf, 0)->valuedouble);
        snprintf(what, sizeof what, "%s: vita %s %.4f within the PyTorch band [%.4f, %.4f]", t->name, t->metric, fin, lo, hi);
        t_true(what, fin >= lo && fin <= hi);
        snprintf(what, sizeof what, "%s: vita %s %.4f >= trivial %.4f + %.2f", t->name, t->metric, fin, triv, margin);
        t_true(what, fin >= triv + margin);
        res_vita[k] = fin; res_mean[k] = mean; res_sd[k] = sd; res_triv[k] = triv;
        ran[k] = 1;
        free(curve);
        free(sloss);
    }
    if (calibrate) {
        char* txt = cJSON_Print(cal);
        char* full = malloc(strlen(txt) + 2);
        sprintf(full, "%s\n", txt);
        t_true("calibration written to " CALIB, !write_text(CALIB, full));
        free(full);
        free(txt);
    }
    cJSON_Delete(cal);
    printf("\n%-11s %-6s %10s %20s %10s %8s\n", "task", "metric", "vita", "PyTorch mean +- SD", "trivial", "vita s");
    for (int k = 0; k < N_TASKS; k++)
        if (ran[k])
            printf("%-11s %-6s %10.4f %11.4f +- %6.4f %10.4f %8.0f\n", TASKS[k].name, TASKS[k].metric, res_vita[k],
                   res_mean[k], res_sd[k], res_triv[k], res_time[k]);
    printf("total %.0f s\n", now_s() - t_start);
    return t_summary();
}
