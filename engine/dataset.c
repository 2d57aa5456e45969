/* engine/dataset.c — the vita dataset file (SPEC.md §2): open + validate, per-case reads,
 * `vita info` for datasets, and the atomic writer.
 *
 * Layout written (and read): root attrs format="vita-dataset", version=1 (int32), channels,
 * label_names, class_names, source (variable-length UTF-8 strings), spacing_zyx (float64[3]);
 * /images float32 [N,C,D,H,W] one chunk per case (gzip + shuffle optional), /seg uint8
 * [N,D,H,W] one chunk per case, /cls int32 [N], /case_id vlen UTF-8 [N], /split uint8 [N],
 * /fold int8 [N], /channel_present uint8 [N,C], /geometry/{spacing,origin} float64 [N,3],
 * /geometry/direction float64 [N,9], /geometry/{shape_original,crop_offset} int32 [N,3],
 * optional /geometry/grid_spacing float64 [N,3]. Semantics: engine/volume.h ("Dataset
 * geometry"): spacing, shape_original, crop_offset, grid_spacing are (z,y,x); origin is the
 * LPS (x,y,z) position in mm of native voxel (0,0,0); direction is row-major 3x3 whose column
 * j is the LPS direction of index axis j (0 = x). Importers may add root attributes
 * (dataset_writer_attr_*) such as normalisation statistics and the import report.
 *
 * Required on read: the format/version/channels/spacing_zyx attrs, /images, /case_id, /split.
 * Optional (defaults when absent): /fold (-1), /channel_present (all 1), /geometry (identity
 * geometry of the common grid), /seg (needs label_names), /cls (needs class_names), /targets.
 *
 * Thread safety: Debian's serial HDF5 is not thread-safe, so when H5is_library_threadsafe says
 * so, every HDF5 call made here runs under one process-wide recursive mutex
 * (dataset_h5_lock); other modules that call HDF5 while a loader thread reads should take it. */
#include "dataset.h"
#include "atomic.h"
#include "errfmt.h"
#include "check.h"

#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* images up to this many bytes are scanned for NaN/Inf and label range on open; larger
 * datasets are checked case by case as they are read (dataset_read_case always checks) */
#define DS_SCAN_ON_OPEN_BYTES (1ull << 30)

/* ---- the process-wide HDF5 lock ----------------------------------------------------------- */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_mu;
static int g_serialize = 1;

static void h5_init_once(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&g_mu, &a);
    pthread_mutexattr_destroy(&a);
    hbool_t ts = 0;
    if (H5is_library_threadsafe(&ts) >= 0 && ts) g_serialize = 0;
    const char* force = getenv("VITA_HDF5_LOCK");  /* 1: serialise even a thread-safe HDF5 */
    if (force && force[0] == '1') g_serialize = 1;
}

void dataset_h5_lock(void) {
    pthread_once(&g_once, h5_init_once);
    if (g_serialize) pthread_mutex_lock(&g_mu);
    /* the automatic error-stack printing is per thread in thread-safe builds: switch it off
     * every time (cheap); vita reports one line of its own instead */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
void dataset_h5_unlock(void) {
    if (g_serialize) pthread_mutex_unlock(&g_mu);
}
int dataset_h5_serialized(void) {
    pthread_once(&g_once, h5_init_once);
    return g_serialize;
}

/* ---- small HDF5 helpers (caller holds the lock) ------------------------------------------- */
static int exists(hid_t f, const char* name) {  /* absolute name, parents checked first */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", name);
    for (size_t i = 1;; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            htri_t e = H5Lexists(f, buf, H5P_DEFAULT);
            buf[i] = c;
            if (e <= 0) return 0;
            if (!c) return 1;
        }
    }
}

/* string attribute (fixed or variable length): 0 ok, -1 missing, -2 not a string */
static int attr_str(hid_t obj, const char* name, char* buf, size_t len) {
    buf[0] = '\0';
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int rc = -2;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING) {
        hid_t sp = H5Aget_space(a);
        hssize_t npts = H5Sget_simple_extent_npoints(sp);
        H5Sclose(sp);
        if (npts == 1) {
            if (H5Tis_variable_str(t) > 0) {
                hid_t m = H5Tcopy(H5T_C_S1);
                H5Tset_size(m, H5T_VARIABLE);
                H5Tset_cset(m, H5Tget_cset(t));
                char* s = NULL;
                if (H5Aread(a, m, &s) >= 0 && s) {
                    snprintf(buf, len, "%s", s);
                    H5free_memory(s);
                    rc = 0;
                }
                H5Tclose(m);
            } else {
                size_t n = H5Tget_size(t);
                char* s = calloc(n + 1, 1);
                hid_t m = H5Tcopy(H5T_C_S1);
                H5Tset_size(m, n + 1);
                H5Tset_strpad(m, H5T_STR_NULLTERM);
                if (s && H5Aread(a, m, s) >= 0) {
                    snprintf(buf, len, "%s", s);
                    rc = 0;
                }
                H5Tclose(m);
                free(s);
            }
        }
    }
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* numeric attribute as doubles: number of values (<= maxn), -1 missing, -2 not numeric */
static int attr_num(hid_t obj, const char* name, double* v, int maxn) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    int rc = -2;
    if (c == H5T_INTEGER || c == H5T_FLOAT) {
        hid_t sp = H5Aget_space(a);
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        H5Sclose(sp);
        if (n >= 1 && n <= 64) {
            double tmp[64];
            if (H5Aread(a, H5T_NATIVE_DOUBLE, tmp) >= 0) {
                rc = (int)(n < maxn ? n : maxn);
                memcpy(v, tmp, rc * sizeof(double));
                if (n > maxn) rc = (int)n;  /* report the true count */
            }
        }
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

typedef struct {
    int rank;
    hsize_t dims[8];
    H5T_class_t cls;
    size_t size;
    H5T_sign_t sign;
    int varstr;
} DsInfo;

/* 0 ok, -1 missing / not a dataset */
static int ds_info(hid_t f, const char* name, DsInfo* in) {
    memset(in, 0, sizeof *in);
    if (!exists(f, name)) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    in->rank = H5Sget_simple_extent_ndims(sp);
    if (in->rank > 8) in->rank = 8;
    if (in->rank > 0) H5Sget_simple_extent_dims(sp, in->dims, NULL);
    in->cls = H5Tget_class(t);
    in->size = H5Tget_size(t);
    in->sign = in->cls == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_ERROR;
    in->varstr = in->cls == H5T_STRING && H5Tis_variable_str(t) > 0;
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    return 0;
}

static int read_all(hid_t f, const char* name, hid_t mem, void* buf) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    herr_t e = H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
    return e < 0 ? -1 : 0;
}

/* reads rows [i, i+1) of an n-d dataset (row = everything after the first dimension) */
static int read_row(hid_t f, const char* name, hid_t mem, long long i, void* buf) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8] = {0}, start[8] = {0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    start[0] = (hsize_t)i;
    dims[0] = 1;
    herr_t e = H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, dims, NULL);
    hid_t ms = H5Screate_simple(rank, dims, NULL);
    if (e >= 0) e = H5Dread(d, mem, ms, sp, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(sp);
    H5Dclose(d);
    return e < 0 ? -1 : 0;
}

/* "a,b,c" → names; returns the count (may exceed maxn: extra names are not stored) */
static int split_names(const char* s, char (*out)[DS_NAME], int maxn) {
    int n = 0;
    const char* p = s;
    if (!*s) return 0;
    for (;;) {
        const char* e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ')) { p++; len--; }
        while (len && p[len - 1] == ' ') len--;
        if (n < maxn) {
            size_t k = len < DS_NAME - 1 ? len : DS_NAME - 1;
            memcpy(out[n], p, k);
            out[n][k] = '\0';
        }
        n++;
        if (!e) break;
        p = e + 1;
    }
    return n;
}

