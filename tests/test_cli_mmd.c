/* tests/test_cli_mmd.c — `vita mmd` end to end and the HDF5 reader (engine/h5read.c).
 *
 * Writes small HDF5 fixtures with the HDF5 C API (a features file as `vita features` writes
 * them: /layer_3/pooled, /layer_3/tokens, /case_id; a plain file with float64, float16 (an
 * IEEE half type built as h5py builds it), integer, 1-D, one-row, NaN and empty datasets),
 * then:
 *   - reads them back with h5_read_matrix and checks every value, and the length / attribute
 *     helpers;
 *   - runs the built binary ($VITA_BUILD/vita, default build/vita) with --json and checks that
 *     every printed number equals mmd_compute called here on the same data with the same
 *     config (the JSON round-trips doubles, so the tolerance is 1e-12 relative);
 *   - runs every bad input and checks exit status 1 with ONE stderr line naming the
 *     file / dataset / flag at fault; --help exits 0.
 */
#include "testing.h"
#include "../engine/h5read.h"
#include "../engine/mmd.h"

#include <cjson/cJSON.h>
#include <hdf5.h>

static char DIR_[256];
static char VITA[1100];

/* ---- fixtures ---------------------------------------------------------------------------- */
static void must(int ok, const char* what) {
    if (!ok) {
        fprintf(stderr, "test_cli_mmd: fixture step failed: %s\n", what);
        exit(2);
    }
}

/* writes data [rows, cols] (given as double) into dataset name of f with file type ftype,
 * creating intermediate groups */
static void put(hid_t f, const char* name, hid_t ftype, const double* data, hsize_t rows,
                hsize_t cols, int rank) {
    hsize_t dims[2] = {rows, cols};
    if (rank == 1) dims[0] = cols;
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    must(sp >= 0, "H5Screate_simple");
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    must(lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0, "lcpl");
    hid_t d = H5Dcreate2(f, name, ftype, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    must(d >= 0, name);
    if (rows > 0 && cols > 0)
        must(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, name);
    H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(sp);
}

static void put_case_ids(hid_t f, int n) {
    hid_t t = H5Tcopy(H5T_C_S1);
    must(t >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0, "vlen str");
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "/case_id", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    must(d >= 0, "/case_id");
    char** ids = malloc(sizeof(char*) * n);
    char (*buf)[16] = malloc(16 * (size_t)n);
    must(ids && buf, "malloc");
    for (int i = 0; i < n; i++) {
        snprintf(buf[i], 16, "case%04d", i);
        ids[i] = buf[i];
    }
    must(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) >= 0, "write /case_id");
    free(ids); free(buf);
    H5Dclose(d); H5Sclose(sp); H5Tclose(t);
}

static void put_str_attr(hid_t f, const char* name, const char* val, int vlen) {
    hid_t t = H5Tcopy(H5T_C_S1);
    must(t >= 0, "H5Tcopy");
    must(H5Tset_size(t, vlen ? H5T_VARIABLE : strlen(val)) >= 0, "attr size");
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    must(a >= 0, name);
    must((vlen ? H5Awrite(a, t, &val) : H5Awrite(a, t, val)) >= 0, "H5Awrite");
    H5Aclose(a); H5Sclose(sp); H5Tclose(t);
}

/* the IEEE half type h5py writes for numpy float16 */
static hid_t half_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    must(t >= 0, "H5Tcopy");
    must(H5Tset_fields(t, 15, 10, 5, 0, 10) >= 0, "H5Tset_fields");
    must(H5Tset_size(t, 2) >= 0, "H5Tset_size");
    must(H5Tset_ebias(t, 15) >= 0, "H5Tset_ebias");
    return t;
}

enum { NC = 40, T = 4, D = 16 };
static double pooled_a[NC * D], pooled_b[NC * D], tok_a[NC * T * D], tok_b[NC * T * D];
static double x64[30 * D], y16[25 * D], d8[20 * 8], nanm[20 * D], one[D];

static void path_of(char* out, size_t n, const char* name) { snprintf(out, n, "%s/%s", DIR_, name); }

