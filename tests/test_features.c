/* tests/test_features.c — `vita features` (engine/cmd_features.c, engine/features.c) and
 * SHA-256 (engine/sha256.c):
 *   - SHA-256 of the FIPS 180-4 vectors ("", "abc", the 448-bit message, a million 'a' fed in
 *     odd-sized pieces) and of a weights file against `sha256sum`;
 *   - cmd_features (called in process; through $VITA_BUILD/vita too once `features` is wired
 *     into the CLI) on a dataset whose grid differs from the model's img size (bigger along
 *     D and H, smaller along W: crop and zero padding): the file reads back through
 *     engine/h5read with the SPEC §5 names and shapes (/layer_<L>/pooled [N, d],
 *     /layer_<L>/tokens [N*T, d], /case_id [N] strings of the chosen split, in dataset order),
 *     attrs format / weights_sha256 / data_path / layers;
 *   - the values equal an independent computation: the centre crop written out here, the
 *     encoder run one image at a time, the mean over patch tokens taken on the host; token
 *     rows are the block output's rows at features_sample_tokens' indices; --normalize l2
 *     gives the pooled rows divided by their norms;
 *   - default layers (depth 3: 1,2,3,norm); the temporary file is gone after the rename;
 *   - bad input exits 1 with one line: missing --out, a layer beyond the depth, an empty
 *     split, --tokens beyond the patch count, an unknown flag. */
#include "testing.h"
#include "vit_fixture.h"
#include "../engine/dataset.h"
#include "../engine/features.h"
#include "../engine/h5read.h"
#include "../engine/sha256.h"
#include "../models/vit_weights.h"

#include <dirent.h>
#include <hdf5.h>

enum { NCASE = 7, DD = 10, HH = 20, WW = 14, MB = 2 };
static char DIR_[256], WPATH[300], DPATH[300];
static Ctx C;
static const int SPLITS[NCASE] = {SPLIT_VAL, SPLIT_TRAIN, SPLIT_VAL, SPLIT_VAL, SPLIT_TEST, SPLIT_VAL, SPLIT_VAL};

