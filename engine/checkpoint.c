/* engine/checkpoint.c — checkpoints of a run (SPEC.md §4, engine/checkpoint.h).
 *
 * Layout of RUN_DIR/checkpoints/:
 *   step_XXXXXXXX.safetensors   weights, written by st_write_f32 (temp + fsync + rename)
 *   step_XXXXXXXX.state         named blobs, little-endian:
 *                                 "VITASTAT" u32 version(=1) u32 count
 *                                 count x { u32 name_len, name, u64 bytes, u32 crc32(bytes), bytes }
 *                                 u32 crc32(everything before it)
 *   latest                      "step_XXXXXXXX\n", written last
 *   best.safetensors            never touched here
 * Every file is written to "<name>.tmp.<pid>" in the same directory, flushed, fsync'd, renamed
 * over <name>, and the directory is fsync'd; so a reader sees either the old or the new file,
 * and `latest` only ever names a pair whose both files were complete on disk first. Temporary
 * files left by a killed writer never match a checkpoint name (they are ignored when loading)
 * and are deleted by the next ckpt_save (one writer per run directory: rank 0).
 *
 * Loading validates the state file completely (magic, version, structure, every blob CRC, the
 * trailing CRC, exact length) and that the weights file passes st_open (and that its "step"
 * metadata, when present, matches the file name); on failure it prints one line per rejected
 * file and falls back to the newest older complete pair found by listing the directory. */
#include "checkpoint.h"
#include "errfmt.h"
#include "atomic.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define STATE_MAGIC "VITASTAT"
#define STATE_VERSION 1u
#define STATE_MAX_BLOBS (1u << 20)
#define STATE_MAX_NAME 4096u

static char* xstrdup_or_null(const char* s) {
    size_t n = strlen(s) + 1;
    char* p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ---- CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), slicing-by-8 ------------------ */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t ckpt_crc32(uint32_t crc, const void* data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const unsigned char* p = data;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8); n--; }
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
            crc_tab[4][lo >> 24] ^ crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^ crc_tab[1][p[6]] ^
            crc_tab[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

/* ---- paths ----------------------------------------------------------------------------- */
static char* path_join(const char* a, const char* b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char* p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* mkdir -p */
static int mkdir_p(const char* path, char* err, size_t errlen) {
    char* p = xstrdup_or_null(path);
    if (!p) { vita_fail_line(err, errlen, "%s: out of host memory", path); return 1; }
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            vita_fail_line(err, errlen, "%s: cannot create directory %s: %s", path, p, strerror(errno));
            free(p);
            return 1;
        }
        p[i] = c;
    }
    free(p);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        vita_fail_line(err, errlen, "%s: exists and is not a directory (move it away)", path);
        return 1;
    }
    return 0;
}

/* ---- the state file's writer: an AtomicFile (atomic.h) that keeps the CRC of its bytes ---- */
typedef struct {
    AtomicFile f;
    uint32_t crc;              /* CRC of everything written so far */
} AWriter;

static int aw_open(AWriter* w, const char* path, char* err, size_t errlen) {
    w->crc = 0;
    return atomic_open(&w->f, path, err, errlen);
}

static void aw_write(AWriter* w, const void* p, size_t n) {
    if (!w->f.ok || !n) return;
    w->crc = ckpt_crc32(w->crc, p, n);
    atomic_write(&w->f, p, n);
}
static void aw_u32(AWriter* w, uint32_t v) {
    unsigned char b[4];
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
    aw_write(w, b, 4);
}
static void aw_u64(AWriter* w, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    aw_write(w, b, 8);
}

/* ---- directory listing ------------------------------------------------------------------ */
/* "step_<digits>.state" / "step_<digits>.safetensors" exactly (so never a "*.tmp.<pid>");
 * returns the step or -1; *kind = 1 state, 2 weights */
