/* engine/report_input.c — what `vita report` reads: sweep directories (sweep.yaml, index.tsv)
 * and run logs (log.h5, SPEC.md §4). See report.h.
 *
 * A run log is read-only here and may still be written by a live run: it is opened plainly,
 * else with SWMR_READ. What makes a run usable: /epochs/val_metric with >= 1 row, the root
 * attr `metric`, and /test holding that metric (written at the very end of a run). Optional
 * parts read as NaN: /summary epochs_to_95, /steps (steps), /align (statistics). HDF5's own
 * error printing is off (h5read.c switches it off for vita); every failure becomes the run's
 * one-line `why`. */
#include "report.h"
#include "errfmt.h"
#include "check.h"
#include "runutil.h"
#include "h5read.h"
#include "train.h"
#include "runlog.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

static int is_file(const char* p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- YAML (libyaml document API) ---------------------------------------------------------- */
typedef struct {
    yaml_document_t doc;
    int ok;
} Ydoc;

static int ydoc_load(Ydoc* y, const unsigned char* text, size_t len, char* err, size_t errlen,
                     const char* what) {
    yaml_parser_t p;
    memset(y, 0, sizeof *y);
    if (!yaml_parser_initialize(&p)) return vita_fail(err, errlen, "%s: cannot start the YAML parser", what);
    yaml_parser_set_input_string(&p, text, len);
    int ok = yaml_parser_load(&p, &y->doc);
    if (!ok) {
        vita_fail(err, errlen, "%s: YAML error at line %lu: %s (fix the file)", what,
             (unsigned long)p.problem_mark.line + 1, p.problem ? p.problem : "unknown");
        yaml_parser_delete(&p);
        return 1;
    }
    yaml_parser_delete(&p);
    y->ok = 1;
    return 0;
}
static void ydoc_free(Ydoc* y) {
    if (y->ok) yaml_document_delete(&y->doc);
    y->ok = 0;
}
static yaml_node_t* yroot(Ydoc* y) { return y->ok ? yaml_document_get_root_node(&y->doc) : NULL; }
/* value of key in mapping m, NULL when m is not a mapping or has no such key */
static yaml_node_t* yget(Ydoc* y, yaml_node_t* m, const char* key) {
    if (!m || m->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t* p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t* k = yaml_document_get_node(&y->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strlen(key) == k->data.scalar.length &&
            !memcmp(k->data.scalar.value, key, k->data.scalar.length))
            return yaml_document_get_node(&y->doc, p->value);
    }
    return NULL;
}
/* scalar into buf; 0, or 1 when n is missing or not a scalar */
static int yscalar(yaml_node_t* n, char* buf, size_t len) {
    if (!n || n->type != YAML_SCALAR_NODE) return 1;
    size_t k = n->data.scalar.length < len - 1 ? n->data.scalar.length : len - 1;
    memcpy(buf, n->data.scalar.value, k);
    buf[k] = 0;
    return 0;
}
static int yseq_len(yaml_node_t* n) {
    return n && n->type == YAML_SEQUENCE_NODE ? (int)(n->data.sequence.items.top - n->data.sequence.items.start) : -1;
}
static yaml_node_t* yseq_at(Ydoc* y, yaml_node_t* n, int i) {
    return yaml_document_get_node(&y->doc, n->data.sequence.items.start[i]);
}

/* DIR/name as text into *text (caller frees); 0, or 1 with err */
static int read_sweep_file(const char* dir, const char* name, char* path, size_t plen, char** text,
                           char* err, size_t errlen) {
    snprintf(path, plen, "%s/%s", dir, name);
    *text = run_read_text(path);
    if (!*text) return vita_fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
    return 0;
}

/* ---- HDF5 reads (1 on any failure) -------------------------------------------------------- */
static int h5_exists(hid_t f, const char* name) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", name);
    for (char* s = buf + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (H5Lexists(f, buf, H5P_DEFAULT) <= 0) return 0;
            *s = c;
            if (!c) return 1;
        }
    }
}

