/* engine/runlog.c — the run log RUN_DIR/log.h5 (SPEC.md §4). See runlog.h.
 *
 * Layout: root attrs format="vita-log", version=1 (int32) and the caller's key/value strings;
 * /steps/{step,epoch} int64 [n], /steps/{loss,grad_norm,time_s} float64 [n], /steps/lr [n,G];
 * /epochs/{epoch} int64 [n], /epochs/{train_loss,val_loss,val_metric,time_s,samples_per_s}
 * float64 [n], /epochs/val_metrics [n,M] (attr metric_names); /align/epoch int64 [n],
 * /align/layers (strings [L], fixed), /align/<estimator> and /align/weight_dist float64 [n,L],
 * /align attrs bandwidths [L,S], bandwidth_rule, feature_kind, probe_n_images, probe_n_tokens
 * (int64), noise_floor [L]. Every row dataset is created up front, chunked, with an unlimited
 * first dimension (a table with 0 columns is stored as [n,0] with a maximum of 1 column).
 *
 * File states: CLOSED, PLAIN (open read-write, not SWMR) and SWMR (open, H5Fstart_swmr_write
 * done). Rows are buffered in memory and written by runlog_flush, which extends every
 * dataset of a table and writes the pending rows in one hyperslab.
 *   swmr on:  created with libver bounds LATEST (superblock v3); the file stays open PLAIN
 *             until the first runlog_flush, which starts SWMR writing; later flushes extend,
 *             write and H5Fflush. Attribute writes (runlog_align_attrs after SWMR started,
 *             runlog_write_attrs) close the file, reopen it PLAIN, and the next flush reopens
 *             it in SWMR mode.
 *   swmr off: created with the default (oldest) format, which keeps no status flags in the
 *             superblock, and closed at the end of every call: a killed run leaves a file
 *             any reader opens.
 * n_steps / n_epochs / n_align count the rows appended (buffered ones included); after
 * runlog_flush they equal the rows in the file, so take them for a checkpoint after a flush.
 *
 * Resume: the old file is opened read-only; a killed SWMR writer's file (status flags set)
 * opens with SWMR_READ; a killed non-SWMR writer's latest-format file opens read-write with
 * the "clear_status_flags" access property (what h5clear -s does). The first n rows of every
 * table, the root attrs the new spec does not set and the /align attrs are copied into
 * "<path>.tmp.<pid>", which is fsynced and renamed over path (discarding the old flags).
 * Row counts larger than the file holds (rows buffered but never flushed when the writer
 * died) are cut to what is there, with a warning on stderr.
 *
 * Last-flush copy "<path>.bak": a SIGKILL that lands inside a flush can tear a metadata write
 * (the kernel stops a write() between pages on a fatal signal), leaving e.g. a dataset's object
 * header with a bad checksum, which no reader can open again. So after every flush the file's
 * bytes (consistent: H5Fflush is done, the writer is this thread) are copied atomically to
 * "<path>.bak"; resume reads the copy when the log is damaged (and says so). A clean close
 * removes the copy. Readers of a dead writer's file must not use HDF5's SWMR retry loop at its
 * default (100 attempts with doubling sleeps: a damaged header blocks for hours), so resume
 * opens with one attempt and live readers (vita info, report) with RUNLOG_READ_ATTEMPTS.
 *
 * Every HDF5 call runs under dataset_h5_lock (loader threads read HDF5 concurrently). */
#include "runlog.h"
#include "atomic.h"
#include "errfmt.h"
#include "check.h"
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { ST_CLOSED = 0, ST_PLAIN = 1, ST_SWMR = 2 };
enum { T_STEPS = 0, T_EPOCHS = 1, T_ALIGN = 2, N_TAB = 3 };

typedef struct {
    char name[96];      /* path inside the file */
    int is_int;         /* int64 (else float64) */
    int rank2;          /* [n, width] (else [n]) */
    int width;          /* columns (1 for rank 1) */
    void* buf;          /* pending rows, 8 bytes per value */
    long cap;           /* rows allocated */
} Col;

typedef struct {
    Col* cols;
    int ncols;
    long written;       /* rows in the file */
    long pending;       /* rows buffered */
    hsize_t chunk_rows;
} Tab;

typedef struct {
    int state;
    Tab tab[N_TAB];
} Priv;

static const char* TAB_GROUP[N_TAB] = {"/steps", "/epochs", "/align"};

