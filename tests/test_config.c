/* tests/test_config.c — the run configuration (engine/config.c, SPEC.md §7): defaults, presets,
 * file + --set precedence, derived defaults, one-line errors of every class (naming file:line
 * and key), the emit -> load -> emit round trip (byte-identical), PyYAML reading the emitted
 * YAML with the intended types, and the example configs. */
#include <ctype.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "../engine/config.h"
#include "../engine/dataset.h"
#include "../engine/loader.h"
#include "testing.h"

static char g_dir[64];

static const char* tmp_path(const char* name) {
    static char p[4][256];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static const char* write_tmp(const char* name, const char* text) {
    const char* p = tmp_path(name);
    FILE* f = fopen(p, "w");
    if (!f) { perror(p); exit(2); }
    fputs(text, f);
    fclose(f);
    return p;
}

static char* slurp(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* s = malloc(n + 1);
    size_t got = fread(s, 1, n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

/* loads text (NULL: no file) written as run.yaml, with sets; returns config_load's code */
static int load(Config* c, const char* text, int n, const char* const* sets, char* err, size_t el) {
    const char* p = text ? write_tmp("run.yaml", text) : NULL;
    return config_load(c, p, sets, n, err, el);
}

/* expects an error containing every substring (NULL-terminated varargs), on one line */
static void expect_err(const char* what, const char* text, int n, const char* const* sets, ...) {
    Config c;
    char err[1024] = "";
    int rc = load(&c, text, n, sets, err, sizeof err);
    int ok = rc == 1 && !strchr(err, '\n') && err[0];
    va_list ap;
    va_start(ap, sets);
    const char* missing = NULL;
    for (const char* s = va_arg(ap, const char*); s; s = va_arg(ap, const char*))
        if (!strstr(err, s) && !missing) missing = s;
    va_end(ap);
    char line[1400];
    snprintf(line, sizeof line, "error %-28s %s%s%s", what, err, missing ? "   [MISSING: " : "",
             missing ? missing : "");
    if (missing) snprintf(line + strlen(line), sizeof line - strlen(line), "]");
    t_true(line, ok && !missing);
}

/* emit -> load -> emit is byte-identical; returns the first emission (malloc'd) */
static char* round_trip(const char* what, const Config* c) {
    char* y1 = config_to_yaml(c);
    const char* p = write_tmp("rt.yaml", y1);
    Config c2;
    char err[1024] = "";
    int rc = config_load(&c2, p, NULL, 0, err, sizeof err);
    char* y2 = rc ? NULL : config_to_yaml(&c2);
    char msg[1300];
    snprintf(msg, sizeof msg, "round trip %s%s%s", what, rc ? ": " : "", rc ? err : "");
    int same = y2 && !strcmp(y1, y2);
    t_true(msg, same);
    if (!same && y2) {   /* show the first difference */
        size_t i = 0;
        while (y1[i] && y1[i] == y2[i]) i++;
        printf("  first difference at byte %zu: ...%.40s... vs ...%.40s...\n", i, y1 + i, y2 + i);
    }
    free(y2);
    return y1;
}

/* ---- tests ---------------------------------------------------------------------------------- */
static void test_defaults(void) {
    Config d, c;
    char err[1024] = "";
    config_default(&d);
    int rc = config_load(&c, NULL, NULL, 0, err, sizeof err);
    t_true("defaults load (no file, no --set)", rc == 0);
    t_true("config_load(NULL) == config_default", !memcmp(&c, &d, sizeof c));
    t_true("default preset vit-tiny-3d: 32x64x64, patch 8x16x16, dim 128, depth 4",
           !strcmp(c.model_preset, "vit-tiny-3d") && c.vit.img[0] == 32 && c.vit.img[2] == 64 &&
           c.vit.patch[0] == 8 && c.vit.patch[1] == 16 && c.vit.dim == 128 && c.vit.depth == 4);
    t_true("default train: lr 1e-4, min_lr 1e-6, 50 epochs, warmup 5, wd 0.05, decay 0.75",
           c.lr == 1e-4 && c.min_lr == 1e-6 && c.epochs == 50 && c.warmup_epochs == 5 &&
           c.weight_decay == 0.05 && c.layer_decay == 0.75 && c.mode == TRAIN_FULL &&
           c.clip_grad == 1.0 && c.accum_steps == 1 && c.drop_path == 0.1 &&
           !strcmp(c.precision, "auto") && c.keep_checkpoints == 3);
    t_true("default task classify: mlp head, 2 classes, ce, auroc",
           c.task == HEAD_CLASSIFY && c.head.task == HEAD_CLASSIFY && c.head.kind == HEAD_KIND_MLP &&
           c.head.num_classes == 2 && !strcmp(c.loss_kind, "ce") && !strcmp(c.metric, "auroc"));
    t_true("default data: volume, context 1, crop = img_size, channels t2w,adc,hbv, fold -1",
           c.input_mode == LOADER_VOLUME && c.input_context == 1 && c.crop[0] == 32 &&
           c.crop[1] == 64 && c.crop[2] == 64 && !strcmp(c.channels, "t2w,adc,hbv") &&
           c.fold == -1 && c.batch == 4 && c.workers == 2 && c.augment == 1 &&
           c.pos_fraction == 0.33 && !strcmp(c.data_path, "data.h5"));
    t_true("default align: layers [1,2,3,4,norm], 5 estimators, median, scales 0.5/1/2",
           c.n_align_layers == 5 && c.align_layers[0] == 1 && c.align_layers[3] == 4 &&
           c.align_layers[4] == 0 && c.n_estimators == 5 && c.estimators[0] == EST_MMD2_PAIRED &&
           c.estimators[4] == EST_MEAN_COS_DIST && c.bw_rule == MMD_BW_MEDIAN && c.n_scales == 3 &&
           c.scales[0] == 0.5 && c.scales[2] == 2.0 && c.probe_split == SPLIT_VAL &&
           c.probe_n_images == 256 && c.probe_n_tokens == 16384 && c.align_every == 1);
    t_true("default run/log/dist: name run, out runs/, device auto, swmr auto, backend none",
           !strcmp(c.run_name, "run") && !strcmp(c.run_out, "runs/") && !strcmp(c.device, "auto") &&
           !strcmp(c.log_swmr, "auto") && !strcmp(c.dist_backend, "none") && !c.model_weights[0] &&
           c.sw_overlap == 0.5 && !strcmp(c.sw_weighting, "gaussian"));
    char* y = config_to_yaml(&c);
    t_true("emission writes 1.0e-04 for train.lr (never 1e-4)", strstr(y, "  lr: 1.0e-04\n") != NULL);
    t_true("emission writes model.weights: null and align layers [1, 2, 3, 4, norm]",
           strstr(y, "weights: null") && strstr(y, "layers: [1, 2, 3, 4, norm]"));
    free(y);
}

static void test_presets(void) {
    static const char* const presets[] = {"vit-tiny-3d", "profound-vit-b", "provicnet-vit-s14",
                                          "vit-s16", "vit-b16"};
    static const char* const tasks[] = {"classify", "segment", "superres", "undistort", "synthesize"};
    int all_ok = 1, all_rt = 1;
    for (int p = 0; p < 5; p++)
        for (int t = 0; t < 5; t++) {
            char s1[64], s2[64];
            snprintf(s1, sizeof s1, "model.preset=%s", presets[p]);
            snprintf(s2, sizeof s2, "task.name=%s", tasks[t]);
            const char* sets[] = {s1, s2};
            Config c;
            char err[1024] = "";
            if (config_load(&c, NULL, sets, 2, err, sizeof err)) {
                printf("  %s + %s: %s\n", presets[p], tasks[t], err);
                all_ok = 0;
                continue;
            }
            int dims = c.vit.spatial_dims;
            int kind_ok = t == 0 ? c.head.kind == HEAD_KIND_MLP
                        : t == 1 ? c.head.kind == (dims == 2 ? HEAD_KIND_PUP : HEAD_KIND_UNETR)
                        : c.head.kind == HEAD_KIND_UNETR;
            const char* loss = t == 0 ? "ce" : t == 1 ? "dice_ce" : "l1";
            const char* metric = t == 0 ? "auroc" : t == 1 ? "dice" : "psnr";
            int ok = kind_ok && !strcmp(c.loss_kind, loss) && !strcmp(c.metric, metric) &&
                     c.head.num_classes == (t <= 1 ? 2 : 1) && c.head.task == t &&
                     c.input_mode == (dims == 2 ? LOADER_SLICE : LOADER_VOLUME) &&
                     !memcmp(c.crop, c.vit.img, sizeof c.crop);
            if (!ok) { printf("  %s + %s: wrong derived defaults\n", presets[p], tasks[t]); all_ok = 0; }
            char what[96];
            snprintf(what, sizeof what, "%s + %s", presets[p], tasks[t]);
            char* y1 = config_to_yaml(&c);
            const char* path = write_tmp("rt.yaml", y1);
            Config c2;
            char* y2 = config_load(&c2, path, NULL, 0, err, sizeof err) ? NULL : config_to_yaml(&c2);
            if (!y2 || strcmp(y1, y2)) {
                printf("  round trip %s failed: %s\n", what, y2 ? "differs" : err);
                all_rt = 0;
            }
            free(y1);
            free(y2);
        }
    t_true("5 presets x 5 tasks load with the task's head / loss / metric / input defaults", all_ok);
    t_true("5 presets x 5 tasks: emit -> load -> emit byte-identical", all_rt);

    Config c;
    char err[1024];
    const char* s_pf[] = {"model.preset=profound-vit-b"};
    config_load(&c, NULL, s_pf, 1, err, sizeof err);
    t_true("profound-vit-b: 64x256x256 / 16x32x32, dim 768, sincos, channels t2w,hbv,adc",
           c.vit.img[0] == 64 && c.vit.img[1] == 256 && c.vit.patch[0] == 16 && c.vit.patch[2] == 32 &&
           c.vit.dim == 768 && c.vit.depth == 12 && c.vit.pos_embed == VIT_POS_SINCOS &&
           !strcmp(c.vit.channels[1], "hbv") && !strcmp(c.channels, "t2w,hbv,adc") &&
           c.n_align_layers == 5 && c.align_layers[0] == 3 && c.align_layers[1] == 6 &&
           c.align_layers[2] == 9 && c.align_layers[3] == 12 && c.align_layers[4] == 0);
    const char* s_pv[] = {"model.preset=provicnet-vit-s14", "task.name=segment"};
    config_load(&c, NULL, s_pv, 2, err, sizeof err);
    t_true("provicnet-vit-s14: 2D 448/14, slice mode, context 3, data.channels t2w, pup head",
           c.vit.spatial_dims == 2 && c.vit.img[0] == 1 && c.vit.img[1] == 448 && c.vit.patch[1] == 14 &&
           c.vit.num_registers == 4 && c.vit.num_extra == 2 && c.input_mode == LOADER_SLICE &&
           c.input_context == 3 && !strcmp(c.channels, "t2w") && c.head.kind == HEAD_KIND_PUP &&
           c.crop[0] == 1 && c.crop[1] == 448);
    const char* s_s16[] = {"model.preset=vit-s16"};
    config_load(&c, NULL, s_s16, 1, err, sizeof err);
    t_true("vit-s16: 2D 224/16, dim 384, 6 heads, slice mode, context 1",
           c.vit.dim == 384 && c.vit.heads == 6 && c.vit.img[1] == 224 && c.input_mode == LOADER_SLICE &&
           c.input_context == 1);
    const char* s_b16[] = {"model.preset=vit-b16"};
    config_load(&c, NULL, s_b16, 1, err, sizeof err);
    t_true("vit-b16: dim 768, depth 12, 12 heads",
           c.vit.dim == 768 && c.vit.depth == 12 && c.vit.heads == 12);
}

static void test_precedence(void) {
    Config c;
    char err[1024] = "";
    const char* text =
        "model:\n  preset: vit-tiny-3d\n  depth: 6\ntrain:\n  lr: 3e-4\n  epochs: 7\n"
        "task:\n  name: segment\n";
    const char* sets[] = {"train.lr=5.0e-4", "model.preset=vit-b16", "train.lr=6e-4",
                          "data.batch=2"};
    int rc = load(&c, text, 4, sets, err, sizeof err);
    if (rc) printf("  %s\n", err);
    t_true("file + --set: later --set wins (lr 6e-4), file keeps the rest (epochs 7)",
           rc == 0 && c.lr == 6e-4 && c.epochs == 7 && c.batch == 2);
    t_true("--set model.preset (vit-b16) expands first; the file's model.depth 6 applies after it",
           rc == 0 && !strcmp(c.model_preset, "vit-b16") && c.vit.dim == 768 && c.vit.depth == 6);
    t_true("derived: align.layers for depth 6 = [2, 3, 5, 6, norm]",
           rc == 0 && c.n_align_layers == 5 && c.align_layers[0] == 2 && c.align_layers[1] == 3 &&
           c.align_layers[2] == 5 && c.align_layers[3] == 6 && c.align_layers[4] == 0);
    t_true("derived: segment on a 2D model -> pup head, dice_ce, dice, slice mode",
           rc == 0 && c.head.kind == HEAD_KIND_PUP && !strcmp(c.loss_kind, "dice_ce") &&
           !strcmp(c.metric, "dice") && c.input_mode == LOADER_SLICE);

    const char* sets2[] = {"train={lr: 2.0e-4, epochs: 6}", "task.metric=hd95", "task.head.kind=unetr",
                           "align.layers=[1, norm]", "data.channels=[t2w]", "model.channels=[t2w]",
                           "run.seed=18446744073709551615"};
    rc = load(&c, "task:\n  name: segment\n", 7, sets2, err, sizeof err);
    if (rc) printf("  %s\n", err);
    t_true("--set of a section as a flow mapping; explicit metric/head/layers/channels kept",
           rc == 0 && c.lr == 2e-4 && c.epochs == 6 && !strcmp(c.metric, "hd95") &&
           c.head.kind == HEAD_KIND_UNETR && c.n_align_layers == 2 && c.align_layers[1] == 0 &&
           !strcmp(c.channels, "t2w") && c.vit.in_chans == 1 && c.seed == UINT64_MAX);

    rc = load(&c, "train.lr: 2.5e-4\ntask.head:\n  kind: linear\n", 0, NULL, err, sizeof err);
    t_true("dotted keys in the file (train.lr:, task.head:)",
           rc == 0 && c.lr == 2.5e-4 && c.head.kind == HEAD_KIND_LINEAR);
    rc = load(&c, "# only a comment\n", 0, NULL, err, sizeof err);
    t_true("an empty file gives the defaults", rc == 0 && c.lr == 1e-4);
    rc = load(&c, "train:\nalign:\n  every: 2\n", 0, NULL, err, sizeof err);
    t_true("an empty section (train:) is accepted", rc == 0 && c.align_every == 2);
    rc = load(&c, "model:\n  weights: null\ntrain:\n  precision: bf16\n  skip_nonfinite: yes\n"
                  "log:\n  swmr: off\n", 0, NULL, err, sizeof err);
    t_true("null weights, bf16 precision, yes/off plain scalars",
           rc == 0 && !c.model_weights[0] && !strcmp(c.precision, "bf16") && c.skip_nonfinite == 1 &&
           !strcmp(c.log_swmr, "off"));
}

static void test_errors(void) {
    expect_err("unknown key", "train:\n  lr: 1.0e-04\n  lrr: 2\n", 0, NULL,
               "unknown key train.lrr", "run.yaml:3", "did you mean train.lr?", NULL);
    expect_err("unknown section", "trian:\n  lr: 1\n", 0, NULL, "unknown key trian", "run.yaml:1",
               "did you mean train?", NULL);
    expect_err("misplaced key", "lr: 1\n", 0, NULL, "unknown key lr", "run.yaml:1",
               "did you mean train.lr?", NULL);
    const char* s_unk[] = {"train.warmup=3"};
    expect_err("unknown key in --set", NULL, 1, s_unk, "unknown key train.warmup",
               "--set train.warmup=3", "did you mean train.warmup_epochs?", NULL);
    expect_err("wrong type: integer", "train:\n  epochs: 1.5\n", 0, NULL, "train.epochs = 1.5",
               "run.yaml:2", "expected an integer", NULL);
    expect_err("wrong type: number", "train:\n  lr: fast\n", 0, NULL, "train.lr = fast",
               "run.yaml:2", "expected a number", NULL);
    expect_err("wrong type: quoted number", "train:\n  lr: \"1e-4\"\n", 0, NULL, "train.lr",
               "run.yaml:2", "quoted", NULL);
    expect_err("wrong type: bool", "run:\n  deterministic: maybe\n", 0, NULL,
               "run.deterministic = maybe", "run.yaml:2", "expected true or false", NULL);
    expect_err("wrong type: list for scalar", "train:\n  lr: [1, 2]\n", 0, NULL, "train.lr",
               "run.yaml:2", "not a list", NULL);
    expect_err("wrong type: mapping for value", "train:\n  lr:\n    a: 1\n", 0, NULL, "train.lr",
               "run.yaml:3", "not a mapping", NULL);
    expect_err("wrong type: value for section", "train: 5\n", 0, NULL, "train = 5", "run.yaml:1",
               "is a section", "train.epochs", NULL);
    expect_err("wrong type: scalar for list", "model:\n  img_size: 64\n", 0, NULL,
               "model.img_size = 64", "run.yaml:2", "expected a list", NULL);
    expect_err("out of range", "train:\n  layer_decay: 1.5\n", 0, NULL, "train.layer_decay = 1.5",
               "run.yaml:2", "must be in (0, 1]", NULL);
    expect_err("out of range (int)", "data:\n  batch: 0\n", 0, NULL, "data.batch = 0",
               "run.yaml:2", "must be in [1, 65536]", NULL);
    expect_err("out of range (list element)", "align:\n  bandwidths:\n    scales: [1, -2]\n", 0, NULL,
               "align.bandwidths.scales", "run.yaml:3", "element 1", "must be in (0", NULL);
    expect_err("bad enum", "train:\n  mode: fulll\n", 0, NULL, "train.mode = fulll", "run.yaml:2",
               "must be one of full, linear_probe, freeze_first_k", "did you mean full?", NULL);
    expect_err("bad enum (estimators)", "align:\n  estimators: [mmd2_u, mmd3]\n", 0, NULL,
               "align.estimators", "run.yaml:2", "unknown estimator mmd3", "mmd2_paired_se",
               "cka_linear", NULL);
    expect_err("not built: dist.backend nccl", "dist:\n  backend: nccl\n", 0, NULL,
               "dist.backend = nccl", "run.yaml:2", "not built yet",
               "arrives with distributed training", "use none", NULL);
    const char* s_mpi[] = {"dist.backend=mpi"};
    expect_err("not built: --set mpi", NULL, 1, s_mpi, "dist.backend = mpi", "--set dist.backend=mpi",
               "not built yet", NULL);
    expect_err("not built: crop != img_size", "data:\n  crop: [16, 64, 64]\n", 0, NULL,
               "data.crop", "not built yet", "run.yaml:2", NULL);
    expect_err("anchor", "train: &t\n  lr: 1.0e-04\n", 0, NULL, "anchor &t", "at train",
               "run.yaml:1", "not supported", NULL);
    expect_err("alias", "train:\n  lr: 1.0e-04\n  min_lr: *x\n", 0, NULL, "alias *x",
               "train.min_lr", "run.yaml:3", "not supported", NULL);
    expect_err("merge key", "train:\n  <<: {lr: 1.0e-04}\n", 0, NULL, "merge key <<", "at train",
               "run.yaml:2", NULL);
    expect_err("tag", "train:\n  lr: !!float 1\n", 0, NULL, "tag", "train.lr", "run.yaml:2", NULL);
    expect_err("duplicate key", "train:\n  lr: 1.0e-04\n  epochs: 2\n  lr: 2.0e-04\n", 0, NULL,
               "duplicate key train.lr", "run.yaml:4", "line 2", NULL);
    expect_err("duplicate key (dotted + nested)", "train:\n  lr: 1.0e-04\ntrain.lr: 2.0e-04\n", 0,
               NULL, "duplicate key train.lr", "run.yaml:3", NULL);
    expect_err("duplicate section", "train:\n  lr: 1.0e-04\ndata:\n  batch: 2\ntrain:\n  epochs: 3\n",
               0, NULL, "duplicate key train", "run.yaml:5", NULL);
    expect_err("malformed YAML", "train:\n  lr: 1.0e-04\n  epochs: [3\ndata:\n  batch: 2\n", 0, NULL,
               "malformed YAML", "run.yaml:", "train.epochs", NULL);
    expect_err("malformed YAML (tab)", "train:\n\tlr: 1\n", 0, NULL, "malformed YAML", "run.yaml:2", NULL);
    expect_err("malformed YAML (bad indent)", "train:\n  lr: 1\n epochs: 2\n", 0, NULL,
               "malformed YAML", "run.yaml:3", NULL);
    expect_err("two documents", "train:\n  lr: 1.0e-04\n---\ntrain:\n  lr: 2.0e-04\n", 0, NULL,
               "second YAML document", "run.yaml:3", NULL);
    expect_err("top level not a mapping", "- a\n- b\n", 0, NULL, "run.yaml:1", "mapping", NULL);
    const char* s_noeq[] = {"train.lr"};
    expect_err("--set without =", NULL, 1, s_noeq, "--set train.lr", "KEY=VALUE", NULL);
    const char* s_bad[] = {"model.img_size=[32, 64"};
    expect_err("--set malformed value", NULL, 1, s_bad, "malformed YAML", "--set model.img_size", NULL);
    const char* s_empty[] = {"run.name="};
    expect_err("--set empty value", NULL, 1, s_empty, "run.name", "must not be empty", NULL);
    {
        Config c;
        char err[1024] = "";
        int rc = config_load(&c, tmp_path("does-not-exist.yaml"), NULL, 0, err, sizeof err);
        t_true("missing file: one line naming it", rc == 1 && strstr(err, "does-not-exist.yaml") &&
               strstr(err, "cannot read"));
    }
    /* cross-field: the key and where it was set */
    expect_err("classify with 1 class", "task:\n  num_classes: 1\n", 0, NULL, "task.num_classes = 1",
               "at least 2", "set in ", "run.yaml:2", NULL);
    const char* s_seg1[] = {"task.name=segment", "task.num_classes=1"};
    expect_err("segment with 1 class", NULL, 2, s_seg1, "task.num_classes = 1",
               "--set task.num_classes=1", NULL);
    expect_err("focal + label smoothing",
               "task:\n  loss:\n    kind: focal\n    label_smoothing: 0.1\n", 0, NULL,
               "task.loss.label_smoothing", "focal", "set in ", "run.yaml:4", NULL);
    expect_err("loss not of the task", "task:\n  name: superres\n  loss:\n    kind: ce\n", 0, NULL,
               "task.loss.kind = ce", "superres", "run.yaml:4", NULL);
    expect_err("metric not of the task", "task:\n  metric: dice\n", 0, NULL, "task.metric = dice",
               "classify", "run.yaml:2", NULL);
    expect_err("class weights count", "task:\n  loss:\n    class_weights: [1, 2, 3]\n", 0, NULL,
               "task.loss.class_weights has 3 values", "task.num_classes = 2", "run.yaml:3", NULL);
    expect_err("crop not divisible by patch", "data:\n  crop: [32, 60, 64]\n", 0, NULL,
               "data.crop = [32, 60, 64]", "not divisible by model.patch", "run.yaml:2", NULL);
    expect_err("img_size length vs spatial_dims", "model:\n  img_size: [64, 64]\n", 0, NULL,
               "model.img_size has 2 values", "spatial_dims = 3", "run.yaml:2", NULL);
    expect_err("align layer beyond depth", "align:\n  layers: [2, 8, norm]\n", 0, NULL,
               "align.layers", "layer 8", "model.depth = 4", "run.yaml:2", NULL);
    expect_err("align layer 0", "align:\n  layers: [0, norm]\n", 0, NULL, "align.layers",
               "1..depth or norm", "run.yaml:2", NULL);
    expect_err("vit_config_check passed through", "model:\n  heads: 5\n", 0, NULL,
               "model.dim = 128 must be a positive multiple of model.heads = 5", NULL);
    expect_err("vit_config_check names where", "model:\n  dim: 130\n", 0, NULL,
               "model.dim = 130", "set in ", "run.yaml:2", NULL);
    expect_err("head_config_check passed through", "task:\n  head:\n    kind: pup\n", 0, NULL,
               "task.head.kind = pup is not a classify head", "run.yaml:3", NULL);
    expect_err("head pool cls without cls token",
               "model:\n  cls_token: false\ntask:\n  head:\n    pool: cls\n", 0, NULL,
               "task.head.pool = cls", "model.cls_token = false", "run.yaml:5", NULL);
    expect_err("in_chans vs channels", "model:\n  in_chans: 2\n", 0, NULL, "model.in_chans = 2",
               "model.channels", "run.yaml:2", NULL);
    expect_err("slice mode on a 3D model", "data:\n  input:\n    mode: slice\n", 0, NULL,
               "data.input.mode = slice", "3D model", "run.yaml:3", NULL);
    expect_err("freeze_k without the mode", "train:\n  freeze_k: 2\n", 0, NULL, "train.freeze_k = 2",
               "freeze_first_k", "run.yaml:2", NULL);
    expect_err("min_lr above lr", "train:\n  lr: 1.0e-05\n  min_lr: 1.0e-04\n", 0, NULL,
               "train.min_lr", "above train.lr", "run.yaml:3", NULL);
    const char* s_ep[] = {"train.epochs=3"};
    expect_err("default warmup vs set epochs", NULL, 1, s_ep, "train.warmup_epochs = 5 exceeds "
               "train.epochs = 3", "(train.epochs set in --set train.epochs=3)", NULL);
    const char* s_fk[] = {"train.mode=freeze_first_k"};
    expect_err("freeze mode without freeze_k", NULL, 1, s_fk, "train.freeze_k = 0",
               "train.mode set in --set train.mode=freeze_first_k", NULL);
    expect_err("bad preset", "model:\n  preset: vit-huge\n", 0, NULL, "model.preset = vit-huge",
               "run.yaml:2", "vit-tiny-3d, profound-vit-b", NULL);
}

static void test_round_trip(void) {
    Config c;
    char err[1024] = "";
    const char* text =
        "run:\n  name: \"my run #1\"\n  seed: 12345678901234\n  deterministic: true\n"
        "model:\n  weights: \"w/a b.safetensors\"\n  drop_path: 0.15\n  ln_eps: 1.0e-05\n"
        "task:\n  name: segment\n  num_classes: 3\n  loss:\n    class_weights: [0.2, 1, 2.5]\n"
        "    w_dice: 0.7\n"
        "train:\n  lr: 3.3e-5\n  min_lr: 0\n  warmup_epochs: 0.5\n  weight_decay: 1.0e-8\n"
        "  clip_grad: 3.0e+7\n  mode: freeze_first_k\n  freeze_k: 2\n  drop_path: -1\n"
        "align:\n  bandwidths:\n    rule: mean\n    scales: [0.25, 1, 4, 1.0e-3, 123456.5]\n"
        "  feature: tokens\n  normalize: l2\n  probe:\n    split: probe\n"
        "log:\n  swmr: on\n";
    int rc = load(&c, text, 0, NULL, err, sizeof err);
    if (rc) printf("  %s\n", err);
    t_true("a config with many non-defaults loads", rc == 0);
    t_true("values: quoted name, weights path, seed, weights list, lr 3.3e-5, swmr on",
           rc == 0 && !strcmp(c.run_name, "my run #1") && !strcmp(c.model_weights, "w/a b.safetensors") &&
           c.seed == 12345678901234ull && c.n_class_weights == 3 && c.class_weights[2] == 2.5f &&
           c.lr == 3.3e-5 && c.n_scales == 5 && c.scales[4] == 123456.5 && !strcmp(c.log_swmr, "on") &&
           c.bw_rule == MMD_BW_MEAN && c.probe_split == SPLIT_PROBE && c.drop_path == -1);
    char* y = round_trip("of the non-default config", &c);
    t_true("emitted floats: 3.3e-05, 1.0e-08, 0.0, 3.0e+07, 123456.5, 0.001; swmr quoted",
           strstr(y, "lr: 3.3e-05\n") && strstr(y, "weight_decay: 1.0e-08\n") &&
           strstr(y, "min_lr: 0.0\n") && strstr(y, "clip_grad: 3.0e+07") &&
           strstr(y, "[0.25, 1.0, 4.0, 0.001, 123456.5]") && strstr(y, "swmr: \"on\"") &&
           strstr(y, "name: \"my run #1\"") && strstr(y, "[0.2, 1.0, 2.5]"));
    /* the emitted text has no YAML 1.1-ambiguous exponent forms such as 1e-4 or 1.0e4 */
    int bad = 0;
    for (const char* p = y; (p = strpbrk(p, "eE")); p++)
        if (p > y && isdigit((unsigned char)p[-1]) && p[1] != '-' && p[1] != '+') bad = 1;
    t_true("no exponent without a sign (1e-4 / 1.0e4 forms)", !bad);
    free(y);
    config_default(&c);
    free(round_trip("of the defaults", &c));
}

/* classifies an emitted value token the way a YAML 1.1 reader should see it */
static const char* token_type(const char* v) {
    if (v[0] == '"') return "str";
    if (!strcmp(v, "null")) return "NoneType";
    if (!strcmp(v, "true") || !strcmp(v, "false")) return "bool";
    int i = 0;
    if (v[i] == '-') i++;
    int digits = 0;
    while (isdigit((unsigned char)v[i])) { i++; digits++; }
    if (!v[i] && digits) return "int";
    if (digits && v[i] == '.') {
        i++;
        while (isdigit((unsigned char)v[i])) i++;
        if (v[i] == 'e' && (v[i + 1] == '-' || v[i + 1] == '+')) {
            i += 2;
            while (isdigit((unsigned char)v[i])) i++;
        }
        if (!v[i]) return "float";
    }
    return "str";
}

/* "path<TAB>type" lines from the emitted YAML, lists as "list:t1,t2" */
static char* expected_types(const char* y) {
    size_t cap = 1 << 16, n = 0;
    char* out = malloc(cap);
    out[0] = 0;
    char sec[8][64];
    const char* p = y;
    while (*p) {
        const char* e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        p += len + (e ? 1 : 0);
        if (!line[0] || line[0] == '#') continue;
        int ind = 0;
        while (line[ind] == ' ') ind++;
        int lvl = ind / 2;
        char* colon = strstr(line + ind, ":");
        *colon = 0;
        snprintf(sec[lvl], sizeof sec[lvl], "%s", line + ind);
        char* v = colon + 1;
        if (!*v) continue;   /* a section */
        v++;
        char* note = strstr(v, "  # ");
        if (note) *note = 0;
        char path[256] = "";
        for (int l = 0; l <= lvl; l++)
            snprintf(path + strlen(path), sizeof path - strlen(path), "%s%s", l ? "." : "", sec[l]);
        char ty[256];
        if (v[0] == '[') {
            snprintf(ty, sizeof ty, "list:");
            char items[256];
            snprintf(items, sizeof items, "%.*s", (int)strlen(v) - 2, v + 1);
            int first = 1;
            for (char* tok = strtok(items, ","); tok; tok = strtok(NULL, ",")) {
                while (*tok == ' ') tok++;
                snprintf(ty + strlen(ty), sizeof ty - strlen(ty), "%s%s", first ? "" : ",",
                         token_type(tok));
                first = 0;
            }
        } else {
            snprintf(ty, sizeof ty, "%s", token_type(v));
        }
        n += snprintf(out + n, cap - n, "%s\t%s\n", path, ty);
    }
    return out;
}

static void test_pyyaml(void) {
    if (system("/usr/bin/python3 -c 'import yaml' 2>/dev/null") != 0) {
        t_true("PyYAML available (Debian python3-yaml) for the emitted-YAML check", 0);
        return;
    }
    Config c;
    char err[1024] = "";
    const char* sets[] = {"task.name=segment", "task.num_classes=3",
                          "task.loss.class_weights=[1, 2, 0.5]", "train.lr=3.0e-4",
                          "align.bandwidths.scales=[0.5, 1, 2, 1e-4]", "log.swmr=off",
                          "run.name=yes", "data.path=/tmp/x y.h5", "model.weights=w.safetensors"};
    int rc = config_load(&c, NULL, sets, 9, err, sizeof err);
    if (rc) printf("  %s\n", err);
    char* y = config_to_yaml(&c);
    const char* yp = write_tmp("emitted.yaml", y);
    const char* script =
        "import sys, yaml\n"
        "d = yaml.safe_load(open(sys.argv[1]))\n"
        "def walk(x, p):\n"
        "    if isinstance(x, dict):\n"
        "        for k, v in x.items(): walk(v, p + [str(k)])\n"
        "    elif isinstance(x, list):\n"
        "        print('.'.join(p) + '\\tlist:' + ','.join(type(e).__name__ for e in x))\n"
        "    else:\n"
        "        print('.'.join(p) + '\\t' + type(x).__name__)\n"
        "walk(d, [])\n"
        "t = d['train']\n"
        "assert isinstance(t['lr'], float) and abs(t['lr'] - 3.0e-4) < 1e-18, t['lr']\n"
        "assert isinstance(t['min_lr'], float) and t['min_lr'] == 1e-6\n"
        "assert isinstance(d['model']['ln_eps'], float) and abs(d['model']['ln_eps'] - 1e-6) < 1e-12\n"
        "assert d['align']['bandwidths']['scales'] == [0.5, 1.0, 2.0, 1e-4]\n"
        "assert d['log']['swmr'] == 'off' and d['run']['name'] == 'yes'\n"
        "assert d['align']['layers'][-1] == 'norm' and d['run']['seed'] == 0\n"
        "assert d['data']['path'] == '/tmp/x y.h5' and d['model']['weights'] == 'w.safetensors'\n"
        "assert d['task']['loss']['class_weights'] == [1.0, 2.0, 0.5]\n";
    const char* sp = write_tmp("check.py", script);
    char cmd[1024];
    const char* outp = tmp_path("pytypes.txt");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s > %s", sp, yp, outp);
    int st = system(cmd);
    t_true("PyYAML reads the emitted YAML: train.lr float 3.0e-4, ln_eps float, scales floats, "
           "swmr/name strings", st == 0);
    char* got = slurp(outp);
    char* want = expected_types(y);
    int same = got && !strcmp(got, want);
    if (!same && getenv("VITA_TEST_VERBOSE")) printf("%s\n---\n%s\n", got ? got : "(none)", want);
    if (!same && got) {   /* show the disagreeing lines */
        char* g = got;
        char* w = want;
        while (*g && *w) {
            size_t lg = strcspn(g, "\n"), lw = strcspn(w, "\n");
            if (lg != lw || strncmp(g, w, lg)) {
                printf("  pyyaml %.*s  vs emitted %.*s\n", (int)lg, g, (int)lw, w);
                break;
            }
            g += lg + (g[lg] ? 1 : 0);
            w += lw + (w[lw] ? 1 : 0);
        }
    }
    int nkeys = 0;
    for (const char* q = want; *q; q++) nkeys += *q == '\n';
    char what[160];
    snprintf(what, sizeof what, "PyYAML's type of every one of the %d keys = the emitted token's "
             "(floats as float, ints as int, null, bools, strings)", nkeys);
    t_true(what, same && nkeys > 80);
    free(got);
    free(want);
    free(y);
}

static void test_examples(void) {
    static const char* const names[] = {"classify", "segment", "superres", "undistort", "synthesize"};
    char dir[512] = "configs/examples";
    struct stat sb;
    if (stat(dir, &sb) != 0) {   /* run from elsewhere: next to this source file */
        snprintf(dir, sizeof dir, "%s", __FILE__);
        char* s = strrchr(dir, '/');
        if (s) snprintf(s, sizeof dir - (s - dir), "/../configs/examples");
    }
    for (int i = 0; i < 5; i++) {
        char path[600], err[1024] = "", what[900];
        snprintf(path, sizeof path, "%s/%s.yaml", dir, names[i]);
        Config c;
        int rc = config_load(&c, path, NULL, 0, err, sizeof err);
        snprintf(what, sizeof what, "example %s loads: task %s, vit-tiny-3d, phantoms.h5%s%s", path,
                 names[i], rc ? ": " : "", rc ? err : "");
        t_true(what, rc == 0 && c.task == i && !strcmp(c.model_preset, "vit-tiny-3d") &&
               !strcmp(c.data_path, "phantoms.h5"));
        if (!rc) {
            char rt[64];
            snprintf(rt, sizeof rt, "of example %s", names[i]);
            free(round_trip(rt, &c));
        }
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/vita_test_config_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 2; }
    test_defaults();
    test_presets();
    test_precedence();
    test_errors();
    test_round_trip();
    test_pyyaml();
    test_examples();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    return t_summary();
}