/* ---- SHA-256 ---------------------------------------------------------------------------- */
static void test_sha256(void) {
    char hex[65];
    sha256_mem("", 0, hex);
    t_true("sha256(\"\")", !strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    sha256_mem("abc", 3, hex);
    t_true("sha256(\"abc\")", !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const char* m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_mem(m448, strlen(m448), hex);
    t_true("sha256(448-bit message)", !strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    Sha256 s;
    sha256_init(&s);
    char buf[1000];
    memset(buf, 'a', sizeof buf);
    long left = 1000000, k = 1;
    while (left > 0) {   /* pieces of 1, 2, ..., 999 bytes: every buffer boundary case */
        long n = k < left ? k : left;
        sha256_update(&s, buf, (size_t)n);
        left -= n;
        k = k % 999 + 1;
    }
    unsigned char d[32];
    sha256_final(&s, d);
    sha256_hex(d, hex);
    t_true("sha256(10^6 x 'a') in odd pieces", !strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    char err[256];
    t_true("sha256_file of a missing file fails with a line",
           sha256_file("/nonexistent/x", hex, err, sizeof err) == 1 && strstr(err, "/nonexistent/x"));
}

/* ---- fixtures --------------------------------------------------------------------------- */
static float* g_vol;   /* [NCASE, 3, DD, HH, WW] */

static void make_fixtures(Vit* m) {
    char err[512];
    const char* meta[] = {"task", "none"};
    if (vit_save_weights(m, WPATH, meta, 1)) { printf("FAIL save weights\n"); exit(1); }
    long vol = 3L * DD * HH * WW;
    g_vol = t_fnew(vol * NCASE);
    TRng r = {77};
    t_frandn(&r, g_vol, vol * NCASE, 1.0);
    DatasetSpec s;
    memset(&s, 0, sizeof s);
    s.n = NCASE; s.C = 3; s.D = DD; s.H = HH; s.W = WW;
    s.channels = "t2w,adc,hbv";
    s.spacing_zyx[0] = s.spacing_zyx[1] = s.spacing_zyx[2] = 1;
    s.source = "test_features";
    DatasetWriter* w = dataset_create(DPATH, &s, err, sizeof err);
    if (!w) { printf("FAIL dataset_create: %s\n", err); exit(1); }
    for (int i = 0; i < NCASE; i++) {
        char id[16];
        snprintf(id, sizeof id, "case-%03d", i * 3);
        dataset_write_case(w, i, id, g_vol + i * vol, NULL, -1, SPLITS[i], -1, NULL, NULL, NULL,
                           NULL, NULL, NULL);
    }
    if (dataset_finish(w, err, sizeof err)) { printf("FAIL dataset_finish: %s\n", err); exit(1); }
}

/* the centre crop written out independently: start = dim/2 - crop/2 clamped into the volume;
 * along an axis smaller than the crop, symmetric zero padding of (crop - dim)/2 in front */
static void crop_ref(const float* v, const VitConfig* vc, float* out) {
    const int dims[3] = {DD, HH, WW};
    int st[3];
    for (int a = 0; a < 3; a++) {
        int cr = vc->img[a];
        if (dims[a] < cr) st[a] = -((cr - dims[a]) / 2);
        else {
            st[a] = dims[a] / 2 - cr / 2;
            if (st[a] > dims[a] - cr) st[a] = dims[a] - cr;
            if (st[a] < 0) st[a] = 0;
        }
    }
    for (int c = 0; c < 3; c++)
        for (int z = 0; z < vc->img[0]; z++)
            for (int y = 0; y < vc->img[1]; y++)
                for (int x = 0; x < vc->img[2]; x++) {
                    int zz = st[0] + z, yy = st[1] + y, xx = st[2] + x;
                    float val = 0;
                    if (zz >= 0 && zz < DD && yy >= 0 && yy < HH && xx >= 0 && xx < WW)
                        val = v[(((long)c * DD + zz) * HH + yy) * WW + xx];
                    out[(((long)c * vc->img[0] + z) * vc->img[1] + y) * vc->img[2] + x] = val;
                }
}

static int run_cmd(const char* args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "features %s", args);
    char* argv[40];
    int argc = 0;
    for (char* t = strtok(cmd, " "); t && argc < 39; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    return cmd_features(argc, argv);
}

/* in a child: cmd_features exits on user errors; expect status 1 and one stderr line with `must` */
static void expect_user_error(const char* what, const char* args, const char* must) {
    char errp[400];
    snprintf(errp, sizeof errp, "%s/stderr.txt", DIR_);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(errp, "w", stderr)) _exit(3);
        int rc = run_cmd(args);
        fflush(stderr);
        _exit(rc);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    char line[1024] = "", rest[16] = "";
    FILE* f = fopen(errp, "r");
    if (f) {
        if (!fgets(line, sizeof line, f)) line[0] = 0;
        if (!fgets(rest, sizeof rest, f)) rest[0] = 0;
        fclose(f);
    }
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(line, must) && !rest[0];
    printf("  %s -> %s", what, line[0] ? line : "(no message)\n");
    t_true(what, ok);
}

static void read_attr(const char* path, const char* name, char* buf, size_t n) {
    char err[512];
    if (h5_read_str_attr(path, "/", name, buf, n, err, sizeof err)) {
        printf("  %s\n", err);
        buf[0] = 0;
    }
}

static int read_case_ids(const char* path, char ids[][32], int max) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t d = H5Dopen2(f, "/case_id", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    char** s = calloc(n ? n : 1, sizeof(char*));
    int ok = (int)n <= max && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) >= 0;
    for (hsize_t i = 0; ok && i < n; i++) snprintf(ids[i], 32, "%s", s[i]);
    if (ok) H5Dvlen_reclaim(t, sp, H5P_DEFAULT, s);
    free(s);
    H5Tclose(t); H5Sclose(sp); H5Dclose(d); H5Fclose(f);
    return ok ? (int)n : -1;
}

static float* read_mat(const char* path, const char* name, long* rows, long* cols) {
    char err[512];
    float* x = NULL;
    if (h5_read_matrix(path, name, &x, rows, cols, err, sizeof err)) {
        printf("  %s\n", err);
        *rows = *cols = 0;
        return NULL;
    }
    return x;
}

static void check_file(Vit* m, const char* fp, int tokens, uint64_t seed, int l2, const char* tag) {
    const VitConfig* vc = &m->cfg;
    const int D = vc->dim;
    char what[200];
    int val[NCASE], nv = 0;
    for (int i = 0; i < NCASE; i++)
        if (SPLITS[i] == SPLIT_VAL) val[nv++] = i;

    char ids[NCASE][32];
    int n = read_case_ids(fp, ids, NCASE);
    int ids_ok = n == nv;
    for (int k = 0; ids_ok && k < nv; k++) {
        char want[32];
        snprintf(want, sizeof want, "case-%03d", val[k] * 3);
        ids_ok &= !strcmp(ids[k], want);
    }
    snprintf(what, sizeof what, "%s: /case_id = the val cases' ids in dataset order", tag);
    t_true(what, ids_ok);
    char err[256];
    snprintf(what, sizeof what, "%s: h5_dataset_len(/case_id) = N", tag);
    t_true(what, h5_dataset_len(fp, "/case_id", err, sizeof err) == nv);

    /* reference: one image at a time */
    const long per = (long)vc->in_chans * vc->img[0] * vc->img[1] * vc->img[2];
    const long TD = (long)m->T * D;
    float* crop = t_fnew(per);
    float* dimg = dev_alloc(&C, sizeof(float) * per);
    float* out2 = t_fnew(TD * nv);
    float* outn = t_fnew(TD * nv);
    for (int k = 0; k < nv; k++) {
        crop_ref(g_vol + (long)val[k] * 3 * DD * HH * WW, vc, crop);
        copy_h2d(&C, dimg, crop, sizeof(float) * per);
        vit_forward(m, dimg, NULL, 1);
        copy_d2h(&C, out2 + k * TD, vit_block_output(m, 2), sizeof(float) * TD);
        copy_d2h(&C, outn + k * TD, m->out, sizeof(float) * TD);
    }
    const char* names[2] = {"2", "norm"};
    float* src[2] = {out2, outn};
    for (int l = 0; l < 2; l++) {
        char ds[64];
        snprintf(ds, sizeof ds, "/layer_%s/pooled", names[l]);
        long r, c;
        float* x = read_mat(fp, ds, &r, &c);
        snprintf(what, sizeof what, "%s: %s is [N = %d, d = %d] float", tag, ds, nv, D);
        if (!t_true(what, x && r == nv && c == D)) { free(x); continue; }
        double* ref = t_dnew((long)nv * D);
        for (int k = 0; k < nv; k++) {
            double ss = 0;
            for (int q = 0; q < D; q++) {
                double s = 0;
                for (int p = 0; p < m->P; p++) s += src[l][k * TD + (long)(m->T - m->P + p) * D + q];
                ref[k * D + q] = s / m->P;
                ss += ref[k * D + q] * ref[k * D + q];
            }
            if (l2)
                for (int q = 0; q < D; q++) ref[k * D + q] /= sqrt(ss);
        }
        snprintf(what, sizeof what, "%s: %s = centre crop -> encoder -> mean over patches (NMSE)", tag, ds);
        t_check(what, t_nmse_fd(x, ref, (long)nv * D), 1e-10);
        free(ref);
        free(x);
        if (!tokens) {
            snprintf(ds, sizeof ds, "/layer_%s/tokens", names[l]);
            snprintf(what, sizeof what, "%s: no %s without --tokens", tag, ds);
            t_true(what, !h5_has_dataset(fp, ds));
            continue;
        }
        snprintf(ds, sizeof ds, "/layer_%s/tokens", names[l]);
        x = read_mat(fp, ds, &r, &c);
        snprintf(what, sizeof what, "%s: %s is [N*T = %d, d]", tag, ds, nv * tokens);
        if (!t_true(what, x && r == (long)nv * tokens && c == D)) { free(x); continue; }
        int32_t* idx = malloc(sizeof(int32_t) * nv * tokens);
        features_sample_tokens(nv, tokens, m->P, seed, idx);
        double* tr = t_dnew((long)nv * tokens * D);
        for (int k = 0; k < nv; k++)
            for (int t = 0; t < tokens; t++) {
                const float* row = src[l] + k * TD + (long)(m->T - m->P + idx[k * tokens + t]) * D;
                double ss = 0;
                for (int q = 0; q < D; q++) ss += (double)row[q] * row[q];
                for (int q = 0; q < D; q++)
                    tr[((long)k * tokens + t) * D + q] = l2 ? row[q] / sqrt(ss) : row[q];
            }
        snprintf(what, sizeof what, "%s: %s = block output rows at the seeded indices (NMSE)", tag, ds);
        t_check(what, t_nmse_fd(x, tr, (long)nv * tokens * D), 1e-10);
        free(tr);
        free(idx);
        free(x);
    }
    free(crop); free(out2); free(outn);
    dev_free(&C, dimg);

    char buf[512], want[65];
    read_attr(fp, "format", buf, sizeof buf);
    snprintf(what, sizeof what, "%s: attr format = vita-features", tag);
    t_true(what, !strcmp(buf, "vita-features"));
    read_attr(fp, "layers", buf, sizeof buf);
    snprintf(what, sizeof what, "%s: attr layers = \"2,norm\"", tag);
    t_true(what, !strcmp(buf, "2,norm"));
    read_attr(fp, "data_path", buf, sizeof buf);
    snprintf(what, sizeof what, "%s: attr data_path = the --data path", tag);
    t_true(what, !strcmp(buf, DPATH));
    read_attr(fp, "weights_sha256", buf, sizeof buf);
    /* sha256sum's answer */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", WPATH);
    FILE* p = popen(cmd, "r");
    want[0] = 0;
    if (p) {
        if (fscanf(p, "%64s", want) != 1) want[0] = 0;
        pclose(p);
    }
    printf("  weights_sha256 %s\n  sha256sum      %s\n", buf, want);
    snprintf(what, sizeof what, "%s: attr weights_sha256 = sha256sum of the weights file", tag);
    t_true(what, strlen(want) == 64 && !strcmp(buf, want));
}

static int no_temp_left(void) {
    DIR* d = opendir(DIR_);
    int ok = 1;
    struct dirent* e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) ok = 0;
    if (d) closedir(d);
    return ok;
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char* b = getenv("VITA_BUILD");
    snprintf(DIR_, sizeof DIR_, "%s/test_features_XXXXXX", b && *b ? b : "/tmp");
    if (!mkdtemp(DIR_)) {
        snprintf(DIR_, sizeof DIR_, "/tmp/test_features_XXXXXX");
        if (!mkdtemp(DIR_)) { printf("FAIL mkdtemp\n"); return 1; }
    }
    snprintf(WPATH, sizeof WPATH, "%s/w.safetensors", DIR_);
    snprintf(DPATH, sizeof DPATH, "%s/data.h5", DIR_);
    test_sha256();
    if (ctx_open(&C, "cpu", 2, 1)) return 1;
    VitConfig vc = t_tiny_vit_cfg();
    Vit m;
    vit_create(&m, &C, &vc);
    vit_init_weights(&m, 21);
    vit_alloc_activations(&m, MB);
    make_fixtures(&m);

    char args[1500], fp[400];
    snprintf(fp, sizeof fp, "%s/f.h5", DIR_);
    snprintf(args, sizeof args, "--weights %s --data %s --layers 2,norm --out %s --split val "
             "--tokens 3 --seed 5 --batch %d --device cpu --quiet", WPATH, DPATH, fp, MB);
    t_true("cmd_features (in process) exits 0", run_cmd(args) == 0);
    check_file(&m, fp, 3, 5, 0, "in-process");
    t_true("no temporary file left after the rename", no_temp_left());

    snprintf(fp, sizeof fp, "%s/f_l2.h5", DIR_);
    snprintf(args, sizeof args, "--weights %s --data %s --layers 2,norm --out %s --split val "
             "--normalize l2 --batch 3 --device cpu --quiet", WPATH, DPATH, fp);
    t_true("cmd_features --normalize l2 exits 0", run_cmd(args) == 0);
    check_file(&m, fp, 0, 0, 1, "l2");

    snprintf(fp, sizeof fp, "%s/f_default.h5", DIR_);
    snprintf(args, sizeof args, "--weights %s --data %s --out %s --device cpu --quiet", WPATH, DPATH, fp);
    t_true("cmd_features with default layers and split exits 0", run_cmd(args) == 0);
    char buf[256], err[256];
    read_attr(fp, "layers", buf, sizeof buf);
    t_true("default layers for depth 3: 1,2,3,norm", !strcmp(buf, "1,2,3,norm"));
    t_true("default split all: N = every case", h5_dataset_len(fp, "/case_id", err, sizeof err) == NCASE);

    /* the built binary, as users run it */
    const char* bd = b && *b ? b : "build";
    char vita[600], cmd[2200];
    snprintf(vita, sizeof vita, "%s/vita", bd);
    snprintf(cmd, sizeof cmd, "'%s' features --help > /dev/null 2>&1", vita);
    int cli_ok = access(vita, X_OK) == 0 && system(cmd) == 0;
    t_true("vita features --help (binary) exits 0", cli_ok);
    if (cli_ok) {
        snprintf(fp, sizeof fp, "%s/f_cli.h5", DIR_);
        snprintf(cmd, sizeof cmd, "'%s' features --weights %s --data %s --layers 2,norm --out %s "
                 "--split val --tokens 3 --seed 5 --batch %d --device cpu --quiet", vita, WPATH,
                 DPATH, fp, MB);
        t_true("vita features (binary) exits 0", system(cmd) == 0);
        check_file(&m, fp, 3, 5, 0, "binary");
    }

    snprintf(fp, sizeof fp, "%s/bad.h5", DIR_);
    snprintf(args, sizeof args, "--weights %s --data %s", WPATH, DPATH);
    expect_user_error("missing --out: exit 1 naming --out", args, "--out");
    snprintf(args, sizeof args, "--weights %s --data %s --out %s --layers 2,7", WPATH, DPATH, fp);
    expect_user_error("layer 7 of a depth-3 model: exit 1 naming the layer", args, "'7'");
    snprintf(args, sizeof args, "--weights %s --data %s --out %s --split probe", WPATH, DPATH, fp);
    expect_user_error("empty split: exit 1 naming the split", args, "probe");
    snprintf(args, sizeof args, "--weights %s --data %s --out %s --tokens 99", WPATH, DPATH, fp);
    expect_user_error("--tokens beyond the patch count: exit 1", args, "--tokens");
    snprintf(args, sizeof args, "--weights %s --data %s --out %s --frobnicate", WPATH, DPATH, fp);
    expect_user_error("unknown flag: exit 1 naming it", args, "--frobnicate");
    t_true("no output file after failed runs", access(fp, F_OK) != 0);

    vit_free(&m);
    ctx_close(&C);
    free(g_vol);
    if (!getenv("VITA_TEST_KEEP")) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", DIR_);
        if (system(cmd)) printf("note: could not remove %s\n", DIR_);
    } else
        printf("fixtures kept in %s\n", DIR_);
    return t_summary();
}