static void make_fixtures(void) {
    TRng r = {12345};
    /* B = a shifted, rescaled copy of A plus noise, so every estimator is away from 0 */
    for (int i = 0; i < NC * T * D; i++) {
        tok_a[i] = (float)trng_normal(&r);
        tok_b[i] = (float)(0.9 * tok_a[i] + 0.3 + 0.5 * trng_normal(&r));
    }
    for (int c = 0; c < NC; c++)
        for (int j = 0; j < D; j++) {
            double sa = 0, sb = 0;
            for (int t = 0; t < T; t++) {
                sa += tok_a[(c * T + t) * D + j];
                sb += tok_b[(c * T + t) * D + j];
            }
            pooled_a[c * D + j] = (float)(sa / T);
            pooled_b[c * D + j] = (float)(sb / T);
        }
    for (int i = 0; i < 30 * D; i++) x64[i] = trng_normal(&r);   /* float64: not float-exact */
    for (int i = 0; i < 25 * D; i++) y16[i] = trng_int(&r, -64, 64) / 16.0;  /* half-exact */
    for (int i = 0; i < 20 * 8; i++) d8[i] = trng_normal(&r);
    for (int i = 0; i < 20 * D; i++) nanm[i] = trng_normal(&r);
    nanm[7 * D + 3] = NAN;
    for (int i = 0; i < D; i++) one[i] = i;

    char p[512];
    for (int k = 0; k < 2; k++) {
        path_of(p, sizeof p, k ? "feat_b.h5" : "feat_a.h5");
        hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        must(f >= 0, p);
        put(f, "/layer_3/pooled", H5T_IEEE_F32LE, k ? pooled_b : pooled_a, NC, D, 2);
        put(f, "/layer_3/tokens", H5T_IEEE_F32LE, k ? tok_b : tok_a, NC * T, D, 2);
        put_case_ids(f, NC);
        put_str_attr(f, "format", "vita-features", 1);
        put_str_attr(f, "weights_sha256", "abc123", 0);
        H5Fclose(f);
    }
    /* a second layer in A only: auto layer selection must then refuse A */
    path_of(p, sizeof p, "feat_two.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    must(f >= 0, p);
    put(f, "/layer_3/pooled", H5T_IEEE_F32LE, pooled_a, NC, D, 2);
    put(f, "/layer_6/pooled", H5T_IEEE_F32LE, pooled_b, NC, D, 2);
    H5Fclose(f);

    path_of(p, sizeof p, "plain.h5");
    f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    must(f >= 0, p);
    hid_t h = half_type();
    put(f, "/x", H5T_IEEE_F64LE, x64, 30, D, 2);
    put(f, "/grp/y", h, y16, 25, D, 2);
    put(f, "/ints", H5T_STD_I32LE, x64, 30, D, 2);
    put(f, "/vec", H5T_IEEE_F32LE, one, 1, D, 1);
    put(f, "/one", H5T_IEEE_F32LE, one, 1, D, 2);
    put(f, "/d8", H5T_IEEE_F32LE, d8, 20, 8, 2);
    put(f, "/nan", H5T_IEEE_F32LE, nanm, 20, D, 2);
    put(f, "/empty", H5T_IEEE_F32LE, NULL, 0, D, 2);
    H5Tclose(h);
    H5Fclose(f);

    path_of(p, sizeof p, "text.h5");
    FILE* tf = fopen(p, "w");
    must(tf && fputs("not hdf5\n", tf) >= 0 && fclose(tf) == 0, "text file");
}

/* ---- reader ------------------------------------------------------------------------------ */
static double max_abs_diff(const float* a, const double* b, long n, int as_float) {
    double m = 0;
    for (long i = 0; i < n; i++) {
        double ref = as_float ? (double)(float)b[i] : b[i];
        m = fmax(m, fabs((double)a[i] - ref));
    }
    return m;
}

static void test_reader(void) {
    char p[512], err[1024];
    float* h;
    long rows, cols;
    path_of(p, sizeof p, "plain.h5");
    int rc = h5_read_matrix(p, "x", &h, &rows, &cols, err, sizeof err);
    t_true("h5_read_matrix float64 /x (name without '/')", rc == 0 && rows == 30 && cols == D);
    if (!rc) { t_check("float64 -> float: equals (float) of the stored doubles", max_abs_diff(h, x64, 30 * D, 1), 0); free(h); }
    rc = h5_read_matrix(p, "/grp/y", &h, &rows, &cols, err, sizeof err);
    t_true("h5_read_matrix float16 /grp/y", rc == 0 && rows == 25 && cols == D);
    if (!rc) { t_check("float16 -> float exact on half-representable values", max_abs_diff(h, y16, 25 * D, 0), 0); free(h); }
    path_of(p, sizeof p, "feat_a.h5");
    rc = h5_read_matrix(p, "/layer_3/tokens", &h, &rows, &cols, err, sizeof err);
    t_true("h5_read_matrix float32 tokens", rc == 0 && rows == NC * T && cols == D);
    if (!rc) { t_check("float32 exact", max_abs_diff(h, tok_a, NC * T * D, 1), 0); free(h); }

    t_true("h5_dataset_len /case_id == 40", h5_dataset_len(p, "/case_id", err, sizeof err) == NC);
    t_true("h5_has_dataset /layer_3/pooled", h5_has_dataset(p, "/layer_3/pooled") == 1);
    t_true("h5_has_dataset /layer_3 (a group) is 0", h5_has_dataset(p, "/layer_3") == 0);
    char s[64];
    rc = h5_read_str_attr(p, "/", "format", s, sizeof s, err, sizeof err);
    t_true("variable-length string attribute", rc == 0 && !strcmp(s, "vita-features"));
    rc = h5_read_str_attr(p, "/", "weights_sha256", s, sizeof s, err, sizeof err);
    t_true("fixed-length string attribute", rc == 0 && !strcmp(s, "abc123"));
    rc = h5_read_str_attr(p, "/", "nope", s, sizeof s, err, sizeof err);
    t_true("missing attribute: error names it", rc == 1 && strstr(err, "nope"));
    char list[512];
    int k = h5_list_datasets(p, NULL, list, sizeof list);
    t_true("h5_list_datasets finds 3 datasets", k == 3 && strstr(list, "/layer_3/tokens") && strstr(list, "/case_id"));

    path_of(p, sizeof p, "plain.h5");
    rc = h5_read_matrix(p, "/layer_6/pooled", &h, &rows, &cols, err, sizeof err);
    t_true("missing dataset: error lists what is there", rc == 1 && strstr(err, "/layer_6/pooled") && strstr(err, "/grp/y"));
    printf("     (%s)\n", err);
    rc = h5_read_matrix(p, "/ints", &h, &rows, &cols, err, sizeof err);
    t_true("integer dataset rejected", rc == 1 && strstr(err, "integer"));
    rc = h5_read_matrix(p, "/vec", &h, &rows, &cols, err, sizeof err);
    t_true("rank-1 dataset rejected", rc == 1 && strstr(err, "rank 1"));
    rc = h5_read_matrix(p, "/empty", &h, &rows, &cols, err, sizeof err);
    t_true("zero-row dataset rejected", rc == 1 && strstr(err, "empty"));
    rc = h5_read_matrix(p, "/grp", &h, &rows, &cols, err, sizeof err);
    t_true("group rejected, its datasets listed", rc == 1 && strstr(err, "group") && strstr(err, "/grp/y"));
    path_of(p, sizeof p, "missing.h5");
    rc = h5_read_matrix(p, "/x", &h, &rows, &cols, err, sizeof err);
    t_true("missing file", rc == 1 && strstr(err, "missing.h5"));
    path_of(p, sizeof p, "text.h5");
    rc = h5_read_matrix(p, "/x", &h, &rows, &cols, err, sizeof err);
    t_true("not an HDF5 file", rc == 1 && strstr(err, "not an HDF5"));
}

/* ---- running the binary ------------------------------------------------------------------ */
static char* slurp(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END)) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET)) { fclose(f); return NULL; }
    char* s = malloc(n + 1);
    if (!s) { fclose(f); return NULL; }
    size_t got = fread(s, 1, n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

/* runs `vita mmd ARGS` in DIR_; returns exit status, stdout and stderr (malloc'ed) */
static int run(const char* args, char** out, char** errs) {
    char cmd[4096], o[512], e[512];
    path_of(o, sizeof o, "stdout.txt");
    path_of(e, sizeof e, "stderr.txt");
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' mmd %s > stdout.txt 2> stderr.txt", DIR_, VITA, args);
    fflush(stdout);
    int st = system(cmd);
    *out = slurp(o);
    *errs = slurp(e);
    if (!*out || !*errs) { fprintf(stderr, "cannot read command output\n"); exit(2); }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines(const char* s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int same(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= 1e-12 * fmax(1e-300, fmax(fabs(a), fabs(b)));
}
static double jnum(const cJSON* v) { return cJSON_IsNumber(v) ? v->valuedouble : NAN; }

/* compares the JSON object from `vita mmd ... --json` with mmd_compute on X, Y */
static void check_json(const char* label, const char* js, const double* Xd, const double* Yd,
                       int n, int m, const MmdConfig* cfg, int expect_paired) {
    char what[256];
    cJSON* o = cJSON_Parse(js);
    snprintf(what, sizeof what, "%s: JSON parses", label);
    if (!t_true(what, o != NULL)) { printf("%s\n", js); return; }
    float* hx = malloc(sizeof(float) * n * D);
    float* hy = malloc(sizeof(float) * m * D);
    must(hx && hy, "malloc");
    for (long i = 0; i < (long)n * D; i++) hx[i] = (float)Xd[i];
    for (long i = 0; i < (long)m * D; i++) hy[i] = (float)Yd[i];
    Ctx c;
    must(ctx_open(&c, "cpu", 2, 1) == 0, "ctx_open");
    float* X = dev_alloc(&c, sizeof(float) * n * D);
    float* Y = dev_alloc(&c, sizeof(float) * m * D);
    copy_h2d(&c, X, hx, sizeof(float) * n * D);
    copy_h2d(&c, Y, hy, sizeof(float) * m * D);
    MmdResult r;
    char err[512];
    int rc = mmd_compute(&c, X, Y, n, m, D, cfg, &r, err, sizeof err);
    snprintf(what, sizeof what, "%s: direct mmd_compute succeeds", label);
    t_true(what, rc == 0);
    int keys = 0, bad = 0;
    for (int e = 0; e < EST_COUNT && rc == 0; e++) {
        const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, mmd_estimator_name(e));
        if (!v) {
            /* absent only where the estimator does not apply */
            if (isfinite(r.value[e])) { bad++; printf("     missing key %s\n", mmd_estimator_name(e)); }
            continue;
        }
        keys++;
        double val = jnum(cJSON_GetObjectItemCaseSensitive(v, "value"));
        double p = jnum(cJSON_GetObjectItemCaseSensitive(v, "p"));
        const cJSON* ci = cJSON_GetObjectItemCaseSensitive(v, "ci");
        double lo = cJSON_IsArray(ci) ? jnum(cJSON_GetArrayItem(ci, 0)) : NAN;
        double hi = cJSON_IsArray(ci) ? jnum(cJSON_GetArrayItem(ci, 1)) : NAN;
        int ok = cJSON_HasObjectItem(v, "se") && same(val, r.value[e]) && same(p, r.pvalue[e]) &&
                 same(lo, r.ci_lo[e]) && same(hi, r.ci_hi[e]);
        if (!ok) {
            bad++;
            printf("     %s: cli %.17g p %.17g ci [%g, %g]  direct %.17g p %.17g ci [%g, %g]\n",
                   mmd_estimator_name(e), val, p, lo, hi, r.value[e], r.pvalue[e], r.ci_lo[e], r.ci_hi[e]);
        }
    }
    snprintf(what, sizeof what, "%s: %d estimator keys, each equal to mmd_compute", label, keys);
    t_true(what, rc == 0 && bad == 0 && keys >= 3);
    snprintf(what, sizeof what, "%s: paired estimator %s", label, expect_paired ? "present" : "absent");
    t_true(what, (cJSON_GetObjectItemCaseSensitive(o, "mmd2_paired") != NULL) == expect_paired);
    const cJSON* bw = cJSON_GetObjectItemCaseSensitive(o, "bandwidth");
    const cJSON* sig = bw ? cJSON_GetObjectItemCaseSensitive(bw, "sigmas") : NULL;
    int bw_ok = bw && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(bw, "rule")) &&
                same(jnum(cJSON_GetObjectItemCaseSensitive(bw, "sigma_base")), r.sigma_base) &&
                cJSON_HasObjectItem(bw, "subsample") && cJSON_GetArraySize(sig) == r.S;
    for (int s = 0; bw_ok && s < r.S; s++) bw_ok = same(jnum(cJSON_GetArrayItem(sig, s)), r.sigmas[s]);
    snprintf(what, sizeof what, "%s: bandwidth {rule, sigma_base, sigmas, subsample} match", label);
    t_true(what, bw_ok);
    snprintf(what, sizeof what, "%s: n, m, d, seconds", label);
    t_true(what, jnum(cJSON_GetObjectItemCaseSensitive(o, "n")) == n &&
                 jnum(cJSON_GetObjectItemCaseSensitive(o, "m")) == m &&
                 jnum(cJSON_GetObjectItemCaseSensitive(o, "d")) == D &&
                 cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "seconds")));
    dev_free(&c, X); dev_free(&c, Y);
    ctx_close(&c);
    free(hx); free(hy);
    cJSON_Delete(o);
}

