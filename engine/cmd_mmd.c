/* engine/cmd_mmd.c — `vita mmd`: MMD² / energy / CKA / cosine distance between two feature sets
 * read from HDF5 (SPEC.md §1, §5, §6). The estimators themselves live in engine/mmd.c; this
 * file resolves which two matrices to compare, checks them (so every bad input fails with one
 * line naming the file, dataset or flag and the fix), uploads them and prints a table or JSON.
 * Exit codes: 0 ok, 1 user error, 2 internal error. */
#include "cli.h"
#include "numparse.h"
#include "check.h"
#include "h5read.h"
#include "mmd.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* MMD_USAGE =
    "usage: vita mmd A.h5 [B.h5] [options]\n"
    "\n"
    "Compares two feature sets: the same layer of two feature files (vita features), two\n"
    "datasets of one file, or any 2-D float HDF5 datasets [rows, features].\n"
    "  vita mmd before.h5 after.h5 --layer 6 --paired      same images, before/after fine-tuning\n"
    "  vita mmd F.h5 --layer 3,12                          two layers of one file\n"
    "  vita mmd X.h5 --dataset a --dataset b               two datasets of one file (or --dataset a,b)\n"
    "\n"
    "options:\n"
    "  --layer L[,L2]        compare /layer_L/pooled (features files; L = 1..depth or norm)\n"
    "  --dataset NAME[,NAME] compare these datasets (one name: the same in both files)\n"
    "  --tokens              use /layer_L/tokens [N*T, d]; bootstrap resamples whole images\n"
    "                        (T = rows / len(/case_id))\n"
    "  --paired              row i of A and row i of B are the same case (needs equal rows)\n"
    "  --estimator NAMES     comma list (default: all that apply): mmd2_paired mmd2_paired_se\n"
    "                        mmd2_u mmd2_u_se mmd2_b mmd2_linear mmd2_linear_z energy\n"
    "                        cka_linear cka_linear_u cka_rbf mean_cos_dist\n"
    "  --bandwidth R         median (default), mean, or a fixed sigma > 0\n"
    "  --scales S1,S2,...    bandwidth multipliers, at most 8 (default 0.5,1,2)\n"
    "  --permutations B      permutation test with B draws -> p-values (default 0: none)\n"
    "  --bootstrap B         case-level bootstrap with B draws -> 95% CIs (default 0: none)\n"
    "  --seed S              seed of the permutations, bootstrap and median subsample (default 0)\n"
    "  --json                one JSON object instead of the table\n"
    "  --device cpu|cuda|auto  --threads N  --quiet  --help\n"
    "exit codes: 0 ok, 1 bad input (one line naming the file/dataset/flag), 2 internal error\n";

/* the SPEC.md §6 order, paired estimators first (the alignment default) */
static const int ORDER[EST_COUNT] = {
    EST_MMD2_PAIRED, EST_MMD2_PAIRED_SE, EST_MMD2_U, EST_MMD2_U_SE, EST_MMD2_B,
    EST_MMD2_LINEAR, EST_MMD2_LINEAR_Z, EST_ENERGY, EST_CKA_LINEAR, EST_CKA_LINEAR_U,
    EST_CKA_RBF, EST_MEAN_COS_DIST};

typedef struct {
    const char* path;
    char dataset[512];
    float* h;         /* host rows */
    long rows, cols;
    long cases;       /* len(/case_id) with --tokens, else rows */
} Source;

static void valid_estimators(char* buf, size_t len) {
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < EST_COUNT && k < len; i++)
        k += snprintf(buf + k, len - k, "%s%s", i ? ", " : "", mmd_estimator_name(ORDER[i]));
}

static double parse_pos(const char* flag, const char* s) {
    char* end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || !isfinite(v))
        USER_ERROR("%s '%s': expected a positive number", flag, s);
    return v;
}

/* appends the comma-separated items of s to list (at most max) */
static int split_into(const char* flag, const char* s, char list[][256], int n, int max) {
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s", s);
    char* save = NULL;
    for (char* tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n >= max) USER_ERROR("%s: at most %d names (one per feature set)", flag, max);
        if (strlen(tok) >= 256) USER_ERROR("%s: name '%.40s...' too long", flag, tok);
        snprintf(list[n++], 256, "%s", tok);
    }
    return n;
}