/* ---- column tables ------------------------------------------------------------------------ */
static void add_col(Tab* t, const char* group, const char* name, int is_int, int rank2, int width) {
    Col* c = &t->cols[t->ncols++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s/%s", group, name);
    c->is_int = is_int;
    c->rank2 = rank2;
    c->width = rank2 ? width : 1;
}

static Priv* priv_new(const RunLogSpec* s) {
    Priv* p = xcalloc(1, sizeof *p);
    Tab* t = &p->tab[T_STEPS];
    t->cols = xcalloc(6, sizeof(Col));
    t->chunk_rows = 256;
    add_col(t, "/steps", "step", 1, 0, 1);
    add_col(t, "/steps", "epoch", 1, 0, 1);
    add_col(t, "/steps", "loss", 0, 0, 1);
    add_col(t, "/steps", "grad_norm", 0, 0, 1);
    add_col(t, "/steps", "lr", 0, 1, s->n_groups);
    add_col(t, "/steps", "time_s", 0, 0, 1);
    t = &p->tab[T_EPOCHS];
    t->cols = xcalloc(7, sizeof(Col));
    t->chunk_rows = 32;
    add_col(t, "/epochs", "epoch", 1, 0, 1);
    add_col(t, "/epochs", "train_loss", 0, 0, 1);
    add_col(t, "/epochs", "val_loss", 0, 0, 1);
    add_col(t, "/epochs", "val_metric", 0, 0, 1);
    add_col(t, "/epochs", "val_metrics", 0, 1, s->n_metrics);
    add_col(t, "/epochs", "time_s", 0, 0, 1);
    add_col(t, "/epochs", "samples_per_s", 0, 0, 1);
    t = &p->tab[T_ALIGN];
    t->cols = xcalloc((size_t)s->n_est + 2, sizeof(Col));
    t->chunk_rows = 32;
    add_col(t, "/align", "epoch", 1, 0, 1);
    for (int k = 0; k < s->n_est; k++) add_col(t, "/align", s->est_names[k], 0, 1, s->n_layers);
    add_col(t, "/align", "weight_dist", 0, 1, s->n_layers);
    return p;
}

static void priv_free(Priv* p) {
    if (!p) return;
    for (int i = 0; i < N_TAB; i++) {
        for (int c = 0; c < p->tab[i].ncols; c++) free(p->tab[i].cols[c].buf);
        free(p->tab[i].cols);
    }
    free(p);
}

/* room for one more pending row in every column of t */
static void tab_grow(Tab* t) {
    for (int c = 0; c < t->ncols; c++) {
        Col* col = &t->cols[c];
        if (t->pending < col->cap) continue;
        long cap = col->cap ? 2 * col->cap : 64;
        void* nb = xmalloc((size_t)cap * (size_t)(col->width ? col->width : 1) * 8);
        if (col->buf) memcpy(nb, col->buf, (size_t)t->pending * (size_t)col->width * 8);
        free(col->buf);
        col->buf = nb;
        col->cap = cap;
    }
}
static double* drow(Tab* t, int c) { return (double*)t->cols[c].buf + (size_t)t->pending * t->cols[c].width; }
static int64_t* irow(Tab* t, int c) { return (int64_t*)t->cols[c].buf + (size_t)t->pending * t->cols[c].width; }

/* ---- HDF5 helpers (caller holds the lock) ------------------------------------------------- */
static hid_t vlen_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static void attr_drop(hid_t obj, const char* name) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
}

/* n strings: n == -1 scalar, else a [n] array */
static int put_attr_strs(hid_t obj, const char* name, int n, const char* const* vals) {
    attr_drop(obj, name);
    hsize_t d = (hsize_t)(n < 0 ? 1 : n);
    hid_t t = vlen_str_type();
    hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : (d ? H5Awrite(a, t, vals) : 0);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return e < 0 ? -1 : 0;
}
static int put_attr_str(hid_t obj, const char* name, const char* val) {
    const char* v = val ? val : "";
    return put_attr_strs(obj, name, -1, &v);
}

/* rank 0 (scalar) when rank == 0 */
static int put_attr_num(hid_t obj, const char* name, hid_t ftype, hid_t mtype, int rank,
                        const hsize_t* dims, const void* v) {
    attr_drop(obj, name);
    hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    herr_t e = a < 0 ? -1 : (np > 0 ? H5Awrite(a, mtype, v) : 0);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return e < 0 ? -1 : 0;
}

/* bytes of path copied atomically to path.bak; 0 or 1 (a message on stderr) */
static int snapshot(const char* path) {
    char bak[1100], err[1300];
    snprintf(bak, sizeof bak, "%s.bak", path);
    FILE* in = fopen(path, "rb");
    if (!in) {
        fprintf(stderr, "vita: warning: cannot read %s to copy it to %s: %s\n", path, bak, strerror(errno));
        return 1;
    }
    AtomicFile w;
    if (atomic_open(&w, bak, err, sizeof err)) {
        fclose(in);
        fprintf(stderr, "vita: warning: %s\n", err);
        return 1;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) atomic_write(&w, buf, n);
    if (ferror(in) && w.ok) {
        w.ok = 0;
        w.e = EIO;
    }
    fclose(in);
    if (atomic_commit(&w, err, sizeof err)) {
        fprintf(stderr, "vita: warning: the last-flush copy of the run log: %s\n", err);
        return 1;
    }
    return 0;
}

static void unlink_bak(const char* path) {
    char bak[1100];
    snprintf(bak, sizeof bak, "%s.bak", path);
    if (unlink(bak) == 0) atomic_fsync_dir(bak);
}

long long runlog_read_fapl(int attempts) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_metadata_read_attempts(fapl, (unsigned)attempts);
    return fapl;
}

static hid_t make_fapl(int latest) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (latest) H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    return fapl;
}

