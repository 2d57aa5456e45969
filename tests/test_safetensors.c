/* tests/test_safetensors.c — the safetensors reader and writer (engine/safetensors.c).
 *
 * Round trip (bit-exact, incl. 0-d, zero-size, 4-D, NaN payloads, metadata with JSON in it);
 * F16 (all 65536 values against an independent formula) and BF16 hand-built files; unaligned
 * data; one crafted malformed file per validation rule, each of which must be rejected with a
 * one-line error naming the file (and the tensor); the writer's atomicity and refusals; the
 * writer's output cross-checked by tests/oracle/safetensors_check.py (json + struct). */
#include "../engine/safetensors.h"
#include "testing.h"

#include <dirent.h>
#include <float.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];
static const char* g_argv0;

static void path_in(char* out, size_t n, const char* name) { snprintf(out, n, "%s/%s", g_dir, name); }

static void write_bytes(const char* path, const void* p, size_t n) {
    FILE* fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp) != 0) {
        fprintf(stderr, "test: cannot write %s\n", path);
        exit(2);
    }
}

/* a safetensors file: u64 LE strlen(header), header, data */
static void write_st(const char* path, const char* header, const void* data, size_t dlen) {
    size_t hn = strlen(header);
    unsigned char* b = malloc(8 + hn + dlen + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hn >> (8 * i));
    memcpy(b + 8, header, hn);
    if (dlen) memcpy(b + 8 + hn, data, dlen);
    write_bytes(path, b, 8 + hn + dlen);
    free(b);
}

static int file_exists(const char* p) { struct stat s; return stat(p, &s) == 0; }

/* a crafted file that st_open must reject: non-empty one-line error with the file name, the
 * given substrings, and f left empty */
static void reject_file(const char* label, const char* path, const char* must1, const char* must2) {
    StFile f;
    memset(&f, 0x5a, sizeof f);
    char err[512] = "";
    int rc = st_open(&f, path, err, sizeof err);
    int ok = rc != 0 && err[0] && !strchr(err, '\n') && strstr(err, path) &&
             (!must1 || strstr(err, must1)) && (!must2 || strstr(err, must2)) && f.n == 0 &&
             f.t == NULL && f.file_buf == NULL && f.path == NULL && f.n_meta == 0;
    char what[160];
    snprintf(what, sizeof what, "reject: %s", label);
    t_true(what, ok);
    printf("       err: %s\n", err);
    st_close(&f);
}

static void reject(const char* label, const char* header, const void* data, size_t dlen,
                   const char* must1, const char* must2) {
    static int k = 0;
    char path[512], name[64];
    snprintf(name, sizeof name, "bad%02d.safetensors", k++);
    path_in(path, sizeof path, name);
    write_st(path, header, data, dlen);
    reject_file(label, path, must1, must2);
}

static int accept(const char* label, const char* header, const void* data, size_t dlen, StFile* f) {
    static int k = 0;
    char path[512], name[64], err[512] = "";
    snprintf(name, sizeof name, "good%02d.safetensors", k++);
    path_in(path, sizeof path, name);
    write_st(path, header, data, dlen);
    int rc = st_open(f, path, err, sizeof err);
    char what[160];
    snprintf(what, sizeof what, "accept: %s", label);
    t_true(what, rc == 0);
    if (rc) printf("       err: %s\n", err);
    return rc == 0;
}

