/* engine/config.c — the run configuration (SPEC.md §7).
 *
 * One schema table (KEYS below) names every key, in emission order, with its type, storage in
 * Config, range or allowed values, and values that the schema knows but vita has not built yet
 * (rejected saying so). Loading:
 *   1. config_default (preset vit-tiny-3d, task classify, everything resolved);
 *   2. the file is parsed with libyaml's event parser into (key path, value, file:line) pairs:
 *      unknown keys (with the closest valid key by edit distance), duplicate keys, anchors,
 *      aliases, merge keys (<<), tags and malformed YAML are rejected here, one line each;
 *   3. each `--set a.b=c` is parsed the same way (the value is a YAML scalar, flow list, or a
 *      flow mapping for a section) and appended, so it overrides the file;
 *   4. model.preset (the last one given, file or --set) expands into cfg->vit before any other
 *      model.* key, then every other pair is applied in order (type and range checked);
 *   5. defaults that depend on other keys are filled where the key was not given: the head
 *      (head_config_default for the task and the model's spatial dims), task.loss.kind (ce,
 *      dice_ce, l1), task.metric (auroc, dice, psnr), data.input.mode (slice for 2D models,
 *      volume for 3D), data.input.context (3 for provicnet-vit-s14, else 1), data.crop (the
 *      model's img_size), data.channels (the model's channels; with a slice context > 1 the
 *      middle name of each group of `context`: provicnet's [t2w_prev, t2w, t2w_next] -> t2w),
 *      align.layers (round(depth/4), round(depth/2), round(3 depth/4), depth, norm; distinct);
 *   6. cross-field validation, naming the key and where it was set.
 * train.precision bf16 is accepted on CPU and runs in fp32 there (auto = fp32 on CPU, bf16 on
 * GPU); the emitted YAML says so next to the key. dist.backend nccl | mpi are rejected: they
 * arrive with distributed training.
 * Two commands read configs: config_load (`vita train`, `vita eval`) rejects the pretrain.*
 * keys, config_load_pretrain (`vita pretrain`) rejects the fine-tuning-only keys (task, eval,
 * align, layer decay, freeze modes, early stopping) and allows train.epochs = 0; each emits
 * only its own sections, so an emitted config reads back with the same loader.
 *
 * Emission (config_to_yaml): every key in schema order, block mappings per section, lists in
 * flow style; integers plain, floats always with a '.' and, outside [1e-3, 1e6), a signed
 * two-digit exponent (1.0e-04, never 1e-4: PyYAML's YAML 1.1 resolver reads 1e-4 as a string),
 * the shortest digits that read back to the same float/double; strings quoted when a YAML 1.1
 * or 1.2 reader could take them for anything else (on, no, null, 1.5, ...). config_load of
 * the emitted text gives the same struct and so a byte-identical re-emission. */
#include "config.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "check.h"
#include "dataset.h"
#include "loader.h"

/* ---- growable text buffer ------------------------------------------------------------------ */
typedef struct { char* p; size_t n, cap; } Buf;

static void bputs(Buf* b, const char* s) {
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) {
        b->cap = (b->n + k + 1) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p, "out of memory");
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