static void test_cli_ok(void) {
    char *out, *err;
    int rc = run("--help", &out, &err);
    t_true("--help exits 0 and prints usage", rc == 0 && strstr(out, "usage: vita mmd"));
    free(out); free(err);

    MmdConfig cfg;
    /* paired, pooled layer of two files, with permutations and bootstrap */
    mmd_config_default(&cfg);
    cfg.paired = 1; cfg.permutations = 49; cfg.bootstrap = 49; cfg.seed = 7;
    rc = run("feat_a.h5 feat_b.h5 --layer 3 --paired --permutations 49 --bootstrap 49 --seed 7 "
             "--threads 2 --device cpu --json", &out, &err);
    t_true("paired --layer 3 --json exits 0", rc == 0);
    if (rc) printf("     stderr: %s", err);
    else check_json("paired", out, pooled_a, pooled_b, NC, NC, &cfg, 1);
    free(out); free(err);

    /* the same with the layer picked automatically (one layer per file) and the table */
    rc = run("feat_a.h5 feat_b.h5 --paired --threads 2 --device cpu", &out, &err);
    t_true("table output: exit 0, estimator rows and bandwidth line",
           rc == 0 && strstr(out, "mmd2_paired") && strstr(out, "mmd2_u") && strstr(out, "bandwidth: median"));
    printf("%s", out);
    free(out); free(err);

    /* one file, two datasets: float64 vs float16, unpaired, fixed bandwidth and own scales */
    mmd_config_default(&cfg);
    cfg.bandwidth_rule = MMD_BW_FIXED; cfg.sigma = 3.5;
    cfg.n_scales = 2; cfg.scales[0] = 1; cfg.scales[1] = 4;
    cfg.permutations = 20;
    rc = run("plain.h5 --dataset x,grp/y --bandwidth 3.5 --scales 1,4 --permutations 20 "
             "--threads 2 --device cpu --json", &out, &err);
    t_true("two datasets of one file (--dataset x,grp/y) exits 0", rc == 0);
    if (rc) printf("     stderr: %s", err);
    else check_json("float64 vs float16", out, x64, y16, 30, 25, &cfg, 0);
    free(out); free(err);

    /* --dataset twice, mean rule */
    mmd_config_default(&cfg);
    cfg.bandwidth_rule = MMD_BW_MEAN;
    rc = run("plain.h5 --dataset /x --dataset grp/y --bandwidth mean --device cpu --json", &out, &err);
    t_true("--dataset A --dataset B, --bandwidth mean exits 0", rc == 0);
    if (!rc) check_json("mean rule", out, x64, y16, 30, 25, &cfg, 0);
    free(out); free(err);

    /* tokens: the bootstrap resamples whole images (group_size = rows / len(/case_id)) */
    mmd_config_default(&cfg);
    cfg.paired = 1; cfg.bootstrap = 30; cfg.seed = 3; cfg.group_size = T;
    rc = run("feat_a.h5 feat_b.h5 --layer 3 --tokens --paired --bootstrap 30 --seed 3 "
             "--device cpu --json", &out, &err);
    t_true("--tokens exits 0", rc == 0);
    if (rc) printf("     stderr: %s", err);
    else {
        check_json("tokens", out, tok_a, tok_b, NC * T, NC * T, &cfg, 1);
        cJSON* o = cJSON_Parse(out);
        t_true("tokens: group_size 4 recorded", o && jnum(cJSON_GetObjectItemCaseSensitive(o, "group_size")) == T);
        cJSON_Delete(o);
    }
    free(out); free(err);

    /* two layers of one file; one --dataset name shared by two files */
    mmd_config_default(&cfg);
    rc = run("feat_two.h5 --layer 3,6 --device cpu --json", &out, &err);
    t_true("two layers of one file (--layer 3,6) exits 0", rc == 0);
    if (!rc) check_json("--layer 3,6", out, pooled_a, pooled_b, NC, NC, &cfg, 0);
    free(out); free(err);
    cfg.paired = 1;
    rc = run("feat_a.h5 feat_b.h5 --dataset layer_3/pooled --paired --device cpu --json", &out, &err);
    t_true("one --dataset name in two files exits 0", rc == 0);
    if (!rc) check_json("shared --dataset", out, pooled_a, pooled_b, NC, NC, &cfg, 1);
    free(out); free(err);

    /* explicit estimator list: exactly those keys */
    rc = run("feat_a.h5 feat_b.h5 --layer 3 --estimator mmd2_u,energy --device cpu --json", &out, &err);
    cJSON* o = rc == 0 ? cJSON_Parse(out) : NULL;
    t_true("--estimator mmd2_u,energy prints exactly those",
           o && cJSON_HasObjectItem(o, "mmd2_u") && cJSON_HasObjectItem(o, "energy") &&
           !cJSON_HasObjectItem(o, "mmd2_b") && !cJSON_HasObjectItem(o, "cka_linear"));
    cJSON_Delete(o);
    free(out); free(err);
}