static int create_rows_ds(hid_t f, const Col* c, hsize_t chunk_rows) {
    int rank = c->rank2 ? 2 : 1;
    hsize_t dims[2] = {0, (hsize_t)c->width};
    hsize_t maxd[2] = {H5S_UNLIMITED, (hsize_t)(c->width > 0 ? c->width : 1)};
    hsize_t chunk[2] = {chunk_rows, (hsize_t)(c->width > 0 ? c->width : 1)};
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(pl, 0);
    H5Pset_chunk(pl, rank, chunk);
    hid_t d = H5Dcreate2(f, c->name, c->is_int ? H5T_STD_I64LE : H5T_IEEE_F64LE, sp, H5P_DEFAULT,
                         pl, H5P_DEFAULT);
    H5Pclose(pl);
    H5Sclose(sp);
    if (d < 0) return -1;
    H5Dclose(d);
    return 0;
}

static int make_group(hid_t f, const char* name) {
    htri_t e = H5Lexists(f, name, H5P_DEFAULT);
    if (e > 0) return 0;
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    H5Pclose(gcpl);
    if (g < 0) return -1;
    H5Gclose(g);
    return 0;
}

/* creates path (truncating) with the whole layout; returns the open file or -1 */
static hid_t create_layout(const char* path, const RunLogSpec* s, Priv* p, char* err, size_t errlen) {
    hid_t fapl = make_fapl(s->swmr);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (f < 0) {
        vita_fail(err, errlen, "cannot create the run log %s: %s (is the run directory writable?)",
                  path, strerror(errno ? errno : EACCES));
        return -1;
    }
    int32_t ver = 1;
    int ok = put_attr_str(f, "format", "vita-log") == 0 &&
             put_attr_num(f, "version", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, NULL, &ver) == 0;
    for (int i = 0; ok && i < s->n_attrs; i++) {
        if (!s->attr_key[i] || !strcmp(s->attr_key[i], "format") || !strcmp(s->attr_key[i], "version"))
            continue;
        ok = put_attr_str(f, s->attr_key[i], s->attr_val[i]) == 0;
    }
    for (int i = 0; ok && i < N_TAB; i++) ok = make_group(f, TAB_GROUP[i]) == 0;
    for (int i = 0; ok && i < N_TAB; i++)
        for (int c = 0; ok && c < p->tab[i].ncols; c++)
            ok = create_rows_ds(f, &p->tab[i].cols[c], p->tab[i].chunk_rows) == 0;
    if (ok) {
        hid_t d = H5Dopen2(f, "/epochs/val_metrics", H5P_DEFAULT);
        ok = d >= 0 && put_attr_strs(d, "metric_names", s->n_metrics, s->metric_names) == 0;
        if (d >= 0) H5Dclose(d);
    }
    if (ok) {
        hsize_t L = (hsize_t)s->n_layers;
        hid_t t = vlen_str_type(), sp = H5Screate_simple(1, &L, NULL);
        hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_obj_track_times(pl, 0);
        hid_t d = H5Dcreate2(f, "/align/layers", t, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
        ok = d >= 0 && (L == 0 || H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->layer_names) >= 0);
        if (d >= 0) H5Dclose(d);
        H5Pclose(pl);
        H5Sclose(sp);
        H5Tclose(t);
    }
    if (!ok) {
        vita_fail(err, errlen, "cannot write the layout of the run log %s (disk full? an estimator "
                  "or attribute name repeated?)", path);
        H5Fclose(f);
        unlink(path);
        return -1;
    }
    return f;
}

/* ---- file states (caller holds the lock) -------------------------------------------------- */
static int log_close_file(RunLog* lg) {
    Priv* p = lg->priv;
    int rc = 0;
    if (p->state != ST_CLOSED) {
        rc = H5Fclose((hid_t)lg->fid) < 0;
        lg->fid = -1;
        p->state = ST_CLOSED;
        lg->swmr_on = 0;
    }
    return rc;
}

/* brings the file to state want (ST_PLAIN or ST_SWMR); 0 or 1. A SWMR writer cannot go back
 * to plain writing, so SWMR -> PLAIN closes and reopens; PLAIN -> SWMR starts SWMR writing
 * (a file that was closed after SWMR writing can start it again). */
static int log_state(RunLog* lg, int want) {
    Priv* p = lg->priv;
    if (p->state == want) return 0;
    if (p->state == ST_SWMR && log_close_file(lg)) return 1;
    if (p->state == ST_PLAIN && want == ST_SWMR) {
        if (H5Fstart_swmr_write((hid_t)lg->fid) < 0) return 1;
        p->state = ST_SWMR;
        lg->swmr_on = 1;
        return 0;
    }
    hid_t fapl = make_fapl(lg->spec.swmr);
    unsigned flags = H5F_ACC_RDWR | (want == ST_SWMR ? H5F_ACC_SWMR_WRITE : 0);
    hid_t f = H5Fopen(lg->path, flags, fapl);
    H5Pclose(fapl);
    if (f < 0) return 1;
    lg->fid = f;
    p->state = want;
    lg->swmr_on = want == ST_SWMR;
    return 0;
}