static void bprintf(Buf* b, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(Buf* b, const char* fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    bputs(b, tmp);
}

/* ---- parsed values ------------------------------------------------------------------------- */
typedef struct {
    int list;            /* 0: one scalar s[0]; 1: a list of n scalars */
    int n;
    char** s;
    unsigned char* q;    /* quoted (not plain) */
} Val;

#define WHERE_LEN 200
typedef struct {
    int key;
    int line;
    Val v;
    char where[WHERE_LEN];
} Pair;

#define MAX_KEYS 128

typedef struct {
    const char* file;                 /* the file name as given, or NULL while parsing --set */
    const char* setarg;               /* the --set argument being parsed */
    Pair* pairs;
    int np, cap;
    char** seen;                      /* key paths of this file, for duplicates */
    int* seen_line;
    int nseen, seen_cap;
    char last_key[256];
    int pretrain;                     /* config_load_pretrain */
    unsigned char set[MAX_KEYS];
    char where[MAX_KEYS][WHERE_LEN];
    int given[MAX_KEYS];              /* list length given (img_size, patch, crop) */
    char* err;
    size_t errlen;
} Ld;

struct Key;
typedef int (*SetFn)(Config* c, const struct Key* k, const Val* v, Ld* L, int idx, char* why,
                     size_t wn);
typedef void (*EmitFn)(const Config* c, const struct Key* k, Buf* b);

enum { T_INT, T_U64, T_F64, T_F32, T_BOOL, T_STR, T_ENUM, T_SENUM, T_F64S, T_F32S, T_CUSTOM };
enum { LO_OPEN = 1, HI_OPEN = 2 };
enum { K_NULLABLE = 1 };

typedef struct Key {
    const char* path;
    int type;
    size_t off, size;                 /* storage (size: string buffers) */
    size_t cnt_off;                   /* lists: the int count */
    double lo, hi;                    /* numbers (and list elements): range */
    int open;                         /* LO_OPEN | HI_OPEN */
    int nmin, nmax;                   /* lists: lengths */
    const char* const* names;         /* enums (NULL-terminated) */
    const int* vals;                  /* enum values (NULL: the index) */
    const char* const* notbuilt;      /* values known but not built yet */
    const char* notbuilt_why;
    SetFn set;
    EmitFn emit;
    const char* note;                 /* trailing comment on emission */
    int flags;
} Key;

#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
#define O(f) offsetof(Config, f)
#define SZ(f) sizeof(((Config*)0)->f)
#define INF HUGE_VAL

static const char* const E_DEVICE[] = {"cpu", "cuda", "auto", NULL};
static const char* const E_PRESET[] = {"vit-tiny-3d", "profound-vit-b", "provicnet-vit-s14",
                                       "vit-s16", "vit-b16", NULL};
static const char* const E_POS[] = {"learned", "sincos", NULL};
static const char* const E_TASK[] = {"classify", "segment", "superres", "undistort", "synthesize",
                                     NULL};
static const char* const E_KIND[] = {"mlp", "linear", "unetr", "pup", NULL};
static const char* const E_POOL[] = {"cls", "mean", NULL};
static const char* const E_OUTPUT[] = {"image", "field", NULL};
static const char* const E_LOSS[] = {"ce", "focal", "dice_ce", "l1", "mse", NULL};
static const char* const E_METRIC[] = {"auroc", "ap", "accuracy", "balanced_accuracy", "dice",
                                       "hd95", "psnr", "ssim", "mae", NULL};
static const char* const E_MODE[] = {"volume", "slice", NULL};
static const char* const E_TRAIN_MODE[] = {"full", "linear_probe", "freeze_first_k", NULL};
static const char* const E_PREC[] = {"auto", "fp32", "bf16", NULL};
static const char* const E_WEIGHTING[] = {"gaussian", "constant", NULL};
static const char* const E_FEATURE[] = {"pooled", "tokens", "cls", NULL};
static const char* const E_NORMALIZE[] = {"none", "l2", NULL};
static const char* const E_SPLIT[] = {"train", "val", "test", "probe", NULL};
static const char* const E_BW[] = {"median", "mean", NULL};
static const int V_BW[] = {MMD_BW_MEDIAN, MMD_BW_MEAN};
static const char* const E_SWMR[] = {"auto", "on", "off", NULL};
static const char* const E_DIST[] = {"none", NULL};
static const char* const NB_DIST[] = {"nccl", "mpi", NULL};
static const char* const E_OBJECTIVE[] = {"mae", "contrastive", NULL};
static const int V_OBJECTIVE[] = {PRETEXT_MAE, PRETEXT_CONTRASTIVE};
static const int V_POOL[] = {HEAD_POOL_CLS, HEAD_POOL_MEAN};
static const char* const E_EXTRA[] = {"slice_index", "slice_count", NULL};

static int set_dims(Config*, const Key*, const Val*, Ld*, int, char*, size_t);
static void emit_dims(const Config*, const Key*, Buf*);
static int set_vit_channels(Config*, const Key*, const Val*, Ld*, int, char*, size_t);
static void emit_vit_channels(const Config*, const Key*, Buf*);
static int set_extra(Config*, const Key*, const Val*, Ld*, int, char*, size_t);
static void emit_extra(const Config*, const Key*, Buf*);
static int set_data_channels(Config*, const Key*, const Val*, Ld*, int, char*, size_t);
static void emit_data_channels(const Config*, const Key*, Buf*);
static int set_layers(Config*, const Key*, const Val*, Ld*, int, char*, size_t);
static void emit_layers(const Config*, const Key*, Buf*);
static int set_estimators(Config*, const Key*, const Val*, Ld*, int, char*, size_t);
static void emit_estimators(const Config*, const Key*, Buf*);

#define NUM(p, t, f, l, h, op) {.path = p, .type = t, .off = O(f), .lo = l, .hi = h, .open = op}
#define BOOL(p, f) {.path = p, .type = T_BOOL, .off = O(f)}
#define STR(p, f) {.path = p, .type = T_STR, .off = O(f), .size = SZ(f)}
#define ENUM(p, f, e) {.path = p, .type = T_ENUM, .off = O(f), .names = e}
#define SENUM(p, f, e) {.path = p, .type = T_SENUM, .off = O(f), .size = SZ(f), .names = e}
#define CUSTOM(p, f, s, e) {.path = p, .type = T_CUSTOM, .off = O(f), .set = s, .emit = e}

/* Schema order = emission order; every section's keys are contiguous. */
static const Key KEYS[] = {
    STR("run.name", run_name),
    STR("run.out", run_out),
    {.path = "run.seed", .type = T_U64, .off = O(seed)},
    BOOL("run.deterministic", deterministic),
    SENUM("run.device", device, E_DEVICE),
    BOOL("run.overwrite", overwrite),

    SENUM("model.preset", model_preset, E_PRESET),
    {.path = "model.weights", .type = T_STR, .off = O(model_weights), .size = SZ(model_weights),
     .flags = K_NULLABLE, .note = "null = from scratch"},
    {.path = "model.load_head", .type = T_BOOL, .off = O(load_head),
     .note = "false = transfer the encoder only, even from a checkpoint of the same task"},
    NUM("model.spatial_dims", T_INT, vit.spatial_dims, 2, 3, 0),
    CUSTOM("model.img_size", vit.img, set_dims, emit_dims),
    CUSTOM("model.patch", vit.patch, set_dims, emit_dims),
    NUM("model.in_chans", T_INT, vit.in_chans, 1, VIT_MAX_CHANNELS, 0),
    CUSTOM("model.channels", vit.channels, set_vit_channels, emit_vit_channels),
    NUM("model.dim", T_INT, vit.dim, 1, 65536, 0),
    NUM("model.depth", T_INT, vit.depth, 1, VIT_MAX_DEPTH, 0),
    NUM("model.heads", T_INT, vit.heads, 1, 1024, 0),
    NUM("model.mlp_ratio", T_F32, vit.mlp_ratio, 0, 64, LO_OPEN),
    BOOL("model.qkv_bias", vit.qkv_bias),
    NUM("model.ln_eps", T_F32, vit.ln_eps, 0, 1, LO_OPEN | HI_OPEN),
    BOOL("model.cls_token", vit.cls_token),
    NUM("model.num_registers", T_INT, vit.num_registers, 0, 64, 0),
    CUSTOM("model.extra_tokens", vit.extra_tokens, set_extra, emit_extra),
    ENUM("model.pos_embed", vit.pos_embed, E_POS),
    NUM("model.layerscale_init", T_F32, vit.layerscale_init, 0, INF, 0),
    NUM("model.drop_path", T_F32, vit.drop_path, 0, 1, HI_OPEN),

    ENUM("task.name", task, E_TASK),
    NUM("task.num_classes", T_INT, head.num_classes, 1, 1024, 0),
    ENUM("task.head.kind", head.kind, E_KIND),
    NUM("task.head.feature_size", T_INT, head.feature_size, 1, 4096, 0),
    NUM("task.head.hidden", T_INT, head.hidden, 1, 65536, 0),
    ENUM("task.head.pool", head.pool, E_POOL),
    BOOL("task.head.batchnorm", head.batchnorm),
    ENUM("task.head.output", head.output, E_OUTPUT),
    NUM("task.head.input_channel", T_INT, head.input_channel, 0, VIT_MAX_CHANNELS - 1, 0),
    NUM("task.head.pe_axis", T_INT, head.pe_axis, 0, 2, 0),
    NUM("task.head.bn_eps", T_F32, head.bn_eps, 0, 1, LO_OPEN | HI_OPEN),
    NUM("task.head.bn_momentum", T_F32, head.bn_momentum, 0, 1, 0),
    NUM("task.head.in_eps", T_F32, head.in_eps, 0, 1, LO_OPEN | HI_OPEN),
    NUM("task.head.slope", T_F32, head.slope, 0, 1, 0),
    SENUM("task.loss.kind", loss_kind, E_LOSS),
    {.path = "task.loss.class_weights", .type = T_F32S, .off = O(class_weights),
     .cnt_off = O(n_class_weights), .lo = 0, .hi = 1e6, .nmin = 0, .nmax = CFG_MAX_LIST,
     .note = "[] = unweighted"},
    NUM("task.loss.label_smoothing", T_F32, label_smoothing, 0, 1, HI_OPEN),
    NUM("task.loss.focal_gamma", T_F32, focal_gamma, 0, 100, 0),
    BOOL("task.loss.dice_include_background", dice_include_background),
    NUM("task.loss.w_ce", T_F32, w_ce, 0, 1e6, 0),
    NUM("task.loss.w_dice", T_F32, w_dice, 0, 1e6, 0),
    SENUM("task.metric", metric, E_METRIC),

    STR("data.path", data_path),
    {.path = "data.fold", .type = T_INT, .off = O(fold), .lo = -1, .hi = 1000,
     .note = "-1 = the dataset's /split"},
    ENUM("data.input.mode", input_mode, E_MODE),
    NUM("data.input.context", T_INT, input_context, 1, 15, 0),
    CUSTOM("data.crop", crop, set_dims, emit_dims),
    CUSTOM("data.channels", channels, set_data_channels, emit_data_channels),
    NUM("data.sampling.pos_fraction", T_F64, pos_fraction, 0, 1, 0),
    BOOL("data.augment", augment),
    NUM("data.batch", T_INT, batch, 1, 65536, 0),
    NUM("data.workers", T_INT, workers, 1, 256, 0),

    {.path = "train.epochs", .type = T_INT, .off = O(epochs), .lo = 0, .hi = 1000000,
     .note = "vita pretrain: 0 = write the initial encoder only"},
    {.path = "train.steps_per_epoch", .type = T_INT, .off = O(steps_per_epoch), .lo = 0,
     .hi = 1e9, .note = "0 = one pass over the training split"},
    NUM("train.lr", T_F64, lr, 0, 10, LO_OPEN),
    NUM("train.min_lr", T_F64, min_lr, 0, 10, 0),
    NUM("train.warmup_epochs", T_F64, warmup_epochs, 0, 1e6, 0),
    NUM("train.weight_decay", T_F64, weight_decay, 0, 10, 0),
    NUM("train.layer_decay", T_F64, layer_decay, 0, 1, LO_OPEN),
    ENUM("train.mode", mode, E_TRAIN_MODE),
    NUM("train.freeze_k", T_INT, freeze_k, 0, VIT_MAX_DEPTH, 0),
    {.path = "train.clip_grad", .type = T_F64, .off = O(clip_grad), .lo = 0, .hi = INF,
     .note = "0 = off"},
    NUM("train.accum_steps", T_INT, accum_steps, 1, 65536, 0),
    {.path = "train.drop_path", .type = T_F64, .off = O(drop_path), .lo = -1, .hi = 1,
     .open = HI_OPEN, .note = "< 0: model.drop_path"},
    {.path = "train.precision", .type = T_SENUM, .off = O(precision), .size = SZ(precision),
     .names = E_PREC, .note = "auto = fp32 on CPU, bf16 on GPU; bf16 on CPU runs in fp32"},
    {.path = "train.checkpoint_every", .type = T_INT, .off = O(checkpoint_every), .lo = 0,
     .hi = 1e6, .note = "epochs; 0 = only at the end"},
    NUM("train.keep_checkpoints", T_INT, keep_checkpoints, 1, 1e6, 0),
    {.path = "train.early_stop_patience", .type = T_INT, .off = O(early_stop_patience), .lo = 0,
     .hi = 1e6, .note = "0 = off"},
    BOOL("train.skip_nonfinite", skip_nonfinite),

    NUM("eval.sliding_window.overlap", T_F64, sw_overlap, 0, 1, HI_OPEN),
    SENUM("eval.sliding_window.weighting", sw_weighting, E_WEIGHTING),

    {.path = "align.layers", .type = T_CUSTOM, .off = O(align_layers), .set = set_layers,
     .emit = emit_layers, .note = "blocks 1..depth, norm = the final normalised tokens; [] = off"},
    SENUM("align.feature", align_feature, E_FEATURE),
    SENUM("align.normalize", align_normalize, E_NORMALIZE),
    ENUM("align.probe.split", probe_split, E_SPLIT),
    NUM("align.probe.n_images", T_INT, probe_n_images, 4, 1e7, 0),
    NUM("align.probe.n_tokens", T_INT, probe_n_tokens, 1, 1e9, 0),
    CUSTOM("align.estimators", estimators, set_estimators, emit_estimators),
    {.path = "align.bandwidths.rule", .type = T_ENUM, .off = O(bw_rule), .names = E_BW,
     .vals = V_BW},
    {.path = "align.bandwidths.scales", .type = T_F64S, .off = O(scales), .cnt_off = O(n_scales),
     .lo = 0, .hi = 1e6, .open = LO_OPEN, .nmin = 1, .nmax = MMD_MAX_S},
    {.path = "align.permutations", .type = T_INT, .off = O(permutations), .lo = 0, .hi = 1e7,
     .note = "0 = no permutation test"},
    {.path = "align.every", .type = T_INT, .off = O(align_every), .lo = 0, .hi = 1e6,
     .note = "epochs; 0 = off"},

    SENUM("log.swmr", log_swmr, E_SWMR),
    {.path = "dist.backend", .type = T_SENUM, .off = O(dist_backend), .size = SZ(dist_backend),
     .names = E_DIST, .notbuilt = NB_DIST,
     .notbuilt_why = "arrives with distributed training",
     .note = "nccl | mpi arrive with distributed training"},

    {.path = "pretrain.objective", .type = T_ENUM, .off = O(pt.objective), .names = E_OBJECTIVE,
     .vals = V_OBJECTIVE},
    {.path = "pretrain.mask_ratio", .type = T_F32, .off = O(pt.mask_ratio), .lo = 0, .hi = 1,
     .open = LO_OPEN | HI_OPEN, .note = "mae: fraction of patch tokens dropped"},
    BOOL("pretrain.norm_pix_loss", pt.norm_pix_loss),
    NUM("pretrain.decoder.dim", T_INT, pt.dec_dim, 1, 65536, 0),
    NUM("pretrain.decoder.depth", T_INT, pt.dec_depth, 1, VIT_MAX_DEPTH, 0),
    NUM("pretrain.decoder.heads", T_INT, pt.dec_heads, 1, 1024, 0),
    {.path = "pretrain.temperature", .type = T_F32, .off = O(pt.temperature), .lo = 0, .hi = 100,
     .open = LO_OPEN, .note = "contrastive: InfoNCE tau"},
    NUM("pretrain.proj.hidden", T_INT, pt.proj_hidden, 1, 65536, 0),
    NUM("pretrain.proj.dim", T_INT, pt.proj_dim, 1, 65536, 0),
    {.path = "pretrain.pool", .type = T_ENUM, .off = O(pt.pool), .names = E_POOL, .vals = V_POOL},
    {.path = "pretrain.shuffle_pairs", .type = T_BOOL, .off = O(pt.shuffle_pairs),
     .note = "negative control: positives from different images"},
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))
_Static_assert(sizeof KEYS / sizeof KEYS[0] <= MAX_KEYS, "raise MAX_KEYS");