static long parse_step_name(const char* name, int* kind) {
    if (strncmp(name, "step_", 5) != 0) return -1;
    const char* p = name + 5;
    long v = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9') {
        if (nd >= 18) return -1;
        v = v * 10 + (*p - '0');
        p++;
        nd++;
    }
    if (nd == 0) return -1;
    if (strcmp(p, ".state") == 0) *kind = 1;
    else if (strcmp(p, ".safetensors") == 0) *kind = 2;
    else return -1;
    return v;
}

static int cmp_long_desc(const void* a, const void* b) {
    long x = *(const long*)a, y = *(const long*)b;
    return (x < y) - (x > y);
}

/* distinct steps with a .state or .safetensors file, newest first; -1 on a listing error
 * (ENOENT gives 0 steps) */
static int list_steps(const char* dir, long** out) {
    *out = NULL;
    DIR* d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -1;
    int n = 0, cap = 0;
    long* v = NULL;
    struct dirent* de;
    while ((de = readdir(d)) != NULL) {
        int kind;
        long s = parse_step_name(de->d_name, &kind);
        if (s < 0) continue;
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = v[i] == s;
        if (dup) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            long* nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) { free(v); closedir(d); return -1; }
            v = nv;
        }
        v[n++] = s;
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_long_desc);
    *out = v;
    return n;
}

static void step_file(char* out, size_t n, const char* dir, long step, const char* ext) {
    snprintf(out, n, "%s/step_%08ld.%s", dir, step, ext);
}

/* deletes both files of a step, the state first (a half-deleted pair is simply incomplete) */
static void remove_step(const char* dir, long step) {
    size_t n = strlen(dir) + 64;
    char* p = malloc(n);
    if (!p) return;
    const char* ext[2] = {"state", "safetensors"};
    for (int k = 0; k < 2; k++) {
        step_file(p, n, dir, step, ext[k]);
        if (unlink(p) != 0 && errno != ENOENT)
            fprintf(stderr, "vita: warning: cannot delete old checkpoint file %s: %s\n", p,
                    strerror(errno));
    }
    free(p);
}

/* deletes "*.tmp.<pid>" files that a killed writer left behind */
static void remove_temps(const char* dir) {
    DIR* d = opendir(dir);
    if (!d) return;
    struct dirent* de;
    char** names = NULL;
    int n = 0, cap = 0;
    while ((de = readdir(d)) != NULL) {
        const char* t = strstr(de->d_name, ".tmp.");
        if (!t || !t[5]) continue;
        int digits = 1;
        for (const char* q = t + 5; *q; q++) digits &= (*q >= '0' && *q <= '9');
        if (!digits) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            char** nn = realloc(names, (size_t)cap * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = path_join(dir, de->d_name))) break;
        n++;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        (void)unlink(names[i]);
        free(names[i]);
    }
    free(names);
}

/* ---- save ------------------------------------------------------------------------------- */
static int write_state(const char* path, const CkptBlob* blobs, int n_blobs, char* err,
                       size_t errlen) {
    AWriter w;
    if (aw_open(&w, path, err, errlen)) return 1;
    aw_write(&w, STATE_MAGIC, 8);
    aw_u32(&w, STATE_VERSION);
    aw_u32(&w, (uint32_t)n_blobs);
    for (int i = 0; i < n_blobs; i++) {
        size_t nl = strlen(blobs[i].name);
        aw_u32(&w, (uint32_t)nl);
        aw_write(&w, blobs[i].name, nl);
        aw_u64(&w, (uint64_t)blobs[i].bytes);
        aw_u32(&w, blobs[i].bytes ? ckpt_crc32(0, blobs[i].data, blobs[i].bytes) : 0);
        aw_write(&w, blobs[i].data, blobs[i].bytes);
    }
    aw_u32(&w, w.crc);
    return atomic_commit(&w.f, err, errlen);
}