static void shape_str(char* buf, size_t len, const DsInfo* in) {
    size_t k = snprintf(buf, len, "[");
    for (int d = 0; d < in->rank && k < len; d++)
        k += snprintf(buf + k, len - k, d ? ",%llu" : "%llu", (unsigned long long)in->dims[d]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

/* ---- validation of values ------------------------------------------------------------------ */
static int check_case_values(const Dataset* ds, int i, const float* img, const uint8_t* seg,
                             char* err, size_t errlen) {
    if (img) {
        size_t vox = (size_t)ds->D * ds->H * ds->W;
        for (int c = 0; c < ds->C; c++) {
            const float* p = img + c * vox;
            for (size_t v = 0; v < vox; v++)
                if (!isfinite(p[v])) {
                    size_t z = v / ((size_t)ds->H * ds->W), y = v / ds->W % ds->H, x = v % ds->W;
                    return vita_fail(err, errlen, "%s: /images case %d (%s) channel %s has %s at voxel "
                                     "(z,y,x)=(%zu,%zu,%zu); fix or drop this case and re-import",
                                     ds->path, i, ds->case_id[i], ds->channels[c],
                                     isnan(p[v]) ? "NaN" : "Inf", z, y, x);
                }
        }
    }
    if (seg && ds->has_seg) {
        size_t vox = (size_t)ds->D * ds->H * ds->W;
        for (size_t v = 0; v < vox; v++)
            if (seg[v] >= ds->n_labels)
                return vita_fail(err, errlen, "%s: /seg case %d (%s) has label %d but label_names lists "
                                 "%d labels (0..%d); fix the labels or extend the label_names attribute",
                                 ds->path, i, ds->case_id[i], seg[v], ds->n_labels, ds->n_labels - 1);
    }
    return 0;
}

static void free_arrays(Dataset* ds) {
    free(ds->cls); free(ds->split); free(ds->fold); free(ds->channel_present);
    free(ds->case_id); free(ds->g_spacing); free(ds->g_origin); free(ds->g_direction);
    free(ds->g_shape_original); free(ds->g_crop_offset); free(ds->g_grid_spacing);
    ds->g_grid_spacing = NULL;
    ds->cls = NULL; ds->split = NULL; ds->fold = NULL; ds->channel_present = NULL;
    ds->case_id = NULL; ds->g_spacing = ds->g_origin = ds->g_direction = NULL;
    ds->g_shape_original = ds->g_crop_offset = NULL;
}

/* checks that per-case dataset `name` is [N, tail...] with the given tail; 0 ok */
static int check_shape(const Dataset* ds, const char* name, const DsInfo* in, int rank,
                       const hsize_t* tail, const char* want, char* err, size_t errlen) {
    char got[96];
    shape_str(got, sizeof got, in);
    if (in->rank >= 1 && in->dims[0] != (hsize_t)ds->n)
        return vita_fail(err, errlen, "%s: %s has %llu cases (first dimension) but /images has %d; every "
                         "per-case dataset needs one row per case (re-create the file)", ds->path, name,
                         (unsigned long long)in->dims[0], ds->n);
    int ok = in->rank == rank;
    for (int d = 1; ok && d < rank; d++) ok = in->dims[d] == tail[d - 1];
    if (!ok)
        return vita_fail(err, errlen, "%s: %s has shape %s, expected %s; re-create the file", ds->path,
                         name, got, want);
    return 0;
}

static int open_validate(Dataset* ds, hid_t f, char* err, size_t errlen) {
    const char* P = ds->path;
    char s[1024];
    double v[64];
    int rc = attr_str(f, "format", s, sizeof s);
    if (rc == -1)
        return vita_fail(err, errlen, "%s: no 'format' attribute on / — not a vita dataset (create one "
                         "with 'vita phantom' or 'vita import')", P);
    if (rc < 0 || strcmp(s, "vita-dataset"))
        return vita_fail(err, errlen, "%s: format attribute is '%s', expected 'vita-dataset' (create the "
                         "file with 'vita phantom' or 'vita import')", P, rc < 0 ? "(not a string)" : s);
    rc = attr_num(f, "version", v, 1);
    if (rc < 0)
        return vita_fail(err, errlen, "%s: no integer 'version' attribute on /; write version=1 "
                         "(SPEC.md §2)", P);
    if (rc != 1 || v[0] != 1)
        return vita_fail(err, errlen, "%s: version attribute is %g but this vita reads vita-dataset "
                         "version 1; upgrade vita or re-import the data", P, v[0]);
    /* /images */
    DsInfo im;
    if (ds_info(f, "/images", &im))
        return vita_fail(err, errlen, "%s: no /images dataset (required: float32 or int16 "
                         "[N,C,D,H,W]); re-create the file with 'vita import' or 'vita phantom'", P);
    if (im.rank != 5)
        return vita_fail(err, errlen, "%s: /images has rank %d, expected 5 [N,C,D,H,W] (use C=1 for one "
                         "sequence, D=1 for 2D images)", P, im.rank);
    if (im.cls == H5T_FLOAT && im.size == 4) ds->images_int16 = 0;
    else if (im.cls == H5T_INTEGER && im.size == 2 && im.sign == H5T_SGN_2) ds->images_int16 = 1;
    else
        return vita_fail(err, errlen, "%s: /images has an unsupported type (%s, %zu bytes); store float32 "
                         "or int16", P, im.cls == H5T_FLOAT ? "float" : im.cls == H5T_INTEGER ? "integer" :
                         "non-numeric", im.size);
    for (int d = 0; d < 5; d++)
        if (im.dims[d] == 0 || im.dims[d] > 0x7fffffff)
            return vita_fail(err, errlen, "%s: /images dimension %d is %llu; every dimension of "
                             "[N,C,D,H,W] must be 1 or more", P, d, (unsigned long long)im.dims[d]);
    ds->n = (int)im.dims[0];
    ds->C = (int)im.dims[1];
    ds->D = (int)im.dims[2];
    ds->H = (int)im.dims[3];
    ds->W = (int)im.dims[4];
    int N = ds->n, C = ds->C;
    if (C > DS_MAX_CHANNELS)
        return vita_fail(err, errlen, "%s: /images has C=%d channels, more than the %d vita supports; "
                         "keep at most %d sequences", P, C, DS_MAX_CHANNELS, DS_MAX_CHANNELS);
    /* attrs */
    rc = attr_str(f, "channels", s, sizeof s);
    if (rc < 0)
        return vita_fail(err, errlen, "%s: no 'channels' string attribute on / (e.g. \"t2w,adc,hbv\", one "
                         "name per /images channel); add it", P);
    int nc = split_names(s, ds->channels, DS_MAX_CHANNELS);
    if (nc != C)
        return vita_fail(err, errlen, "%s: channels attribute '%s' names %d channels but /images has "
                         "C=%d; make them agree", P, s, nc, C);
    for (int c = 0; c < C; c++)
        if (!ds->channels[c][0])
            return vita_fail(err, errlen, "%s: channels attribute '%s' has an empty name at position %d; "
                             "name every channel", P, s, c);
    rc = attr_num(f, "spacing_zyx", v, 3);
    if (rc != 3 || !(v[0] > 0 && v[1] > 0 && v[2] > 0) || !isfinite(v[0] + v[1] + v[2]))
        return vita_fail(err, errlen, "%s: spacing_zyx attribute %s; write 3 positive numbers (z,y,x "
                         "mm of the common grid)", P, rc == -1 ? "is missing" : "is not 3 positive numbers");
    memcpy(ds->spacing_zyx, v, sizeof ds->spacing_zyx);
    if (attr_str(f, "label_names", s, sizeof s) == 0) {
        ds->n_labels = split_names(s, ds->label_names, DS_MAX_LABELS);
        if (ds->n_labels > DS_MAX_LABELS)
            return vita_fail(err, errlen, "%s: label_names lists %d labels, at most %d are supported",
                             P, ds->n_labels, DS_MAX_LABELS);
    }
    if (attr_str(f, "class_names", s, sizeof s) == 0) {
        ds->n_classes = split_names(s, ds->class_names, DS_MAX_LABELS);
        if (ds->n_classes > DS_MAX_LABELS)
            return vita_fail(err, errlen, "%s: class_names lists %d classes, at most %d are supported",
                             P, ds->n_classes, DS_MAX_LABELS);
    }
    DsInfo in;
    hsize_t tail[4];
    char want[96];
    /* /case_id */
    if (ds_info(f, "/case_id", &in))
        return vita_fail(err, errlen, "%s: no /case_id dataset (strings [N], one id per case); add it",
                         P);
    snprintf(want, sizeof want, "[%d] strings", N);
    if (check_shape(ds, "/case_id", &in, 1, tail, want, err, errlen)) return 1;
    if (in.cls != H5T_STRING)
        return vita_fail(err, errlen, "%s: /case_id is not a string dataset; store the case ids as "
                         "strings [N]", P);
    ds->case_id = xcalloc(N, sizeof *ds->case_id);
    {
        hid_t d = H5Dopen2(f, "/case_id", H5P_DEFAULT);
        hid_t t = H5Dget_type(d);
        hid_t m = H5Tcopy(H5T_C_S1);
        int ok;
        if (in.varstr) {
            H5Tset_size(m, H5T_VARIABLE);
            H5Tset_cset(m, H5Tget_cset(t));
            char** p = xcalloc(N, sizeof(char*));
            ok = H5Dread(d, m, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) >= 0;
            for (int i = 0; ok && i < N; i++) snprintf(ds->case_id[i], 64, "%s", p[i] ? p[i] : "");
            if (ok) {
                hid_t sp = H5Dget_space(d);
#if H5_VERSION_GE(1, 12, 0)
                H5Treclaim(m, sp, H5P_DEFAULT, p);
#else
                H5Dvlen_reclaim(m, sp, H5P_DEFAULT, p);
#endif
                H5Sclose(sp);
            }
            free(p);
        } else {
            size_t sz = in.size;
            H5Tset_size(m, sz + 1);
            H5Tset_strpad(m, H5T_STR_NULLTERM);
            char* p = xcalloc((size_t)N, sz + 1);
            ok = H5Dread(d, m, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) >= 0;
            for (int i = 0; ok && i < N; i++) snprintf(ds->case_id[i], 64, "%s", p + i * (sz + 1));
            free(p);
        }
        H5Tclose(m);
        H5Tclose(t);
        H5Dclose(d);
        if (!ok) return vita_fail(err, errlen, "%s: cannot read /case_id (damaged file?)", P);
    }
    /* /split */
    if (ds_info(f, "/split", &in))
        return vita_fail(err, errlen, "%s: no /split dataset (uint8 [N]: 0 train, 1 val, 2 test, 3 "
                         "probe); add it", P);
    snprintf(want, sizeof want, "[%d]", N);
    if (check_shape(ds, "/split", &in, 1, tail, want, err, errlen)) return 1;
    if (in.cls != H5T_INTEGER)
        return vita_fail(err, errlen, "%s: /split must be an integer dataset (uint8 [N])", P);
    {
        int32_t* t = xcalloc(N, sizeof *t);
        if (read_all(f, "/split", H5T_NATIVE_INT32, t)) { free(t); return vita_fail(err, errlen, "%s: cannot read /split", P); }
        ds->split = xcalloc(N, 1);
        int ntrain = 0;
        for (int i = 0; i < N; i++) {
            if (t[i] < 0 || t[i] > 3) {
                int bad = t[i];
                free(t);
                return vita_fail(err, errlen, "%s: /split case %d (%s) is %d; use 0 train, 1 val, 2 test, "
                                 "3 probe", P, i, ds->case_id[i], bad);
            }
            ds->split[i] = (uint8_t)t[i];
            ntrain += t[i] == SPLIT_TRAIN;
        }
        free(t);
        if (!ntrain)
            return vita_fail(err, errlen, "%s: /split has no training cases (value 0); assign some cases "
                             "to the train split", P);
    }
    /* /fold (optional) */
    ds->fold = xmalloc(N);
    memset(ds->fold, 0xff, N);  /* -1 */
    if (ds_info(f, "/fold", &in) == 0) {
        if (check_shape(ds, "/fold", &in, 1, tail, want, err, errlen)) return 1;
        int32_t* t = xcalloc(N, sizeof *t);
        if (in.cls != H5T_INTEGER || read_all(f, "/fold", H5T_NATIVE_INT32, t)) {
            free(t);
            return vita_fail(err, errlen, "%s: /fold must be an integer dataset (int8 [N], -1 = none)", P);
        }
        for (int i = 0; i < N; i++) {
            if (t[i] < -1 || t[i] > 127) {
                int bad = t[i];
                free(t);
                return vita_fail(err, errlen, "%s: /fold case %d (%s) is %d; folds are 0..127, -1 = "
                                 "none", P, i, ds->case_id[i], bad);
            }
            ds->fold[i] = (int8_t)t[i];
        }
        free(t);
    }
    /* /channel_present (optional) */
    ds->channel_present = xmalloc((size_t)N * C);
    memset(ds->channel_present, 1, (size_t)N * C);
    if (ds_info(f, "/channel_present", &in) == 0) {
        tail[0] = C;
        snprintf(want, sizeof want, "[%d,%d] (cases x channels)", N, C);
        if (check_shape(ds, "/channel_present", &in, 2, tail, want, err, errlen)) return 1;
        if (in.cls != H5T_INTEGER || read_all(f, "/channel_present", H5T_NATIVE_UINT8, ds->channel_present))
            return vita_fail(err, errlen, "%s: /channel_present must be uint8 [N,C]", P);
        for (long k = 0; k < (long)N * C; k++) ds->channel_present[k] = ds->channel_present[k] != 0;
    }
    /* /seg (optional) */
    if (ds_info(f, "/seg", &in) == 0) {
        tail[0] = ds->D; tail[1] = ds->H; tail[2] = ds->W;
        snprintf(want, sizeof want, "[%d,%d,%d,%d] (the /images grid)", N, ds->D, ds->H, ds->W);
        if (check_shape(ds, "/seg", &in, 4, tail, want, err, errlen)) return 1;
        if (in.cls != H5T_INTEGER || in.size != 1)
            return vita_fail(err, errlen, "%s: /seg must be uint8 [N,D,H,W]; convert the labels", P);
        if (ds->n_labels < 1)
            return vita_fail(err, errlen, "%s: /seg exists but the label_names attribute is missing; add "
                             "e.g. label_names=\"background,tz,pz,lesion\"", P);
        ds->has_seg = 1;
    }
    /* /cls (optional) */
    if (ds_info(f, "/cls", &in) == 0) {
        snprintf(want, sizeof want, "[%d]", N);
        if (check_shape(ds, "/cls", &in, 1, tail, want, err, errlen)) return 1;
        if (in.cls != H5T_INTEGER)
            return vita_fail(err, errlen, "%s: /cls must be int32 [N] (-1 = unknown)", P);
        if (ds->n_classes < 1)
            return vita_fail(err, errlen, "%s: /cls exists but the class_names attribute is missing; add "
                             "e.g. class_names=\"benign,csPCa\"", P);
        ds->cls = xcalloc(N, sizeof *ds->cls);
        if (read_all(f, "/cls", H5T_NATIVE_INT32, ds->cls))
            return vita_fail(err, errlen, "%s: cannot read /cls", P);
        for (int i = 0; i < N; i++)
            if (ds->cls[i] < -1 || ds->cls[i] >= ds->n_classes)
                return vita_fail(err, errlen, "%s: /cls case %d (%s) is %d but class_names lists %d "
                                 "classes; use 0..%d or -1 for unknown", P, i, ds->case_id[i],
                                 ds->cls[i], ds->n_classes, ds->n_classes - 1);
        ds->has_cls = 1;
    }
    /* /geometry (optional group; when present, all five datasets) */
    ds->g_spacing = xcalloc((size_t)N * 3, sizeof(double));
    ds->g_origin = xcalloc((size_t)N * 3, sizeof(double));
    ds->g_direction = xcalloc((size_t)N * 9, sizeof(double));
    ds->g_shape_original = xcalloc((size_t)N * 3, sizeof(int32_t));
    ds->g_crop_offset = xcalloc((size_t)N * 3, sizeof(int32_t));
    if (exists(f, "/geometry")) {
        static const char* names[5] = {"/geometry/spacing", "/geometry/origin",
                                       "/geometry/direction", "/geometry/shape_original",
                                       "/geometry/crop_offset"};
        void* dst[5] = {ds->g_spacing, ds->g_origin, ds->g_direction, ds->g_shape_original,
                        ds->g_crop_offset};
        for (int k = 0; k < 5; k++) {
            if (ds_info(f, names[k], &in))
                return vita_fail(err, errlen, "%s: /geometry exists but %s is missing; write all of "
                                 "spacing, origin, direction, shape_original, crop_offset", P, names[k]);
            tail[0] = k == 2 ? 9 : 3;
            snprintf(want, sizeof want, "[%d,%d]", N, (int)tail[0]);
            if (check_shape(ds, names[k], &in, 2, tail, want, err, errlen)) return 1;
            if (read_all(f, names[k], k < 3 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT32, dst[k]))
                return vita_fail(err, errlen, "%s: cannot read %s (numeric [N,%d] expected)", P,
                                 names[k], (int)tail[0]);
        }
        /* optional: spacing of the resampled grid (absent = no resampling, grid = spacing) */
        if (exists(f, "/geometry/grid_spacing")) {
            const char* gname = "/geometry/grid_spacing";
            if (ds_info(f, gname, &in)) return vita_fail(err, errlen, "%s: cannot open %s", P, gname);
            tail[0] = 3;
            snprintf(want, sizeof want, "[%d,3]", N);
            if (check_shape(ds, gname, &in, 2, tail, want, err, errlen)) return 1;
            ds->g_grid_spacing = xcalloc((size_t)N * 3, sizeof(double));
            if (read_all(f, gname, H5T_NATIVE_DOUBLE, ds->g_grid_spacing))
                return vita_fail(err, errlen, "%s: cannot read %s (numeric [N,3] expected)", P, gname);
            for (int i = 0; i < N * 3; i++)
                if (!(ds->g_grid_spacing[i] > 0) || !isfinite(ds->g_grid_spacing[i]))
                    return vita_fail(err, errlen, "%s: %s case %d (%s) holds %g; spacings must be "
                                     "positive mm (re-import the data)", P, gname, i / 3,
                                     ds->case_id[i / 3], ds->g_grid_spacing[i]);
        }
    } else {
        for (int i = 0; i < N; i++)
            for (int a = 0; a < 3; a++) {
                ds->g_spacing[i * 3 + a] = ds->spacing_zyx[a];
                ds->g_direction[i * 9 + a * 4] = 1;
                ds->g_shape_original[i * 3 + a] = a == 0 ? ds->D : a == 1 ? ds->H : ds->W;
            }
    }
    /* /targets (optional) */
    if (exists(f, "/targets")) {
        hid_t g = H5Gopen2(f, "/targets", H5P_DEFAULT);
        H5G_info_t gi;
        if (g < 0 || H5Gget_info(g, &gi) < 0) {
            if (g >= 0) H5Gclose(g);
            return vita_fail(err, errlen, "%s: /targets is not a group of datasets", P);
        }
        for (hsize_t k = 0; k < gi.nlinks; k++) {
            char nm[256];
            ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, k, nm, sizeof nm,
                                             H5P_DEFAULT);
            if (len < 0 || len >= DS_NAME || ds->n_targets >= 4) {
                H5Gclose(g);
                return vita_fail(err, errlen, "%s: /targets holds more than 4 datasets or a name longer "
                                 "than %d characters; keep at most 4 short names", P, DS_NAME - 1);
            }
            char full[300];
            snprintf(full, sizeof full, "/targets/%s", nm);
            if (ds_info(f, full, &in) || in.rank != 5 || in.cls != H5T_FLOAT) {
                H5Gclose(g);
                return vita_fail(err, errlen, "%s: %s must be a float32 dataset [N,C',D',H',W']", P, full);
            }
            if (in.dims[0] != (hsize_t)N) {
                H5Gclose(g);
                return vita_fail(err, errlen, "%s: %s has %llu cases (first dimension) but /images has %d; "
                                 "every per-case dataset needs one row per case (re-create the file)",
                                 P, full, (unsigned long long)in.dims[0], N);
            }
            memcpy(ds->targets[ds->n_targets++], nm, (size_t)len + 1);  /* len < DS_NAME */
        }
        H5Gclose(g);
    }
    return 0;
}

int dataset_open(Dataset* ds, const char* path, char* err, size_t errlen) {
    memset(ds, 0, sizeof *ds);
    ds->hid_file = -1;
    snprintf(ds->path, sizeof ds->path, "%s", path);
    if (access(path, R_OK) != 0)
        return vita_fail(err, errlen, "cannot read dataset %s: %s (check the path, or create one with "
                         "'vita phantom --out %s')", path, strerror(errno), path);
    dataset_h5_lock();
    ds->serialize = g_serialize;
    if (H5Fis_hdf5(path) <= 0) {
        dataset_h5_unlock();
        return vita_fail(err, errlen, "%s is not an HDF5 file (vita datasets come from 'vita phantom' or "
                         "'vita import')", path);
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        dataset_h5_unlock();
        return vita_fail(err, errlen, "cannot open %s as HDF5 (damaged, or still being written?)", path);
    }
    ds->hid_file = f;
    int rc = open_validate(ds, f, err, errlen);
    dataset_h5_unlock();
    if (rc) {
        dataset_close(ds);
        return 1;
    }
    /* value checks: every case now when the images are small enough, else per case on read */
    size_t vox = (size_t)ds->D * ds->H * ds->W;
    unsigned long long bytes = (unsigned long long)ds->n * ds->C * vox * (ds->images_int16 ? 2 : 4);
    if (bytes <= DS_SCAN_ON_OPEN_BYTES) {
        float* img = xmalloc(ds->C * vox * sizeof(float));
        uint8_t* seg = ds->has_seg ? xmalloc(vox) : NULL;
        for (int i = 0; i < ds->n && !rc; i++) rc = dataset_read_case(ds, i, img, seg, err, errlen);
        free(img);
        free(seg);
        if (rc) {
            dataset_close(ds);
            return 1;
        }
    } else {
        fprintf(stderr, "vita: note: %s holds %.1f GiB of images; NaN/Inf and label ranges are "
                "checked per case as cases are read, not on open\n", path, bytes / 1073741824.0);
    }
    return 0;
}

void dataset_close(Dataset* ds) {
    if (ds->hid_file >= 0) {
        dataset_h5_lock();
        H5Fclose((hid_t)ds->hid_file);
        dataset_h5_unlock();
    }
    ds->hid_file = -1;
    free_arrays(ds);
}

int dataset_read_case(Dataset* ds, int i, float* img, uint8_t* seg, char* err, size_t errlen) {
    if (i < 0 || i >= ds->n)
        return vita_fail(err, errlen, "%s: case %d out of range (the dataset has %d cases)", ds->path, i,
                         ds->n);
    if (ds->hid_file < 0) return vita_fail(err, errlen, "%s: dataset is not open", ds->path);
    hid_t f = (hid_t)ds->hid_file;
    int bad_img = 0, bad_seg = 0;
    dataset_h5_lock();
    if (img && read_row(f, "/images", H5T_NATIVE_FLOAT, i, img)) bad_img = 1;
    if (!bad_img && seg && ds->has_seg && read_row(f, "/seg", H5T_NATIVE_UINT8, i, seg)) bad_seg = 1;
    dataset_h5_unlock();
    if (bad_img || bad_seg)
        return vita_fail(err, errlen, "%s: cannot read %s of case %d (%s): damaged file or a filter "
                         "(compression) this HDF5 lacks", ds->path, bad_img ? "/images" : "/seg", i,
                         ds->case_id[i]);
    return check_case_values(ds, i, ds->images_int16 ? NULL : img, seg, err, errlen);
}

int dataset_read_target(Dataset* ds, int i, const char* name, float* out, int dims[4], char* err,
                        size_t errlen) {
    char full[256];
    snprintf(full, sizeof full, "/targets/%s", name);
    if (i < 0 || i >= ds->n)
        return vita_fail(err, errlen, "%s: case %d out of range (the dataset has %d cases)", ds->path, i,
                         ds->n);
    int found = 0;
    for (int k = 0; k < ds->n_targets; k++) found |= !strcmp(ds->targets[k], name);
    if (!found)
        return vita_fail(err, errlen, "%s: no %s (the dataset has %d targets); the task derives its "
                         "targets from /images instead", ds->path, full, ds->n_targets);
    DsInfo in;
    dataset_h5_lock();
    int rc = ds_info((hid_t)ds->hid_file, full, &in);
    for (int d = 0; !rc && d < 4; d++) dims[d] = (int)in.dims[d + 1];
    if (!rc && out) rc = read_row((hid_t)ds->hid_file, full, H5T_NATIVE_FLOAT, i, out);
    dataset_h5_unlock();
    if (rc) return vita_fail(err, errlen, "%s: cannot read %s case %d", ds->path, full, i);
    if (out) {
        size_t n = (size_t)dims[0] * dims[1] * dims[2] * dims[3];
        for (size_t v = 0; v < n; v++)
            if (!isfinite(out[v]))
                return vita_fail(err, errlen, "%s: %s case %d (%s) has NaN/Inf; fix the targets", ds->path,
                                 full, i, ds->case_id[i]);
    }
    return 0;
}

int dataset_channel(const Dataset* ds, const char* name) {
    for (int c = 0; c < ds->C; c++)
        if (!strcmp(ds->channels[c], name)) return c;
    return -1;
}

/* ---- vita info ------------------------------------------------------------------------------ */
static const char* type_name(hid_t t, char* buf, size_t len) {
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    if (c == H5T_FLOAT) snprintf(buf, len, "float%zu", sz * 8);
    else if (c == H5T_INTEGER) snprintf(buf, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", sz * 8);
    else if (c == H5T_STRING) snprintf(buf, len, H5Tis_variable_str(t) > 0 ? "string(vlen)" : "string[%zu]", sz);
    else snprintf(buf, len, "other");
    return buf;
}

static herr_t info_visit(hid_t g, const char* name, const void* info, void* op) {
    (void)info; (void)op;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0;
    if (H5Iget_type(o) == H5I_GROUP) {
        printf("  /%s/\n", name);
    } else if (H5Iget_type(o) == H5I_DATASET) {
        hid_t t = H5Dget_type(o), sp = H5Dget_space(o), pl = H5Dget_create_plist(o);
        DsInfo in = {0};
        in.rank = H5Sget_simple_extent_ndims(sp);
        if (in.rank > 8) in.rank = 8;
        if (in.rank > 0) H5Sget_simple_extent_dims(sp, in.dims, NULL);
        char ty[32], sh[96], ch[128] = "";
        shape_str(sh, sizeof sh, &in);
        if (H5Pget_layout(pl) == H5D_CHUNKED) {
            DsInfo c = {0};
            c.rank = H5Pget_chunk(pl, 8, c.dims);
            char cs[96];
            shape_str(cs, sizeof cs, &c);
            size_t k = snprintf(ch, sizeof ch, "  chunks %s", cs);
            int nf = H5Pget_nfilters(pl);
            for (int j = 0; j < nf && k < sizeof ch; j++) {
                unsigned flags, cd[8];
                size_t ncd = 8;
                char fname[32] = "";
                H5Z_filter_t id = H5Pget_filter2(pl, j, &flags, &ncd, cd, sizeof fname, fname, NULL);
                if (id == H5Z_FILTER_DEFLATE) k += snprintf(ch + k, sizeof ch - k, " gzip%u", ncd ? cd[0] : 0);
                else if (id == H5Z_FILTER_SHUFFLE) k += snprintf(ch + k, sizeof ch - k, " shuffle");
                else k += snprintf(ch + k, sizeof ch - k, " filter%d", (int)id);
            }
        }
        printf("  /%-26s %-13s %s%s\n", name, type_name(t, ty, sizeof ty), sh, ch);
        H5Pclose(pl);
        H5Sclose(sp);
        H5Tclose(t);
    }
    H5Oclose(o);
    return 0;
}
#if H5_VERSION_GE(1, 12, 0)
static herr_t info_visit_l(hid_t g, const char* name, const H5L_info2_t* info, void* op) {
    return info_visit(g, name, info, op);
}
#else
static herr_t info_visit_l(hid_t g, const char* name, const H5L_info_t* info, void* op) {
    return info_visit(g, name, info, op);
}
#endif

static herr_t info_attr(hid_t loc, const char* name, const H5A_info_t* ai, void* op) {
    (void)ai; (void)op;
    char s[1024];
    double v[64];
    if (attr_str(loc, name, s, sizeof s) == 0) {
        printf("  @%-14s \"%s\"\n", name, s);
        return 0;
    }
    int n = attr_num(loc, name, v, 64);
    if (n > 0) {
        printf("  @%-14s ", name);
        for (int k = 0; k < n && k < 64; k++) printf(k ? ", %g" : "%g", v[k]);
        printf("\n");
    } else {
        printf("  @%-14s (unprintable)\n", name);
    }
    return 0;
}

int dataset_print_info(const char* path) {
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "vita: cannot read %s: %s (check the path)\n", path, strerror(errno));
        return VITA_EXIT_USER;
    }
    dataset_h5_lock();
    if (H5Fis_hdf5(path) <= 0) {
        dataset_h5_unlock();
        fprintf(stderr, "vita: %s is not an HDF5 file\n", path);
        return VITA_EXIT_USER;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        dataset_h5_unlock();
        fprintf(stderr, "vita: cannot open %s as HDF5 (damaged, or still being written?)\n", path);
        return VITA_EXIT_USER;
    }
    struct stat st;
    printf("%s: HDF5, %.1f MB\n", path, stat(path, &st) == 0 ? st.st_size / 1e6 : 0.0);
    printf("attributes:\n");
    hsize_t idx = 0;
    H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, &idx, info_attr, NULL);
    printf("datasets:\n");
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, info_visit_l, NULL);
    H5Fclose(f);
    dataset_h5_unlock();

    Dataset ds;
    char err[1024];
    if (dataset_open(&ds, path, err, sizeof err)) {
        printf("validation: FAILED\n");
        fprintf(stderr, "vita: %s\n", err);
        return VITA_EXIT_USER;
    }
    int N = ds.n;
    printf("validation: ok (vita-dataset v1)\n");
    printf("summary: %d cases, %d channels x %d x %d x %d (D,H,W) at %g x %g x %g mm, %s images\n",
           N, ds.C, ds.D, ds.H, ds.W, ds.spacing_zyx[0], ds.spacing_zyx[1], ds.spacing_zyx[2],
           ds.images_int16 ? "int16" : "float32");
    static const char* sp_names[4] = {"train", "val", "test", "probe"};
    int fold_max = -1;
    for (int i = 0; i < N; i++) fold_max = ds.fold[i] > fold_max ? ds.fold[i] : fold_max;
    printf("  %-8s %6s", "split", "cases");
    for (int k = -1; k <= fold_max; k++)
        if (k < 0) printf("  %-7s", "nofold");
        else printf("  fold%-3d", k);
    if (ds.has_cls)
        for (int c = 0; c < ds.n_classes && c < 4; c++) printf("  %-8.8s", ds.class_names[c]);
    printf("\n");
    for (int s = 0; s < 4; s++) {
        int cnt = 0;
        for (int i = 0; i < N; i++) cnt += ds.split[i] == s;
        printf("  %-8s %6d", sp_names[s], cnt);
        for (int k = -1; k <= fold_max; k++) {
            int c2 = 0;
            for (int i = 0; i < N; i++) c2 += ds.split[i] == s && ds.fold[i] == k;
            printf("  %-7d", c2);
        }
        if (ds.has_cls)
            for (int c = 0; c < ds.n_classes && c < 4; c++) {
                int c3 = 0;
                for (int i = 0; i < N; i++) c3 += ds.split[i] == s && ds.cls[i] == c;
                printf("  %-8d", c3);
            }
        printf("\n");
    }
    if (ds.has_cls) {
        printf("  classes:");
        int unk = 0;
        for (int i = 0; i < N; i++) unk += ds.cls[i] < 0;
        for (int c = 0; c < ds.n_classes; c++) {
            int cnt = 0;
            for (int i = 0; i < N; i++) cnt += ds.cls[i] == c;
            printf(" %s %d (%.1f%%)", ds.class_names[c], cnt, 100.0 * cnt / N);
        }
        if (unk) printf(" unknown %d", unk);
        printf("\n");
    }
    printf("  channels present:");
    for (int c = 0; c < ds.C; c++) {
        int cnt = 0;
        for (int i = 0; i < N; i++) cnt += ds.channel_present[i * ds.C + c];
        printf(" %s %d/%d", ds.channels[c], cnt, N);
    }
    printf("\n");
    if (ds.has_seg) {
        size_t vox = (size_t)ds.D * ds.H * ds.W;
        uint8_t* seg = xmalloc(vox);
        double cnt[DS_MAX_LABELS] = {0};
        int cases_with[DS_MAX_LABELS] = {0};
        int rc = 0;
        for (int i = 0; i < N && !rc; i++) {
            dataset_h5_lock();
            rc = read_row((hid_t)ds.hid_file, "/seg", H5T_NATIVE_UINT8, i, seg);
            dataset_h5_unlock();
            int seen[DS_MAX_LABELS] = {0};
            for (size_t v = 0; !rc && v < vox; v++)
                if (seg[v] < DS_MAX_LABELS) { cnt[seg[v]]++; seen[seg[v]] = 1; }
            for (int l = 0; l < DS_MAX_LABELS; l++) cases_with[l] += seen[l];
        }
        free(seg);
        printf("  label voxel fractions:");
        for (int l = 0; l < ds.n_labels; l++)
            printf(" %s %.4f%%", ds.label_names[l], 100.0 * cnt[l] / ((double)vox * N));
        printf("\n  cases with label:");
        for (int l = 0; l < ds.n_labels; l++) printf(" %s %d", ds.label_names[l], cases_with[l]);
        printf("\n");
    }
    if (ds.n_targets) {
        printf("  targets:");
        for (int k = 0; k < ds.n_targets; k++) printf(" %s", ds.targets[k]);
        printf("\n");
    }
    dataset_close(&ds);
    return 0;
}