/* a numeric dataset [n] or [n, c] as doubles; *rows, *cols */
static int read_ds(hid_t f, const char* name, double** out, long* rows, long* cols) {
    *out = NULL;
    *rows = *cols = 0;
    if (!h5_exists(f, name)) return 1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return 1;
    hid_t sp = H5Dget_space(d);
    int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[2] = {0, 1};
    if (r >= 1 && r <= 2) H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0) H5Sclose(sp);
    hid_t t = H5Dget_type(d);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0) H5Tclose(t);
    if (r < 1 || r > 2 || (cls != H5T_FLOAT && cls != H5T_INTEGER)) { H5Dclose(d); return 1; }
    size_t nv = (size_t)dims[0] * (size_t)dims[1];
    double* buf = xmalloc((nv ? nv : 1) * sizeof(double));
    if (nv && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        H5Dclose(d);
        return 1;
    }
    H5Dclose(d);
    *out = buf;
    *rows = (long)dims[0];
    *cols = (long)dims[1];
    return 0;
}

/* numeric attribute attr of object obj: the first n values (NaN-filled past its size); 0/1 */
static int read_num_attr(hid_t f, const char* obj, const char* attr, double* v, int n) {
    for (int i = 0; i < n; i++) v[i] = NAN;
    if (!h5_exists(f, obj) && strcmp(obj, "/")) return 1;
    if (H5Aexists_by_name(f, obj, attr, H5P_DEFAULT) <= 0) return 1;
    hid_t a = H5Aopen_by_name(f, obj, attr, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return 1;
    hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int bad = np < 1 || (cls != H5T_FLOAT && cls != H5T_INTEGER);
    double* buf = NULL;
    if (!bad) {
        buf = xmalloc((size_t)np * sizeof(double));
        bad = H5Aread(a, H5T_NATIVE_DOUBLE, buf) < 0;
        for (int i = 0; !bad && i < n && i < np; i++) v[i] = buf[i];
    }
    free(buf);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return bad;
}

/* memory type for reading strings of file type ft: C strings of size (H5T_VARIABLE or a
 * byte count), in ft's character set (HDF5 does not convert between ASCII and UTF-8) */
static hid_t str_mtype(hid_t ft, size_t size) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, size);
    H5Tset_cset(mt, H5Tget_cset(ft));
    return mt;
}

/* /align/layers: variable- or fixed-length strings */
static int read_layers(hid_t f, RpRun* r) {
    if (!h5_exists(f, "/align/layers")) return 1;
    hid_t d = H5Dopen2(f, "/align/layers", H5P_DEFAULT);
    if (d < 0) return 1;
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    hid_t ft = H5Dget_type(d);
    int bad = n < 0 || n > RP_MAX_LAYERS || H5Tget_class(ft) != H5T_STRING;
    if (!bad && n > 0) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t mt = str_mtype(ft, H5T_VARIABLE);
            char* s[RP_MAX_LAYERS] = {0};
            bad = H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) < 0;
            for (int i = 0; !bad && i < n; i++) snprintf(r->layers[i], RP_NAME, "%s", s[i] ? s[i] : "");
            if (!bad) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, s);
            H5Tclose(mt);
        } else {
            size_t w = H5Tget_size(ft);
            char* buf = xcalloc((size_t)n, w + 1);
            hid_t mt = str_mtype(ft, w + 1);
            bad = H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0;
            for (int i = 0; !bad && i < n; i++) snprintf(r->layers[i], RP_NAME, "%s", buf + (size_t)i * (w + 1));
            H5Tclose(mt);
            free(buf);
        }
    }
    if (!bad) r->n_layers = (int)n;
    H5Tclose(ft);
    H5Sclose(sp);
    H5Dclose(d);
    return bad;
}

typedef struct { RpRun* r; hid_t f; } AlignIt;
/* every [n, L] dataset of /align except epoch/layers and standard errors: an estimator */
static herr_t align_cb(hid_t g, const char* name, const H5L_info_t* info, void* op) {
    (void)g; (void)info;
    AlignIt* it = op;
    RpRun* r = it->r;
    if (!strcmp(name, "epoch") || !strcmp(name, "layers") || strstr(name, "_se") || r->n_est >= RP_MAX_EST)
        return 0;
    char path[160];
    snprintf(path, sizeof path, "/align/%s", name);
    double* v;
    long rows, cols;
    if (read_ds(it->f, path, &v, &rows, &cols)) return 0;
    if (rows >= 1 && cols == r->n_layers) {
        int k = r->n_est++;
        snprintf(r->est[k], RP_NAME, "%s", name);
        double* nl = xmalloc((size_t)r->n_est * (size_t)(r->n_layers ? r->n_layers : 1) * sizeof(double));
        if (r->last) memcpy(nl, r->last, (size_t)k * r->n_layers * sizeof(double));
        for (int l = 0; l < r->n_layers; l++) nl[(size_t)k * r->n_layers + l] = v[(size_t)(rows - 1) * cols + l];
        free(r->last);
        r->last = nl;
    }
    free(v);
    return 0;
}

