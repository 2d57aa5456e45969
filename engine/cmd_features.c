/* engine/cmd_features.c — `vita features`: per-layer features of a model on a dataset split,
 * written as a features file (SPEC.md §5, format "vita-features", version 1):
 *   /layer_<name>/pooled  float32 [N, dim]       mean over patch tokens (SPEC.md §6)
 *   /layer_<name>/tokens  float32 [N*T', dim]    with --tokens T': T' patch tokens per image,
 *                                                sampled with the seed (features_sample_tokens)
 *   /case_id              variable-length strings [N]
 *   attrs: format, version, weights, weights_sha256, data_path, split, layers ("3,6,norm"),
 *          normalize, tokens_per_image, seed, n_images, model (JSON), vita_version
 * Inputs are the fixed centre crops of the model's img size (features_crop_case), the same
 * inputs the alignment probe uses. The file is written to a temporary name in the same
 * directory and renamed over --out when complete. */
#include "features.h"
#include "atomic.h"
#include "numparse.h"
#include "check.h"
#include "dataset.h"
#include "sha256.h"
#include "../models/vit_weights.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char* FEATURES_USAGE =
    "usage: vita features --weights W.safetensors --data DATA.h5 --out F.h5 [options]\n"
    "\n"
    "Runs the encoder on fixed centre crops (the model's img size) of a dataset split and\n"
    "writes per-layer features: /layer_<L>/pooled [N, dim] (mean over patch tokens),\n"
    "optionally /layer_<L>/tokens [N*T, dim], /case_id [N], and the weights' sha256.\n"
    "Compare two such files with: vita mmd before.h5 after.h5 --layer 6 --paired\n"
    "\n"
    "options:\n"
    "  --layers L,...      blocks 1..depth and/or norm (default: depth/4, depth/2, 3depth/4,\n"
    "                      depth, norm — 3,6,9,12,norm for depth 12)\n"
    "  --split S           train, val, test, probe or all (default all)\n"
    "  --tokens T          also write T sampled patch tokens per image (seeded)\n"
    "  --seed S            seed of the token sample (default 0; align uses the run seed)\n"
    "  --normalize none|l2 divide every feature row by its norm (default none)\n"
    "  --channels NAMES    dataset channels feeding the model, in its order (default: the\n"
    "                      model's channel names; 2D models: sequences, times slice context)\n"
    "  --batch B           images per forward pass (default 8)\n"
    "  --device cpu|cuda|auto  --threads N  --quiet  --help\n"
    "exit codes: 0 ok, 1 bad input (one line naming the file/flag), 2 internal error\n";

/* ---- HDF5 writing (every call checked) ------------------------------------------------ */
#define H5OK(x, what)                                                                      \
    do {                                                                                   \
        if ((x) < 0) {                                                                     \
            fprintf(stderr, "vita: features: HDF5 failed writing %s (%s): is the disk full "  \
                    "or the directory read-only?\n", tmp, what);                           \
            unlink(tmp);                                                                   \
            exit(VITA_EXIT_USER);                                                          \
        }                                                                                  \
    } while (0)

static void put_str_attr(hid_t f, const char* name, const char* val, const char* tmp) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5OK(t, name);
    H5OK(H5Tset_size(t, strlen(val) ? strlen(val) : 1), name);
    H5OK(H5Tset_cset(t, H5T_CSET_UTF8), name);
    hid_t sp = H5Screate(H5S_SCALAR);
    H5OK(sp, name);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5OK(a, name);
    H5OK(H5Awrite(a, t, strlen(val) ? val : ""), name);
    H5Aclose(a); H5Sclose(sp); H5Tclose(t);
}

static void put_long_attr(hid_t f, const char* name, long long v, const char* tmp) {
    hid_t sp = H5Screate(H5S_SCALAR);
    H5OK(sp, name);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5OK(a, name);
    H5OK(H5Awrite(a, H5T_NATIVE_LLONG, &v), name);
    H5Aclose(a); H5Sclose(sp);
}