/* the state between calls: SWMR once started (swmr on), closed (swmr off) */
static int log_rest(RunLog* lg) {
    if (!lg->spec.swmr) return log_close_file(lg);
    return 0;
}

/* writes the pending rows of t (file open) */
static int tab_write(hid_t f, Tab* t) {
    if (t->pending == 0) return 0;
    int ok = 1;
    for (int c = 0; ok && c < t->ncols; c++) {
        Col* col = &t->cols[c];
        hid_t d = H5Dopen2(f, col->name, H5P_DEFAULT);
        if (d < 0) return 1;
        int rank = col->rank2 ? 2 : 1;
        hsize_t ext[2] = {(hsize_t)(t->written + t->pending), (hsize_t)col->width};
        ok = H5Dset_extent(d, ext) >= 0;
        if (ok && col->width > 0) {
            hsize_t start[2] = {(hsize_t)t->written, 0};
            hsize_t cnt[2] = {(hsize_t)t->pending, (hsize_t)col->width};
            hid_t fs = H5Dget_space(d);
            hid_t ms = H5Screate_simple(rank, cnt, NULL);
            ok = fs >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 &&
                 H5Dwrite(d, col->is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, ms, fs,
                          H5P_DEFAULT, col->buf) >= 0;
            H5Sclose(ms);
            if (fs >= 0) H5Sclose(fs);
        }
        H5Dclose(d);
    }
    if (!ok) return 1;
    t->written += t->pending;
    t->pending = 0;
    return 0;
}

static int pending_any(const Priv* p) {
    for (int i = 0; i < N_TAB; i++)
        if (p->tab[i].pending) return 1;
    return 0;
}

/* flush (caller holds the lock); leaves the file in its rest state */
static int flush_locked(RunLog* lg) {
    Priv* p = lg->priv;
    int want = lg->spec.swmr ? ST_SWMR : ST_PLAIN;
    if (log_state(lg, want)) {
        fprintf(stderr, "vita: cannot open the run log %s for writing%s\n", lg->path,
                lg->spec.swmr ? " in SWMR mode (set log.swmr: off on filesystems without "
                                "POSIX write ordering, e.g. NFS)" : "");
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < N_TAB; i++) bad |= tab_write((hid_t)lg->fid, &p->tab[i]);
    if (!bad && H5Fflush((hid_t)lg->fid, H5F_SCOPE_GLOBAL) < 0) bad = 1;
    if (bad) fprintf(stderr, "vita: cannot append rows to the run log %s (disk full?)\n", lg->path);
    if (log_rest(lg)) bad = 1;
    /* a failed copy is not fatal: the log itself is fine, resume just has no fallback */
    if (!bad) (void)snapshot(lg->path);
    return bad;
}

/* ---- public: create / append / flush ------------------------------------------------------ */
static int check_spec(const RunLogSpec* s, const char* path, char* err, size_t errlen) {
    if (s->n_groups < 0 || s->n_groups > LOG_MAX_GROUPS || s->n_metrics < 0 ||
        s->n_metrics > LOG_MAX_METRICS || s->n_layers < 0 || s->n_layers > LOG_MAX_LAYERS ||
        s->n_est < 0 || s->n_est > LOG_MAX_EST || s->n_attrs < 0 || s->n_attrs > 48)
        return vita_fail(err, errlen, "run log %s: a count is out of range (groups %d, metrics %d, "
                         "layers %d, estimators %d, attrs %d)", path, s->n_groups, s->n_metrics,
                         s->n_layers, s->n_est, s->n_attrs);
    for (int k = 0; k < s->n_est; k++) {
        const char* n = s->est_names[k];
        if (!n || !n[0] || strchr(n, '/') || !strcmp(n, "epoch") || !strcmp(n, "layers") ||
            !strcmp(n, "weight_dist"))
            return vita_fail(err, errlen, "run log %s: estimator name '%s' cannot name an /align "
                             "dataset", path, n ? n : "(null)");
    }
    for (int k = 0; k < s->n_layers; k++)
        if (!s->layer_names[k]) return vita_fail(err, errlen, "run log %s: layer %d has no name", path, k);
    for (int k = 0; k < s->n_metrics; k++)
        if (!s->metric_names[k]) return vita_fail(err, errlen, "run log %s: metric %d has no name", path, k);
    if (strlen(path) >= sizeof(((RunLog*)0)->path) - 32)
        return vita_fail(err, errlen, "run log path too long: %s", path);
    return 0;
}

static void lg_init(RunLog* lg, const char* path, const RunLogSpec* spec) {
    memset(lg, 0, sizeof *lg);
    lg->fid = -1;
    snprintf(lg->path, sizeof lg->path, "%s", path);
    lg->spec = *spec;
    lg->spec.swmr = spec->swmr ? 1 : 0;
    lg->priv = priv_new(spec);
}