int ckpt_save(const char* run_dir, long step, const StWriteTensor* tensors, int n_tensors,
              const char* const* meta, int n_meta, const CkptBlob* blobs, int n_blobs, int keep,
              char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!run_dir || !*run_dir) { vita_fail_line(err, errlen, "ckpt_save: empty run directory"); return 1; }
    if (step < 0 || step > 99999999999999999L) {
        vita_fail_line(err, errlen, "%s: checkpoint step %ld out of range", run_dir, step);
        return 1;
    }
    if (n_blobs < 0 || (n_blobs > 0 && !blobs) || (uint32_t)n_blobs > STATE_MAX_BLOBS) {
        vita_fail_line(err, errlen, "%s: invalid number of state blobs %d", run_dir, n_blobs);
        return 1;
    }
    for (int i = 0; i < n_blobs; i++) {
        if (!blobs[i].name || !*blobs[i].name || strlen(blobs[i].name) > STATE_MAX_NAME ||
            (blobs[i].bytes && !blobs[i].data)) {
            vita_fail_line(err, errlen, "%s: state blob %d has no name, a name over %u bytes or no data",
                           run_dir, i, STATE_MAX_NAME);
            return 1;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(blobs[i].name, blobs[j].name) == 0) {
                vita_fail_line(err, errlen, "%s: state blob name '%s' given twice", run_dir, blobs[i].name);
                return 1;
            }
    }

    int rc = 1;
    char* dir = path_join(run_dir, "checkpoints");
    size_t pl = (dir ? strlen(dir) : 0) + 64;
    char* wpath = malloc(pl);
    char* spath = malloc(pl);
    char* lpath = malloc(pl);
    long* steps = NULL;
    if (!dir || !wpath || !spath || !lpath) {
        vita_fail_line(err, errlen, "%s: out of host memory", run_dir);
        goto done;
    }
    if (mkdir_p(dir, err, errlen)) goto done;
    step_file(wpath, pl, dir, step, "safetensors");
    step_file(spath, pl, dir, step, "state");
    snprintf(lpath, pl, "%s/latest", dir);

    /* leftovers of a killed writer, and checkpoints at or after this step (from a run that
     * was resumed from an older checkpoint): a stale state must never pair with new weights,
     * and a stale newer step must never win a fallback over this one */
    remove_temps(dir);
    int ns = list_steps(dir, &steps);
    for (int i = 0; i < ns; i++)
        if (steps[i] >= step) remove_step(dir, steps[i]);
    free(steps);
    steps = NULL;

    if (st_write_f32(wpath, tensors, n_tensors, meta, n_meta, err, errlen)) goto done;
    if (write_state(spath, blobs, n_blobs, err, errlen)) goto done;
    char line[64];
    int ll = snprintf(line, sizeof line, "step_%08ld\n", step);
    if (write_file_atomic(lpath, line, (size_t)ll, err, errlen)) goto done;

    if (keep > 0) {   /* keep <= 0: keep every checkpoint */
        ns = list_steps(dir, &steps);
        int kept = 1; /* this step */
        for (int i = 0; i < ns; i++) {
            if (steps[i] >= step) continue;
            if (kept < keep) kept++;
            else remove_step(dir, steps[i]);
        }
    }
    rc = 0;
done:
    free(steps);
    free(dir);
    free(wpath);
    free(spath);
    free(lpath);
    return rc;
}

/* ---- load ------------------------------------------------------------------------------- */
void ckpt_state_free(CkptState* st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) {
        if (st->name) free(st->name[i]);
        if (st->data) free(st->data[i]);
    }
    free(st->name);
    free(st->data);
    free(st->bytes);
    memset(st, 0, sizeof *st);
}

const void* ckpt_blob(const CkptState* st, const char* name, size_t* bytes) {
    if (!st || !name) return NULL;
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->name[i], name) == 0) {
            if (bytes) *bytes = st->bytes[i];
            return st->data[i];
        }
    return NULL;
}

typedef struct {
    FILE* fp;
    long long size, pos;
    uint32_t crc;
} SReader;