static int str_attr(hid_t f, const char* obj, const char* name, char* buf, size_t len) {
    buf[0] = 0;
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0) return 1;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return 1;
    hid_t ft = H5Aget_type(a);
    int bad = H5Tget_class(ft) != H5T_STRING;
    if (!bad && H5Tis_variable_str(ft) > 0) {
        hid_t mt = str_mtype(ft, H5T_VARIABLE);
        char* s = NULL;
        bad = H5Aread(a, mt, &s) < 0;
        if (!bad) snprintf(buf, len, "%s", s ? s : "");
        if (!bad) H5free_memory(s);
        H5Tclose(mt);
    } else if (!bad) {
        size_t w = H5Tget_size(ft);
        char* tmp = xcalloc(w + 1, 1);
        hid_t mt = str_mtype(ft, w + 1);
        bad = H5Aread(a, mt, tmp) < 0;
        if (!bad) snprintf(buf, len, "%s", tmp);
        H5Tclose(mt);
        free(tmp);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return bad;
}

static int run_why(RpRun* r, int status, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    r->status = status;
    return status;
}

/* fills r from dir/log.h5 (identity fields already set by the caller); for a plain run
 * (plain = 1) the identity comes from the log too */
static int read_run(RpRun* r, int plain) {
    char path[1100];
    snprintf(path, sizeof path, "%s/log.h5", r->dir);
    for (int l = 0; l < RP_MAX_LAYERS; l++) r->floor[l] = NAN;
    r->test = r->e95 = NAN;
    if (!run_is_dir(r->dir)) return run_why(r, 1, "missing: no run directory %s", r->dir);
    if (!is_file(path)) return run_why(r, 1, "missing: no %s (not started?)", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);   /* failures become the run's one-line why */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        hid_t fa = runlog_read_fapl(RUNLOG_READ_ATTEMPTS);   /* bounded retries: see runlog.h */
        f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fa);
        H5Pclose(fa);
    }
    if (f < 0) return run_why(r, 3, "unreadable: %s is not an HDF5 run log (or damaged)", path);
    char fmt[64];
    str_attr(f, "/", "format", fmt, sizeof fmt);
    if (strcmp(fmt, "vita-log")) {
        H5Fclose(f);
        return run_why(r, 3, "unreadable: %s has format '%s', not a vita run log", path, fmt);
    }
    str_attr(f, "/", "metric", r->metric, sizeof r->metric);
    if (!r->metric[0]) {
        H5Fclose(f);
        return run_why(r, 3, "unreadable: %s has no root attr 'metric'", path);
    }
    r->higher = train_metric_higher_is_better(r->metric);
    if (plain) {
        char wbuf[1024], sbuf[64];
        str_attr(f, "/", "task", r->task, sizeof r->task);
        str_attr(f, "/", "weights", wbuf, sizeof wbuf);
        if (!wbuf[0]) snprintf(r->weights, RP_NAME, "scratch");
        else {
            const char* b = strrchr(wbuf, '/');
            b = b ? b + 1 : wbuf;
            snprintf(r->weights, RP_NAME, "%.63s", b);
            char* dot = strrchr(r->weights, '.');
            if (dot && dot != r->weights) *dot = 0;
        }
        str_attr(f, "/", "seed", sbuf, sizeof sbuf);
        r->seed = strtol(sbuf, NULL, 10);
        /* lr and fold from the resolved config */
        size_t cap = 1 << 20;
        char* cfg = xmalloc(cap);
        str_attr(f, "/", "config", cfg, cap);
        Ydoc y;
        char tmp[64];
        r->lr = NAN;
        r->fold = -1;
        if (cfg[0] && !ydoc_load(&y, (const unsigned char*)cfg, strlen(cfg), tmp, sizeof tmp, path)) {
            if (!yscalar(yget(&y, yget(&y, yroot(&y), "train"), "lr"), tmp, sizeof tmp)) r->lr = strtod(tmp, NULL);
            if (!yscalar(yget(&y, yget(&y, yroot(&y), "data"), "fold"), tmp, sizeof tmp)) r->fold = strtol(tmp, NULL, 10);
            ydoc_free(&y);
        }
        free(cfg);
        snprintf(r->id, RP_NAME, "-");
    }
    double* v;
    long rows, cols;
    if (read_ds(f, "/epochs/val_metric", &v, &rows, &cols) || rows < 1) {
        free(v);
        H5Fclose(f);
        return run_why(r, 2, "unfinished: %s has no validation rows yet", path);
    }
    r->n_ep = (int)rows;
    r->val = v;
    long tr, tc;
    if (read_ds(f, "/epochs/time_s", &r->secs, &tr, &tc) || tr != rows) {
        free(r->secs);
        r->secs = xmalloc((size_t)rows * sizeof(double));
        for (long i = 0; i < rows; i++) r->secs[i] = NAN;
    }
    r->steps = xmalloc((size_t)rows * sizeof(double));
    double* ep;
    long sr, sc;
    if (!read_ds(f, "/steps/epoch", &ep, &sr, &sc)) {
        /* steps done by the end of epoch e = rows of /steps with epoch <= e (epoch 0: none) */
        for (long e = 0; e < rows; e++) {
            long k = 0;
            for (long i = 0; i < sr; i++) k += ep[i] <= (double)e;
            r->steps[e] = (double)k;
        }
    } else {
        for (long e = 0; e < rows; e++) r->steps[e] = NAN;
    }
    free(ep);
    read_num_attr(f, "/summary", "epochs_to_95", &r->e95, 1);
    if (read_num_attr(f, "/test", r->metric, &r->test, 1)) {
        H5Fclose(f);
        return run_why(r, 2, "unfinished: %s has no /test attr '%s' (the run has not ended)", path, r->metric);
    }
    if (!read_layers(f, r) && r->n_layers > 0) {
        AlignIt it = {r, f};
        hid_t g = H5Gopen2(f, "/align", H5P_DEFAULT);
        if (g >= 0) {
            hsize_t idx = 0;
            H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, align_cb, &it);
            H5Gclose(g);
        }
        read_num_attr(f, "/align", "noise_floor", r->floor, r->n_layers);
        str_attr(f, "/align", "feature_kind", r->feature_kind, sizeof r->feature_kind);
    }
    H5Fclose(f);
    return 0;
}