int runlog_create(RunLog* lg, const char* path, const RunLogSpec* spec, char* err, size_t errlen) {
    memset(lg, 0, sizeof *lg);
    lg->fid = -1;
    if (check_spec(spec, path, err, errlen)) return 1;
    lg_init(lg, path, spec);
    Priv* p = lg->priv;
    dataset_h5_lock();
    hid_t f = create_layout(path, &lg->spec, p, err, errlen);
    if (f < 0) {
        dataset_h5_unlock();
        priv_free(p);
        lg->priv = NULL;
        return 1;
    }
    lg->fid = f;
    p->state = ST_PLAIN;   /* swmr on: stays open until the first flush starts SWMR */
    int bad = log_rest(lg);
    dataset_h5_unlock();
    unlink_bak(path);   /* a copy of an earlier log at this path */
    if (bad) {
        vita_fail(err, errlen, "cannot close the run log %s (disk full?)", path);
        runlog_close(lg);
        return 1;
    }
    return 0;
}

int runlog_step(RunLog* lg, const LogStep* s) {
    Priv* p = lg->priv;
    if (!p) return 1;
    Tab* t = &p->tab[T_STEPS];
    tab_grow(t);
    *irow(t, 0) = s->step;
    *irow(t, 1) = s->epoch;
    *drow(t, 2) = s->loss;
    *drow(t, 3) = s->grad_norm;
    for (int g = 0; g < lg->spec.n_groups; g++) drow(t, 4)[g] = s->lr ? s->lr[g] : NAN;
    *drow(t, 5) = s->time_s;
    t->pending++;
    lg->n_steps++;
    return 0;
}

int runlog_epoch(RunLog* lg, const LogEpoch* e) {
    Priv* p = lg->priv;
    if (!p) return 1;
    Tab* t = &p->tab[T_EPOCHS];
    tab_grow(t);
    *irow(t, 0) = e->epoch;
    *drow(t, 1) = e->train_loss;
    *drow(t, 2) = e->val_loss;
    *drow(t, 3) = e->val_metric;
    for (int m = 0; m < lg->spec.n_metrics; m++)
        drow(t, 4)[m] = e->val_metrics ? e->val_metrics[m] : NAN;
    *drow(t, 5) = e->time_s;
    *drow(t, 6) = e->samples_per_s;
    t->pending++;
    lg->n_epochs++;
    return 0;
}

int runlog_align(RunLog* lg, const LogAlign* a) {
    Priv* p = lg->priv;
    if (!p) return 1;
    Tab* t = &p->tab[T_ALIGN];
    int L = lg->spec.n_layers, E = lg->spec.n_est;
    tab_grow(t);
    *irow(t, 0) = a->epoch;
    for (int k = 0; k < E; k++)
        for (int l = 0; l < L; l++) drow(t, 1 + k)[l] = a->est ? a->est[(size_t)k * L + l] : NAN;
    for (int l = 0; l < L; l++) drow(t, 1 + E)[l] = a->weight_dist ? a->weight_dist[l] : NAN;
    t->pending++;
    lg->n_align++;
    return 0;
}

int runlog_flush(RunLog* lg) {
    if (!lg->priv) return 1;
    dataset_h5_lock();
    int bad = flush_locked(lg);
    dataset_h5_unlock();
    return bad;
}