/* keys only `vita pretrain` reads, and keys only `vita train` reads (config.h) */
static int pretrain_only(const char* path) { return !strncmp(path, "pretrain.", 9); }
static int finetune_only(const char* path) {
    static const char* const only[] = {"model.load_head", "train.layer_decay", "train.mode", "train.freeze_k",
                                       "train.early_stop_patience", "train.skip_nonfinite", NULL};
    if (!strncmp(path, "task.", 5) || !strncmp(path, "eval.", 5) || !strncmp(path, "align.", 6))
        return 1;
    for (int i = 0; only[i]; i++)
        if (!strcmp(path, only[i])) return 1;
    return 0;
}

static int key_index(const char* path) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(KEYS[i].path, path)) return i;
    return -1;
}

static int is_section(const char* path) {
    size_t n = strlen(path);
    for (int i = 0; i < NKEYS; i++)
        if (!strncmp(KEYS[i].path, path, n) && KEYS[i].path[n] == '.') return 1;
    return 0;
}

static void* at(Config* c, const Key* k) { return (char*)c + k->off; }
static const void* cat_(const Config* c, const Key* k) { return (const char*)c + k->off; }

/* ---- edit distance and suggestions ------------------------------------------------------- */
static int lev(const char* a, const char* b) {
    int n = (int)strlen(a), m = (int)strlen(b);
    if (n > 127) n = 127;
    if (m > 127) m = 127;
    int prev[128], cur[128];
    for (int j = 0; j <= m; j++) prev[j] = j;
    for (int i = 1; i <= n; i++) {
        cur[0] = i;
        for (int j = 1; j <= m; j++) {
            int d = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < d) d = prev[j] + 1;
            if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
            cur[j] = d;
        }
        memcpy(prev, cur, sizeof(int) * (m + 1));
    }
    return prev[m];
}

static const char* leaf(const char* p) {
    const char* d = strrchr(p, '.');
    return d ? d + 1 : p;
}

static int suggest_score(const char* p, const char* cand) {
    int s = lev(p, cand), t = lev(leaf(p), leaf(cand)) + 2;
    if (t < s) s = t;
    if (!strncmp(cand, p, strlen(p)) && s > 1) s = 1;                 /* train.warmup */
    if (!strncmp(leaf(cand), leaf(p), strlen(leaf(p))) && s > 3) s = 3;   /* warmup */
    return s;
}

/* the closest key or section to an unknown path */
static void suggest(const char* p, char* out, size_t n) {
    int best = 1 << 30;
    out[0] = 0;
    for (int i = 0; i < NKEYS; i++) {
        const char* k = KEYS[i].path;
        int s = suggest_score(p, k);
        if (s < best) { best = s; snprintf(out, n, "%s", k); }
        for (const char* d = strchr(k, '.'); d; d = strchr(d + 1, '.')) {   /* sections */
            char sec[128];
            snprintf(sec, sizeof sec, "%.*s", (int)(d - k), k);
            s = suggest_score(p, sec);
            if (s < best) { best = s; snprintf(out, n, "%s", sec); }
        }
    }
}

/* ---- error helpers ------------------------------------------------------------------------- */
static int fail(Ld* L, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Ld* L, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->err, L->errlen, fmt, ap);
    va_end(ap);
    return 1;
}

static void where_at(const Ld* L, int line, char* out, size_t n) {
    if (L->file) snprintf(out, n, "%s:%d", L->file, line);
    else snprintf(out, n, "--set %.150s", L->setarg);
}

static void val_text(const Val* v, char* out, size_t n) {
    Buf b = {0};
    if (!v->list) {
        bputs(&b, v->s[0][0] ? v->s[0] : "\"\"");
    } else {
        bputs(&b, "[");
        for (int i = 0; i < v->n; i++) { if (i) bputs(&b, ", "); bputs(&b, v->s[i]); }
        bputs(&b, "]");
    }
    if (b.n > 60) snprintf(out, n, "%.57s...", b.p);
    else snprintf(out, n, "%s", b.p);
    free(b.p);
}

static void join_names(const char* const* names, char* out, size_t n) {
    out[0] = 0;
    size_t k = 0;
    for (int i = 0; names[i] && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%s", i ? ", " : "", names[i]);
}

/* ---- scalar parsing ------------------------------------------------------------------------ */
static int is_null(const Val* v) {
    if (v->list || v->q[0]) return 0;
    const char* s = v->s[0];
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int parse_bool(const char* s, int* out) {
    static const char* const t[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL};
    static const char* const f[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL};
    for (int i = 0; t[i]; i++) if (!strcmp(s, t[i])) { *out = 1; return 0; }
    for (int i = 0; f[i]; i++) if (!strcmp(s, f[i])) { *out = 0; return 0; }
    return 1;
}

static int parse_i64(const char* s, long long* out) {
    if (!*s) return 1;
    for (const char* p = s; *p; p++)
        if (!isdigit((unsigned char)*p) && !(p == s && (*p == '-' || *p == '+'))) return 1;
    char* e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (*e || errno) return 1;
    *out = v;
    return 0;
}

static int parse_real(const char* s, int single, double* out) {
    if (!*s) return 1;
    for (const char* p = s; *p; p++)   /* decimal only: no hex, inf, nan, underscores */
        if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p)) return 1;
    char* e;
    double v = single ? (double)strtof(s, &e) : strtod(s, &e);
    if (*e || !isfinite(v)) return 1;
    *out = v;
    return 0;
}

static void fmt_num(double v, char* out, size_t n) {
    if (v == INF) snprintf(out, n, "inf");
    else snprintf(out, n, "%g", v);
}

static void range_text(const Key* k, char* out, size_t n) {
    char a[32], b[32];
    fmt_num(k->lo, a, sizeof a);
    fmt_num(k->hi, b, sizeof b);
    if (k->hi == INF)
        snprintf(out, n, "must be %s %s", (k->open & LO_OPEN) ? ">" : ">=", a);
    else
        snprintf(out, n, "must be in %c%s, %s%c", (k->open & LO_OPEN) ? '(' : '[', a, b,
                 (k->open & HI_OPEN) ? ')' : ']');
}

static int in_range(const Key* k, double v) {
    if ((k->open & LO_OPEN) ? !(v > k->lo) : !(v >= k->lo)) return 0;
    if (k->hi != INF && ((k->open & HI_OPEN) ? !(v < k->hi) : !(v <= k->hi))) return 0;
    return 1;
}

/* a number for an element or scalar of key k; 0 or 1 with why */
static int get_number(const Key* k, const char* s, int quoted, int integer, int single, double* out,
                      char* why, size_t wn) {
    if (quoted) {
        snprintf(why, wn, "expected %s, got the quoted string \"%s\" (remove the quotes)",
                 integer ? "an integer" : "a number", s);
        return 1;
    }
    if (integer) {
        long long v;
        if (parse_i64(s, &v)) { snprintf(why, wn, "expected an integer"); return 1; }
        *out = (double)v;
    } else if (parse_real(s, single, out)) {
        snprintf(why, wn, "expected a number (such as 1.0e-04)");
        return 1;
    }
    if (!in_range(k, *out)) { range_text(k, why, wn); return 1; }
    return 0;
}

static int closest_name(const char* s, const char* const* names) {
    int best = 1 << 30, bi = -1;
    for (int i = 0; names[i]; i++) {
        int d = lev(s, names[i]);
        if (d < best) { best = d; bi = i; }
    }
    return best <= 2 ? bi : -1;
}

static int enum_index(const Key* k, const char* s, char* why, size_t wn) {
    for (int i = 0; k->names[i]; i++)
        if (!strcmp(s, k->names[i])) return i;
    char all[300];
    join_names(k->names, all, sizeof all);
    if (k->notbuilt)
        for (int i = 0; k->notbuilt[i]; i++)
            if (!strcmp(s, k->notbuilt[i])) {
                snprintf(why, wn, "not built yet (%s %s); use %s", s, k->notbuilt_why, all);
                return -1;
            }
    int c = closest_name(s, k->names);
    if (c >= 0) snprintf(why, wn, "must be one of %s (did you mean %s?)", all, k->names[c]);
    else snprintf(why, wn, "must be one of %s", all);
    return -1;
}

static int need_scalar(const Val* v, char* why, size_t wn) {
    if (v->list) { snprintf(why, wn, "expected a single value, not a list"); return 1; }
    return 0;
}

/* the generic setter */
static int set_value(Config* c, const Key* k, const Val* v, Ld* L, int idx, char* why, size_t wn) {
    if (k->set) return k->set(c, k, v, L, idx, why, wn);
    double x;
    switch (k->type) {
    case T_INT:
    case T_F64:
    case T_F32:
        if (need_scalar(v, why, wn)) return 1;
        if (get_number(k, v->s[0], v->q[0], k->type == T_INT, k->type == T_F32, &x, why, wn)) return 1;
        if (k->type == T_INT) *(int*)at(c, k) = (int)x;
        else if (k->type == T_F64) *(double*)at(c, k) = x;
        else *(float*)at(c, k) = (float)x;
        return 0;
    case T_U64: {
        if (need_scalar(v, why, wn)) return 1;
        const char* s = v->s[0];
        char* e;
        int ok = !v->q[0] && *s && strspn(s, "0123456789") == strlen(s);
        errno = 0;
        unsigned long long u = ok ? strtoull(s, &e, 10) : 0;
        if (!ok || errno) { snprintf(why, wn, "expected an integer in [0, 2^64)"); return 1; }
        *(uint64_t*)at(c, k) = (uint64_t)u;
        return 0;
    }
    case T_BOOL: {
        if (need_scalar(v, why, wn)) return 1;
        int b;
        if (v->q[0] || parse_bool(v->s[0], &b)) {
            snprintf(why, wn, "expected true or false%s", v->q[0] ? " (unquoted)" : "");
            return 1;
        }
        *(int*)at(c, k) = b;
        return 0;
    }
    case T_STR: {
        if (need_scalar(v, why, wn)) return 1;
        char* dst = at(c, k);
        if (is_null(v)) {
            if (!(k->flags & K_NULLABLE)) { snprintf(why, wn, "must not be empty"); return 1; }
            dst[0] = 0;
            return 0;
        }
        if (strlen(v->s[0]) >= k->size) {
            snprintf(why, wn, "longer than %zu characters", k->size - 1);
            return 1;
        }
        snprintf(dst, k->size, "%s", v->s[0]);
        return 0;
    }
    case T_ENUM:
    case T_SENUM: {
        if (need_scalar(v, why, wn)) return 1;
        int i = enum_index(k, v->s[0], why, wn);
        if (i < 0) return 1;
        if (k->type == T_ENUM) *(int*)at(c, k) = k->vals ? k->vals[i] : i;
        else snprintf((char*)at(c, k), k->size, "%s", k->names[i]);
        return 0;
    }
    case T_F64S:
    case T_F32S: {
        if (!v->list) { snprintf(why, wn, "expected a list such as [0.5, 1.0, 2.0]"); return 1; }
        if (v->n < k->nmin || v->n > k->nmax) {
            snprintf(why, wn, "expected %d to %d values, got %d", k->nmin, k->nmax, v->n);
            return 1;
        }
        for (int i = 0; i < v->n; i++) {
            char w2[256];
            if (get_number(k, v->s[i], v->q[i], 0, k->type == T_F32S, &x, w2, sizeof w2)) {
                snprintf(why, wn, "element %d (%s): %s", i, v->s[i], w2);
                return 1;
            }
            if (k->type == T_F64S) ((double*)at(c, k))[i] = x;
            else ((float*)at(c, k))[i] = (float)x;
        }
        *(int*)((char*)c + k->cnt_off) = v->n;
        return 0;
    }
    }
    snprintf(why, wn, "internal: no setter");
    return 1;
}