static RpRun* new_run(RpInput* in) {
    if (in->n_runs == in->cap_runs) {
        int cap = in->cap_runs ? 2 * in->cap_runs : 64;
        RpRun* nr = xcalloc((size_t)cap, sizeof(RpRun));
        if (in->runs) memcpy(nr, in->runs, (size_t)in->n_runs * sizeof(RpRun));
        free(in->runs);
        in->runs = nr;
        in->cap_runs = cap;
    }
    RpRun* r = &in->runs[in->n_runs++];
    memset(r, 0, sizeof *r);
    return r;
}

/* ---- sweep.yaml ---------------------------------------------------------------------------- */
static int read_sweep_yaml(RpInput* in, const char* dir, char* err, size_t errlen) {
    char path[1100], *text;
    if (read_sweep_file(dir, "sweep.yaml", path, sizeof path, &text, err, errlen)) return 1;
    Ydoc y;
    if (ydoc_load(&y, (const unsigned char*)text, strlen(text), err, errlen, path)) { free(text); return 1; }
    free(text);
    yaml_node_t* root = yroot(&y);
    char tmp[RP_NAME];
    if (!yscalar(yget(&y, root, "scratch"), tmp, sizeof tmp) && tmp[0] && strcmp(tmp, "null") && strcmp(tmp, "~")) {
        if (in->scratch[0] && strcmp(in->scratch, tmp)) {
            ydoc_free(&y);
            return vita_fail(err, errlen, "%s: scratch arm '%s' differs from '%s' of an earlier sweep; "
                        "report sweeps with the same scratch label together", path, tmp, in->scratch);
        }
        snprintf(in->scratch, RP_NAME, "%s", tmp);
    }
    yaml_node_t* pr = yget(&y, root, "primary");
    if (pr && !in->primary_from_cli && !in->primary_source[0]) {
        if (yscalar(yget(&y, pr, "layer"), in->primary_layer, RP_NAME) ||
            yscalar(yget(&y, pr, "estimator"), in->primary_est, RP_NAME)) {
            ydoc_free(&y);
            return vita_fail(err, errlen, "%s: primary needs layer and estimator (e.g. primary: {layer: "
                        "norm, feature: pooled, estimator: mmd2_paired})", path);
        }
        yscalar(yget(&y, pr, "feature"), in->primary_feature, RP_NAME);
        snprintf(in->primary_source, sizeof in->primary_source, "declared in %.230s", path);
    }
    yaml_node_t* cs = yget(&y, root, "controls");
    for (int i = 0; i < yseq_len(cs); i++) {
        yaml_node_t* c = yseq_at(&y, cs, i);
        if (in->n_ctrl >= RP_MAX_CONTROLS) break;
        RpControl* k = &in->ctrl[in->n_ctrl];
        memset(k, 0, sizeof *k);
        if (yscalar(yget(&y, c, "kind"), tmp, sizeof tmp)) tmp[0] = 0;
        if (!strcmp(tmp, "positive")) {
            k->kind = RP_CTRL_POSITIVE;
            if (yscalar(yget(&y, c, "aligned"), k->aligned, RP_NAME) ||
                yscalar(yget(&y, c, "reference"), k->reference, RP_NAME)) {
                ydoc_free(&y);
                return vita_fail(err, errlen, "%s: controls[%d] (positive) needs aligned: LABEL and "
                            "reference: LABEL", path, i);
            }
        } else if (!strcmp(tmp, "negative")) {
            k->kind = RP_CTRL_NEGATIVE;
            yaml_node_t* a = yget(&y, c, "arms");
            for (int j = 0; j < yseq_len(a) && j < RP_MAX_ARMS_LIST; j++)
                if (!yscalar(yseq_at(&y, a, j), k->arms[k->n_arms], RP_NAME)) k->n_arms++;
            if (k->n_arms == 0) {
                ydoc_free(&y);
                return vita_fail(err, errlen, "%s: controls[%d] (negative) needs arms: [LABELS]", path, i);
            }
        } else {
            ydoc_free(&y);
            return vita_fail(err, errlen, "%s: controls[%d] kind '%s' is not positive or negative", path, i, tmp);
        }
        in->n_ctrl++;
    }
    ydoc_free(&y);
    return 0;
}