static void put_matrix(hid_t f, const char* name, const float* data, long rows, int cols,
                       const char* tmp) {
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    H5OK(sp, name);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5OK(lcpl, name);
    H5OK(H5Pset_create_intermediate_group(lcpl, 1), name);
    hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5OK(d, name);
    H5OK(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), name);
    H5Dclose(d); H5Pclose(lcpl); H5Sclose(sp);
}

static void put_case_ids(hid_t f, const Dataset* ds, const int* cases, int n, const char* tmp) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5OK(t, "/case_id");
    H5OK(H5Tset_size(t, H5T_VARIABLE), "/case_id");
    H5OK(H5Tset_cset(t, H5T_CSET_UTF8), "/case_id");
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    H5OK(sp, "/case_id");
    hid_t d = H5Dcreate2(f, "/case_id", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5OK(d, "/case_id");
    const char** ids = xmalloc(sizeof(char*) * n);
    for (int k = 0; k < n; k++) ids[k] = ds->case_id[cases[k]];
    H5OK(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids), "/case_id");
    free(ids);
    H5Dclose(d); H5Sclose(sp); H5Tclose(t);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int cmd_features(int argc, char** argv) {
    const char *weights = NULL, *data = NULL, *out = NULL, *layers_arg = NULL;
    const char *split_arg = "all", *device = "auto", *channels = NULL, *normalize = "none";
    int tokens = 0, batch = 8, threads = 0, quiet = 0;
    unsigned long long seed = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        const char* need[] = {"--weights", "--data", "--out", "--layers", "--split", "--tokens",
                              "--batch", "--threads", "--device", "--seed", "--channels",
                              "--normalize"};
        for (size_t k = 0; k < sizeof need / sizeof need[0]; k++)
            if (!strcmp(a, need[k]) && i + 1 >= argc)
                USER_ERROR("features: %s needs a value; see vita features --help", a);
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(FEATURES_USAGE, stdout); return 0; }
        else if (!strcmp(a, "--weights")) weights = argv[++i];
        else if (!strcmp(a, "--data")) data = argv[++i];
        else if (!strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--layers")) layers_arg = argv[++i];
        else if (!strcmp(a, "--split")) split_arg = argv[++i];
        else if (!strcmp(a, "--tokens")) tokens = (int)arg_long(a, argv[++i], 1, 1 << 20);
        else if (!strcmp(a, "--batch")) batch = (int)arg_long(a, argv[++i], 1, 4096);
        else if (!strcmp(a, "--threads")) threads = (int)arg_long(a, argv[++i], 0, 4096);
        else if (!strcmp(a, "--device")) device = argv[++i];
        else if (!strcmp(a, "--channels")) channels = argv[++i];
        else if (!strcmp(a, "--normalize")) normalize = argv[++i];
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--seed")) {
            const char* v = argv[++i];
            char* end;
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                USER_ERROR("--seed '%s': expected a non-negative integer", v);
        } else
            USER_ERROR("features: unknown %s '%s'; see vita features --help",
                       a[0] == '-' ? "option" : "argument", a);
    }
    if (argc < 2) {
        fputs(FEATURES_USAGE, stderr);
        return VITA_EXIT_USER;
    }
    if (!weights || !data || !out)
        USER_ERROR("features: %s is required (vita features --weights W.safetensors --data "
                   "DATA.h5 --out F.h5; see --help)", !weights ? "--weights" : !data ? "--data" : "--out");
    if (strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto"))
        USER_ERROR("--device '%s': use cpu, cuda or auto", device);
    if (strcmp(normalize, "none") && strcmp(normalize, "l2"))
        USER_ERROR("--normalize '%s': use none or l2", normalize);
    int split = -1;
    if (!strcmp(split_arg, "train")) split = SPLIT_TRAIN;
    else if (!strcmp(split_arg, "val")) split = SPLIT_VAL;
    else if (!strcmp(split_arg, "test")) split = SPLIT_TEST;
    else if (!strcmp(split_arg, "probe")) split = SPLIT_PROBE;
    else if (strcmp(split_arg, "all"))
        USER_ERROR("--split '%s': use train, val, test, probe or all", split_arg);

    char err[1024];
    /* the model and its weights */
    VitConfig vc;
    if (vit_config_from_weights(&vc, weights)) return VITA_EXIT_USER;
    int layers[CFG_MAX_LAYERS], n_layers = 0;
    if (layers_arg) {
        if (features_parse_layers(layers_arg, vc.depth, layers, &n_layers, CFG_MAX_LAYERS, err,
                                  sizeof err))
            USER_ERROR("--layers: %s", err);
    } else {
        for (int q = 1; q <= 4; q++) {
            int l = (vc.depth * q + 3) / 4;
            int dup = 0;
            for (int k = 0; k < n_layers; k++) dup |= layers[k] == l;
            if (l >= 1 && !dup) layers[n_layers++] = l;
        }
        layers[n_layers++] = 0;
    }
    char hex[65];
    if (sha256_file(weights, hex, err, sizeof err)) USER_ERROR("%s", err);

    Dataset ds;
    if (dataset_open(&ds, data, err, sizeof err)) USER_ERROR("%s", err);
    int* cases = xmalloc(sizeof(int) * (ds.n ? ds.n : 1));
    int N = 0;
    for (int i = 0; i < ds.n; i++)
        if (split < 0 || ds.split[i] == split) cases[N++] = i;
    if (!N) USER_ERROR("%s: no cases in split %s; choose another with --split (train, val, test, "
                       "probe, all)", data, split_arg);
    FeatChannels ch;
    if (features_channels(&ds, &vc, channels, &ch, err, sizeof err)) USER_ERROR("%s", err);
    if (ch.missing[0] && !quiet)
        fprintf(stderr, "vita features: channels %s not in %s: zero inputs\n", ch.missing, data);

    Ctx c;
    if (ctx_open(&c, device, threads, 1)) return VITA_EXIT_USER;
    Vit m;
    vit_create(&m, &c, &vc);
    VitLoadReport rep;
    if (vit_load_weights(&m, weights, !quiet, &rep)) return VITA_EXIT_USER;
    if (batch > N) batch = N;
    vit_alloc_activations(&m, batch);
    if (tokens > m.P)
        USER_ERROR("--tokens %d: the model has %d patch tokens per image", tokens, m.P);

    FeatSpec ps, ts;
    memset(&ps, 0, sizeof ps);
    ps.n_layers = n_layers;
    memcpy(ps.layers, layers, sizeof(int) * n_layers);
    ps.kind = FEAT_POOLED;
    ps.group = 1;
    int32_t* tidx = NULL;
    ts = ps;
    if (tokens) {
        tidx = xmalloc(sizeof(int32_t) * (size_t)N * tokens);
        features_sample_tokens(N, tokens, m.P, seed, tidx);
        ts.kind = FEAT_TOKENS;
        ts.group = tokens;
        ts.token_idx = tidx;
    }
    if (features_check(&m, &ps, err, sizeof err)) USER_ERROR("%s", err);

    const int D = vc.dim, E = vc.num_extra;
    const long per = (long)vc.in_chans * vc.img[0] * vc.img[1] * vc.img[2];
    float** pooled = xcalloc(n_layers, sizeof(float*));
    float** tok = xcalloc(n_layers, sizeof(float*));
    for (int l = 0; l < n_layers; l++) {
        pooled[l] = dev_alloc(&c, sizeof(float) * (size_t)N * D);
        if (tokens) tok[l] = dev_alloc(&c, sizeof(float) * (size_t)N * tokens * D);
    }
    float* himg = xmalloc(sizeof(float) * per * batch);
    float* hext = E ? xmalloc(sizeof(float) * E * batch) : NULL;
    float* dimg = dev_alloc(&c, sizeof(float) * per * batch);
    float* dext = E ? dev_alloc(&c, sizeof(float) * E * batch) : NULL;
    if (!quiet)
        fprintf(stderr, "vita features: %s on %s split %s (%d images), layers %s, %s, %d threads\n",
                weights, data, split_arg, N, layers_arg ? layers_arg : "default",
                ctx_device_name(&c), c.threads);
    double t0 = now_s();
    for (int i0 = 0; i0 < N; i0 += batch) {
        int B = N - i0 < batch ? N - i0 : batch;
        if (features_read_inputs(&ds, cases + i0, B, &vc, &ch, himg, hext, err, sizeof err))
            USER_ERROR("%s", err);
        copy_h2d(&c, dimg, himg, sizeof(float) * per * B);
        if (E) copy_h2d(&c, dext, hext, sizeof(float) * E * B);
        features_batch(&m, dimg, dext, B, i0, &ps, pooled);
        if (tokens) features_gather(&m, B, i0, &ts, tok);
        if (!quiet) {
            double el = now_s() - t0, rate = (i0 + B) / (el > 1e-9 ? el : 1e-9);
            fprintf(stderr, "\rvita features: %d/%d images  %.1f img/s  ETA %.0f s   ", i0 + B, N,
                    rate, (N - i0 - B) / rate);
        }
    }
    if (!quiet) fprintf(stderr, "\n");
    const int l2 = !strcmp(normalize, "l2");
    if (l2)
        for (int l = 0; l < n_layers; l++) {
            features_l2_rows(&c, pooled[l], N, D);
            if (tokens) features_l2_rows(&c, tok[l], (long)N * tokens, D);
        }

    /* ---- write: temporary file in the target's directory, then rename ---------------- */
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    dataset_h5_lock();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        dataset_h5_unlock();
        USER_ERROR("cannot create %s (for --out %s): check that the directory exists and is "
                   "writable", tmp, out);
    }
    float* h = xmalloc(sizeof(float) * (size_t)N * (tokens > 1 ? tokens : 1) * D);
    char name[64], lname[8], layer_list[256] = "";
    size_t ll = 0;
    for (int l = 0; l < n_layers; l++) {
        features_layer_name(layers[l], lname);
        ll += snprintf(layer_list + ll, sizeof layer_list - ll, "%s%s", l ? "," : "", lname);
        copy_d2h(&c, h, pooled[l], sizeof(float) * (size_t)N * D);
        snprintf(name, sizeof name, "/layer_%s/pooled", lname);
        put_matrix(f, name, h, N, D, tmp);
        if (tokens) {
            copy_d2h(&c, h, tok[l], sizeof(float) * (size_t)N * tokens * D);
            snprintf(name, sizeof name, "/layer_%s/tokens", lname);
            put_matrix(f, name, h, (long)N * tokens, D, tmp);
        }
    }
    put_case_ids(f, &ds, cases, N, tmp);
    put_str_attr(f, "format", "vita-features", tmp);
    put_long_attr(f, "version", 1, tmp);
    put_str_attr(f, "weights", weights, tmp);
    put_str_attr(f, "weights_sha256", hex, tmp);
    put_str_attr(f, "data_path", data, tmp);
    put_str_attr(f, "split", split_arg, tmp);
    put_str_attr(f, "layers", layer_list, tmp);
    put_str_attr(f, "normalize", normalize, tmp);
    put_str_attr(f, "crop", "centre crop of the model's img size", tmp);
    put_long_attr(f, "tokens_per_image", tokens, tmp);
    put_long_attr(f, "seed", (long long)seed, tmp);
    put_long_attr(f, "n_images", N, tmp);
    char* js = vit_config_to_json(&vc);
    put_str_attr(f, "model", js ? js : "", tmp);
    free(js);
    put_str_attr(f, "vita_version", VITA_VERSION, tmp);
    H5OK(H5Fflush(f, H5F_SCOPE_GLOBAL), "flush");
    H5OK(H5Fclose(f), "close");
    dataset_h5_unlock();
    (void)atomic_fsync_file(tmp);
    int re = atomic_rename(tmp, out);
    if (re) USER_ERROR("cannot rename %s to %s: %s", tmp, out, strerror(re));
    if (!quiet)
        fprintf(stderr, "vita features: wrote %s (%d images x %d layers%s) in %.1f s\n", out, N,
                n_layers, tokens ? ", tokens" : "", now_s() - t0);

    free(h);
    for (int l = 0; l < n_layers; l++) {
        dev_free(&c, pooled[l]);
        if (tok[l]) dev_free(&c, tok[l]);
    }
    free(pooled); free(tok); free(tidx); free(himg); free(hext);
    dev_free(&c, dimg);
    if (dext) dev_free(&c, dext);
    vit_free(&m);
    ctx_close(&c);
    dataset_close(&ds);
    free(cases);
    return 0;
}