/* the one /layer_<L>/ group of a features file, when there is exactly one */
static void auto_layer(const char* path, const char* kind, char* out, size_t len) {
    char have[8192];
    int k = h5_list_datasets(path, "/layer_", have, sizeof have);
    if (k < 0) {
        char err[512];
        if (h5_dataset_len(path, "/", err, sizeof err) < 0) USER_ERROR("%s", err);
        USER_ERROR("cannot list the datasets of %s", path);
    }
    /* count the entries /layer_<L>/<kind> */
    char list[8192], layer_list[1024] = "";
    snprintf(list, sizeof list, "%s", have);
    int found = 0;
    char* save = NULL;
    char suffix[32];
    snprintf(suffix, sizeof suffix, "/%s", kind);
    for (char* tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        size_t tl = strlen(tok), sl = strlen(suffix);
        if (tl > sl && !strcmp(tok + tl - sl, suffix)) {
            if (!found) snprintf(out, len, "%s", tok);
            size_t ll = strlen(layer_list);
            if (ll + tl + 3 < sizeof layer_list)
                snprintf(layer_list + ll, sizeof layer_list - ll, "%s%.*s", ll ? ", " : "",
                         (int)(tl - sl - 1), tok + 1);  /* "layer_3" */
            found++;
        }
    }
    if (found == 1) return;
    if (found == 0) {
        char all[600];
        h5_list_datasets(path, NULL, all, sizeof all);
        USER_ERROR("%s has no /layer_<L>/%s features; name a dataset with --dataset NAME "
                   "(datasets there: %s)", path, kind, all[0] ? all : "none");
    }
    USER_ERROR("%s has several layers (%s); choose one with --layer L", path, layer_list);
}

/* reads src, checks shape and finiteness, resolves the case count for --tokens */
static void load(Source* s, int tokens) {
    char err[1024];
    if (h5_read_matrix(s->path, s->dataset, &s->h, &s->rows, &s->cols, err, sizeof err))
        USER_ERROR("%s", err);
    if (s->rows < 2)
        USER_ERROR("%s %s has %ld row; MMD needs at least 2 rows per feature set",
                   s->path, s->dataset, s->rows);
    for (long i = 0; i < s->rows; i++)
        for (long j = 0; j < s->cols; j++)
            if (!isfinite(s->h[i * s->cols + j]))
                USER_ERROR("%s %s row %ld (0-based), column %ld is %s; remove or recompute that "
                           "row", s->path, s->dataset, i, j,
                           isnan(s->h[i * s->cols + j]) ? "NaN" : "Inf");
    s->cases = s->rows;
    if (tokens) {
        long nc = h5_dataset_len(s->path, "/case_id", err, sizeof err);
        if (nc < 0)
            USER_ERROR("--tokens needs /case_id in %s to group token rows by image (%s)",
                       s->path, err);
        if (nc < 2 || s->rows % nc)
            USER_ERROR("%s %s: %ld token rows are not a whole number of tokens per image for "
                       "%ld cases in /case_id; the file is inconsistent (rewrite it with vita "
                       "features)", s->path, s->dataset, s->rows, nc);
        s->cases = nc;
    }
}