/* 0 ok; 1 short read (truncation) */
static int sr_read(SReader* r, void* p, size_t n) {
    if (!n) return 0;
    if ((long long)n > r->size - r->pos) return 1;
    if (fread(p, 1, n, r->fp) != n) return 1;
    r->crc = ckpt_crc32(r->crc, p, n);
    r->pos += (long long)n;
    return 0;
}
static uint32_t le32(const unsigned char* b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t le64(const unsigned char* b) {
    return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32;
}

/* reads and fully validates a state file into st; 0 ok, else 1 with `why` (no file name) */
static int read_state(const char* path, CkptState* st, char* why, size_t wl) {
    memset(st, 0, sizeof *st);
    FILE* fp = fopen(path, "rb");
    if (!fp) { vita_fail_line(why, wl, "%s", errno == ENOENT ? "missing" : strerror(errno)); return 1; }
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) {
        vita_fail_line(why, wl, "%s", strerror(errno));
        fclose(fp);
        return 1;
    }
    SReader r = {fp, (long long)sb.st_size, 0, 0};
    unsigned char h[16];
    int rc = 1;
#define TRUNC(need)                                                                              \
    do {                                                                                         \
        vita_fail_line(why, wl, "truncated at byte %lld (expected at least %llu)", r.size,              \
                       (unsigned long long)(need));                                                      \
        goto fail;                                                                               \
    } while (0)
    if (sr_read(&r, h, 16)) {
        if (r.size >= 8 && fread(h, 1, 8, fp) == 8 && memcmp(h, STATE_MAGIC, 8) != 0) {
            vita_fail_line(why, wl, "not a vita state file (bad magic)");
            goto fail;
        }
        TRUNC(20);
    }
    if (memcmp(h, STATE_MAGIC, 8) != 0) { vita_fail_line(why, wl, "not a vita state file (bad magic)"); goto fail; }
    uint32_t ver = le32(h + 8), cnt = le32(h + 12);
    if (ver != STATE_VERSION) {
        vita_fail_line(why, wl, "unsupported state version %u (this vita reads %u)", ver, STATE_VERSION);
        goto fail;
    }
    /* every blob needs at least 16 bytes of header */
    if (cnt > STATE_MAX_BLOBS || (long long)cnt * 16 + 20 > r.size) {
        if (cnt <= STATE_MAX_BLOBS) TRUNC((long long)cnt * 16 + 20);
        vita_fail_line(why, wl, "corrupt header: %u blobs", cnt);
        goto fail;
    }
    st->name = calloc(cnt ? cnt : 1, sizeof *st->name);
    st->data = calloc(cnt ? cnt : 1, sizeof *st->data);
    st->bytes = calloc(cnt ? cnt : 1, sizeof *st->bytes);
    if (!st->name || !st->data || !st->bytes) { vita_fail_line(why, wl, "out of host memory"); goto fail; }
    for (uint32_t i = 0; i < cnt; i++) {
        unsigned char b[12];
        if (sr_read(&r, b, 4)) TRUNC(r.pos + 4);
        uint32_t nl = le32(b);
        if (nl == 0 || nl > STATE_MAX_NAME) {
            vita_fail_line(why, wl, "corrupt: blob %u has a name length of %u bytes at byte %lld", i, nl,
                           r.pos - 4);
            goto fail;
        }
        char* name = malloc(nl + 1);
        if (!name) { vita_fail_line(why, wl, "out of host memory"); goto fail; }
        st->name[i] = name;
        st->n = (int)i + 1;
        if (sr_read(&r, name, nl)) TRUNC(r.pos + nl);
        name[nl] = 0;
        if (sr_read(&r, b, 12)) TRUNC(r.pos + 12);
        uint64_t len = le64(b);
        uint32_t crc = le32(b + 8);
        if (len > (uint64_t)(r.size - r.pos)) TRUNC((uint64_t)r.pos + len + 4);
        if (len > SIZE_MAX - 1) { vita_fail_line(why, wl, "blob '%s' too large for this machine", name); goto fail; }
        st->bytes[i] = (size_t)len;
        st->data[i] = malloc(len ? (size_t)len : 1);
        if (!st->data[i]) {
            vita_fail_line(why, wl, "out of host memory reading blob '%s' (%" PRIu64 " bytes)", name, len);
            goto fail;
        }
        if (sr_read(&r, st->data[i], (size_t)len)) TRUNC(r.pos + (long long)len);
        uint32_t got = len ? ckpt_crc32(0, st->data[i], (size_t)len) : 0;
        if (got != crc) {
            vita_fail_line(why, wl, "blob '%s' is corrupt (CRC-32 0x%08x, stored 0x%08x)", name, got, crc);
            goto fail;
        }
    }
    uint32_t body = r.crc;
    unsigned char t[4];
    if (sr_read(&r, t, 4)) TRUNC(r.pos + 4);
    if (r.pos != r.size) {
        vita_fail_line(why, wl, "%lld unexpected bytes after the end at byte %lld", r.size - r.pos, r.pos);
        goto fail;
    }
    if (le32(t) != body) {
        vita_fail_line(why, wl, "corrupt (file CRC-32 0x%08x, stored 0x%08x)", body, le32(t));
        goto fail;
    }
#undef TRUNC
    rc = 0;
fail:
    fclose(fp);
    if (rc) ckpt_state_free(st);
    return rc;
}