/* ---- writer ----------------------------------------------------------------------------------- */
struct DatasetWriter {
    char path[1024], tmp[1100];
    int n, C, D, H, W, n_labels, n_classes, has_seg, has_cls;
    double spacing[3];
    hid_t f, d_img, d_seg;
    int32_t* cls;
    uint8_t *split, *cp, *written;
    int8_t* fold;
    char** case_id;
    double *g_sp, *g_or, *g_dir, *g_grid;   /* g_grid NULL until dataset_set_grid_spacing */
    int32_t *g_shape, *g_crop;
    int failed;
    char err[1024];
};

static hid_t vlen_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static int put_attr_str(hid_t obj, const char* name, const char* val) {
    hid_t t = vlen_str_type(), sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, &val);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return e < 0 ? -1 : 0;
}

static int put_attr_num(hid_t obj, const char* name, hid_t ftype, hid_t mtype, int n, const void* v) {
    hsize_t d = (hsize_t)n;
    hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, mtype, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return e < 0 ? -1 : 0;
}

/* a contiguous dataset written in one go; no modification times (reproducible bytes) */
static int put_ds(hid_t f, const char* name, hid_t ftype, hid_t mtype, int rank,
                  const hsize_t* dims, const void* buf) {
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(pl, 0);
    hid_t d = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    if (d >= 0) H5Dclose(d);
    H5Pclose(pl);
    H5Sclose(sp);
    return e < 0 ? -1 : 0;
}

