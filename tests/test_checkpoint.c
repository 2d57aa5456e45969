/* tests/test_checkpoint.c — checkpoints (engine/checkpoint.c, SPEC.md §4).
 *
 * CRC-32 against the standard check value; write_file_atomic; a bit-exact save/load round trip
 * (blobs incl. NaN payloads and an empty blob, weights, metadata) and the state file's byte
 * layout parsed by hand; keep-last-k pruning (best.safetensors untouched); every way a
 * checkpoint can be damaged (flipped bytes at each field, truncated state, truncated weights,
 * missing / garbage `latest`, `latest` naming a missing file, weights of another step) falls
 * back to the previous checkpoint with a one-line message naming the file; temporary files
 * are never taken for checkpoints and are deleted by the next save; a writer killed with
 * SIGKILL at random moments of ckpt_save (20 times) always leaves a complete checkpoint. */
#include "../engine/checkpoint.h"
#include "testing.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static char g_dir[256];

/* ---- small file helpers ----------------------------------------------------------------- */
static int file_exists(const char* p) { struct stat s; return stat(p, &s) == 0; }
static long file_size(const char* p) { struct stat s; return stat(p, &s) == 0 ? (long)s.st_size : -1; }

static unsigned char* read_all(const char* path, long* n) {
    FILE* fp = fopen(path, "rb");
    if (!fp) { *n = -1; return NULL; }
    fseek(fp, 0, SEEK_END);
    *n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char* b = malloc((size_t)*n + 1);
    if (fread(b, 1, (size_t)*n, fp) != (size_t)*n) { free(b); b = NULL; }
    else b[*n] = 0;
    fclose(fp);
    return b;
}
static void write_all(const char* path, const void* p, size_t n) {
    FILE* fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp) != 0) {
        fprintf(stderr, "test: cannot write %s\n", path);
        exit(2);
    }
}
static void flip_byte(const char* path, long at) {
    long n;
    unsigned char* b = read_all(path, &n);
    if (!b || at >= n) { fprintf(stderr, "test: flip %s@%ld\n", path, at); exit(2); }
    b[at] ^= 0x5a;
    write_all(path, b, (size_t)n);
    free(b);
}
static void truncate_to(const char* path, long n) {
    if (truncate(path, n) != 0) { fprintf(stderr, "test: truncate %s\n", path); exit(2); }
}