/* validates the weights file; 0 ok, else 1 with `why` (the st_open message without the path) */
static int check_weights(const char* path, long step, char* why, size_t wl) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        vita_fail_line(why, wl, "%s", errno == ENOENT ? "missing" : strerror(errno));
        return 1;
    }
    StFile f;
    char e[512];
    if (st_open(&f, path, e, sizeof e)) {
        size_t pl = strlen(path);
        const char* m = e;
        if (strncmp(m, path, pl) == 0 && m[pl] == ':') m += pl + 1;
        while (*m == ' ') m++;
        vita_fail_line(why, wl, "%s", m);
        return 1;
    }
    const char* ms = st_meta(&f, "step");
    int rc = 0;
    if (ms) {
        char* end;
        errno = 0;
        long v = strtol(ms, &end, 10);
        if (errno || end == ms || *end || v != step) {
            vita_fail_line(why, wl, "metadata step \"%s\" does not match the file name", ms);
            rc = 1;
        }
    }
    st_close(&f);
    return rc;
}

/* "step_<digits>" followed by optional whitespace; -1 if not */
static long parse_latest(const char* s) {
    if (strncmp(s, "step_", 5) != 0) return -1;
    const char* p = s + 5;
    long v = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9') {
        if (nd >= 18) return -1;
        v = v * 10 + (*p++ - '0');
        nd++;
    }
    if (!nd) return -1;
    while (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t') p++;
    return *p ? -1 : v;
}