/* list of names (each 1..maxlen-1 characters of [A-Za-z0-9_-]) */
static int name_list(const Val* v, int nmin, int nmax, int maxlen, char* why, size_t wn) {
    if (!v->list) { snprintf(why, wn, "expected a list such as [t2w, adc, hbv]"); return 1; }
    if (v->n < nmin || v->n > nmax) {
        snprintf(why, wn, "expected %d to %d names, got %d", nmin, nmax, v->n);
        return 1;
    }
    for (int i = 0; i < v->n; i++) {
        const char* s = v->s[i];
        size_t n = strlen(s);
        if (!n || (int)n >= maxlen || strspn(s, NAME_CHARS "-") != n) {
            snprintf(why, wn, "name %d (\"%s\") must be 1..%d letters, digits, '_' or '-'", i, s,
                     maxlen - 1);
            return 1;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(s, v->s[j])) { snprintf(why, wn, "%s is listed twice", s); return 1; }
    }
    return 0;
}

/* ---- custom keys --------------------------------------------------------------------------- */
static int set_dims(Config* c, const Key* k, const Val* v, Ld* L, int idx, char* why, size_t wn) {
    if (!v->list || v->n < 2 || v->n > 3) {
        snprintf(why, wn, "expected a list of 2 (2D: [H, W]) or 3 (3D: [D, H, W]) positive integers");
        return 1;
    }
    int d[3] = {1, 1, 1};
    for (int i = 0; i < v->n; i++) {
        long long x;
        if (v->q[i] || parse_i64(v->s[i], &x) || x < 1 || x > 65536) {
            snprintf(why, wn, "element %d (%s) must be an integer in [1, 65536]", i, v->s[i]);
            return 1;
        }
        d[3 - v->n + i] = (int)x;
    }
    memcpy(at(c, k), d, sizeof d);
    L->given[idx] = v->n;
    return 0;
}

static void emit_dims(const Config* c, const Key* k, Buf* b) {
    const int* d = cat_(c, k);
    int n = c->vit.spatial_dims == 2 ? 2 : 3;
    bputs(b, "[");
    for (int i = 0; i < n; i++) bprintf(b, "%s%d", i ? ", " : "", d[3 - n + i]);
    bputs(b, "]");
}

static void emit_str(Buf* b, const char* s);

static void emit_name_list(Buf* b, const char* base, size_t stride, int n) {
    bputs(b, "[");
    for (int i = 0; i < n; i++) {
        if (i) bputs(b, ", ");
        emit_str(b, base + i * stride);
    }
    bputs(b, "]");
}

static int set_vit_channels(Config* c, const Key* k, const Val* v, Ld* L, int idx, char* why,
                            size_t wn) {
    (void)k; (void)L; (void)idx;
    if (name_list(v, 1, VIT_MAX_CHANNELS, (int)sizeof c->vit.channels[0], why, wn)) return 1;
    memset(c->vit.channels, 0, sizeof c->vit.channels);
    for (int i = 0; i < v->n; i++) snprintf(c->vit.channels[i], sizeof c->vit.channels[i], "%s", v->s[i]);
    c->vit.in_chans = v->n;
    return 0;
}

static void emit_vit_channels(const Config* c, const Key* k, Buf* b) {
    (void)k;
    emit_name_list(b, c->vit.channels[0], sizeof c->vit.channels[0], c->vit.in_chans);
}

static int set_extra(Config* c, const Key* k, const Val* v, Ld* L, int idx, char* why, size_t wn) {
    (void)k; (void)L; (void)idx;
    if (name_list(v, 0, VIT_MAX_EXTRA, (int)sizeof c->vit.extra_tokens[0], why, wn)) return 1;
    for (int i = 0; i < v->n; i++) {
        int ok = 0;
        for (int j = 0; E_EXTRA[j]; j++) ok |= !strcmp(v->s[i], E_EXTRA[j]);
        if (!ok) {
            snprintf(why, wn, "extra token %s: must be slice_index or slice_count", v->s[i]);
            return 1;
        }
    }
    memset(c->vit.extra_tokens, 0, sizeof c->vit.extra_tokens);
    for (int i = 0; i < v->n; i++)
        snprintf(c->vit.extra_tokens[i], sizeof c->vit.extra_tokens[i], "%s", v->s[i]);
    c->vit.num_extra = v->n;
    return 0;
}

static void emit_extra(const Config* c, const Key* k, Buf* b) {
    (void)k;
    emit_name_list(b, c->vit.extra_tokens[0], sizeof c->vit.extra_tokens[0], c->vit.num_extra);
}

static int set_data_channels(Config* c, const Key* k, const Val* v, Ld* L, int idx, char* why,
                             size_t wn) {
    (void)k; (void)L; (void)idx;
    if (name_list(v, 0, VIT_MAX_CHANNELS, 16, why, wn)) return 1;
    c->channels[0] = 0;
    for (int i = 0; i < v->n; i++) {
        size_t n = strlen(c->channels);
        snprintf(c->channels + n, sizeof c->channels - n, "%s%s", i ? "," : "", v->s[i]);
    }
    return 0;
}

/* splits "a,b,c" into names; returns the count */
static int split_names(const char* s, char names[][16], int maxn) {
    int n = 0;
    while (*s && n < maxn) {
        size_t k = strcspn(s, ",");
        snprintf(names[n++], 16, "%.*s", (int)k, s);
        s += k;
        if (*s == ',') s++;
    }
    return n;
}

static void emit_data_channels(const Config* c, const Key* k, Buf* b) {
    (void)k;
    char names[VIT_MAX_CHANNELS][16];
    int n = split_names(c->channels, names, VIT_MAX_CHANNELS);
    emit_name_list(b, names[0], sizeof names[0], n);
}

static int set_layers(Config* c, const Key* k, const Val* v, Ld* L, int idx, char* why, size_t wn) {
    (void)k; (void)L; (void)idx;
    if (!v->list) { snprintf(why, wn, "expected a list such as [3, 6, 9, 12, norm]"); return 1; }
    if (v->n > CFG_MAX_LAYERS) {
        snprintf(why, wn, "at most %d layers, got %d", CFG_MAX_LAYERS, v->n);
        return 1;
    }
    int out[CFG_MAX_LAYERS];
    for (int i = 0; i < v->n; i++) {
        long long x;
        if (!strcmp(v->s[i], "norm")) x = 0;
        else if (v->q[i] || parse_i64(v->s[i], &x) || x < 1 || x > VIT_MAX_DEPTH) {
            snprintf(why, wn, "element %d (%s): layers are block numbers 1..depth or norm", i, v->s[i]);
            return 1;
        }
        for (int j = 0; j < i; j++)
            if (out[j] == (int)x) { snprintf(why, wn, "layer %s is listed twice", v->s[i]); return 1; }
        out[i] = (int)x;
    }
    memcpy(c->align_layers, out, sizeof(int) * v->n);
    c->n_align_layers = v->n;
    return 0;
}

static void emit_layers(const Config* c, const Key* k, Buf* b) {
    (void)k;
    bputs(b, "[");
    for (int i = 0; i < c->n_align_layers; i++) {
        if (i) bputs(b, ", ");
        if (c->align_layers[i] == 0) bputs(b, "norm");
        else bprintf(b, "%d", c->align_layers[i]);
    }
    bputs(b, "]");
}

static int set_estimators(Config* c, const Key* k, const Val* v, Ld* L, int idx, char* why,
                          size_t wn) {
    (void)k; (void)L; (void)idx;
    if (!v->list) { snprintf(why, wn, "expected a list such as [mmd2_paired, cka_linear]"); return 1; }
    if (v->n < 1 || v->n > EST_COUNT) {
        snprintf(why, wn, "expected 1 to %d estimators, got %d", EST_COUNT, v->n);
        return 1;
    }
    int out[EST_COUNT];
    for (int i = 0; i < v->n; i++) {
        int e = mmd_estimator_from_name(v->s[i]);
        if (e < 0) {
            Buf all = {0};
            for (int j = 0; j < EST_COUNT; j++) bprintf(&all, "%s%s", j ? ", " : "", mmd_estimator_name(j));
            snprintf(why, wn, "unknown estimator %s: must be among %s", v->s[i], all.p);
            free(all.p);
            return 1;
        }
        for (int j = 0; j < i; j++)
            if (out[j] == e) { snprintf(why, wn, "estimator %s is listed twice", v->s[i]); return 1; }
        out[i] = e;
    }
    memcpy(c->estimators, out, sizeof(int) * v->n);
    c->n_estimators = v->n;
    return 0;
}