static hid_t make_chunked(hid_t f, const char* name, hid_t ftype, int rank, const hsize_t* dims,
                          int gzip) {
    hsize_t chunk[8];
    for (int d = 0; d < rank; d++) chunk[d] = d == 0 ? 1 : dims[d];
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(pl, 0);
    H5Pset_chunk(pl, rank, chunk);
    H5Pset_fill_time(pl, H5D_FILL_TIME_NEVER);
    if (gzip) {
        H5Pset_shuffle(pl);
        H5Pset_deflate(pl, (unsigned)gzip);
    }
    hid_t d = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Pclose(pl);
    H5Sclose(sp);
    return d;
}

static void writer_free(DatasetWriter* w) {
    if (w->case_id)
        for (int i = 0; i < w->n; i++) free(w->case_id[i]);
    free(w->case_id); free(w->cls); free(w->split); free(w->cp); free(w->written); free(w->fold);
    free(w->g_sp); free(w->g_or); free(w->g_dir); free(w->g_shape); free(w->g_crop);
    free(w->g_grid);
    free(w);
}

/* closes the HDF5 handles and removes the temp file (caller holds the lock) */
static void writer_abort(DatasetWriter* w) {
    if (w->d_img >= 0) H5Dclose(w->d_img);
    if (w->d_seg >= 0) H5Dclose(w->d_seg);
    if (w->f >= 0) H5Fclose(w->f);
    w->d_img = w->d_seg = w->f = -1;
    unlink(w->tmp);
}