/* a bad input: exit 1, one stderr line, containing each of the needles */
static void bad(const char* args, const char* needle1, const char* needle2) {
    char *out, *err, what[512];
    int rc = run(args, &out, &err);
    int ok = rc == 1 && count_lines(err) == 1 && strstr(err, needle1) && (!needle2 || strstr(err, needle2));
    snprintf(what, sizeof what, "exit 1, one line naming '%s': mmd %s", needle1, args);
    t_true(what, ok);
    printf("     %s", err[0] ? err : "(no stderr)\n");
    if (!ok) printf("     rc %d, stdout: %.200s\n", rc, out);
    free(out); free(err);
}

static void test_cli_bad(void) {
    bad("missing.h5 feat_b.h5 --layer 3", "missing.h5", NULL);
    bad("text.h5 feat_b.h5 --layer 3", "text.h5", "not an HDF5");
    bad("plain.h5 --dataset x,zzz", "/zzz", "plain.h5");
    bad("feat_a.h5 feat_b.h5 --layer 9", "/layer_9/pooled", "/layer_3/pooled");
    bad("plain.h5 --dataset x,d8", "/d8", "d = 8");
    bad("plain.h5 --dataset x,one", "/one", "at least 2 rows");
    bad("plain.h5 --dataset x,nan", "/nan", "row 7");
    bad("plain.h5 --dataset x,ints", "/ints", "integer");
    bad("plain.h5 --dataset x,vec", "/vec", "rank 1");
    bad("plain.h5 --dataset x,empty", "/empty", "empty");
    bad("plain.h5 --dataset x,grp/y --paired", "--paired", "/grp/y");
    bad("feat_a.h5 feat_b.h5 --estimator mmd2_u,foo", "foo", "mmd2_u");
    bad("feat_a.h5 feat_b.h5 --bandwidth abc", "--bandwidth", "median");
    bad("feat_a.h5 feat_b.h5 --bandwidth -1", "--bandwidth", NULL);
    bad("feat_a.h5 feat_b.h5 --scales 1,zero", "--scales", NULL);
    bad("feat_a.h5 feat_b.h5 --permutations lots", "--permutations", NULL);
    bad("feat_a.h5 feat_b.h5 --frobnicate", "--frobnicate", NULL);
    bad("feat_a.h5 --layer 3", "feat_a.h5", "two");
    bad("feat_two.h5 feat_b.h5", "feat_two.h5", "--layer");
    bad("plain.h5 feat_b.h5 --tokens --dataset x", "/case_id", "plain.h5");
    bad("feat_a.h5 feat_b.h5 --estimator mmd2_paired", "mmd2_paired", "--paired");
    bad("feat_a.h5 feat_b.h5 --estimator cka_linear", "cka_linear", "--paired");
}

int main(void) {
    const char* b = getenv("VITA_BUILD");
    char cwd[1024];  /* VITA holds cwd + build dir */
    must(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    /* the binary path is made absolute: the commands run inside the fixture directory */
    const char* bd = b && *b ? b : "build";
    if (bd[0] == '/') snprintf(VITA, sizeof VITA, "%s/vita", bd);
    else snprintf(VITA, sizeof VITA, "%s/%s/vita", cwd, bd);
    if (access(VITA, X_OK)) {
        printf("FAIL %s not found (set VITA_BUILD to the build directory)\n", VITA);
        return 1;
    }
    snprintf(DIR_, sizeof DIR_, "/tmp/vita_mmd_XXXXXX");
    must(mkdtemp(DIR_) != NULL, "mkdtemp");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    make_fixtures();
    test_reader();
    test_cli_ok();
    test_cli_bad();
    /* VITA_TEST_KEEP=1 keeps the fixtures for trying the command by hand */
    if (getenv("VITA_TEST_KEEP")) printf("fixtures kept in %s\n", DIR_);
    else {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", DIR_);
        if (system(cmd) != 0) printf("note: could not remove %s\n", DIR_);
    }
    return t_summary();
}