static void emit_estimators(const Config* c, const Key* k, Buf* b) {
    (void)k;
    bputs(b, "[");
    for (int i = 0; i < c->n_estimators; i++)
        bprintf(b, "%s%s", i ? ", " : "", mmd_estimator_name(c->estimators[i]));
    bputs(b, "]");
}

/* ---- YAML parsing (libyaml events) --------------------------------------------------------- */
static void val_free(Val* v) {
    for (int i = 0; i < v->n; i++) free(v->s[i]);
    free(v->s);
    free(v->q);
    memset(v, 0, sizeof *v);
}

static void val_push(Val* v, const char* s, int quoted) {
    v->s = realloc(v->s, sizeof(char*) * (v->n + 1));
    v->q = realloc(v->q, v->n + 1);
    CHECK(v->s && v->q, "out of memory");
    v->s[v->n] = strdup(s);
    CHECK(v->s[v->n], "out of memory");
    v->q[v->n] = (unsigned char)quoted;
    v->n++;
}

static void add_pair(Ld* L, int key, int line, Val* v) {
    if (L->np == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 64;
        L->pairs = realloc(L->pairs, sizeof(Pair) * L->cap);
        CHECK(L->pairs, "out of memory");
    }
    Pair* p = &L->pairs[L->np++];
    p->key = key;
    p->line = line;
    p->v = *v;
    memset(v, 0, sizeof *v);
    where_at(L, line, p->where, sizeof p->where);
}

static int yaml_fail(Ld* L, yaml_parser_t* p) {
    char w[WHERE_LEN], ctx[160] = "", after[300] = "";
    where_at(L, (int)p->problem_mark.line + 1, w, sizeof w);
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s at line %d)", p->context, (int)p->context_mark.line + 1);
    if (L->last_key[0]) snprintf(after, sizeof after, "; last key read: %s", L->last_key);
    return fail(L, "malformed YAML in %s: %s%s%s", w, p->problem ? p->problem : "parse error", ctx,
                after);
}

static int next_event(Ld* L, yaml_parser_t* p, yaml_event_t* e) {
    if (!yaml_parser_parse(p, e)) return yaml_fail(L, p);
    return 0;
}

static const char* path_or_top(const char* path) { return *path ? path : "the top level"; }

static int no_anchor(Ld* L, const yaml_event_t* e, const char* path) {
    const yaml_char_t* a = NULL;
    const yaml_char_t* tag = NULL;
    if (e->type == YAML_SCALAR_EVENT) { a = e->data.scalar.anchor; tag = e->data.scalar.tag; }
    else if (e->type == YAML_SEQUENCE_START_EVENT) {
        a = e->data.sequence_start.anchor;
        tag = e->data.sequence_start.tag;
    } else if (e->type == YAML_MAPPING_START_EVENT) {
        a = e->data.mapping_start.anchor;
        tag = e->data.mapping_start.tag;
    }
    char w[WHERE_LEN];
    where_at(L, (int)e->start_mark.line + 1, w, sizeof w);
    if (e->type == YAML_ALIAS_EVENT)
        return fail(L, "alias *%s at %s in %s: anchors, aliases and merge keys are not supported; "
                    "write the values out", (const char*)e->data.alias.anchor, path_or_top(path), w);
    if (a)
        return fail(L, "anchor &%s at %s in %s: anchors, aliases and merge keys are not supported; "
                    "write the values out", (const char*)a, path_or_top(path), w);
    if (tag)
        return fail(L, "tag %s at %s in %s: YAML tags are not supported; write the plain value",
                    (const char*)tag, path_or_top(path), w);
    return 0;
}

static int seen_key(Ld* L, const char* path, int line) {
    for (int i = 0; i < L->nseen; i++)
        if (!strcmp(L->seen[i], path)) {
            char w[WHERE_LEN];
            where_at(L, line, w, sizeof w);
            return fail(L, "duplicate key %s in %s (first given at line %d); keep one", path, w,
                        L->seen_line[i]);
        }
    if (L->nseen == L->seen_cap) {
        L->seen_cap = L->seen_cap ? 2 * L->seen_cap : 64;
        L->seen = realloc(L->seen, sizeof(char*) * L->seen_cap);
        L->seen_line = realloc(L->seen_line, sizeof(int) * L->seen_cap);
        CHECK(L->seen && L->seen_line, "out of memory");
    }
    L->seen[L->nseen] = strdup(path);
    L->seen_line[L->nseen++] = line;
    return 0;
}

/* the path must name a key or a section */
static int known_path(Ld* L, const char* path, int line) {
    if (key_index(path) >= 0 || is_section(path)) return 0;
    char w[WHERE_LEN], s[128];
    where_at(L, line, w, sizeof w);
    suggest(path, s, sizeof s);
    return fail(L, "unknown key %s in %s; did you mean %s?", path, w, s);
}

static int section_keys_hint(const char* path, char* out, size_t n) {
    size_t pl = strlen(path), k = 0;
    int cnt = 0;
    out[0] = 0;
    for (int i = 0; i < NKEYS && cnt < 3 && k < n; i++)
        if (!strncmp(KEYS[i].path, path, pl) && KEYS[i].path[pl] == '.') {
            k += (size_t)snprintf(out + k, n - k, "%s%s", cnt ? ", " : "", KEYS[i].path);
            cnt++;
        }
    return cnt;
}

/* one node (its first event already read into e, which this function deletes) at path */
static int node(Ld* L, yaml_parser_t* p, yaml_event_t* e, const char* path) {
    int line = (int)e->start_mark.line + 1, rc = 0;
    char w[WHERE_LEN];
    where_at(L, line, w, sizeof w);
    if (no_anchor(L, e, path)) { yaml_event_delete(e); return 1; }
    int k = *path ? key_index(path) : -1;
    if (e->type == YAML_SCALAR_EVENT || e->type == YAML_SEQUENCE_START_EVENT) {
        Val v = {0};
        if (e->type == YAML_SCALAR_EVENT) {
            val_push(&v, (const char*)e->data.scalar.value,
                     e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE);
            yaml_event_delete(e);
        } else {
            yaml_event_delete(e);
            v.list = 1;
            for (;;) {
                yaml_event_t it;
                if (next_event(L, p, &it)) { val_free(&v); return 1; }
                if (it.type == YAML_SEQUENCE_END_EVENT) { yaml_event_delete(&it); break; }
                if (no_anchor(L, &it, path)) { yaml_event_delete(&it); val_free(&v); return 1; }
                if (it.type != YAML_SCALAR_EVENT) {
                    where_at(L, (int)it.start_mark.line + 1, w, sizeof w);
                    yaml_event_delete(&it);
                    val_free(&v);
                    return fail(L, "%s in %s: list elements must be plain values, not lists or "
                                "mappings", path_or_top(path), w);
                }
                val_push(&v, (const char*)it.data.scalar.value,
                         it.data.scalar.style != YAML_PLAIN_SCALAR_STYLE);
                yaml_event_delete(&it);
            }
        }
        if (!*path) {   /* the whole document is one value: only an empty document is fine */
            int empty = !v.list && is_null(&v);
            val_free(&v);
            return empty ? 0 : fail(L, "%s: expected a mapping of sections (run:, model:, task:, "
                                    "data:, train:, ...) at the top level", w);
        }
        if (k < 0 && !v.list && is_null(&v)) { val_free(&v); return 0; }   /* an empty section */
        if (k < 0) {   /* a section given a value */
            char hint[300], vt[80];
            section_keys_hint(path, hint, sizeof hint);
            val_text(&v, vt, sizeof vt);
            val_free(&v);
            return fail(L, "%s = %s in %s: %s is a section; give its keys (%s, ...)", path, vt, w,
                        path, hint);
        }
        add_pair(L, k, line, &v);
        return 0;
    }
    if (e->type != YAML_MAPPING_START_EVENT) {
        yaml_event_delete(e);
        return fail(L, "%s in %s: unexpected YAML event", path_or_top(path), w);
    }
    yaml_event_delete(e);
    if (k >= 0)
        return fail(L, "%s in %s: expected a value, not a mapping", path, w);
    for (;;) {
        yaml_event_t ke;
        if (next_event(L, p, &ke)) return 1;
        if (ke.type == YAML_MAPPING_END_EVENT) { yaml_event_delete(&ke); break; }
        int kl = (int)ke.start_mark.line + 1;
        if (ke.type != YAML_SCALAR_EVENT) {
            if (no_anchor(L, &ke, path)) { yaml_event_delete(&ke); return 1; }
            where_at(L, kl, w, sizeof w);
            yaml_event_delete(&ke);
            return fail(L, "%s in %s: keys must be plain names", path_or_top(path), w);
        }
        if (no_anchor(L, &ke, path)) { yaml_event_delete(&ke); return 1; }
        const char* name = (const char*)ke.data.scalar.value;
        if (ke.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !strcmp(name, "<<")) {
            where_at(L, kl, w, sizeof w);
            yaml_event_delete(&ke);
            return fail(L, "merge key << at %s in %s: anchors, aliases and merge keys are not "
                        "supported; write the values out", path_or_top(path), w);
        }
        char sub[256];
        int n = snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", name);
        yaml_event_delete(&ke);
        if (n >= (int)sizeof sub) {
            where_at(L, kl, w, sizeof w);
            return fail(L, "key %.60s... in %s is too long", sub, w);
        }
        snprintf(L->last_key, sizeof L->last_key, "%s", sub);
        if (L->file && seen_key(L, sub, kl)) return 1;
        if (known_path(L, sub, kl)) return 1;
        yaml_event_t ve;
        if (next_event(L, p, &ve)) return 1;
        if ((rc = node(L, p, &ve, sub))) return rc;
    }
    return 0;
}