int runlog_align_attrs(RunLog* lg, const double* bandwidths, int S, const char* rule,
                       const char* feature_kind, int probe_n_images, int probe_n_tokens,
                       const double* noise_floor) {
    Priv* p = lg->priv;
    if (!p) return 1;
    dataset_h5_lock();
    int bad = log_state(lg, ST_PLAIN);   /* a SWMR writer cannot add attributes: reopen */
    if (!bad) {
        hid_t g = H5Gopen2((hid_t)lg->fid, "/align", H5P_DEFAULT);
        int64_t ni = probe_n_images, nt = probe_n_tokens;
        hsize_t bd[2] = {(hsize_t)lg->spec.n_layers, (hsize_t)(S > 0 ? S : 0)};
        hsize_t nd = (hsize_t)lg->spec.n_layers;
        bad = g < 0 ||
              (bandwidths && put_attr_num(g, "bandwidths", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, bd, bandwidths)) ||
              put_attr_str(g, "bandwidth_rule", rule) ||
              put_attr_str(g, "feature_kind", feature_kind) ||
              put_attr_num(g, "probe_n_images", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &ni) ||
              put_attr_num(g, "probe_n_tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &nt) ||
              (noise_floor && put_attr_num(g, "noise_floor", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &nd, noise_floor));
        if (g >= 0) H5Gclose(g);
        if (!bad && H5Fflush((hid_t)lg->fid, H5F_SCOPE_GLOBAL) < 0) bad = 1;
    }
    if (bad) fprintf(stderr, "vita: cannot write the /align attributes of the run log %s\n", lg->path);
    if (!lg->spec.swmr && log_close_file(lg)) bad = 1;
    dataset_h5_unlock();
    return bad;
}

int runlog_write_attrs(RunLog* lg, const char* group, int n, const char* const* keys,
                       const double* const* values, const int* lens, char* err, size_t errlen) {
    Priv* p = lg->priv;
    if (!p) return vita_fail(err, errlen, "run log is not open");
    if (!group || !group[0] || strchr(group, '/'))
        return vita_fail(err, errlen, "run log %s: bad attribute group name '%s'", lg->path,
                         group ? group : "(null)");
    dataset_h5_lock();
    int bad = pending_any(p) ? flush_locked(lg) : 0;
    /* a SWMR writer cannot add attributes: close, reopen normally */
    if (!bad && p->state == ST_SWMR) bad = log_close_file(lg);
    if (!bad) bad = log_state(lg, ST_PLAIN);
    if (bad) {
        dataset_h5_unlock();
        return vita_fail(err, errlen, "cannot reopen the run log %s to write /%s", lg->path, group);
    }
    char gname[128];
    snprintf(gname, sizeof gname, "/%s", group);
    bad = make_group((hid_t)lg->fid, gname) != 0;
    hid_t g = bad ? -1 : H5Gopen2((hid_t)lg->fid, gname, H5P_DEFAULT);
    if (g < 0) bad = 1;
    const char* badkey = NULL;
    for (int i = 0; !bad && i < n; i++) {
        int len = lens ? lens[i] : 1;
        hsize_t d = (hsize_t)(len > 0 ? len : 0);
        if (!keys[i] || !keys[i][0] ||
            put_attr_num(g, keys[i], H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, len == 1 ? 0 : 1, &d, values[i])) {
            bad = 1;
            badkey = keys[i] ? keys[i] : "(null)";
        }
    }
    if (g >= 0) H5Gclose(g);
    if (log_close_file(lg)) bad = 1;
    dataset_h5_unlock();
    if (bad)
        return vita_fail(err, errlen, "cannot write /%s%s%s in the run log %s (disk full?)", group,
                         badkey ? " attribute " : "", badkey ? badkey : "", lg->path);
    return 0;
}

void runlog_close(RunLog* lg) {
    Priv* p = lg->priv;
    if (!p) return;
    dataset_h5_lock();
    int bad = pending_any(p) ? flush_locked(lg) : 0;
    if (log_close_file(lg)) {
        fprintf(stderr, "vita: cannot close the run log %s (disk full?)\n", lg->path);
        bad = 1;
    }
    dataset_h5_unlock();
    if (!bad) unlink_bak(lg->path);   /* closed cleanly: the copy has served */
    priv_free(p);
    lg->priv = NULL;
    lg->fid = -1;
}

/* ---- resume ------------------------------------------------------------------------------- */
/* drops a half-made log without flushing its buffered rows (a failed resume must not append
 * the rows it loaded to the old file) */
static void lg_discard(RunLog* lg) {
    Priv* p = lg->priv;
    if (!p) return;
    dataset_h5_lock();
    log_close_file(lg);
    dataset_h5_unlock();
    priv_free(p);
    lg->priv = NULL;
    lg->fid = -1;
}

/* opens a log left by a finished or a killed writer, read-only when it can (caller holds the
 * lock). The writer is gone: one metadata read attempt, a bad checksum is damage, not a race */
static hid_t open_old(const char* path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) return f;
    /* a killed SWMR writer leaves the SWMR-write status flag: SWMR readers may still open */
    hid_t fapl = runlog_read_fapl(1);
    f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl);
    H5Pclose(fapl);
    if (f >= 0) return f;
    /* a killed non-SWMR writer of a latest-format file: clear the flags as h5clear -s does */
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    hbool_t clear = 1;
    if (H5Pexist(fapl, "clear_status_flags") > 0 && H5Pset(fapl, "clear_status_flags", &clear) >= 0) {
        f = H5Fopen(path, H5F_ACC_RDWR, fapl);
    }
    H5Pclose(fapl);
    return f;
}

typedef struct {
    hid_t dst;
    const RunLogSpec* spec;
    int root;
    int bad;
} AttrCopy;

static herr_t copy_attr_cb(hid_t loc, const char* name, const H5A_info_t* info, void* op) {
    (void)info;
    AttrCopy* ac = op;
    if (H5Aexists(ac->dst, name) > 0) return 0;   /* the new spec's value wins */
    if (ac->root) {
        for (int i = 0; i < ac->spec->n_attrs; i++)
            if (ac->spec->attr_key[i] && !strcmp(ac->spec->attr_key[i], name)) return 0;
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) { ac->bad = 1; return 0; }
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    hid_t mt = H5Tget_native_type(ft, H5T_DIR_DEFAULT);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    size_t sz = H5Tget_size(mt) * (size_t)(np > 0 ? np : 1);
    void* buf = xcalloc(sz, 1);
    int ok = ft >= 0 && sp >= 0 && mt >= 0 && (np <= 0 || H5Aread(a, mt, buf) >= 0);
    if (ok) {
        hid_t b = H5Acreate2(ac->dst, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
        ok = b >= 0 && (np <= 0 || H5Awrite(b, mt, buf) >= 0);
        if (b >= 0) H5Aclose(b);
        if (np > 0 && H5Tis_variable_str(mt) > 0) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
    }
    if (!ok) ac->bad = 1;
    free(buf);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return 0;
}

static int copy_attrs(hid_t src_f, hid_t dst_f, const char* obj, const RunLogSpec* spec) {
    if (H5Lexists(src_f, obj, H5P_DEFAULT) <= 0 && strcmp(obj, "/")) return 0;
    hid_t s = H5Oopen(src_f, obj, H5P_DEFAULT), d = H5Oopen(dst_f, obj, H5P_DEFAULT);
    AttrCopy ac = {d, spec, !strcmp(obj, "/"), s < 0 || d < 0};
    if (!ac.bad) H5Aiterate2(s, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, copy_attr_cb, &ac);
    if (s >= 0) H5Oclose(s);
    if (d >= 0) H5Oclose(d);
    return ac.bad;
}

/* rows of dataset name in f (-1 when missing, -2 when there but unreadable: damaged), columns
 * into *cols */
static long ds_rows(hid_t f, const char* name, long* cols) {
    *cols = 1;
    htri_t ex = H5Lexists(f, name, H5P_DEFAULT);
    if (ex == 0) return -1;
    if (ex < 0) return -2;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -2;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 1};
    int r = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (r >= 1 && r <= 2) H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    if (r < 1 || r > 2) return -2;
    *cols = (long)dims[1];
    return (long)dims[0];
}