DatasetWriter* dataset_create(const char* path, const DatasetSpec* s, char* err, size_t errlen) {
    char names[DS_MAX_LABELS + 1][DS_NAME];
    if (s->n < 1 || s->C < 1 || s->D < 1 || s->H < 1 || s->W < 1) {
        vita_fail(err, errlen, "%s: dataset shape [N,C,D,H,W] = [%d,%d,%d,%d,%d] has a dimension below 1",
                  path, s->n, s->C, s->D, s->H, s->W);
        return NULL;
    }
    if (s->C > DS_MAX_CHANNELS || !s->channels ||
        split_names(s->channels, names, DS_MAX_LABELS + 1) != s->C) {
        vita_fail(err, errlen, "%s: channels \"%s\" must name exactly C=%d channels (at most %d)", path,
                  s->channels ? s->channels : "(null)", s->C, DS_MAX_CHANNELS);
        return NULL;
    }
    int n_labels = s->label_names ? split_names(s->label_names, names, DS_MAX_LABELS + 1) : 0;
    int n_classes = s->class_names ? split_names(s->class_names, names, DS_MAX_LABELS + 1) : 0;
    if ((s->label_names && (n_labels < 1 || n_labels > DS_MAX_LABELS)) ||
        (s->class_names && (n_classes < 1 || n_classes > DS_MAX_LABELS))) {
        vita_fail(err, errlen, "%s: label_names / class_names must list 1..%d names", path, DS_MAX_LABELS);
        return NULL;
    }
    if (!(s->spacing_zyx[0] > 0 && s->spacing_zyx[1] > 0 && s->spacing_zyx[2] > 0)) {
        vita_fail(err, errlen, "%s: spacing_zyx must be 3 positive numbers", path);
        return NULL;
    }
    if (s->gzip < 0 || s->gzip > 9) {
        vita_fail(err, errlen, "%s: gzip level %d; use 0 (none) to 9", path, s->gzip);
        return NULL;
    }
    unsigned long long case_bytes = (unsigned long long)s->C * s->D * s->H * s->W * 4;
    if (case_bytes >= (1ull << 32) - 1) {
        vita_fail(err, errlen, "%s: one case is %.1f GiB, above HDF5's 4 GiB chunk limit; crop the images",
                  path, case_bytes / 1073741824.0);
        return NULL;
    }
    DatasetWriter* w = xcalloc(1, sizeof *w);
    w->f = w->d_img = w->d_seg = -1;
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%d", path, (int)getpid());
    w->n = s->n; w->C = s->C; w->D = s->D; w->H = s->H; w->W = s->W;
    w->n_labels = n_labels; w->n_classes = n_classes;
    w->has_seg = s->label_names != NULL;
    w->has_cls = s->class_names != NULL;
    memcpy(w->spacing, s->spacing_zyx, sizeof w->spacing);
    int N = s->n;
    w->cls = xcalloc(N, sizeof *w->cls);
    w->split = xcalloc(N, 1);
    w->fold = xcalloc(N, 1);
    w->cp = xcalloc((size_t)N * s->C, 1);
    w->written = xcalloc(N, 1);
    w->case_id = xcalloc(N, sizeof(char*));
    w->g_sp = xcalloc((size_t)N * 3, sizeof(double));
    w->g_or = xcalloc((size_t)N * 3, sizeof(double));
    w->g_dir = xcalloc((size_t)N * 9, sizeof(double));
    w->g_shape = xcalloc((size_t)N * 3, sizeof(int32_t));
    w->g_crop = xcalloc((size_t)N * 3, sizeof(int32_t));

    dataset_h5_lock();
    int ok = 1;
    if (s->gzip && H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) {
        vita_fail(err, errlen, "%s: this HDF5 library has no gzip filter; write with gzip 0", path);
        ok = 0;
    }
    if (ok) {
        hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
        H5Pset_obj_track_times(fcpl, 0);  /* root group without times: reproducible bytes */
        w->f = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
        H5Pclose(fcpl);
        if (w->f < 0) {
            vita_fail(err, errlen, "cannot create %s: %s (is the directory writable?)", w->tmp,
                      strerror(errno ? errno : EACCES));
            ok = 0;
        }
    }
    if (ok) {
        int32_t ver = 1;
        char src[1024];
        snprintf(src, sizeof src, "%s", s->source ? s->source : "");
        ok = put_attr_str(w->f, "format", "vita-dataset") == 0 &&
             put_attr_num(w->f, "version", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &ver) == 0 &&
             put_attr_str(w->f, "channels", s->channels) == 0 &&
             put_attr_num(w->f, "spacing_zyx", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, s->spacing_zyx) == 0 &&
             (!s->label_names || put_attr_str(w->f, "label_names", s->label_names) == 0) &&
             (!s->class_names || put_attr_str(w->f, "class_names", s->class_names) == 0) &&
             put_attr_str(w->f, "source", src) == 0;
        hsize_t dims[5] = {(hsize_t)N, (hsize_t)s->C, (hsize_t)s->D, (hsize_t)s->H, (hsize_t)s->W};
        if (ok) w->d_img = make_chunked(w->f, "/images", H5T_IEEE_F32LE, 5, dims, s->gzip);
        dims[1] = s->D; dims[2] = s->H; dims[3] = s->W;
        if (ok && w->has_seg) w->d_seg = make_chunked(w->f, "/seg", H5T_STD_U8LE, 4, dims, s->gzip);
        ok = ok && w->d_img >= 0 && (!w->has_seg || w->d_seg >= 0);
        if (!ok) vita_fail(err, errlen, "cannot write %s (disk full or not writable?)", w->tmp);
    }
    if (!ok) {
        writer_abort(w);
        dataset_h5_unlock();
        writer_free(w);
        return NULL;
    }
    dataset_h5_unlock();
    return w;
}