/* parses a YAML stream: the file (path "" = the top level) or one --set value at path */
static int parse_stream(Ld* L, const char* text, size_t len, const char* path) {
    yaml_parser_t p;
    CHECK(yaml_parser_initialize(&p), "libyaml init");
    yaml_parser_set_input_string(&p, (const unsigned char*)text, len);
    yaml_event_t e;
    int rc = 1, docs = 0;
    if (next_event(L, &p, &e)) goto done;          /* stream start */
    yaml_event_delete(&e);
    for (;;) {
        if (next_event(L, &p, &e)) goto done;
        if (e.type == YAML_STREAM_END_EVENT) { yaml_event_delete(&e); break; }
        if (e.type != YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&e);
            fail(L, "internal: YAML document expected");
            goto done;
        }
        int line = (int)e.start_mark.line + 1;
        yaml_event_delete(&e);
        if (++docs > 1) {
            char w[WHERE_LEN];
            where_at(L, line, w, sizeof w);
            fail(L, "second YAML document in %s: a config is one document (remove the ---)", w);
            goto done;
        }
        if (next_event(L, &p, &e)) goto done;
        if (node(L, &p, &e, path)) goto done;
        if (next_event(L, &p, &e)) goto done;      /* document end */
        yaml_event_delete(&e);
    }
    if (!docs && *path) {   /* "--set a.b=" : an empty value */
        int k = key_index(path);
        Val v = {0};
        val_push(&v, "", 0);
        if (k < 0) {
            val_free(&v);
            fail(L, "%s in --set %s: a section needs a mapping", path, L->setarg);
            goto done;
        }
        add_pair(L, k, 1, &v);
    }
    rc = 0;
done:
    yaml_parser_delete(&p);
    return rc;
}

/* ---- resolution of defaults that depend on other keys -------------------------------------- */
static int S(const unsigned char* set, const char* path) {
    int k = key_index(path);
    CHECK(k >= 0, "unknown schema key %s", path);
    return set[k];
}

static void resolve(Config* c, const unsigned char* set) {
    HeadConfig d;
    head_config_default(&d, c->task, c->vit.spatial_dims);
    c->head.task = c->task;
    if (!S(set, "task.num_classes")) c->head.num_classes = d.num_classes;
    if (!S(set, "task.head.kind")) c->head.kind = d.kind;
    if (!S(set, "task.head.feature_size")) c->head.feature_size = d.feature_size;
    if (!S(set, "task.head.hidden")) c->head.hidden = d.hidden;
    if (!S(set, "task.head.pool")) c->head.pool = d.pool;
    if (!S(set, "task.head.batchnorm")) c->head.batchnorm = d.batchnorm;
    if (!S(set, "task.head.output")) c->head.output = d.output;
    if (!S(set, "task.head.input_channel")) c->head.input_channel = d.input_channel;
    if (!S(set, "task.head.pe_axis")) c->head.pe_axis = d.pe_axis;
    if (!S(set, "task.head.bn_eps")) c->head.bn_eps = d.bn_eps;
    if (!S(set, "task.head.bn_momentum")) c->head.bn_momentum = d.bn_momentum;
    if (!S(set, "task.head.in_eps")) c->head.in_eps = d.in_eps;
    if (!S(set, "task.head.slope")) c->head.slope = d.slope;
    if (!S(set, "task.loss.kind"))
        snprintf(c->loss_kind, sizeof c->loss_kind, "%s",
                 c->task == HEAD_CLASSIFY ? "ce" : c->task == HEAD_SEGMENT ? "dice_ce" : "l1");
    if (!S(set, "task.metric"))
        snprintf(c->metric, sizeof c->metric, "%s",
                 c->task == HEAD_CLASSIFY ? "auroc" : c->task == HEAD_SEGMENT ? "dice" : "psnr");
    if (!S(set, "data.input.mode"))
        c->input_mode = c->vit.spatial_dims == 2 ? LOADER_SLICE : LOADER_VOLUME;
    if (!S(set, "data.input.context"))
        c->input_context =
            c->input_mode == LOADER_SLICE && !strcmp(c->model_preset, "provicnet-vit-s14") ? 3 : 1;
    if (!S(set, "data.crop")) memcpy(c->crop, c->vit.img, sizeof c->crop);
    if (!S(set, "data.channels")) c->channels[0] = 0;
    if (!c->channels[0]) {   /* the model's channels (the middle slice of each context group) */
        int ctx = c->input_context > 1 && c->vit.in_chans % c->input_context == 0 ? c->input_context : 1;
        for (int i = (ctx - 1) / 2; i < c->vit.in_chans; i += ctx) {
            size_t n = strlen(c->channels);
            snprintf(c->channels + n, sizeof c->channels - n, "%s%s", n ? "," : "", c->vit.channels[i]);
        }
    }
    if (!S(set, "align.layers")) {
        int L = c->vit.depth, n = 0;
        for (int q = 1; q <= 4; q++) {
            int l = (int)lround(L * q / 4.0);
            if (l < 1) l = 1;
            if (n && c->align_layers[n - 1] == l) continue;
            c->align_layers[n++] = l;
        }
        c->align_layers[n++] = 0;
        c->n_align_layers = n;
    }
}

void config_default(Config* c) {
    memset(c, 0, sizeof *c);
    snprintf(c->run_name, sizeof c->run_name, "run");
    snprintf(c->run_out, sizeof c->run_out, "runs/");
    c->seed = 0;
    c->deterministic = 0;
    snprintf(c->device, sizeof c->device, "auto");
    c->overwrite = 0;
    snprintf(c->model_preset, sizeof c->model_preset, "vit-tiny-3d");
    CHECK(vit_preset(&c->vit, c->model_preset) == 0, "preset %s", c->model_preset);
    c->task = HEAD_CLASSIFY;
    c->label_smoothing = 0.0f;
    c->focal_gamma = 2.0f;
    c->dice_include_background = 0;
    c->w_ce = 1.0f;
    c->w_dice = 1.0f;
    snprintf(c->data_path, sizeof c->data_path, "data.h5");
    c->fold = -1;
    c->pos_fraction = 0.33;
    c->augment = 1;
    c->batch = 4;
    c->workers = 2;
    c->epochs = 50;
    c->steps_per_epoch = 0;
    c->lr = 1e-4;
    c->min_lr = 1e-6;
    c->warmup_epochs = 5;
    c->weight_decay = 0.05;
    c->layer_decay = 0.75;
    c->mode = TRAIN_FULL;
    c->freeze_k = 0;
    c->clip_grad = 1.0;
    c->accum_steps = 1;
    c->drop_path = 0.1;
    snprintf(c->precision, sizeof c->precision, "auto");
    c->checkpoint_every = 1;
    c->keep_checkpoints = 3;
    c->early_stop_patience = 0;
    c->skip_nonfinite = 0;
    c->sw_overlap = 0.5;
    snprintf(c->sw_weighting, sizeof c->sw_weighting, "gaussian");
    snprintf(c->align_feature, sizeof c->align_feature, "pooled");
    snprintf(c->align_normalize, sizeof c->align_normalize, "none");
    c->probe_split = SPLIT_VAL;
    c->probe_n_images = 256;
    c->probe_n_tokens = 16384;
    static const int est[] = {EST_MMD2_PAIRED, EST_MMD2_PAIRED_SE, EST_MMD2_U, EST_CKA_LINEAR,
                              EST_MEAN_COS_DIST};
    c->n_estimators = (int)(sizeof est / sizeof est[0]);
    memcpy(c->estimators, est, sizeof est);
    c->bw_rule = MMD_BW_MEDIAN;
    c->n_scales = 3;
    c->scales[0] = 0.5; c->scales[1] = 1.0; c->scales[2] = 2.0;
    c->permutations = 0;
    c->align_every = 1;
    c->load_head = 1;
    snprintf(c->log_swmr, sizeof c->log_swmr, "auto");
    snprintf(c->dist_backend, sizeof c->dist_backend, "none");
    /* MAE's and SimCLR's published defaults (models/pretext.h) */
    c->pretrain = 0;
    pretext_config_default(&c->pt, PRETEXT_MAE);
    unsigned char none[MAX_KEYS] = {0};
    resolve(c, none);
}

/* ---- cross-field validation ---------------------------------------------------------------- */
/* " (KEY set in WHERE)" / " (KEY from preset P)" / " (KEY: default)" */
static void src_note(const Ld* L, const Config* c, int k, char* out, size_t n) {
    if (k < 0) { out[0] = 0; return; }
    if (L->set[k]) snprintf(out, n, " (%s set in %s)", KEYS[k].path, L->where[k]);
    else if (!strncmp(KEYS[k].path, "model.", 6))
        snprintf(out, n, " (%s from preset %s)", KEYS[k].path, c->model_preset);
    else snprintf(out, n, " (%s: default)", KEYS[k].path);
}