/* reads the first t->pending rows of every column of t from src into the pending buffers;
 * columns missing in src are filled with NaN (float) */
static int tab_load(hid_t src, Tab* t) {
    long keep = t->pending;
    t->pending = 0;
    for (long r = 0; r < keep; r++) {
        tab_grow(t);
        t->pending++;
    }
    for (int c = 0; c < t->ncols; c++) {
        Col* col = &t->cols[c];
        size_t nv = (size_t)keep * col->width;
        long cols, have = ds_rows(src, col->name, &cols);
        if (have == -2) return 1;
        if (have < 0) {
            for (size_t i = 0; i < nv; i++) {
                if (col->is_int) ((int64_t*)col->buf)[i] = -1;
                else ((double*)col->buf)[i] = NAN;
            }
            continue;
        }
        if (nv == 0) continue;
        hid_t d = H5Dopen2(src, col->name, H5P_DEFAULT);
        hid_t fs = H5Dget_space(d);
        int rank = col->rank2 ? 2 : 1;
        hsize_t start[2] = {0, 0}, cnt[2] = {(hsize_t)keep, (hsize_t)col->width};
        hid_t ms = H5Screate_simple(rank, cnt, NULL);
        int ok = d >= 0 && fs >= 0 &&
                 H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 &&
                 H5Dread(d, col->is_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, ms, fs,
                         H5P_DEFAULT, col->buf) >= 0;
        H5Sclose(ms);
        if (fs >= 0) H5Sclose(fs);
        if (d >= 0) H5Dclose(d);
        if (!ok) return 1;
    }
    return 0;
}

/* the old file's layout must match the spec: same lr / val_metrics columns and layers */
static int check_compat(hid_t f, const RunLog* lg, char* err, size_t errlen) {
    const RunLogSpec* s = &lg->spec;
    long cols;
    if (ds_rows(f, "/steps/lr", &cols) >= 0 && cols != s->n_groups)
        return vita_fail(err, errlen, "%s has %ld learning-rate groups but this run has %d; resume "
                         "with the configuration the run started with", lg->path, cols, s->n_groups);
    if (ds_rows(f, "/epochs/val_metrics", &cols) >= 0 && cols != s->n_metrics)
        return vita_fail(err, errlen, "%s has %ld validation metrics but this run has %d; resume "
                         "with the configuration the run started with", lg->path, cols, s->n_metrics);
    long nl = ds_rows(f, "/align/layers", &cols);
    if (nl >= 0) {
        if (nl != s->n_layers)
            return vita_fail(err, errlen, "%s aligns %ld layers but this run aligns %d; resume with "
                             "the configuration the run started with", lg->path, nl, s->n_layers);
        if (nl > 0) {
            hid_t d = H5Dopen2(f, "/align/layers", H5P_DEFAULT);
            hid_t t = vlen_str_type(), sp = H5Dget_space(d);
            char** names = xcalloc((size_t)nl, sizeof(char*));
            int ok = d >= 0 && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) >= 0;
            int same = ok;
            for (long i = 0; same && i < nl; i++)
                same = names[i] && !strcmp(names[i], s->layer_names[i]);
            if (ok) H5Dvlen_reclaim(t, sp, H5P_DEFAULT, names);
            free(names);
            H5Sclose(sp);
            H5Tclose(t);
            if (d >= 0) H5Dclose(d);
            if (!same)
                return vita_fail(err, errlen, "%s aligns other layers than this run; resume with the "
                                 "configuration the run started with", lg->path);
        }
    }
    return 0;
}

/* opens src_path (the log or its last-flush copy) and loads the first min(want, have) rows of
 * every table into the pending buffers; 0 (*src open, have[] = rows there), 1 the log does not
 * fit this run (err), 2 unreadable or damaged (nothing open) */