/* bounded string copy; names were length-checked on parsing */
static void copy_str(char* dst, size_t len, const char* src) {
    size_t n = strlen(src);
    if (n >= len) n = len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static cJSON* num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

/* the SE shown beside an estimate: its own se, else its companion "_se" value */
static double se_of(const MmdResult* r, int e) {
    if (isfinite(r->se[e])) return r->se[e];
    if (e == EST_MMD2_U) return r->value[EST_MMD2_U_SE];
    if (e == EST_MMD2_PAIRED) return r->value[EST_MMD2_PAIRED_SE];
    return NAN;
}

static void fmt(char* b, size_t n, double v) {
    if (isfinite(v)) snprintf(b, n, "%.6g", v);
    else snprintf(b, n, "-");
}

static const char* rule_name(int rule) {
    return rule == MMD_BW_MEDIAN ? "median" : rule == MMD_BW_MEAN ? "mean" : "fixed";
}

int cmd_mmd(int argc, char** argv) {
    const char* files[2] = {NULL, NULL};
    int nfiles = 0;
    char dsets[2][256], layers[2][256];
    int ndsets = 0, nlayers = 0;
    int paired = 0, tokens = 0, json = 0, quiet = 0, threads = 0;
    int want[EST_COUNT] = {0}, any_want = 0;
    const char* device = "auto";
    MmdConfig cfg;
    mmd_config_default(&cfg);

    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        /* flags that take a value: the value must be there */
        const char* need[] = {"--dataset", "--layer", "--estimator", "--bandwidth", "--scales",
                              "--permutations", "--bootstrap", "--seed", "--threads", "--device"};
        for (size_t k = 0; k < sizeof need / sizeof need[0]; k++)
            if (!strcmp(a, need[k]) && i + 1 >= argc)
                USER_ERROR("mmd: %s needs a value; see vita mmd --help", a);
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(MMD_USAGE, stdout); return 0; }
        else if (!strcmp(a, "--dataset")) ndsets = split_into(a, argv[++i], dsets, ndsets, 2);
        else if (!strcmp(a, "--layer")) nlayers = split_into(a, argv[++i], layers, nlayers, 2);
        else if (!strcmp(a, "--paired")) paired = 1;
        else if (!strcmp(a, "--tokens")) tokens = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--estimator")) {
            char tmp[1024];
            snprintf(tmp, sizeof tmp, "%s", argv[++i]);
            char* save = NULL;
            for (char* t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int e = mmd_estimator_from_name(t);
                if (e < 0) {
                    char valid[512];
                    valid_estimators(valid, sizeof valid);
                    USER_ERROR("--estimator: unknown estimator '%s'; valid: %s", t, valid);
                }
                want[e] = 1;
                any_want = 1;
            }
        } else if (!strcmp(a, "--bandwidth")) {
            const char* v = argv[++i];
            if (!strcmp(v, "median")) cfg.bandwidth_rule = MMD_BW_MEDIAN;
            else if (!strcmp(v, "mean")) cfg.bandwidth_rule = MMD_BW_MEAN;
            else {
                char* end;
                errno = 0;
                double s = strtod(v, &end);
                if (errno || end == v || *end || !(s > 0) || !isfinite(s))
                    USER_ERROR("--bandwidth '%s': use median, mean or a fixed sigma > 0 "
                               "(in feature units)", v);
                cfg.bandwidth_rule = MMD_BW_FIXED;
                cfg.sigma = s;
            }
        } else if (!strcmp(a, "--scales")) {
            char tmp[1024];
            snprintf(tmp, sizeof tmp, "%s", argv[++i]);
            int S = 0;
            char* save = NULL;
            for (char* t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (S >= MMD_MAX_S) USER_ERROR("--scales: at most %d scales", MMD_MAX_S);
                cfg.scales[S++] = parse_pos("--scales", t);
            }
            if (!S) USER_ERROR("--scales '%s': give positive numbers, e.g. 0.5,1,2", argv[i]);
            cfg.n_scales = S;
        } else if (!strcmp(a, "--permutations"))
            cfg.permutations = (int)arg_long(a, argv[++i], 0, 1000000);
        else if (!strcmp(a, "--bootstrap"))
            cfg.bootstrap = (int)arg_long(a, argv[++i], 0, 1000000);
        else if (!strcmp(a, "--seed")) {
            const char* v = argv[++i];
            char* end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                USER_ERROR("--seed '%s': expected a non-negative integer", v);
            cfg.seed = s;
        } else if (!strcmp(a, "--threads")) threads = (int)arg_long(a, argv[++i], 0, 4096);
        else if (!strcmp(a, "--device")) device = argv[++i];
        else if (a[0] == '-' && a[1])
            USER_ERROR("mmd: unknown option '%s'; see vita mmd --help", a);
        else {
            if (nfiles == 2)
                USER_ERROR("mmd: a third file '%s'; vita mmd compares A.h5 with B.h5 (or two "
                           "datasets of A.h5)", a);
            files[nfiles++] = a;
        }
    }
    if (!nfiles) {
        fputs(MMD_USAGE, stderr);
        return VITA_EXIT_USER;
    }
    if (strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto"))
        USER_ERROR("--device '%s': use cpu, cuda or auto", device);
    if (ndsets && nlayers)
        USER_ERROR("mmd: give either --layer (feature files) or --dataset (any HDF5), not both");

    /* ---- which two matrices ---------------------------------------------------------- */
    Source src[2];
    memset(src, 0, sizeof src);
    const char* kind = tokens ? "tokens" : "pooled";
    char names[2][300];
    int nnames = 0;
    if (ndsets) {
        for (int k = 0; k < ndsets; k++) {
            names[k][0] = '/';
            copy_str(names[k] + 1, sizeof names[k] - 1, dsets[k] + (dsets[k][0] == '/'));
        }
        nnames = ndsets;
    } else if (nlayers) {
        for (int k = 0; k < nlayers; k++) {
            const char* L = layers[k];
            if (!strncmp(L, "layer_", 6)) L += 6;  /* --layer layer_3 works too */
            snprintf(names[k], 300, "/layer_%s/%s", L, kind);
        }
        nnames = nlayers;
    }
    if (nfiles == 1) {
        if (nnames < 2)
            USER_ERROR("mmd: one file (%s) needs two feature sets: give B.h5, or two names "
                       "(--dataset A,B or --layer 3,12)", files[0]);
        for (int k = 0; k < 2; k++) {
            src[k].path = files[0];
            copy_str(src[k].dataset, sizeof src[k].dataset, names[k]);
        }
    } else {
        for (int k = 0; k < 2; k++) {
            src[k].path = files[k];
            if (nnames == 0) auto_layer(files[k], kind, src[k].dataset, 512);
            else copy_str(src[k].dataset, sizeof src[k].dataset, names[nnames == 2 ? k : 0]);
        }
    }
    for (int k = 0; k < 2; k++) load(&src[k], tokens);

    const Source *A = &src[0], *B = &src[1];
    if (A->cols != B->cols)
        USER_ERROR("feature sizes differ: %s %s has d = %ld, %s %s has d = %ld; compare the "
                   "same layer of the same model family", A->path, A->dataset, A->cols,
                   B->path, B->dataset, B->cols);
    if (paired && A->rows != B->rows)
        USER_ERROR("--paired needs equal row counts: %s %s has %ld rows, %s %s has %ld; drop "
                   "--paired for independent sets", A->path, A->dataset, A->rows, B->path,
                   B->dataset, B->rows);
    if (tokens) {
        long ta = A->rows / A->cases, tb = B->rows / B->cases;
        if (ta != tb)
            USER_ERROR("--tokens: %s has %ld tokens per image, %s has %ld; both sets need the "
                       "same token grid", A->path, ta, B->path, tb);
        cfg.group_size = (int)ta;
    }
    cfg.paired = paired;

    /* paired-only estimators asked for without --paired: say so rather than print nothing */
    if (!paired)
        for (int e = 0; e < EST_COUNT; e++)
            if (want[e] && (e == EST_MMD2_PAIRED || e == EST_MMD2_PAIRED_SE || e == EST_CKA_LINEAR ||
                            e == EST_CKA_LINEAR_U || e == EST_CKA_RBF))
                USER_ERROR("--estimator %s compares paired samples (row i of A with row i of "
                           "B); add --paired (needs equal row counts)", mmd_estimator_name(e));

    /* ---- compute -------------------------------------------------------------------- */
    Ctx c;
    if (ctx_open(&c, device, threads, 1)) return VITA_EXIT_USER;
    int n = (int)A->rows, m = (int)B->rows, d = (int)A->cols;
    float* X = dev_alloc(&c, sizeof(float) * (size_t)n * d);
    float* Y = dev_alloc(&c, sizeof(float) * (size_t)m * d);
    copy_h2d(&c, X, A->h, sizeof(float) * (size_t)n * d);
    copy_h2d(&c, Y, B->h, sizeof(float) * (size_t)m * d);
    if (!quiet && !json)
        fprintf(stderr, "vita mmd: %s %s [%d x %d] vs %s %s [%d x %d]%s on %s, %d threads\n",
                A->path, A->dataset, n, d, B->path, B->dataset, m, d, paired ? ", paired" : "",
                ctx_device_name(&c), c.threads);
    MmdResult r;
    char err[1024];
    if (mmd_compute(&c, X, Y, n, m, d, &cfg, &r, err, sizeof err)) {
        fprintf(stderr, "vita: mmd %s %s vs %s %s: %s\n", A->path, A->dataset, B->path,
                B->dataset, err);
        return VITA_EXIT_USER;
    }
    dev_free(&c, X);
    dev_free(&c, Y);
    ctx_close(&c);

    /* shown: the requested ones, else every estimator that applies (a finite value) */
    int show[EST_COUNT];
    for (int e = 0; e < EST_COUNT; e++) show[e] = any_want ? want[e] : isfinite(r.value[e]);

    if (json) {
        cJSON* o = cJSON_CreateObject();
        CHECK(o, "cJSON allocation");
        for (int i = 0; i < EST_COUNT; i++) {
            int e = ORDER[i];
            if (!show[e]) continue;
            cJSON* v = cJSON_AddObjectToObject(o, mmd_estimator_name(e));
            CHECK(v, "cJSON allocation");
            cJSON_AddItemToObject(v, "value", num_or_null(r.value[e]));
            cJSON_AddItemToObject(v, "se", num_or_null(se_of(&r, e)));
            if (isfinite(r.ci_lo[e]) && isfinite(r.ci_hi[e])) {
                cJSON* ci = cJSON_AddArrayToObject(v, "ci");
                cJSON_AddItemToArray(ci, cJSON_CreateNumber(r.ci_lo[e]));
                cJSON_AddItemToArray(ci, cJSON_CreateNumber(r.ci_hi[e]));
            } else
                cJSON_AddNullToObject(v, "ci");
            cJSON_AddItemToObject(v, "p", num_or_null(r.pvalue[e]));
            if (e == EST_MMD2_U || e == EST_MMD2_B || e == EST_MMD2_PAIRED) {
                cJSON* pb = cJSON_AddArrayToObject(v, "per_bandwidth");
                for (int s = 0; s < r.S; s++) cJSON_AddItemToArray(pb, num_or_null(r.per_bw[e][s]));
            }
        }
        cJSON* bw = cJSON_AddObjectToObject(o, "bandwidth");
        cJSON_AddStringToObject(bw, "rule", rule_name(r.rule));
        cJSON_AddItemToObject(bw, "sigma_base", num_or_null(r.sigma_base));
        cJSON* sg = cJSON_AddArrayToObject(bw, "sigmas");
        cJSON* sc = cJSON_AddArrayToObject(bw, "scales");
        for (int s = 0; s < r.S; s++) {
            cJSON_AddItemToArray(sg, num_or_null(r.sigmas[s]));
            cJSON_AddItemToArray(sc, num_or_null(cfg.scales[s]));
        }
        if (r.rule == MMD_BW_MEDIAN) cJSON_AddNumberToObject(bw, "subsample", r.median_n);
        else cJSON_AddNullToObject(bw, "subsample");
        cJSON_AddNumberToObject(o, "n", r.n);
        cJSON_AddNumberToObject(o, "m", r.m);
        cJSON_AddNumberToObject(o, "d", r.d);
        cJSON_AddBoolToObject(o, "paired", paired);
        cJSON_AddNumberToObject(o, "group_size", cfg.group_size);
        cJSON_AddNumberToObject(o, "permutations", cfg.permutations);
        cJSON_AddNumberToObject(o, "bootstrap", cfg.bootstrap);
        cJSON_AddNumberToObject(o, "seed", (double)cfg.seed);
        cJSON* in = cJSON_AddArrayToObject(o, "inputs");
        for (int k = 0; k < 2; k++) {
            cJSON* s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "file", src[k].path);
            cJSON_AddStringToObject(s, "dataset", src[k].dataset);
            cJSON_AddNumberToObject(s, "rows", src[k].rows);
            cJSON_AddNumberToObject(s, "cases", src[k].cases);
            cJSON_AddItemToArray(in, s);
        }
        cJSON_AddItemToObject(o, "seconds", num_or_null(r.seconds));
        char* txt = cJSON_Print(o);
        CHECK(txt, "cJSON print");
        printf("%s\n", txt);
        free(txt);
        cJSON_Delete(o);
    } else {
        printf("%-15s %13s %12s %27s %9s\n", "estimator", "value", "SE",
               "CI (bootstrap)", "p");
        for (int i = 0; i < EST_COUNT; i++) {
            int e = ORDER[i];
            if (!show[e]) continue;
            /* an "_se" row repeats the SE column of its estimator: shown only on request */
            if (!any_want && (e == EST_MMD2_U_SE || e == EST_MMD2_PAIRED_SE)) continue;
            char v[32], se[32], lo[32], hi[32], p[32], ci[80];
            fmt(v, sizeof v, r.value[e]);
            fmt(se, sizeof se, se_of(&r, e));
            fmt(lo, sizeof lo, r.ci_lo[e]);
            fmt(hi, sizeof hi, r.ci_hi[e]);
            fmt(p, sizeof p, r.pvalue[e]);
            if (isfinite(r.ci_lo[e])) snprintf(ci, sizeof ci, "[%s, %s]", lo, hi);
            else snprintf(ci, sizeof ci, "-");
            printf("%-15s %13s %12s %27s %9s\n", mmd_estimator_name(e), v, se, ci, p);
        }
        printf("bandwidth: %s", rule_name(r.rule));
        if (r.rule == MMD_BW_MEDIAN) printf(" over %d pooled rows", r.median_n);
        printf(", sigma_base %.6g, sigmas", r.sigma_base);
        for (int s = 0; s < r.S; s++) printf("%s%.6g", s ? ", " : " ", r.sigmas[s]);
        printf(" (scales");
        for (int s = 0; s < r.S; s++) printf("%s%g", s ? ", " : " ", cfg.scales[s]);
        printf(")\n");
        printf("n %d  m %d  d %d%s", r.n, r.m, r.d, paired ? "  paired" : "");
        if (tokens) printf("  %d tokens per image", cfg.group_size);
        if (cfg.permutations) printf("  permutations %d", cfg.permutations);
        if (cfg.bootstrap) printf("  bootstrap %d", cfg.bootstrap);
        printf("  time %.3f s\n", r.seconds);
    }
    free(src[0].h);
    free(src[1].h);
    return 0;
}