static int xfail(Ld* L, const Config* c, const char* key, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int xfail(Ld* L, const Config* c, const char* key, const char* fmt, ...) {
    char msg[600], note[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    src_note(L, c, key_index(key), note, sizeof note);
    return fail(L, "%s%s", msg, note);
}

/* a if it was given, else b if it was given, else a: the key to point the user at */
static const char* pick(const Ld* L, const char* a, const char* b) {
    return L->set[key_index(a)] || !L->set[key_index(b)] ? a : b;
}

/* the first schema key named in msg (longest match at a token start) */
static int first_key_in(const char* msg) {
    for (const char* p = msg; *p; p++) {
        if (p > msg && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.')) continue;
        int best = -1;
        size_t bl = 0;
        for (int i = 0; i < NKEYS; i++) {
            size_t n = strlen(KEYS[i].path);
            if (n > bl && !strncmp(p, KEYS[i].path, n) && !isalnum((unsigned char)p[n]) && p[n] != '_') {
                best = i;
                bl = n;
            }
        }
        if (best >= 0) return best;
    }
    return -1;
}

/* a message of head_config_check / vit_config_check, with config key names */
static int pass_through(Ld* L, const Config* c, const char* msg) {
    Buf b = {0};
    for (const char* p = msg; *p;) {
        int start = p == msg || !(isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.');
        if (start && !strncmp(p, "head.num_classes", 16)) { bputs(&b, "task.num_classes"); p += 16; }
        else if (start && !strncmp(p, "head.", 5)) { bputs(&b, "task.head."); p += 5; }
        else { char ch[2] = {*p++, 0}; bputs(&b, ch); }
    }
    char note[300];
    src_note(L, c, first_key_in(b.p), note, sizeof note);
    fail(L, "%s%s", b.p, note);
    free(b.p);
    return 1;
}

static void dims_text(const Config* c, const int* d, char* out, size_t n) {
    if (c->vit.spatial_dims == 2) snprintf(out, n, "[%d, %d]", d[1], d[2]);
    else snprintf(out, n, "[%d, %d, %d]", d[0], d[1], d[2]);
}

static int validate(Config* c, Ld* L) {
    static const char* const dimkeys[] = {"model.img_size", "model.patch", "data.crop"};
    for (int i = 0; i < 3; i++) {
        int k = key_index(dimkeys[i]);
        if (L->set[k] && L->given[k] != c->vit.spatial_dims)
            return xfail(L, c, dimkeys[i], "%s has %d values but model.spatial_dims = %d needs %d",
                         dimkeys[i], L->given[k], c->vit.spatial_dims, c->vit.spatial_dims);
    }
    int nch = 0;
    while (nch < VIT_MAX_CHANNELS && c->vit.channels[nch][0]) nch++;
    if (nch != c->vit.in_chans)
        return xfail(L, c, "model.in_chans", "model.in_chans = %d but model.channels names %d "
                     "channels; give model.channels with %d names", c->vit.in_chans, nch, c->vit.in_chans);
    char msg[512];
    if (vit_config_check(&c->vit, msg, sizeof msg)) return pass_through(L, c, msg);
    c->head.task = c->task;
    const char* tn = E_TASK[c->task];
    int image_task = c->task != HEAD_CLASSIFY && c->task != HEAD_SEGMENT;
    if (!image_task && c->head.num_classes < 2)
        return xfail(L, c, "task.num_classes", "task.num_classes = %d: %s needs at least 2 classes "
                     "(background/negative included)", c->head.num_classes, tn);
    if (image_task && c->head.num_classes != 1)
        return xfail(L, c, "task.num_classes", "task.num_classes = %d: %s outputs one image channel; "
                     "remove the key or set 1", c->head.num_classes, tn);
    if (head_config_check(&c->head, &c->vit, msg, sizeof msg)) return pass_through(L, c, msg);
    /* loss and metric */
    const char* lk = c->loss_kind;
    int ok = c->task == HEAD_CLASSIFY ? !strcmp(lk, "ce") || !strcmp(lk, "focal")
           : c->task == HEAD_SEGMENT ? !strcmp(lk, "dice_ce")
           : !strcmp(lk, "l1") || !strcmp(lk, "mse");
    if (!ok)
        return xfail(L, c, "task.loss.kind", "task.loss.kind = %s is not a %s loss (classify: ce | "
                     "focal; segment: dice_ce; superres/undistort/synthesize: l1 | mse)", lk, tn);
    if (!strcmp(lk, "focal") && c->label_smoothing > 0)
        return xfail(L, c, "task.loss.label_smoothing", "task.loss.label_smoothing = %g with "
                     "task.loss.kind = focal: the two are not combined; use one", c->label_smoothing);
    if (!strcmp(lk, "focal") && !(c->focal_gamma > 0))
        return xfail(L, c, "task.loss.focal_gamma", "task.loss.focal_gamma = %g: focal loss needs "
                     "gamma > 0 (2.0 is the usual value)", c->focal_gamma);
    if (c->n_class_weights) {
        if (image_task)
            return xfail(L, c, "task.loss.class_weights", "task.loss.class_weights: %s has no "
                         "classes; remove the key", tn);
        if (c->n_class_weights != c->head.num_classes)
            return xfail(L, c, "task.loss.class_weights", "task.loss.class_weights has %d values "
                         "but task.num_classes = %d", c->n_class_weights, c->head.num_classes);
        double s = 0;
        for (int i = 0; i < c->n_class_weights; i++) s += c->class_weights[i];
        if (!(s > 0))
            return xfail(L, c, "task.loss.class_weights", "task.loss.class_weights are all 0");
    }
    static const char* const M_CLS[] = {"auroc", "ap", "accuracy", "balanced_accuracy", NULL};
    static const char* const M_SEG[] = {"dice", "hd95", NULL};
    static const char* const M_IMG[] = {"psnr", "ssim", "mae", NULL};
    const char* const* mm = c->task == HEAD_CLASSIFY ? M_CLS : c->task == HEAD_SEGMENT ? M_SEG : M_IMG;
    ok = 0;
    for (int i = 0; mm[i]; i++) ok |= !strcmp(mm[i], c->metric);
    if (!ok) {
        char all[200];
        join_names(mm, all, sizeof all);
        return xfail(L, c, "task.metric", "task.metric = %s is not a %s metric (use %s)", c->metric,
                     tn, all);
    }
    /* data */
    if (c->vit.spatial_dims == 2 && c->input_mode != LOADER_SLICE)
        return xfail(L, c, "data.input.mode", "data.input.mode = volume with a 2D model "
                     "(model.spatial_dims = 2): use slice");
    if (c->vit.spatial_dims == 3 && c->input_mode != LOADER_VOLUME)
        return xfail(L, c, "data.input.mode", "data.input.mode = slice with a 3D model "
                     "(model.spatial_dims = 3): use volume");
    if (c->input_context % 2 == 0)
        return xfail(L, c, "data.input.context", "data.input.context = %d: must be odd (the slice "
                     "and (context-1)/2 neighbours on each side)", c->input_context);
    if (c->input_mode == LOADER_VOLUME && c->input_context != 1)
        return xfail(L, c, "data.input.context", "data.input.context = %d: volume mode takes no "
                     "slice context; set 1 (or data.input.mode = slice)", c->input_context);
    if (c->vit.in_chans % c->input_context)
        return xfail(L, c, "data.input.context", "data.input.context = %d does not divide "
                     "model.in_chans = %d", c->input_context, c->vit.in_chans);
    if (c->vit.num_extra && c->input_mode != LOADER_SLICE)
        return xfail(L, c, "model.extra_tokens", "model.extra_tokens (slice index/count) need "
                     "data.input.mode = slice");
    {
        char names[VIT_MAX_CHANNELS][16];
        int n = split_names(c->channels, names, VIT_MAX_CHANNELS);
        if (n * c->input_context != c->vit.in_chans)
            return xfail(L, c, "data.channels", "data.channels names %d channels x "
                         "data.input.context %d = %d inputs, but the model takes model.in_chans = %d",
                         n, c->input_context, n * c->input_context, c->vit.in_chans);
    }
    {
        char cs[64], is[64], ps[64];
        dims_text(c, c->crop, cs, sizeof cs);
        dims_text(c, c->vit.img, is, sizeof is);
        dims_text(c, c->vit.patch, ps, sizeof ps);
        for (int a = 0; a < 3; a++)
            if (c->crop[a] % c->vit.patch[a])
                return xfail(L, c, "data.crop", "data.crop = %s is not divisible by model.patch = %s",
                             cs, ps);
        if (memcmp(c->crop, c->vit.img, sizeof c->crop))
            return xfail(L, c, "data.crop", "data.crop = %s differs from model.img_size = %s: not "
                         "built yet (other crop sizes arrive with position-embedding "
                         "interpolation); set model.img_size instead", cs, is);
    }
    /* train */
    if (c->epochs == 0 && !L->pretrain)
        return xfail(L, c, "train.epochs", "train.epochs = 0: vita train needs 1 or more (0 is "
                     "for vita pretrain, which then writes the initial encoder)");
    if (c->pretrain && c->pt.dec_dim % c->pt.dec_heads)
        return xfail(L, c, pick(L, "pretrain.decoder.dim", "pretrain.decoder.heads"),
                     "pretrain.decoder.dim = %d is not a multiple of pretrain.decoder.heads = %d",
                     c->pt.dec_dim, c->pt.dec_heads);
    if (c->min_lr > c->lr)
        return xfail(L, c, pick(L, "train.min_lr", "train.lr"), "train.min_lr = %g is above "
                     "train.lr = %g; lower train.min_lr", c->min_lr, c->lr);
    if (c->warmup_epochs > c->epochs && c->epochs > 0)
        return xfail(L, c, pick(L, "train.warmup_epochs", "train.epochs"), "train.warmup_epochs = "
                     "%g exceeds train.epochs = %d; lower train.warmup_epochs", c->warmup_epochs,
                     c->epochs);
    if (c->mode == TRAIN_FREEZE_FIRST_K && (c->freeze_k < 1 || c->freeze_k > c->vit.depth))
        return xfail(L, c, pick(L, "train.freeze_k", "train.mode"), "train.freeze_k = %d: "
                     "train.mode = freeze_first_k needs train.freeze_k in 1..model.depth (%d)",
                     c->freeze_k, c->vit.depth);
    if (c->mode != TRAIN_FREEZE_FIRST_K && c->freeze_k != 0)
        return xfail(L, c, "train.freeze_k", "train.freeze_k = %d has no effect unless train.mode = "
                     "freeze_first_k; set train.mode or remove the key", c->freeze_k);
    /* align */
    for (int i = 0; i < c->n_align_layers; i++)
        if (c->align_layers[i] > c->vit.depth)
            return xfail(L, c, "align.layers", "align.layers: layer %d is beyond model.depth = %d "
                         "(use 1..%d or norm)", c->align_layers[i], c->vit.depth, c->vit.depth);
    if (!strcmp(c->align_feature, "cls") && !c->vit.cls_token)
        return xfail(L, c, "align.feature", "align.feature = cls but the model has no cls token "
                     "(model.cls_token = false); use pooled or tokens");
    /* run, data paths */
    if (strchr(c->run_name, '/'))
        return xfail(L, c, "run.name", "run.name = %s: must not contain '/' (it names a directory "
                     "under run.out)", c->run_name);
    return 0;
}

/* ---- loading ------------------------------------------------------------------------------- */
static char* read_file(const char* path, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    Buf b = {0};
    char tmp[4096];
    size_t n;
    bputs(&b, "");
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (b.n + n + 1 > b.cap) {
            b.cap = (b.n + n + 1) * 2;
            b.p = realloc(b.p, b.cap);
            CHECK(b.p, "out of memory");
        }
        memcpy(b.p + b.n, tmp, n);
        b.n += n;
        b.p[b.n] = 0;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(b.p); return NULL; }
    *len = b.n;
    return b.p;
}

static void ld_free(Ld* L) {
    for (int i = 0; i < L->np; i++) val_free(&L->pairs[i].v);
    free(L->pairs);
    for (int i = 0; i < L->nseen; i++) free(L->seen[i]);
    free(L->seen);
    free(L->seen_line);
}

static int apply_pair(Config* c, Ld* L, const Pair* pr) {
    const Key* k = &KEYS[pr->key];
    char why[1024];
    if (set_value(c, k, &pr->v, L, pr->key, why, sizeof why)) {
        char vt[80];
        val_text(&pr->v, vt, sizeof vt);
        return fail(L, "%s = %s in %s: %s", k->path, vt, pr->where, why);
    }
    L->set[pr->key] = 1;
    snprintf(L->where[pr->key], WHERE_LEN, "%s", pr->where);
    return 0;
}

/* a key of the other command: one line naming it, where it was set, and the fix */
static int wrong_command(Ld* L) {
    for (int i = 0; i < L->np; i++) {
        const char* k = KEYS[L->pairs[i].key].path;
        if (!L->pretrain && pretrain_only(k))
            return fail(L, "%s in %s: the pretrain section belongs to `vita pretrain`; remove it "
                        "for vita train (or run vita pretrain with this file)", k, L->pairs[i].where);
        if (L->pretrain && finetune_only(k))
            return fail(L, "%s in %s: not used by vita pretrain (fine-tuning only); remove it "
                        "(pretraining reads run, model, data, train and log keys and pretrain.*)",
                        k, L->pairs[i].where);
    }
    return 0;
}

static int load_mode(Config* cfg, const char* path, const char* const* sets, int n_sets,
                     int pretrain, char* err, size_t errlen) {
    static char dummy[2];
    Ld* L = calloc(1, sizeof *L);
    CHECK(L, "out of memory");
    L->err = err ? err : dummy;
    L->errlen = err ? errlen : sizeof dummy;
    L->pretrain = pretrain;
    int rc = 1;
    config_default(cfg);
    cfg->pretrain = pretrain;
    if (path) {
        size_t len = 0;
        char* text = read_file(path, &len);
        if (!text) {
            fail(L, "cannot read config file %s: %s", path, strerror(errno));
            goto done;
        }
        L->file = path;
        int r = parse_stream(L, text, len, "");
        free(text);
        if (r) goto done;
    }
    L->file = NULL;
    for (int i = 0; i < n_sets; i++) {
        const char* s = sets[i];
        L->setarg = s;
        const char* eq = strchr(s, '=');
        if (!eq || eq == s) {
            fail(L, "--set %s: expected KEY=VALUE (for example --set train.lr=1.0e-04)", s);
            goto done;
        }
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - s), s);
        for (char* q = key + strlen(key); q > key && isspace((unsigned char)q[-1]);) *--q = 0;
        L->last_key[0] = 0;
        if (known_path(L, key, 1)) goto done;
        if (parse_stream(L, eq + 1, strlen(eq + 1), key)) goto done;
    }
    if (wrong_command(L)) goto done;
    /* the preset first (the last one given), then every other key in order */
    int kp = key_index("model.preset"), last = -1;
    for (int i = 0; i < L->np; i++)
        if (L->pairs[i].key == kp) last = i;
    if (last >= 0) {
        if (apply_pair(cfg, L, &L->pairs[last])) goto done;
        CHECK(vit_preset(&cfg->vit, cfg->model_preset) == 0, "preset %s", cfg->model_preset);
    }
    for (int i = 0; i < L->np; i++)
        if (L->pairs[i].key != kp && apply_pair(cfg, L, &L->pairs[i])) goto done;
    resolve(cfg, L->set);
    if (validate(cfg, L)) goto done;
    rc = 0;
done:
    ld_free(L);
    free(L);
    return rc;
}

int config_load(Config* cfg, const char* path, const char* const* sets, int n_sets, char* err,
                size_t errlen) {
    return load_mode(cfg, path, sets, n_sets, 0, err, errlen);
}

int config_load_pretrain(Config* cfg, const char* path, const char* const* sets, int n_sets,
                         char* err, size_t errlen) {
    return load_mode(cfg, path, sets, n_sets, 1, err, errlen);
}

/* ---- emission ------------------------------------------------------------------------------ */
/* shortest digits that read back to v (as a float when single), YAML-1.2 style with a '.' and,
 * outside [1e-3, 1e6), a signed two-digit exponent */
static void fmt_real(double v, int single, char* out, size_t n) {
    if (v == 0) { snprintf(out, n, "%s0.0", signbit(v) ? "-" : ""); return; }
    char tmp[64];
    for (int p = 0; p < 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p, v);
        if (single ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) break;
    }
    const char* s = tmp;
    int neg = *s == '-';
    if (neg) s++;
    char dig[32];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (isdigit((unsigned char)*s)) dig[nd++] = *s;
    int E = atoi(s + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = 0;
    Buf b = {0};
    bputs(&b, neg ? "-" : "");
    if (E >= -3 && E < 6) {
        if (E >= 0) {
            for (int i = 0; i <= E; i++) { char ch[2] = {i < nd ? dig[i] : '0', 0}; bputs(&b, ch); }
            bputs(&b, ".");
            bputs(&b, nd > E + 1 ? dig + E + 1 : "0");
        } else {
            bputs(&b, "0.");
            for (int i = 0; i < -E - 1; i++) bputs(&b, "0");
            bputs(&b, dig);
        }
    } else {
        bprintf(&b, "%c.%s", dig[0], nd > 1 ? dig + 1 : "0");
        bprintf(&b, "e%c%02d", E < 0 ? '-' : '+', E < 0 ? -E : E);
    }
    snprintf(out, n, "%s", b.p);
    free(b.p);
}

/* plain when no YAML 1.1 / 1.2 reader can take it for anything but this string */
static int plain_ok(const char* s) {
    static const char* const reserved[] = {"y", "n", "yes", "no", "on", "off", "true", "false",
                                           "null", NULL};
    if (!*s) return 0;
    if (!isalpha((unsigned char)s[0]) && s[0] != '_' && s[0] != '/') return 0;
    if (strspn(s, NAME_CHARS "./+-") != strlen(s))
        return 0;
    char low[16];
    if (strlen(s) < sizeof low) {
        size_t i = 0;
        for (; s[i]; i++) low[i] = (char)tolower((unsigned char)s[i]);
        low[i] = 0;
        for (int r = 0; reserved[r]; r++) if (!strcmp(low, reserved[r])) return 0;
    }
    return 1;
}

static void emit_str(Buf* b, const char* s) {
    if (plain_ok(s)) { bputs(b, s); return; }
    bputs(b, "\"");
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        if (*p == '"' || *p == '\\') bprintf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) bprintf(b, "\\x%02x", *p);
        else { char ch[2] = {(char)*p, 0}; bputs(b, ch); }
    }
    bputs(b, "\"");
}