static uint32_t fbits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static float bitsf(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* ---------------------------------------------------------------------------------------- */

static int run_oracle(const char* path, const char* args) {
    const char* py = getenv("PYTHON");
    if (!py) py = "/usr/bin/python3";
    char script[512] = "tests/oracle/safetensors_check.py";
    if (!file_exists(script) && g_argv0) {
        /* BUILD/tests/test_safetensors -> repo root */
        snprintf(script, sizeof script, "%s", g_argv0);
        for (int up = 0; up < 3; up++) {
            char* s = strrchr(script, '/');
            if (s) *s = 0; else { script[0] = '.'; script[1] = 0; break; }
        }
        strncat(script, "/tests/oracle/safetensors_check.py", sizeof script - strlen(script) - 1);
    }
    if (access(py, X_OK) != 0 || !file_exists(script)) {
        printf("SKIP oracle cross-check (no %s or %s)\n", py, script);
        return -1;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s '%s' %s", py, script, path, args);
    return system(cmd);
}

static void test_round_trip(void) {
    TRng r = {42};
    float scalar = 3.5f;
    float t4[2 * 3 * 4 * 5];
    for (int i = 0; i < 120; i++) t4[i] = (float)trng_normal(&r);
    float special[8] = {INFINITY, -INFINITY, bitsf(0x7fc00001u), -0.0f, bitsf(1u), FLT_MAX,
                        bitsf(0xffa00005u), 1.0f / 3.0f};
    float mat[6] = {1, 2, 3, 4, 5, 6};
    StWriteTensor w[5] = {
        {"blocks.0.attn.qkv.weight", 4, {2, 3, 4, 5}, t4},
        {"cls_token", 0, {0}, &scalar},
        {"empty", 2, {3, 0}, NULL},
        {"special", 1, {8}, special},
        {"we\"ird\\name\twith\x01" "ctl", 2, {2, 3}, mat},
    };
    const char* meta[] = {"vita_version", "0.1.0",
                          "model", "{\"arch\": \"vit_small\", \"patch\": 16,\n \"s\": \"a\\\\b\"}",
                          "task", "cls"};
    char path[512], err[512] = "";
    path_in(path, sizeof path, "rt.safetensors");
    int rc = st_write_f32(path, w, 5, meta, 3, err, sizeof err);
    t_true("write: 5 tensors + 3 metadata", rc == 0);
    if (rc) { printf("       err: %s\n", err); return; }

    StFile f;
    rc = st_open(&f, path, err, sizeof err);
    t_true("read back: opens", rc == 0);
    if (rc) { printf("       err: %s\n", err); return; }
    int ok = f.n == 5 && f.n_meta == 3;
    for (int i = 0; ok && i < 5; i++) {
        const StTensor* t = &f.t[i];
        ok = strcmp(t->name, w[i].name) == 0 && t->dtype == ST_F32 && t->ndim == w[i].ndim;
        int64_t numel = 1;
        for (int d = 0; ok && d < t->ndim; d++) {
            ok = t->shape[d] == w[i].shape[d];
            numel *= w[i].shape[d];
        }
        ok = ok && t->numel == numel && st_find(&f, w[i].name) == t;
        if (ok && numel) {
            float* got = malloc((size_t)numel * 4);
            st_read_f32(&f, t, got);
            ok = memcmp(got, w[i].data, (size_t)numel * 4) == 0;
            free(got);
        }
    }
    t_true("read back: names, order, shapes, numel, data bit-exact (NaN payloads too)", ok);
    ok = 1;
    for (int i = 0; i < 3; i++) ok = ok && st_meta(&f, meta[2 * i]) && strcmp(st_meta(&f, meta[2 * i]), meta[2 * i + 1]) == 0;
    t_true("read back: metadata values exact (JSON, quotes, backslash, newline)", ok);
    t_true("st_find / st_meta of an absent name give NULL", !st_find(&f, "nope") && !st_meta(&f, "nope"));
    t_true("0-d scalar has ndim 0, numel 1", f.t[1].ndim == 0 && f.t[1].numel == 1);
    t_true("zero-size tensor has numel 0 and begin == end", f.t[2].numel == 0 && f.t[2].begin == f.t[2].end);
    st_close(&f);
    t_true("st_close zeroes the struct; a second st_close is safe", f.t == NULL && f.file_buf == NULL && f.n == 0);
    st_close(&f);

    /* the header is padded with spaces to a multiple of 8 and offsets are integers */
    FILE* fp = fopen(path, "rb");
    unsigned char len8[8];
    uint64_t hn = 0;
    if (fp && fread(len8, 1, 8, fp) == 8)
        for (int i = 7; i >= 0; i--) hn = (hn << 8) | len8[i];
    char* hdr = calloc(hn + 1, 1);
    if (fp && hn && fread(hdr, 1, hn, fp) != hn) hn = 0;
    if (fp) fclose(fp);
    t_true("writer: header length is a multiple of 8", hn > 0 && hn % 8 == 0);
    size_t body = strlen(hdr);
    while (body && hdr[body - 1] == ' ') body--;
    t_true("writer: header is a JSON object followed only by spaces", body && hdr[0] == '{' && hdr[body - 1] == '}' && hn - body < 8);
    t_true("writer: offsets printed as plain integers (no '.', no exponent)", strstr(hdr, "\"data_offsets\":[0,480]") && strstr(hdr, "[480,484]") && !strstr(hdr, "e+"));
    free(hdr);

    rc = run_oracle(path, "'blocks.0.attn.qkv.weight=2,3,4,5' 'cls_token=' 'empty=3,0' 'special=8' "
                          "'we\"ird\\name\twith\x01" "ctl=2,3' meta:vita_version meta:model meta:task");
    if (rc >= 0) t_true("oracle (python json+struct): writer output is reference safetensors", rc == 0);

    /* no tensors, no metadata */
    path_in(path, sizeof path, "none.safetensors");
    rc = st_write_f32(path, NULL, 0, NULL, 0, err, sizeof err);
    int rc2 = rc ? -1 : st_open(&f, path, err, sizeof err);
    t_true("write + read an empty file (no tensors, no metadata)", rc == 0 && rc2 == 0 && f.n == 0 && f.n_meta == 0 && f.data_len == 0);
    st_close(&f);
    rc = run_oracle(path, "");
    if (rc >= 0) t_true("oracle: empty file is reference safetensors", rc == 0);
}

static void test_writer_atomic_and_refusals(void) {
    char path[512], err[512];
    float a[4] = {1, 2, 3, 4}, b[2] = {7, 8};
    path_in(path, sizeof path, "over.safetensors");
    StWriteTensor w1[1] = {{"x", 1, {4}, a}};
    StWriteTensor w2[1] = {{"y", 1, {2}, b}};
    int rc = st_write_f32(path, w1, 1, NULL, 0, err, sizeof err);
    rc |= st_write_f32(path, w2, 1, NULL, 0, err, sizeof err);
    StFile f;
    int ok = rc == 0 && st_open(&f, path, err, sizeof err) == 0;
    if (ok) {
        float got[2];
        ok = f.n == 1 && strcmp(f.t[0].name, "y") == 0 && f.t[0].numel == 2;
        if (ok) st_read_f32(&f, &f.t[0], got);
        ok = ok && got[0] == 7 && got[1] == 8;
        st_close(&f);
    }
    t_true("writer: overwriting an existing file replaces it", ok);

    DIR* d = opendir(g_dir);
    int tmp_left = 0;
    struct dirent* de;
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) tmp_left++;
    if (d) closedir(d);
    t_true("writer: no temporary file left behind", d && tmp_left == 0);

    char bad[512];
    snprintf(bad, sizeof bad, "%s/no/such/dir/w.safetensors", g_dir);
    err[0] = 0;
    rc = st_write_f32(bad, w1, 1, NULL, 0, err, sizeof err);
    t_true("writer: nonexistent directory fails with err naming the path",
           rc != 0 && err[0] && strstr(err, bad) && !strchr(err, '\n') && !file_exists(bad));
    printf("       err: %s\n", err);

    struct { const char* label; StWriteTensor w[2]; int n; const char* must; } cases[] = {
        {"duplicate tensor names", {{"x", 1, {4}, a}, {"x", 1, {2}, b}}, 2, "'x'"},
        {"empty tensor name", {{"", 1, {4}, a}}, 1, "empty name"},
        {"NULL tensor name", {{NULL, 1, {4}, a}}, 1, "empty name"},
        {"name __metadata__", {{"__metadata__", 1, {4}, a}}, 1, "reserved"},
        {"negative shape", {{"neg", 2, {2, -2}, a}}, 1, "'neg'"},
        {"9 dimensions", {{"nine", 9, {1}, a}}, 1, "'nine'"},
        {"NULL data", {{"nodata", 1, {4}, NULL}}, 1, "'nodata'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[512], what[160];
        snprintf(p, sizeof p, "%s/refused%zu.safetensors", g_dir, i);
        err[0] = 0;
        rc = st_write_f32(p, cases[i].w, cases[i].n, NULL, 0, err, sizeof err);
        snprintf(what, sizeof what, "writer refuses: %s", cases[i].label);
        t_true(what, rc != 0 && strstr(err, p) && strstr(err, cases[i].must) && !file_exists(p));
        printf("       err: %s\n", err);
    }
    const char* dupmeta[] = {"k", "1", "k", "2"};
    char p[512];
    path_in(p, sizeof p, "dupmeta.safetensors");
    rc = st_write_f32(p, w1, 1, dupmeta, 2, err, sizeof err);
    t_true("writer refuses: duplicate metadata keys", rc != 0 && strstr(err, "'k'") && !file_exists(p));
}

/* independent F16 -> double formula */
static double f16_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_f16_bf16(void) {
    /* every F16 value */
    unsigned char* d = malloc(65536 * 2);
    for (int i = 0; i < 65536; i++) { d[2 * i] = (unsigned char)(i & 255); d[2 * i + 1] = (unsigned char)(i >> 8); }
    StFile f;
    if (accept("F16 file with all 65536 values", "{\"h\":{\"dtype\":\"F16\",\"shape\":[256,256],\"data_offsets\":[0,131072]}}", d, 131072, &f)) {
        float* got = malloc(65536 * 4);
        st_read_f32(&f, st_find(&f, "h"), got);
        int bad = 0;
        for (int i = 0; i < 65536; i++) {
            double ref = f16_ref((uint16_t)i);
            uint32_t gb = fbits(got[i]);
            if (ref != ref) {
                /* NaN: exponent all ones, payload shifted (nonzero), sign kept */
                uint32_t want = ((uint32_t)(i & 0x8000) << 16) | 0x7f800000u | ((uint32_t)(i & 1023) << 13);
                if (gb != want) bad++;
            } else if (fbits((float)ref) != gb) bad++; /* bitwise: keeps -0 vs +0 apart */
        }
        char what[96];
        snprintf(what, sizeof what, "F16: all 65536 values equal the exact formula (%d differ)", bad);
        t_true(what, bad == 0);
        /* a few by name */
        t_true("F16: 0x0001 = 2^-24, 0x03ff = 1023*2^-24, 0x7bff = 65504, 0x7c00 = inf, 0xfc00 = -inf, 0x8000 = -0",
               got[1] == ldexpf(1, -24) && got[0x3ff] == ldexpf(1023, -24) && got[0x7bff] == 65504.0f &&
               got[0x7c00] == INFINITY && got[0xfc00] == -INFINITY && fbits(got[0x8000]) == 0x80000000u &&
               isnan(got[0x7e00]) && got[0x3c00] == 1.0f && got[0xc000] == -2.0f);
        free(got);
        st_close(&f);
    }
    free(d);

    uint16_t bf[8] = {0x3f80, 0xc049, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x0080};
    unsigned char bd[16];
    for (int i = 0; i < 8; i++) { bd[2 * i] = bf[i] & 255; bd[2 * i + 1] = bf[i] >> 8; }
    if (accept("BF16 file", "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2,4],\"data_offsets\":[0,16]}}", bd, 16, &f)) {
        float g[8];
        st_read_f32(&f, &f.t[0], g);
        t_true("BF16: 1, -3.140625, 2^-133 (subnormal), inf, -inf, nan, -0, 2^-126",
               g[0] == 1.0f && g[1] == -3.140625f && g[2] == ldexpf(1, -133) && g[3] == INFINITY &&
               g[4] == -INFINITY && isnan(g[5]) && fbits(g[6]) == 0x80000000u && g[7] == FLT_MIN);
        st_close(&f);
    }
}

static void test_unaligned_and_order(void) {
    /* F16 [1] at 0, F32 [3] at 2 (never 4-aligned in the file: 8 + N + 2 is made odd), BF16 [2] */
    char hdr[512];
    snprintf(hdr, sizeof hdr, "{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[2,14]},"
             "\"c\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[14,18]}}");
    while ((8 + strlen(hdr) + 2) % 4 != 1) strcat(hdr, " ");
    unsigned char data[18];
    uint16_t h = 0x3c00; /* 1.0 */
    float fv[3] = {1.25f, -7.5e-39f /* subnormal */, 123456.789f};
    uint16_t bv[2] = {0x4049, 0xbf80};
    memcpy(data, &h, 2);
    memcpy(data + 2, fv, 12);
    memcpy(data + 14, bv, 4);
    StFile f;
    if (accept("unaligned F32 data (file offset 8+N+2 odd), mixed dtypes, space padding", hdr, data, 18, &f)) {
        float a, b[3], c[2];
        st_read_f32(&f, st_find(&f, "a"), &a);
        st_read_f32(&f, st_find(&f, "b"), b);
        st_read_f32(&f, st_find(&f, "c"), c);
        t_true("unaligned: values exact", a == 1.0f && memcmp(b, fv, 12) == 0 && c[0] == 3.140625f && c[1] == -1.0f &&
               ((uintptr_t)(f.data + st_find(&f, "b")->begin) & 3) != 0);
        st_close(&f);
    }

    /* header order is kept; __metadata__ may sit anywhere; whitespace padding incl. newline */
    unsigned char z8[8] = {0};
    if (accept("tensors out of offset order, __metadata__ in the middle",
               "{\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
               "\"__metadata__\":{\"format\":\"pt\"},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
               "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
               "\"e0\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[0,0]}}  \n  ", z8, 8, &f)) {
        t_true("order: f->t is header order z, a, e, e0; metadata read",
               f.n == 4 && !strcmp(f.t[0].name, "z") && !strcmp(f.t[1].name, "a") &&
               !strcmp(f.t[2].name, "e") && !strcmp(f.t[3].name, "e0") && f.t[0].begin == 4 &&
               st_meta(&f, "format") && !strcmp(st_meta(&f, "format"), "pt"));
        st_close(&f);
    }

    /* shape entries beyond INT_MAX and exactly 2^53 parse exactly (zero-size tensor) */
    if (accept("shape [3000000000, 9007199254740992, 0] (numel 0)",
               "{\"big\":{\"dtype\":\"F32\",\"shape\":[3000000000,9007199254740992,0],\"data_offsets\":[0,0]}}", NULL, 0, &f)) {
        t_true("big shape entries exact (no INT_MAX saturation)",
               f.t[0].shape[0] == 3000000000LL && f.t[0].shape[1] == 9007199254740992LL && f.t[0].numel == 0);
        st_close(&f);
    }
}

static void test_malformed(void) {
    unsigned char z[64] = {0};
    char path[512];

    path_in(path, sizeof path, "empty.safetensors");
    write_bytes(path, "", 0);
    reject_file("empty file", path, "8-byte", NULL);
    path_in(path, sizeof path, "short.safetensors");
    write_bytes(path, "\x02\0\0\0\0", 5);
    reject_file("5-byte file", path, "8-byte", NULL);
    path_in(path, sizeof path, "absent.safetensors");
    reject_file("nonexistent file", path, "cannot open", NULL);
    unsigned char big[16] = {0x00, 0xc2, 0xeb, 0x0b, 0, 0, 0, 0, '{', '}'}; /* 200,000,000 */
    path_in(path, sizeof path, "hugehdr.safetensors");
    write_bytes(path, big, 16);
    reject_file("header length 200,000,000 > 100 MB", path, "100000000", NULL);
    unsigned char trunc[20] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    path_in(path, sizeof path, "trunchdr.safetensors");
    write_bytes(path, trunc, 20);
    reject_file("header length past end of file", path, "truncated", NULL);

#define W(x) "{\"w\":{" x "}}"
    reject("bad JSON", "{\"w\":{\"dtype\":\"F32\",", NULL, 0, "JSON", NULL);
    reject("header is an array", "[1,2,3]", NULL, 0, "not an object", NULL);
    reject("bytes after the JSON object", "{}  xx  ", NULL, 0, "after the JSON", NULL);
    reject("entry is not an object", "{\"w\":3}", NULL, 0, "'w'", "object");
    reject("missing dtype", W("\"shape\":[1],\"data_offsets\":[0,4]"), z, 4, "'w'", "dtype");
    reject("dtype not a string", W("\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,4]"), z, 4, "'w'", "dtype");
    reject("unknown dtype I64", W("\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]"), z, 8, "'w'", "I64");
    reject("unknown dtype F64", W("\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]"), z, 8, "'w'", "F64");
    reject("missing shape", W("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), z, 4, "'w'", "shape");
    reject("shape not an array", W("\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]"), z, 4, "'w'", "shape");
    reject("9 dimensions", W("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]"), z, 4, "'w'", "dimensions");
    reject("negative shape", W("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), z, 4, "'w'", "shape[0]");
    reject("non-integer shape 2.5", W("\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]"), z, 10, "'w'", "2.5");
    reject("shape entry a string", W("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), z, 8, "'w'", "shape[0]");
    reject("numel overflow", W("\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]"), z, 4, "'w'", "2^63");
    reject("missing data_offsets", W("\"dtype\":\"F32\",\"shape\":[1]"), z, 4, "'w'", "data_offsets");
    reject("data_offsets of 3", W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), z, 8, "'w'", "data_offsets");
    reject("data_offsets of 1", W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]"), z, 4, "'w'", "data_offsets");
    reject("data_offsets not an array", W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\""), z, 4, "'w'", "data_offsets");
    reject("offset 1.5", W("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[1.5,1.5]"), z, 4, "'w'", "1.5");
    reject("offset 2^53+2 > 2^53", W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,9007199254740994]"), z, 4, "'w'", "data_offsets[1]");
    reject("offset 1e300", W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,4]"), z, 4, "'w'", "data_offsets[0]");
    reject("negative offset", W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]"), z, 4, "'w'", "data_offsets[0]");
    reject("offset a string", W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]"), z, 4, "'w'", "data_offsets[0]");
    reject("begin > end", W("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]"), z, 4, "'w'", "end before begin");
    reject("shape/size mismatch F32", W("\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]"), z, 12, "'w'", "needs 16");
    reject("shape/size mismatch F16", W("\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]"), z, 16, "'w'", "needs 8");
    reject("end past data buffer", W("\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]"), z, 8, "'w'", "truncated");
    /* a valid offset beyond INT_MAX: parsed exactly, rejected only because the data is missing */
    reject("offset 3000000000 parsed exactly, file truncated",
           W("\"dtype\":\"F32\",\"shape\":[750000000],\"data_offsets\":[0,3000000000]"), z, 8, "truncated", "3000000000");
    reject("overlapping ranges",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", z, 12, "overlap", "'b'");
    reject("zero-size tensor inside another",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", z, 8, "overlap", "'e'");
    reject("hole between tensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", z, 12, "hole", "'b'");
    reject("hole at the start", W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]"), z, 8, "hole", "'w'");
    reject("trailing bytes", W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"), z, 8, "trailing", NULL);
    reject("no tensors but data bytes", "{}", z, 4, "trailing", NULL);
    reject("duplicate tensor key",
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", z, 8, "'w'", "twice");
    reject("duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", NULL, 0, "__metadata__", "twice");
    reject("duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", NULL, 0, "'k'", "twice");
    reject("metadata value not a string", "{\"__metadata__\":{\"k\":1}}", NULL, 0, "'k'", "string");
    reject("metadata not an object", "{\"__metadata__\":\"x\"}", NULL, 0, "__metadata__", "object");
#undef W
}

int main(int argc, char** argv) {
    (void)argc;
    g_argv0 = argv[0];
    snprintf(g_dir, sizeof g_dir, "%s/vita_st_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 2; }

    StFile zero;
    memset(&zero, 0, sizeof zero);
    st_close(&zero);
    t_true("st_close on a zeroed StFile is safe and leaves it empty",
           zero.t == NULL && zero.file_buf == NULL && zero.n == 0);

    test_round_trip();
    test_writer_atomic_and_refusals();
    test_f16_bf16();
    test_unaligned_and_order();
    test_malformed();

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    return t_summary();
}