int ckpt_find_latest(const char* run_dir, char* weights_path, size_t wlen, long* step,
                     CkptState* st, char* err, size_t errlen) {
    CkptState tmp_st;
    if (!st) st = &tmp_st;
    memset(st, 0, sizeof *st);
    if (err && errlen) err[0] = 0;
    if (weights_path && wlen) weights_path[0] = 0;
    if (step) *step = -1;

    int rc = 1;
    char* dir = path_join(run_dir, "checkpoints");
    size_t pl = (dir ? strlen(dir) : 0) + 64;
    char* spath = malloc(pl);
    char* wpath = malloc(pl);
    long* steps = NULL;
    char** msgs = NULL;   /* one line per rejected file */
    int n_msgs = 0;
    if (!dir || !spath || !wpath) { vita_fail_line(err, errlen, "%s: out of host memory", run_dir); goto done; }

    /* `latest` */
    long latest = -1;
    int have_latest_file = 0;
    char why[600];
    why[0] = 0;
    {
        snprintf(spath, pl, "%s/latest", dir);
        FILE* fp = fopen(spath, "rb");
        if (fp) {
            have_latest_file = 1;
            char buf[64];
            size_t n = fread(buf, 1, sizeof buf - 1, fp);
            buf[n] = 0;
            fclose(fp);
            latest = parse_latest(buf);
            if (latest < 0) {
                for (char* p = buf; *p; p++)
                    if (*p == '\n' || *p == '\r') *p = ' ';
                vita_fail_line(why, sizeof why, "checkpoints/latest: does not name a checkpoint (\"%.40s\")", buf);
            }
        } else if (errno == ENOENT) {
            vita_fail_line(why, sizeof why, "checkpoints/latest: missing");
        } else {
            vita_fail_line(why, sizeof why, "checkpoints/latest: cannot read: %s", strerror(errno));
        }
    }

    int ns = list_steps(dir, &steps);
    if (ns < 0) {
        vita_fail_line(err, errlen, "%s: cannot list the directory: %s", dir, strerror(errno));
        goto done;
    }
    if (latest < 0 && ns == 0) {
        vita_fail_line(err, errlen, "%s: no checkpoint to resume from (%s)", dir,
                       have_latest_file ? "`latest` is unreadable and there are no step_* files"
                                : "no `latest` and no step_* files");
        goto done;
    }
    msgs = calloc((size_t)ns + 2, sizeof *msgs);
    if (!msgs) { vita_fail_line(err, errlen, "%s: out of host memory", run_dir); goto done; }
    if (latest < 0) msgs[n_msgs++] = xstrdup_or_null(why);

    /* candidates: the step `latest` names, then every listed step older than it (all listed
     * steps when `latest` is unusable), newest first */
    long found = -1;
    int tried = 0;
    for (int i = -1; i < ns && found < 0; i++) {
        long s;
        if (i < 0) {
            if (latest < 0) continue;
            s = latest;
        } else {
            s = steps[i];
            if (latest >= 0 && s >= latest) continue;
        }
        tried++;
        step_file(spath, pl, dir, s, "state");
        step_file(wpath, pl, dir, s, "safetensors");
        char w2[512];
        if (read_state(spath, st, w2, sizeof w2)) {
            vita_fail_line(why, sizeof why, "checkpoints/step_%08ld.state: %s", s, w2);
            msgs[n_msgs++] = xstrdup_or_null(why);
            continue;
        }
        if (check_weights(wpath, s, w2, sizeof w2)) {
            ckpt_state_free(st);
            vita_fail_line(why, sizeof why, "checkpoints/step_%08ld.safetensors: %s", s, w2);
            msgs[n_msgs++] = xstrdup_or_null(why);
            continue;
        }
        found = s;
    }
    for (int i = 0; i < n_msgs; i++) {
        if (!msgs[i]) continue;
        if (found >= 0) fprintf(stderr, "vita: %s; using step_%08ld\n", msgs[i], found);
        else fprintf(stderr, "vita: %s; no older checkpoint\n", msgs[i]);
    }
    fflush(stderr);
    if (found < 0) {
        vita_fail_line(err, errlen, "%s: no usable checkpoint (%d tried, each rejected above)", dir, tried);
        goto done;
    }
    if (weights_path) {
        if (strlen(wpath) + 1 > wlen) {
            ckpt_state_free(st);
            vita_fail_line(err, errlen, "%s: path too long for the caller's buffer", wpath);
            goto done;
        }
        memcpy(weights_path, wpath, strlen(wpath) + 1);
    }
    if (step) *step = found;
    rc = 0;
done:
    if (st == &tmp_st) ckpt_state_free(st);
    for (int i = 0; i < n_msgs; i++) free(msgs[i]);
    free(msgs);
    free(steps);
    free(dir);
    free(spath);
    free(wpath);
    return rc;
}