static void emit_value(const Config* c, const Key* k, Buf* b) {
    char num[64];
    const void* p = cat_(c, k);
    if (k->emit) { k->emit(c, k, b); return; }
    switch (k->type) {
    case T_INT: bprintf(b, "%d", *(const int*)p); return;
    case T_U64: bprintf(b, "%" PRIu64, *(const uint64_t*)p); return;
    case T_F64: fmt_real(*(const double*)p, 0, num, sizeof num); bputs(b, num); return;
    case T_F32: fmt_real(*(const float*)p, 1, num, sizeof num); bputs(b, num); return;
    case T_BOOL: bputs(b, *(const int*)p ? "true" : "false"); return;
    case T_STR:
        if (!*(const char*)p && (k->flags & K_NULLABLE)) bputs(b, "null");
        else emit_str(b, p);
        return;
    case T_ENUM: {
        int v = *(const int*)p;
        for (int i = 0; k->names[i]; i++)
            if ((k->vals ? k->vals[i] : i) == v) { bputs(b, k->names[i]); return; }
        bprintf(b, "%d", v);   /* not a valid value: config_load will reject it */
        return;
    }
    case T_SENUM: emit_str(b, p); return;
    case T_F64S:
    case T_F32S: {
        int n = *(const int*)((const char*)c + k->cnt_off);
        bputs(b, "[");
        for (int i = 0; i < n; i++) {
            double x = k->type == T_F64S ? ((const double*)p)[i] : ((const float*)p)[i];
            fmt_real(x, k->type == T_F32S, num, sizeof num);
            bprintf(b, "%s%s", i ? ", " : "", num);
        }
        bputs(b, "]");
        return;
    }
    }
}

char* config_to_yaml(const Config* c) {
    Buf b = {0};
    bputs(&b, "# vita run configuration, fully resolved: every key (SPEC.md section 7)\n");
    char prev[8][64];
    int nprev = 0;
    for (int i = 0; i < NKEYS; i++) {
        const Key* k = &KEYS[i];
        if (c->pretrain ? finetune_only(k->path) : pretrain_only(k->path)) continue;
        char comp[8][64];
        int nc = 0;
        for (const char* s = k->path; nc < 8;) {
            size_t l = strcspn(s, ".");
            snprintf(comp[nc++], sizeof comp[0], "%.*s", (int)l, s);
            if (!s[l]) break;
            s += l + 1;
        }
        int nsec = nc - 1, cp = 0;
        while (cp < nsec && cp < nprev && !strcmp(comp[cp], prev[cp])) cp++;
        if (cp == 0 && nprev > 0) bputs(&b, "\n");
        for (int l = cp; l < nsec; l++) {
            for (int s = 0; s < l; s++) bputs(&b, "  ");
            bprintf(&b, "%s:\n", comp[l]);
        }
        for (int s = 0; s < nsec; s++) bputs(&b, "  ");
        bprintf(&b, "%s: ", comp[nsec]);
        emit_value(c, k, &b);
        if (k->note) bprintf(&b, "  # %s", k->note);
        bputs(&b, "\n");
        memcpy(prev, comp, sizeof comp);
        nprev = nsec;
    }
    return b.p;
}