/* ---- index.tsv ----------------------------------------------------------------------------- */
static int split_tabs(char* line, char** f, int max) {
    int n = 0;
    char* s = line;
    while (n < max) {
        f[n++] = s;
        char* t = strchr(s, '\t');
        if (!t) break;
        *t = 0;
        s = t + 1;
    }
    return n;
}

static int read_index(RpInput* in, const char* dir, char* err, size_t errlen) {
    char path[1100], *text;
    if (read_sweep_file(dir, "index.tsv", path, sizeof path, &text, err, errlen)) return 1;
    enum { C_ID, C_DIR, C_W, C_TASK, C_LR, C_SEED, C_FOLD, NC };
    static const char* want[NC] = {"id", "run_dir", "weights", "task", "lr", "seed", "fold"};
    int col[NC], xcol[RP_MAX_EXTRA], xidx[RP_MAX_EXTRA], nx = 0, nh = 0;
    char* fields[64];
    char* save = NULL;
    int lineno = 0, bad = 0;
    for (char* line = strtok_r(text, "\n", &save); line && !bad; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        size_t L = strlen(line);
        if (L && line[L - 1] == '\r') line[L - 1] = 0;
        if (!line[0]) continue;
        int nf = split_tabs(line, fields, 64);
        if (lineno == 1) {
            nh = nf;
            for (int c = 0; c < NC; c++) {
                col[c] = -1;
                for (int i = 0; i < nf; i++)
                    if (!strcmp(fields[i], want[c])) col[c] = i;
                if (col[c] < 0 && c != C_FOLD) {
                    bad = vita_fail(err, errlen, "%s: header has no column '%s' (expected: id run_dir "
                               "weights task lr seed fold [extra axes...]; rewrite it with vita sweep)",
                               path, want[c]);
                    break;
                }
            }
            for (int i = 0; !bad && i < nf; i++) {
                int std = 0;
                for (int c = 0; c < NC; c++) std |= col[c] == i;
                if (!std && nx < RP_MAX_EXTRA) {
                    xcol[nx] = i;
                    int k = 0;
                    while (k < in->n_extra_names && strcmp(in->extra_names[k], fields[i])) k++;
                    if (k == RP_MAX_EXTRA) continue;
                    if (k == in->n_extra_names)
                        snprintf(in->extra_names[in->n_extra_names++], RP_NAME, "%s", fields[i]);
                    xidx[nx++] = k;
                }
            }
            continue;
        }
        if (nf != nh) {
            bad = vita_fail(err, errlen, "%s line %d: %d fields where the header has %d (tab-separated)",
                       path, lineno, nf, nh);
            break;
        }
        RpRun* r = new_run(in);
        snprintf(r->id, RP_NAME, "%s", fields[col[C_ID]]);
        snprintf(r->dir, sizeof r->dir, "%s/%s", dir, fields[col[C_DIR]]);
        snprintf(r->weights, RP_NAME, "%s", fields[col[C_W]]);
        snprintf(r->task, RP_NAME, "%s", fields[col[C_TASK]]);
        r->lr = strtod(fields[col[C_LR]], NULL);
        r->seed = strtol(fields[col[C_SEED]], NULL, 10);
        r->fold = col[C_FOLD] >= 0 ? strtol(fields[col[C_FOLD]], NULL, 10) : -1;
        /* extra values by the index of their axis name in in->extra_names ("-" when this
         * sweep has no such axis) */
        r->n_extra = in->n_extra_names;
        for (int j = 0; j < in->n_extra_names; j++) snprintf(r->extra[j], RP_NAME, "-");
        for (int k = 0; k < nx; k++) snprintf(r->extra[xidx[k]], RP_NAME, "%s", fields[xcol[k]]);
        read_run(r, 0);
    }
    free(text);
    return bad;
}