static void rm_rf(const char* path) {
    DIR* d = opendir(path);
    if (d) {
        struct dirent* de;
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            rm_rf(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* number of entries in run/checkpoints whose name contains s */
static int count_named(const char* run, const char* s) {
    char p[512];
    snprintf(p, sizeof p, "%s/checkpoints", run);
    DIR* d = opendir(p);
    if (!d) return 0;
    int n = 0;
    struct dirent* de;
    while ((de = readdir(d)) != NULL) n += strstr(de->d_name, s) != NULL;
    closedir(d);
    return n;
}

static void new_run(char* run, size_t n, const char* name) {
    snprintf(run, n, "%s/%s", g_dir, name);
    mkdir(run, 0777);
}
static void ck_path(char* out, size_t n, const char* run, long step, const char* ext) {
    snprintf(out, n, "%s/checkpoints/step_%08ld.%s", run, step, ext);
}

/* ---- deterministic checkpoint content of a step ---------------------------------------- */
static uint32_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return (uint32_t)x;
}
static float val(long step, int which, long i) {
    return (float)(mix(((uint64_t)step << 40) ^ ((uint64_t)which << 32) ^ (uint64_t)i) & 0xffffff) / 65536.0f - 128.0f;
}

typedef struct {
    long nw, nm;               /* weight floats, moment floats */
    float* w;
    float* head;
    float* m;
    uint64_t rng[4];
    long pos;
    unsigned char odd[7];
} Content;

static void content_make(Content* c, long step, long nw, long nm) {
    c->nw = nw;
    c->nm = nm;
    c->w = malloc((size_t)nw * sizeof(float));
    c->head = malloc(6 * sizeof(float));
    c->m = malloc((size_t)(nm ? nm : 1) * sizeof(float));
    for (long i = 0; i < nw; i++) c->w[i] = val(step, 0, i);
    for (long i = 0; i < 6; i++) c->head[i] = val(step, 1, i);
    for (long i = 0; i < nm; i++) c->m[i] = val(step, 2, i);
    if (nm > 3) {   /* NaN payloads and signed zero must survive bit-exactly */
        uint32_t u = 0x7fc12345u;
        memcpy(&c->m[0], &u, 4);
        u = 0xffa00001u;
        memcpy(&c->m[1], &u, 4);
        c->m[2] = -0.0f;
    }
    for (int i = 0; i < 4; i++) c->rng[i] = ((uint64_t)mix((uint64_t)step * 4 + (uint64_t)i) << 32) | mix((uint64_t)i);
    c->pos = step * 7 + 3;
    for (int i = 0; i < 7; i++) c->odd[i] = (unsigned char)(step + i * 37);
}
static void content_free(Content* c) { free(c->w); free(c->head); free(c->m); }

static int save_step(const char* run, long step, long nw, long nm, int keep, char* err, size_t el) {
    Content c;
    content_make(&c, step, nw, nm);
    StWriteTensor t[2] = {{"blocks.0.attn.qkv.weight", 1, {nw}, c.w},
                          {"head.weight", 2, {2, 3}, c.head}};
    char ss[32];
    snprintf(ss, sizeof ss, "%ld", step);
    const char* meta[6] = {"vita_version", "0.1.0", "model", "vit_tiny_patch16_224", "step", ss};
    CkptBlob b[5] = {{"adam_m", c.m, (size_t)nm * sizeof(float)},
                     {"rng", c.rng, sizeof c.rng},
                     {"loader/pos", &c.pos, sizeof c.pos},
                     {"empty", NULL, 0},
                     {"odd name: \xc3\xa9 \"q\"", c.odd, sizeof c.odd}};
    int rc = ckpt_save(run, step, t, 2, meta, 3, b, 5, keep, err, el);
    content_free(&c);
    return rc;
}

/* does the loaded state / weights file hold exactly step's content? */
static int content_matches(long step, const CkptState* st, const char* wpath, long nw, long nm) {
    Content c;
    content_make(&c, step, nw, nm);
    size_t n;
    const void* p;
    int ok = st->n == 5;
    ok = ok && (p = ckpt_blob(st, "adam_m", &n)) && n == (size_t)nm * sizeof(float) && (!n || !memcmp(p, c.m, n));
    ok = ok && (p = ckpt_blob(st, "rng", &n)) && n == sizeof c.rng && !memcmp(p, c.rng, n);
    ok = ok && (p = ckpt_blob(st, "loader/pos", &n)) && n == sizeof c.pos && !memcmp(p, &c.pos, n);
    ok = ok && (p = ckpt_blob(st, "empty", &n)) && n == 0;
    ok = ok && (p = ckpt_blob(st, "odd name: \xc3\xa9 \"q\"", &n)) && n == 7 && !memcmp(p, c.odd, n);
    StFile f;
    char err[512];
    if (ok && st_open(&f, wpath, err, sizeof err) == 0) {
        const StTensor* t = st_find(&f, "blocks.0.attn.qkv.weight");
        const StTensor* h = st_find(&f, "head.weight");
        float* w = malloc((size_t)nw * sizeof(float) + 4);
        float hh[6];
        ok = t && h && t->numel == nw && h->numel == 6 && h->ndim == 2 && h->shape[0] == 2;
        if (ok) {
            st_read_f32(&f, t, w);
            st_read_f32(&f, h, hh);
            ok = !memcmp(w, c.w, (size_t)nw * sizeof(float)) && !memcmp(hh, c.head, sizeof hh);
        }
        const char* ms = st_meta(&f, "step");
        ok = ok && ms && strtol(ms, NULL, 10) == step && st_meta(&f, "model") &&
             !strcmp(st_meta(&f, "model"), "vit_tiny_patch16_224");
        free(w);
        st_close(&f);
    } else {
        ok = 0;
    }
    content_free(&c);
    return ok;
}

/* ckpt_find_latest with stderr captured into msg */
static int find_capture(const char* run, char* wpath, size_t wl, long* step, CkptState* st,
                        char* err, size_t el, char* msg, size_t ml) {
    char cap[512];
    snprintf(cap, sizeof cap, "%s/stderr.txt", g_dir);
    fflush(stderr);
    int saved = dup(2);
    FILE* fp = fopen(cap, "w");
    dup2(fileno(fp), 2);
    int rc = ckpt_find_latest(run, wpath, wl, step, st, err, el);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(fp);
    long n;
    unsigned char* b = read_all(cap, &n);
    snprintf(msg, ml, "%s", b ? (char*)b : "");
    free(b);
    if (msg[0]) printf("       stderr: %s", msg);
    if (rc) printf("       err: %s\n", err);
    return rc;
}

#define NW 1000
#define NM 777

/* the two-checkpoint fixture: steps 100 and 120 */
static void fixture(char* run, size_t n, const char* name) {
    char err[512];
    new_run(run, n, name);
    if (save_step(run, 100, NW, NM, 5, err, sizeof err) || save_step(run, 120, NW, NM, 5, err, sizeof err)) {
        fprintf(stderr, "test: fixture: %s\n", err);
        exit(2);
    }
}

/* find must return `want` with its exact content and print a message containing m1 and m2 */
static void expect_fallback(const char* label, const char* run, long want, const char* m1,
                            const char* m2) {
    char wpath[512], err[512] = "", msg[4096];
    long step = -7;
    CkptState st;
    int rc = find_capture(run, wpath, sizeof wpath, &step, &st, err, sizeof err, msg, sizeof msg);
    char using_[64];
    snprintf(using_, sizeof using_, "using step_%08ld", want);
    int ok = rc == 0 && step == want && content_matches(want, &st, wpath, NW, NM) &&
             (!m1 || strstr(msg, m1)) && (!m2 || strstr(msg, m2)) &&
             (!m1 || strstr(msg, using_)) && (m1 || !msg[0]);
    char what[200];
    snprintf(what, sizeof what, "%s -> step %ld", label, want);
    t_true(what, ok);
    ckpt_state_free(&st);
}

static void expect_none(const char* label, const char* run, const char* m1) {
    char wpath[512], err[512] = "", msg[4096];
    long step = -7;
    CkptState st;
    int rc = find_capture(run, wpath, sizeof wpath, &step, &st, err, sizeof err, msg, sizeof msg);
    t_true(label, rc == 1 && err[0] && strstr(err, "checkpoints") && st.n == 0 && step == -1 &&
                      wpath[0] == 0 && (!m1 || strstr(msg, m1)));
}

/* ---- tests ------------------------------------------------------------------------------ */
static void test_crc(void) {
    t_true("crc32(\"123456789\") == 0xCBF43926", ckpt_crc32(0, "123456789", 9) == 0xCBF43926u);
    t_true("crc32 of nothing == 0", ckpt_crc32(0, "", 0) == 0);
    /* the slicing-by-8 path against a bitwise reference, in odd chunks and misalignments */
    unsigned char buf[4099];
    TRng r = {12345};
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)trng_u64(&r);
    uint32_t ref = 0xffffffffu;
    for (size_t i = 0; i < sizeof buf - 3; i++) {
        ref ^= buf[i + 3];
        for (int k = 0; k < 8; k++) ref = (ref & 1) ? 0xEDB88320u ^ (ref >> 1) : ref >> 1;
    }
    ref = ~ref;
    uint32_t c = 0;
    size_t off = 3;
    for (size_t step = 1; off < sizeof buf; step = step * 3 + 1) {
        size_t k = step < sizeof buf - off ? step : sizeof buf - off;
        c = ckpt_crc32(c, buf + off, k);
        off += k;
    }
    t_true("crc32 chunked + unaligned == bitwise reference", c == ref && ckpt_crc32(0, buf + 3, sizeof buf - 3) == ref);
}

static void test_write_atomic(void) {
    char p[512], err[512] = "";
    snprintf(p, sizeof p, "%s/small.txt", g_dir);
    int ok = write_file_atomic(p, "hello\n", 6, err, sizeof err) == 0;
    ok = ok && write_file_atomic(p, "bye\n", 4, err, sizeof err) == 0;
    long n;
    unsigned char* b = read_all(p, &n);
    ok = ok && b && n == 4 && !memcmp(b, "bye\n", 4);
    free(b);
    char tp[600];
    snprintf(tp, sizeof tp, "%s.tmp.%ld", p, (long)getpid());
    t_true("write_file_atomic: overwrite, no temporary left", ok && !file_exists(tp));
    snprintf(p, sizeof p, "%s/no/such/dir/x", g_dir);
    int rc = write_file_atomic(p, "x", 1, err, sizeof err);
    printf("       err: %s\n", err);
    t_true("write_file_atomic: missing directory -> 1, err names the file", rc == 1 && strstr(err, p) && !strchr(err, '\n'));
}

static void test_round_trip(void) {
    char run[512], err[512] = "";
    snprintf(run, sizeof run, "%s/rt/deep/run", g_dir);   /* mkdir -p of RUN_DIR/checkpoints */
    int rc = save_step(run, 10, NW, NM, 3, err, sizeof err);
    if (rc) printf("       err: %s\n", err);
    t_true("save into a missing directory tree", rc == 0);
    char wpath[512], msg[4096];
    long step = -1;
    CkptState st;
    rc = find_capture(run, wpath, sizeof wpath, &step, &st, err, sizeof err, msg, sizeof msg);
    char want[600];
    ck_path(want, sizeof want, run, 10, "safetensors");
    t_true("round trip: step, weights path, no message", rc == 0 && step == 10 && !strcmp(wpath, want) && !msg[0]);
    t_true("round trip: blobs and weights bit-exact (NaN payloads, -0, empty blob, odd names)",
           content_matches(10, &st, wpath, NW, NM));
    t_true("ckpt_blob of an absent name is NULL", ckpt_blob(&st, "nope", NULL) == NULL);
    ckpt_state_free(&st);
    t_true("ckpt_state_free leaves an empty state", st.n == 0 && !st.name && !st.data && !st.bytes);
    ckpt_state_free(&st);   /* twice is harmless */

    char p[600];
    snprintf(p, sizeof p, "%s/checkpoints/latest", run);
    long n;
    unsigned char* b = read_all(p, &n);
    t_true("latest == \"step_00000010\\n\"", b && n == 14 && !memcmp(b, "step_00000010\n", 14));
    free(b);
    t_true("no temporary files after save", count_named(run, ".tmp.") == 0);

    /* the state file's byte layout, parsed by hand */
    ck_path(p, sizeof p, run, 10, "state");
    b = read_all(p, &n);
    int ok = b && n > 24 && !memcmp(b, "VITASTAT", 8);
    uint32_t u32v;
    uint64_t u64v;
    if (ok) {
        memcpy(&u32v, b + 8, 4); ok = u32v == 1;
        memcpy(&u32v, b + 12, 4); ok = ok && u32v == 5;
        memcpy(&u32v, b + 16, 4); ok = ok && u32v == 6 && !memcmp(b + 20, "adam_m", 6);
        memcpy(&u64v, b + 26, 8); ok = ok && u64v == NM * 4;
        Content c;
        content_make(&c, 10, NW, NM);
        memcpy(&u32v, b + 34, 4); ok = ok && u32v == ckpt_crc32(0, c.m, NM * 4) && !memcmp(b + 38, c.m, NM * 4);
        content_free(&c);
        memcpy(&u32v, b + n - 4, 4); ok = ok && u32v == ckpt_crc32(0, b, (size_t)n - 4);
    }
    t_true("state layout: magic, version 1, count, name, u64 length, CRC, bytes, trailing CRC", ok);
    free(b);

    /* zero blobs and zero tensors are valid */
    char run2[512];
    new_run(run2, sizeof run2, "rt_empty");
    rc = ckpt_save(run2, 0, NULL, 0, NULL, 0, NULL, 0, 3, err, sizeof err);
    rc = rc || find_capture(run2, wpath, sizeof wpath, &step, &st, err, sizeof err, msg, sizeof msg);
    t_true("step 0 with no tensors and no blobs round-trips", rc == 0 && step == 0 && st.n == 0);
    ckpt_state_free(&st);

    /* refusals */
    CkptBlob dup[2] = {{"a", "x", 1}, {"a", "y", 1}};
    rc = ckpt_save(run2, 1, NULL, 0, NULL, 0, dup, 2, 3, err, sizeof err);
    printf("       err: %s\n", err);
    t_true("duplicate blob names refused", rc == 1 && strstr(err, "'a'"));
    rc = ckpt_save(run2, -1, NULL, 0, NULL, 0, NULL, 0, 3, err, sizeof err);
    t_true("negative step refused", rc == 1 && err[0]);
}

static void test_prune(void) {
    char run[512], err[512] = "", p[600];
    new_run(run, sizeof run, "prune");
    /* best.safetensors must survive every prune */
    float one = 1.0f;
    StWriteTensor t = {"x", 1, {1}, &one};
    mkdir(run, 0777);
    snprintf(p, sizeof p, "%s/checkpoints", run);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/checkpoints/best.safetensors", run);
    st_write_f32(p, &t, 1, NULL, 0, err, sizeof err);
    int ok = 1;
    for (long s = 1; s <= 6; s++) ok = ok && save_step(run, s * 10, 64, 16, 3, err, sizeof err) == 0;
    int present = 0;
    for (long s = 1; s <= 6; s++) {
        char a[600], b[600];
        ck_path(a, sizeof a, run, s * 10, "state");
        ck_path(b, sizeof b, run, s * 10, "safetensors");
        int e = file_exists(a) && file_exists(b);
        present |= e << s;
        ok = ok && (file_exists(a) == file_exists(b));
    }
    t_true("keep=3: exactly steps 40, 50, 60 remain", ok && present == ((1 << 4) | (1 << 5) | (1 << 6)));
    t_true("keep=3: best.safetensors untouched", file_exists(p));
    ok = save_step(run, 70, 64, 16, 1, err, sizeof err) == 0;
    t_true("keep=1: only the new step remains", ok && count_named(run, "step_") == 2 && count_named(run, "step_00000070") == 2 && file_exists(p));
    for (long s = 8; s <= 11; s++) ok = ok && save_step(run, s * 10, 64, 16, 0, err, sizeof err) == 0;
    t_true("keep=0: nothing deleted", ok && count_named(run, "step_") == 10);
    ok = save_step(run, 120, 64, 16, 2, err, sizeof err) == 0;
    t_true("keep=2 after keep=0: back to two", ok && count_named(run, "step_") == 4 &&
                                                   count_named(run, "step_00000110") == 2 && file_exists(p));
}

static void test_damage(void) {
    char run[512], p[600], err[512];
    /* flipped byte at every field of the state file */
    long n;
    {
        char r0[512];
        fixture(r0, sizeof r0, "flip_probe");
        ck_path(p, sizeof p, r0, 120, "state");
        n = file_size(p);
    }
    long at[] = {0, 9, 13, 16, 20, 27, 35, 40, n / 2, n - 12, n - 5, n - 1};
    const char* field[] = {"magic", "version", "count", "name length", "name", "blob length",
                           "blob CRC", "blob data", "middle", "late blob", "last blob byte",
                           "trailing CRC"};
    for (int i = 0; i < (int)(sizeof at / sizeof at[0]); i++) {
        char name[64], label[160];
        snprintf(name, sizeof name, "flip%d", i);
        fixture(run, sizeof run, name);
        ck_path(p, sizeof p, run, 120, "state");
        flip_byte(p, at[i]);
        snprintf(label, sizeof label, "state flipped at byte %ld (%s)", at[i], field[i]);
        expect_fallback(label, run, 100, "checkpoints/step_00000120.state: ", NULL);
    }

    long cut[] = {0, 7, 19, 100, n / 2, n - 1};
    for (int i = 0; i < (int)(sizeof cut / sizeof cut[0]); i++) {
        char name[64], label[160];
        snprintf(name, sizeof name, "trunc%d", i);
        fixture(run, sizeof run, name);
        ck_path(p, sizeof p, run, 120, "state");
        truncate_to(p, cut[i]);
        snprintf(label, sizeof label, "state truncated to %ld of %ld bytes", cut[i], n);
        char want[64];
        snprintf(want, sizeof want, "truncated at byte %ld", cut[i]);
        expect_fallback(label, run, 100, "checkpoints/step_00000120.state: ", cut[i] >= 8 ? want : NULL);
    }
    fixture(run, sizeof run, "trunc_plus");
    ck_path(p, sizeof p, run, 120, "state");
    {
        FILE* fp = fopen(p, "ab");
        fputc('x', fp);
        fclose(fp);
    }
    expect_fallback("state with a byte appended", run, 100, "checkpoints/step_00000120.state: ", "after the end");

    fixture(run, sizeof run, "wtrunc");
    ck_path(p, sizeof p, run, 120, "safetensors");
    truncate_to(p, file_size(p) / 2);
    expect_fallback("weights truncated to half", run, 100, "checkpoints/step_00000120.safetensors: ", NULL);

    fixture(run, sizeof run, "wflip");
    ck_path(p, sizeof p, run, 120, "safetensors");
    flip_byte(p, 3);   /* header length */
    expect_fallback("weights header length corrupt", run, 100, "checkpoints/step_00000120.safetensors: ", NULL);

    fixture(run, sizeof run, "wmissing");
    ck_path(p, sizeof p, run, 120, "safetensors");
    unlink(p);
    expect_fallback("weights missing", run, 100, "checkpoints/step_00000120.safetensors: missing", NULL);

    fixture(run, sizeof run, "wother");
    {
        char a[600];
        ck_path(a, sizeof a, run, 100, "safetensors");
        ck_path(p, sizeof p, run, 120, "safetensors");
        long m;
        unsigned char* b = read_all(a, &m);
        write_all(p, b, (size_t)m);
        free(b);
    }
    expect_fallback("weights of another step (metadata step mismatch)", run, 100,
                    "checkpoints/step_00000120.safetensors: ", "does not match");

    fixture(run, sizeof run, "nolatest");
    snprintf(p, sizeof p, "%s/checkpoints/latest", run);
    unlink(p);
    expect_fallback("latest missing -> newest complete pair", run, 120, "checkpoints/latest: missing", NULL);
    ck_path(p, sizeof p, run, 120, "state");
    truncate_to(p, 50);
    expect_fallback("latest missing + newest truncated", run, 100, "checkpoints/latest: missing",
                    "checkpoints/step_00000120.state: truncated at byte 50");

    fixture(run, sizeof run, "latestgarbage");
    snprintf(p, sizeof p, "%s/checkpoints/latest", run);
    write_all(p, "step_12x\n", 9);
    expect_fallback("latest with garbage", run, 120, "checkpoints/latest: does not name", NULL);

    fixture(run, sizeof run, "latestmissingfile");
    snprintf(p, sizeof p, "%s/checkpoints/latest", run);
    write_all(p, "step_00000130\n", 14);
    expect_fallback("latest naming a missing step_00000130", run, 120,
                    "checkpoints/step_00000130.state: missing", NULL);

    fixture(run, sizeof run, "latestolder");
    snprintf(p, sizeof p, "%s/checkpoints/latest", run);
    write_all(p, "step_00000100\n", 14);   /* crash between the 120 pair and `latest` */
    expect_fallback("latest names 100 while a complete 120 exists -> 100, quietly", run, 100, NULL, NULL);

    /* a double fallback: 120 and 110 bad -> 100 */
    fixture(run, sizeof run, "double");
    if (save_step(run, 110, NW, NM, 5, err, sizeof err) == 0) { /* deletes the stale 120 */ }
    t_true("saving an older step deletes the stale newer one", count_named(run, "step_00000120") == 0);
    save_step(run, 120, NW, NM, 5, err, sizeof err);
    ck_path(p, sizeof p, run, 120, "state");
    flip_byte(p, 40);
    ck_path(p, sizeof p, run, 110, "safetensors");
    truncate_to(p, 4);
    expect_fallback("120 state corrupt and 110 weights truncated", run, 100,
                    "checkpoints/step_00000120.state: ", "checkpoints/step_00000110.safetensors: ");

    /* nothing usable */
    new_run(run, sizeof run, "single");
    save_step(run, 5, NW, NM, 5, err, sizeof err);
    ck_path(p, sizeof p, run, 5, "state");
    flip_byte(p, 100);
    expect_none("only checkpoint corrupt -> 1, message names it", run, "checkpoints/step_00000005.state: ");
    new_run(run, sizeof run, "empty");
    expect_none("no checkpoints directory -> 1", run, NULL);
    snprintf(p, sizeof p, "%s/checkpoints", run);
    mkdir(p, 0777);
    expect_none("empty checkpoints directory -> 1", run, NULL);
}

static void test_temps(void) {
    char run[512], p[600], q[600], err[512];
    fixture(run, sizeof run, "temps");
    /* a complete-looking pair of a newer step, but under temporary names, and a `latest`
     * temporary naming it: a killed writer's leftovers */
    long n;
    ck_path(p, sizeof p, run, 120, "state");
    unsigned char* b = read_all(p, &n);
    ck_path(q, sizeof q, run, 200, "state.tmp.99999");
    write_all(q, b, (size_t)n);
    free(b);
    ck_path(p, sizeof p, run, 120, "safetensors");
    b = read_all(p, &n);
    ck_path(q, sizeof q, run, 200, "safetensors.tmp.99999");
    write_all(q, b, (size_t)n);
    free(b);
    snprintf(q, sizeof q, "%s/checkpoints/latest.tmp.4242", run);
    write_all(q, "step_00000200\n", 14);
    snprintf(q, sizeof q, "%s/checkpoints/latest", run);
    unlink(q);   /* force the directory listing */
    expect_fallback("temporary files are not checkpoints", run, 120, "checkpoints/latest: missing", NULL);
    t_true("3 temporary files present before the next save", count_named(run, ".tmp.") == 3);
    int rc = save_step(run, 130, NW, NM, 5, err, sizeof err);
    t_true("the next save deletes them", rc == 0 && count_named(run, ".tmp.") == 0);
    expect_fallback("and finds its own checkpoint", run, 130, NULL, NULL);
}

static double now_s(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec * 1e-6;
}

static void test_kill(void) {
    enum { KW = 1 << 20, KM = 3 << 20 };   /* 4 MB weights, 12 MB state */
    char run[512], err[512] = "";
    new_run(run, sizeof run, "kill");
    double t0 = now_s();
    if (save_step(run, 1, KW, KM, 2, err, sizeof err)) { printf("       err: %s\n", err); exit(2); }
    double dt = now_s() - t0;
    printf("       one %d MB checkpoint takes %.1f ms\n", (KW + KM) * 4 >> 20, dt * 1e3);
    TRng r = {777};
    long last = 1;
    int all_ok = 1, monotone = 1, mid_write = 0, content_ok = 1;
    for (int it = 0; it < 20; it++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            char e[512];
            for (long s = last + 1;; s++)
                if (save_step(run, s, KW, KM, 2, e, sizeof e)) _exit(3);
        }
        /* kill anywhere in the first ~3 saves */
        useconds_t us = (useconds_t)(trng_uniform(&r) * 3.0 * dt * 1e6);
        usleep(us);
        kill(pid, SIGKILL);
        int ws = 0;
        waitpid(pid, &ws, 0);
        int killed = WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL;
        int temps = count_named(run, ".tmp.");
        mid_write += temps > 0;
        char wpath[512];
        long step = -1;
        CkptState st;
        fflush(stdout);
        int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        int rc = ckpt_find_latest(run, wpath, sizeof wpath, &step, &st, err, sizeof err);
        dup2(saved, 2);
        close(saved);
        close(devnull);
        int ok = killed && rc == 0 && !strstr(wpath, ".tmp");
        int cm = ok && content_matches(step, &st, wpath, KW, KM);
        printf("       kill %2d after %6.1f ms: step %ld, %d temporary file(s)%s\n", it, us / 1e3,
               step, temps, ok && cm ? "" : "  <-- FAIL");
        all_ok &= ok;
        content_ok &= cm;
        monotone &= step >= last;
        if (rc == 0) last = step;
        ckpt_state_free(&st);
    }
    t_true("killed writer: a complete checkpoint is always found (20 kills)", all_ok);
    t_true("killed writer: its content is exactly that step's", content_ok);
    t_true("killed writer: the found step never goes backwards", monotone);
    printf("       %d of 20 kills left temporary files (killed mid-write)\n", mid_write);
    int rc = save_step(run, last + 1, KW, KM, 2, err, sizeof err);
    t_true("after the kills: next save succeeds, leaves no temporary file, keeps 2",
           rc == 0 && count_named(run, ".tmp.") == 0 && count_named(run, "step_") == 4);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/vita_test_checkpoint_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 2; }
    test_crc();
    test_write_atomic();
    test_round_trip();
    test_prune();
    test_damage();
    test_temps();
    test_kill();
    rm_rf(g_dir);
    return t_summary();
}