static int load_old(RunLog* lg, const char* src_path, const long want[N_TAB], long have[N_TAB],
                    hid_t* src_out, char* err, size_t errlen) {
    Priv* p = lg->priv;
    hid_t src = open_old(src_path);
    if (src < 0) return 2;
    if (check_compat(src, lg, err, errlen)) {
        H5Fclose(src);
        return 1;
    }
    for (int i = 0; i < N_TAB; i++) {
        Tab* t = &p->tab[i];
        long h = -1, cols;
        for (int c = 0; c < t->ncols; c++) {
            long r = ds_rows(src, t->cols[c].name, &cols);
            if (r == -2) {
                H5Fclose(src);
                return 2;
            }
            if (r >= 0 && (h < 0 || r < h)) h = r;
        }
        have[i] = h < 0 ? 0 : h;
        t->pending = want[i] < have[i] ? want[i] : have[i];
        if (tab_load(src, t)) {
            H5Fclose(src);
            return 2;
        }
    }
    *src_out = src;
    return 0;
}

int runlog_resume(RunLog* lg, const char* path, const RunLogSpec* spec, long n_steps,
                  long n_epochs, long n_align, char* err, size_t errlen) {
    memset(lg, 0, sizeof *lg);
    lg->fid = -1;
    if (check_spec(spec, path, err, errlen)) return 1;
    if (n_steps < 0 || n_epochs < 0 || n_align < 0)
        return vita_fail(err, errlen, "resume of %s: negative row counts (%ld, %ld, %ld) in the "
                         "checkpoint", path, n_steps, n_epochs, n_align);
    if (access(path, R_OK | W_OK) != 0)
        return vita_fail(err, errlen, "cannot resume the run log %s: %s (resume needs the log.h5 of "
                         "the run)", path, strerror(errno));
    lg_init(lg, path, spec);
    Priv* p = lg->priv;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());

    dataset_h5_lock();
    long want[N_TAB] = {n_steps, n_epochs, n_align}, have[N_TAB];
    hid_t src = -1;
    const char* used = path;
    char bak[1100];
    snprintf(bak, sizeof bak, "%s.bak", path);
    int r = load_old(lg, path, want, have, &src, err, errlen);
    if (r == 2) {
        int rb = access(bak, R_OK) == 0 ? load_old(lg, bak, want, have, &src, err, errlen) : 3;
        if (rb == 0) {
            fprintf(stderr, "vita: warning: the run log %s is damaged (a write cut short by kill -9?); "
                    "resuming from its last-flush copy %s\n", path, bak);
            used = bak;
            lg->from_copy = 1;
        } else if (rb != 1) {
            vita_fail(err, errlen, "cannot read the run log %s to resume: not HDF5, damaged, or another "
                      "process still writes it, and %s; stop the other process, or restore the "
                      "log, or start the run afresh without --resume", path,
                      rb == 2 ? "its last-flush copy .bak is damaged too" : "there is no last-flush copy .bak");
        }
        r = rb == 0 ? 0 : 1;
    }
    if (r) {
        dataset_h5_unlock();
        lg_discard(lg);
        return 1;
    }
    for (int i = 0; i < N_TAB; i++)
        if (have[i] < want[i])
            fprintf(stderr, "vita: warning: %s holds %ld %s rows, the checkpoint counts %ld; rows "
                    "after the log's last flush are lost\n", used, have[i], TAB_GROUP[i] + 1, want[i]);
    int bad = 0;
    hid_t dst = -1;
    if (!bad) {
        dst = create_layout(tmp, &lg->spec, p, err, errlen);
        bad = dst < 0;
    }
    if (!bad) {
        static const char* objs[] = {"/", "/align", "/epochs/val_metrics", "/steps", "/epochs"};
        for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) bad |= copy_attrs(src, dst, objs[i], &lg->spec);
        if (bad) vita_fail(err, errlen, "cannot copy the attributes of %s into %s", used, tmp);
    }
    for (int i = 0; !bad && i < N_TAB; i++) {
        if (tab_write(dst, &p->tab[i])) bad = vita_fail(err, errlen, "cannot write %s (disk full?)", tmp);
    }
    H5Fclose(src);
    if (dst >= 0 && H5Fclose(dst) < 0 && !bad) bad = vita_fail(err, errlen, "cannot close %s (disk full?)", tmp);
    dataset_h5_unlock();
    if (bad) {
        unlink(tmp);
        lg_discard(lg);
        return 1;
    }
    /* durable, then atomic */
    (void)atomic_fsync_file(tmp);
    int re = atomic_rename(tmp, path);
    if (re) {
        vita_fail(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(re));
        lg_discard(lg);
        return 1;
    }

    lg->n_steps = p->tab[T_STEPS].written;
    lg->n_epochs = p->tab[T_EPOCHS].written;
    lg->n_align = p->tab[T_ALIGN].written;
    dataset_h5_lock();
    bad = lg->spec.swmr ? log_state(lg, ST_PLAIN) : 0;   /* as after create */
    dataset_h5_unlock();
    if (bad) {
        vita_fail(err, errlen, "cannot reopen the resumed run log %s", path);
        lg_discard(lg);
        return 1;
    }
    return 0;
}