static int wfail(DatasetWriter* w, const char* fmt, ...) {
    if (!w->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->err, sizeof w->err, fmt, ap);
        va_end(ap);
    }
    w->failed = 1;
    return 1;
}

static int write_row(hid_t d, int rank, const hsize_t* dims, int i, hid_t mem, const void* buf) {
    hsize_t start[8] = {0}, cnt[8];
    for (int k = 0; k < rank; k++) cnt[k] = dims[k];
    start[0] = (hsize_t)i;
    cnt[0] = 1;
    hid_t fs = H5Dget_space(d);
    hid_t ms = H5Screate_simple(rank, cnt, NULL);
    herr_t e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    if (e >= 0) e = H5Dwrite(d, mem, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    return e < 0 ? -1 : 0;
}

/* Errors are kept in the writer (dataset_write_case has no err argument) and returned by
 * dataset_finish, which then removes the temp file. */
int dataset_write_case(DatasetWriter* w, int i, const char* case_id, const float* img,
                       const uint8_t* seg, int32_t cls, int split, int fold,
                       const uint8_t* channel_present, const double* spacing,
                       const double* origin, const double* direction,
                       const int32_t* shape_original, const int32_t* crop_offset) {
    if (w->failed) return 1;
    if (i < 0 || i >= w->n) return wfail(w, "%s: case index %d out of range 0..%d", w->path, i, w->n - 1);
    if (!case_id || !*case_id || strlen(case_id) >= 64)
        return wfail(w, "%s: case %d: case_id must be 1..63 characters", w->path, i);
    if (split < 0 || split > 3)
        return wfail(w, "%s: case %d (%s): split %d; use 0 train, 1 val, 2 test, 3 probe", w->path, i,
                     case_id, split);
    if (fold < -1 || fold > 127)
        return wfail(w, "%s: case %d (%s): fold %d; use 0..127 or -1", w->path, i, case_id, fold);
    if (w->has_cls && (cls < -1 || cls >= w->n_classes))
        return wfail(w, "%s: case %d (%s): cls %d outside -1..%d (class_names)", w->path, i,
                     case_id, (int)cls, w->n_classes - 1);
    if (!img) return wfail(w, "%s: case %d (%s): no image", w->path, i, case_id);
    size_t vox = (size_t)w->D * w->H * w->W;
    for (size_t v = 0; v < vox * w->C; v++)
        if (!isfinite(img[v]))
            return wfail(w, "%s: case %d (%s): image has NaN/Inf in channel %zu; fix the input",
                         w->path, i, case_id, v / vox);
    if (w->has_seg && !seg)
        return wfail(w, "%s: case %d (%s): the dataset has label_names but no seg was given", w->path,
                     i, case_id);
    if (w->has_seg)
        for (size_t v = 0; v < vox; v++)
            if (seg[v] >= w->n_labels)
                return wfail(w, "%s: case %d (%s): label %d outside label_names (0..%d)", w->path, i,
                             case_id, seg[v], w->n_labels - 1);
    hsize_t dims[5] = {(hsize_t)w->n, (hsize_t)w->C, (hsize_t)w->D, (hsize_t)w->H, (hsize_t)w->W};
    dataset_h5_lock();
    int e = write_row(w->d_img, 5, dims, i, H5T_NATIVE_FLOAT, img);
    dims[1] = w->D; dims[2] = w->H; dims[3] = w->W;
    if (!e && w->has_seg) e = write_row(w->d_seg, 4, dims, i, H5T_NATIVE_UINT8, seg);
    dataset_h5_unlock();
    if (e) return wfail(w, "%s: cannot write case %d (disk full?)", w->tmp, i);
    free(w->case_id[i]);
    w->case_id[i] = strdup(case_id);
    w->cls[i] = w->has_cls ? cls : -1;
    w->split[i] = (uint8_t)split;
    w->fold[i] = (int8_t)fold;
    for (int c = 0; c < w->C; c++) w->cp[i * w->C + c] = channel_present ? channel_present[c] != 0 : 1;
    int grid[3] = {w->D, w->H, w->W};
    for (int a = 0; a < 3; a++) {
        w->g_sp[i * 3 + a] = spacing ? spacing[a] : w->spacing[a];
        w->g_or[i * 3 + a] = origin ? origin[a] : 0.0;
        w->g_shape[i * 3 + a] = shape_original ? shape_original[a] : grid[a];
        w->g_crop[i * 3 + a] = crop_offset ? crop_offset[a] : 0;
    }
    for (int k = 0; k < 9; k++) w->g_dir[i * 9 + k] = direction ? direction[k] : (k % 4 == 0);
    w->written[i] = 1;
    return 0;
}

int dataset_set_grid_spacing(DatasetWriter* w, int i, const double grid_spacing[3]) {
    if (w->failed) return 1;
    if (i < 0 || i >= w->n) return wfail(w, "%s: case index %d out of range 0..%d", w->path, i, w->n - 1);
    for (int a = 0; a < 3; a++)
        if (!(grid_spacing[a] > 0) || !isfinite(grid_spacing[a]))
            return wfail(w, "%s: case %d: grid spacing %g is not a positive number of mm", w->path, i,
                         grid_spacing[a]);
    if (!w->g_grid) w->g_grid = xcalloc((size_t)w->n * 3, sizeof(double));
    memcpy(w->g_grid + 3 * i, grid_spacing, 3 * sizeof(double));
    return 0;
}

int dataset_writer_attr_str(DatasetWriter* w, const char* name, const char* value) {
    if (w->failed) return 1;
    dataset_h5_lock();
    int e = put_attr_str(w->f, name, value);
    dataset_h5_unlock();
    return e ? wfail(w, "%s: cannot write root attribute %s (name already used?)", w->path, name) : 0;
}

int dataset_writer_attr_num(DatasetWriter* w, const char* name, int n, const double* values) {
    if (w->failed) return 1;
    dataset_h5_lock();
    int e = put_attr_num(w->f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n, values);
    dataset_h5_unlock();
    return e ? wfail(w, "%s: cannot write root attribute %s (name already used?)", w->path, name) : 0;
}

int dataset_finish(DatasetWriter* w, char* err, size_t errlen) {
    int N = w->n;
    if (!w->failed)
        for (int i = 0; i < N; i++)
            if (!w->written[i]) {
                wfail(w, "%s: case %d was never written (every case 0..%d needs dataset_write_case)",
                      w->path, i, N - 1);
                break;
            }
    dataset_h5_lock();
    if (!w->failed) {
        hsize_t d1 = (hsize_t)N, d2[2] = {(hsize_t)N, (hsize_t)w->C};
        hid_t st = vlen_str_type();
        int ok = put_ds(w->f, "/case_id", st, st, 1, &d1, w->case_id) == 0 &&
                 put_ds(w->f, "/split", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &d1, w->split) == 0 &&
                 put_ds(w->f, "/fold", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, &d1, w->fold) == 0 &&
                 put_ds(w->f, "/channel_present", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, d2, w->cp) == 0 &&
                 (!w->has_cls || put_ds(w->f, "/cls", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &d1, w->cls) == 0);
        H5Tclose(st);
        if (ok) {
            hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
            H5Pset_obj_track_times(gcpl, 0);
            hid_t g = H5Gcreate2(w->f, "/geometry", H5P_DEFAULT, gcpl, H5P_DEFAULT);
            H5Pclose(gcpl);
            ok = g >= 0;
            if (g >= 0) H5Gclose(g);
            hsize_t g3[2] = {(hsize_t)N, 3}, g9[2] = {(hsize_t)N, 9};
            ok = ok &&
                 put_ds(w->f, "/geometry/spacing", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, g3, w->g_sp) == 0 &&
                 put_ds(w->f, "/geometry/origin", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, g3, w->g_or) == 0 &&
                 put_ds(w->f, "/geometry/direction", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, g9, w->g_dir) == 0 &&
                 put_ds(w->f, "/geometry/shape_original", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, g3, w->g_shape) == 0 &&
                 put_ds(w->f, "/geometry/crop_offset", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, g3, w->g_crop) == 0;
            if (ok && w->g_grid) {   /* rows never set: no resampling, grid = native spacing */
                for (int i = 0; i < N * 3; i++)
                    if (!(w->g_grid[i] > 0)) w->g_grid[i] = w->g_sp[i];
                ok = put_ds(w->f, "/geometry/grid_spacing", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, g3,
                            w->g_grid) == 0;
            }
        }
        if (!ok) wfail(w, "cannot write the case metadata to %s (disk full?)", w->tmp);
    }
    if (!w->failed) {
        herr_t e = H5Dclose(w->d_img);
        if (w->d_seg >= 0) e |= H5Dclose(w->d_seg);
        w->d_img = w->d_seg = -1;
        e |= H5Fclose(w->f);
        w->f = -1;
        if (e < 0) wfail(w, "cannot close %s (disk full?)", w->tmp);
    }
    if (w->failed) {
        writer_abort(w);
        dataset_h5_unlock();
        vita_fail(err, errlen, "%s", w->err);
        writer_free(w);
        return 1;
    }
    dataset_h5_unlock();
    /* durable, then atomic: fsync the temp file (best effort), rename over the target */
    (void)atomic_fsync_file(w->tmp);
    int re = atomic_rename(w->tmp, w->path);
    if (re) {
        vita_fail(err, errlen, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(re));
        writer_free(w);
        return 1;
    }
    writer_free(w);
    return 0;
}

const double* dataset_case_spacing(const Dataset* ds, int i) {
    if (ds->g_grid_spacing) return ds->g_grid_spacing + (long)i * 3;
    if (ds->g_spacing) return ds->g_spacing + (long)i * 3;
    return ds->spacing_zyx;
}
