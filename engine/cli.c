/* engine/cli.c — the `vita` command line: global flags, subcommand dispatch, `vita info`.
 * Commands whose machinery has not landed yet say so and exit 1 (SPEC.md: never silently
 * ignore a request). Exit codes: 0 ok, 1 user error, 2 internal error, 75 preempted. */
#include "cli.h"
#include "check.h"
#include "safetensors.h"
#include "dataset.h"
#include "phantom.h"
#include "train.h"
#include "features.h"
#include "info.h"
#include "commands.h"
#include "../models/vit.h"
#include "../models/vit_weights.h"

#include <stdio.h>
#include <string.h>

static const char* USAGE =
    "vita — fine-tune ViT foundation models on prostate MRI and measure feature alignment\n"
    "\n"
    "usage: vita COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  info FILE          what a dataset (.h5) or weights file (.safetensors) holds\n"
    "  phantom --out D.h5 synthetic prostate mpMRI dataset (vita phantom --help)\n"
    "  import --layout L SRC --out D.h5  real data from NIfTI / MHA (vita import --help)\n"
    "  pretrain CONFIG.yaml  MAE / contrastive pretraining      (vita pretrain --help)\n"
    "  train CONFIG.yaml  fine-tune on one task, log alignment (vita train --help)\n"
    "  eval RUN_DIR|CKPT  per-case metrics CSV + overall       (vita eval --help)\n"
    "  features           per-layer features to HDF5           (vita features --help)\n"
    "  predict RUN_DIR|CKPT  NIfTI predictions in native geometry (vita predict --help)\n"
    "  mmd A.h5 [B.h5]    MMD / CKA between feature sets (vita mmd --help)\n"
    "  sweep SWEEP.yaml --out DIR  numbered run configs for a job array (vita sweep --help)\n"
    "  report DIR...      the paper's table + correlations      (vita report --help)\n"
    "\n"
    "global options: --help  --version  --device cpu|cuda|auto  --threads N  --quiet\n"
    "exit codes: 0 ok, 1 user error, 2 internal error, 75 preempted (checkpointed, requeue)\n";

static int cmd_info(int argc, char** argv) {
    const char* path = NULL;
    int show_config = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: vita info FILE [--config]\n"
                   "  FILE.safetensors: tensors (name, dtype, shape), metadata, the model config\n"
                   "  FILE.h5 by its format attribute:\n"
                   "    vita-dataset:  schema, validation, cases per split and fold, labels, classes\n"
                   "    vita-log:      run identity, row counts, val metric per epoch, the last\n"
                   "                   alignment row per estimator, /summary and /test (also while\n"
                   "                   the run writes it: SWMR read); --config prints the config\n"
                   "    vita-features: layers, shapes, cases, the weights' sha256\n"
                   "    other HDF5:    attributes and datasets\n");
            return 0;
        } else if (!strcmp(argv[i], "--config")) {
            show_config = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "vita: info: unknown option '%s'; see vita info --help\n", argv[i]);
            return VITA_EXIT_USER;
        } else if (path) {
            fprintf(stderr, "vita: info: one FILE expected, got '%s' and '%s'\n", path, argv[i]);
            return VITA_EXIT_USER;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "vita: info: FILE expected (vita info FILE.h5|FILE.safetensors)\n");
        return VITA_EXIT_USER;
    }
    size_t n = strlen(path);
    if (n < 12 || strcmp(path + n - 12, ".safetensors")) return info_print_h5(path, show_config);
    StFile f;
    char err[512];
    if (st_open(&f, path, err, sizeof err)) {
        fprintf(stderr, "vita: %s\n", err);
        return VITA_EXIT_USER;
    }
    static const char* dt[] = {"F32", "F16", "BF16"};
    long long total = 0;
    printf("%s: safetensors, %d tensors, %llu data bytes\n", path, f.n, (unsigned long long)f.data_len);
    for (int i = 0; i < f.n; i++) {
        const StTensor* t = &f.t[i];
        char shape[128];
        size_t k = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t->ndim && k < sizeof shape; d++)
            k += snprintf(shape + k, sizeof shape - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
        if (k < sizeof shape) snprintf(shape + k, sizeof shape - k, "]");
        printf("  %-48s %-5s %s\n", t->name, dt[t->dtype], shape);
        total += t->numel;
    }
    printf("parameters: %lld\n", total);
    for (int i = 0; i < f.n_meta; i++) {
        if (!strcmp(f.meta_key[i], "model")) continue;
        printf("metadata %s: %s\n", f.meta_key[i], f.meta_val[i]);
    }
    const char* js = st_meta(&f, "model");
    if (js) {
        VitConfig cfg;
        if (vit_config_from_json(&cfg, js, err, sizeof err))
            printf("model config: unreadable (%s)\n", err);
        else
            printf("model: %s  %dD  img %dx%dx%d  patch %dx%dx%d  dim %d  depth %d  heads %d  "
                   "registers %d  extra %d  pos %s\n",
                   cfg.preset[0] ? cfg.preset : "custom", cfg.spatial_dims, cfg.img[0], cfg.img[1],
                   cfg.img[2], cfg.patch[0], cfg.patch[1], cfg.patch[2], cfg.dim, cfg.depth,
                   cfg.heads, cfg.num_registers, cfg.num_extra,
                   cfg.pos_embed == VIT_POS_SINCOS ? "sincos" : "learned");
    }
    st_close(&f);
    return 0;
}

int vita_main(int argc, char** argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(USAGE, stdout);
        return argc < 2 ? VITA_EXIT_USER : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("vita %s\n", VITA_VERSION);
        return 0;
    }
    const char* cmd = argv[1];
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "mmd")) return cmd_mmd(argc - 1, argv + 1);
    if (!strcmp(cmd, "phantom")) return cmd_phantom(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "features")) return cmd_features(argc - 1, argv + 1);
    if (!strcmp(cmd, "pretrain")) return cmd_pretrain(argc - 1, argv + 1);
    if (!strcmp(cmd, "sweep")) return cmd_sweep(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "import")) return cmd_import(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict")) return cmd_predict(argc - 1, argv + 1);
    fprintf(stderr, "vita: unknown command '%s'; run 'vita --help' for the list\n", cmd);
    return VITA_EXIT_USER;
}