/* ---- entry points --------------------------------------------------------------------------- */
int rp_add_dir(RpInput* in, const char* dir, char* err, size_t errlen) {
    char a[1100], b[1100];
    if (!run_is_dir(dir))
        return vita_fail(err, errlen, "%s: no such directory (pass sweep directories of vita sweep or "
                    "run directories of vita train)", dir);
    snprintf(a, sizeof a, "%s/sweep.yaml", dir);
    snprintf(b, sizeof b, "%s/index.tsv", dir);
    if (is_file(a) || is_file(b)) {
        if (!is_file(a) || !is_file(b))
            return vita_fail(err, errlen, "%s: a sweep directory needs both sweep.yaml and index.tsv "
                        "(one is missing; rerun vita sweep)", dir);
        if (read_sweep_yaml(in, dir, err, errlen)) return 1;
        return read_index(in, dir, err, errlen);
    }
    snprintf(a, sizeof a, "%s/log.h5", dir);
    if (!is_file(a))
        return vita_fail(err, errlen, "%s: neither a sweep directory (sweep.yaml + index.tsv) nor a run "
                    "directory (log.h5); pass a directory written by vita sweep or vita train", dir);
    RpRun* r = new_run(in);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    r->n_extra = 0;
    read_run(r, 1);
    return 0;
}

int rp_parse_primary(RpInput* in, const char* spec, char* err, size_t errlen) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char* save = NULL;
    int have_l = 0, have_e = 0;
    for (char* kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char* eq = strchr(kv, '=');
        if (!eq || eq == kv || !eq[1])
            return vita_fail(err, errlen, "--primary '%s': expected layer=L,estimator=NAME[,feature=KIND]", spec);
        *eq = 0;
        if (!strcmp(kv, "layer")) { snprintf(in->primary_layer, RP_NAME, "%s", eq + 1); have_l = 1; }
        else if (!strcmp(kv, "estimator")) { snprintf(in->primary_est, RP_NAME, "%s", eq + 1); have_e = 1; }
        else if (!strcmp(kv, "feature")) snprintf(in->primary_feature, RP_NAME, "%s", eq + 1);
        else
            return vita_fail(err, errlen, "--primary: unknown key '%s' (use layer=, estimator=, feature=)", kv);
    }
    if (!have_l) snprintf(in->primary_layer, RP_NAME, "norm");
    if (!have_e) snprintf(in->primary_est, RP_NAME, "mmd2_paired");
    in->primary_from_cli = 1;
    snprintf(in->primary_source, sizeof in->primary_source, "--primary");
    return 0;
}

void rp_input_free(RpInput* in) {
    for (int i = 0; i < in->n_runs; i++) {
        free(in->runs[i].val);
        free(in->runs[i].secs);
        free(in->runs[i].steps);
        free(in->runs[i].last);
    }
    free(in->runs);
    memset(in, 0, sizeof *in);
}
