/* engine/h5read.c — reading feature matrices, lengths and string attributes from HDF5 files
 * (SPEC.md §5), with one-line errors that name the file and the dataset. See h5read.h.
 * Every call that reads is checked; closes of read-only handles are not, since nothing can be
 * lost when one fails and the data read is already complete. */
#include "h5read.h"
#include "errfmt.h"

#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* HDF5 prints its whole error stack to stderr on every failed call by default; vita reports
 * one line of its own instead, so the automatic printing is switched off once. */
static void h5_quiet(void) {
    static int done = 0;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

/* "/x" for "x": users type dataset names with or without the leading slash */
static void abs_name(char* out, size_t len, const char* name) {
    snprintf(out, len, "%s%s", name[0] == '/' ? "" : "/", name);
}

/* opens path read-only; distinguishes a missing / unreadable file from a non-HDF5 one */
static hid_t open_file(const char* path, char* err, size_t errlen) {
    h5_quiet();
    if (access(path, R_OK) != 0) {
        vita_fail(err, errlen, "cannot read %s: %s (check the path)", path, strerror(errno));
        return H5I_INVALID_HID;
    }
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        vita_fail(err, errlen, "%s is not an HDF5 file (vita mmd reads feature files from "
                  "'vita features' or any HDF5 file with a 2-D float dataset)", path);
        return H5I_INVALID_HID;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) vita_fail(err, errlen, "cannot open %s as HDF5 (damaged or still being written?)", path);
    return f;
}

/* 1 if every component of the absolute path name exists as a link (H5Lexists needs the
 * parents to exist, so they are checked from the root down) */
static int link_exists(hid_t f, const char* name) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", name);
    size_t n = strlen(buf);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char save = buf[i];
            buf[i] = '\0';
            htri_t e = H5Lexists(f, buf, H5P_DEFAULT);
            buf[i] = save;
            if (e <= 0) return 0;
        }
    }
    return 1;
}

/* ---- listing ------------------------------------------------------------------------------ */
typedef struct {
    char* buf;
    size_t len, used;
    const char* prefix;
    int count, truncated;
} ListState;

static herr_t list_cb(hid_t g, const char* name, const H5L_info_t* info, void* op) {
    (void)info;
    ListState* s = op;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0;            /* dangling soft / external link: not a dataset */
    H5I_type_t t = H5Iget_type(o);
    H5Oclose(o);
    if (t != H5I_DATASET) return 0;
    char full[1024];
    snprintf(full, sizeof full, "/%s", name);
    if (s->prefix && strncmp(full, s->prefix, strlen(s->prefix))) return 0;
    s->count++;
    if (s->truncated || !s->buf || !s->len) return 0;
    size_t need = strlen(full) + (s->used ? 2 : 0);
    if (s->used + need + 5 >= s->len) {  /* keep room for ", ..." */
        if (s->used + 5 < s->len) {
            snprintf(s->buf + s->used, s->len - s->used, "%s...", s->used ? ", " : "");
            s->used = strlen(s->buf);
        }
        s->truncated = 1;
        return 0;
    }
    snprintf(s->buf + s->used, s->len - s->used, "%s%s", s->used ? ", " : "", full);
    s->used += need;
    return 0;
}

static int list_open(hid_t f, const char* prefix, char* buf, size_t buflen) {
    ListState s = {buf, buflen, 0, prefix, 0, 0};
    if (buf && buflen) buf[0] = '\0';
    if (H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, list_cb, &s) < 0) return -1;
    return s.count;
}

int h5_list_datasets(const char* path, const char* prefix_filter, char* buf, size_t buflen) {
    if (buf && buflen) buf[0] = '\0';
    hid_t f = open_file(path, NULL, 0);
    if (f < 0) return -1;
    int n = list_open(f, prefix_filter, buf, buflen);
    H5Fclose(f);
    return n;
}

/* opens dataset `name` of f, or explains in err what is there instead */
static hid_t open_dataset(hid_t f, const char* path, const char* name, char* err, size_t errlen) {
    char nm[1024];
    abs_name(nm, sizeof nm, name);
    if (!link_exists(f, nm)) {
        char have[600];
        int k = list_open(f, NULL, have, sizeof have);
        if (k > 0)
            vita_fail(err, errlen, "no dataset %s in %s; datasets there: %s", nm, path, have);
        else
            vita_fail(err, errlen, "no dataset %s in %s (the file holds no datasets)", nm, path);
        return H5I_INVALID_HID;
    }
    hid_t o = H5Oopen(f, nm, H5P_DEFAULT);
    if (o < 0) {
        vita_fail(err, errlen, "cannot open %s in %s (broken link?)", nm, path);
        return H5I_INVALID_HID;
    }
    if (H5Iget_type(o) != H5I_DATASET) {
        H5Oclose(o);
        char have[600];
        char pre[1030];
        snprintf(pre, sizeof pre, "%s/", nm);
        int k = list_open(f, pre, have, sizeof have);
        vita_fail(err, errlen, "%s in %s is a group, not a dataset%s%s", nm, path,
                  k > 0 ? "; datasets in it: " : "", k > 0 ? have : "");
        return H5I_INVALID_HID;
    }
    H5Oclose(o);
    hid_t d = H5Dopen2(f, nm, H5P_DEFAULT);
    if (d < 0) vita_fail(err, errlen, "cannot open dataset %s in %s", nm, path);
    return d;
}

/* ---- matrices ----------------------------------------------------------------------------- */
static const char* class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "an integer";
    case H5T_STRING: return "a string";
    case H5T_COMPOUND: return "a compound";
    case H5T_ENUM: return "an enum";
    case H5T_ARRAY: return "an array";
    case H5T_VLEN: return "a variable-length";
    case H5T_BITFIELD: return "a bitfield";
    case H5T_OPAQUE: return "an opaque";
    case H5T_REFERENCE: return "a reference";
    default: return "a non-float";
    }
}

int h5_read_matrix(const char* path, const char* dataset, float** out, long* rows, long* cols,
                   char* err, size_t errlen) {
    *out = NULL;
    *rows = *cols = 0;
    char nm[1024];
    abs_name(nm, sizeof nm, dataset);
    hid_t f = open_file(path, err, errlen);
    if (f < 0) return 1;
    int rc = 1;
    hid_t d = H5I_INVALID_HID, t = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    d = open_dataset(f, path, nm, err, errlen);
    if (d < 0) goto done;
    t = H5Dget_type(d);
    if (t < 0) { vita_fail(err, errlen, "cannot read the type of %s in %s", nm, path); goto done; }
    H5T_class_t cls = H5Tget_class(t);
    if (cls != H5T_FLOAT) {
        vita_fail(err, errlen, "%s in %s is %s dataset; vita mmd needs float16/32/64 features "
                  "(convert it, e.g. to float32)", nm, path, class_name(cls));
        goto done;
    }
    sp = H5Dget_space(d);
    if (sp < 0) { vita_fail(err, errlen, "cannot read the shape of %s in %s", nm, path); goto done; }
    int rank = H5Sget_simple_extent_ndims(sp);
    if (rank < 0) { vita_fail(err, errlen, "cannot read the shape of %s in %s", nm, path); goto done; }
    if (rank != 2) {
        vita_fail(err, errlen, "%s in %s has rank %d; vita mmd needs a 2-D [rows, features] "
                  "dataset", nm, path, rank);
        goto done;
    }
    hsize_t dims[2];
    if (H5Sget_simple_extent_dims(sp, dims, NULL) != 2) {
        vita_fail(err, errlen, "cannot read the shape of %s in %s", nm, path);
        goto done;
    }
    if (dims[0] == 0 || dims[1] == 0) {
        vita_fail(err, errlen, "%s in %s is empty (shape [%llu, %llu]); it needs rows of features",
                  nm, path, (unsigned long long)dims[0], (unsigned long long)dims[1]);
        goto done;
    }
    if (dims[0] > (hsize_t)INT32_MAX || dims[1] > (hsize_t)INT32_MAX ||
        dims[0] * dims[1] > (hsize_t)(SIZE_MAX / sizeof(float))) {
        vita_fail(err, errlen, "%s in %s is too large ([%llu, %llu])", nm, path,
                  (unsigned long long)dims[0], (unsigned long long)dims[1]);
        goto done;
    }
    size_t bytes = (size_t)(dims[0] * dims[1]) * sizeof(float);
    float* buf = malloc(bytes);
    if (!buf) {
        vita_fail(err, errlen, "out of host memory reading %s from %s (%zu bytes)", nm, path, bytes);
        goto done;
    }
    /* the library converts any IEEE-like float layout (half, single, double, either byte
     * order) to native float on the way in */
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        vita_fail(err, errlen, "cannot read %s from %s (corrupt data or a missing compression "
                  "filter)", nm, path);
        goto done;
    }
    *out = buf;
    *rows = (long)dims[0];
    *cols = (long)dims[1];
    rc = 0;
done:
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    return rc;
}

long h5_dataset_len(const char* path, const char* dataset, char* err, size_t errlen) {
    char nm[1024];
    abs_name(nm, sizeof nm, dataset);
    hid_t f = open_file(path, err, errlen);
    if (f < 0) return -1;
    long len = -1;
    hid_t d = open_dataset(f, path, nm, err, errlen);
    if (d >= 0) {
        hid_t sp = H5Dget_space(d);
        int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        hsize_t dims[H5S_MAX_RANK];
        if (rank == 0) len = 1;  /* a scalar holds one element */
        else if (rank > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) == rank) len = (long)dims[0];
        else vita_fail(err, errlen, "cannot read the shape of %s in %s", nm, path);
        if (sp >= 0) H5Sclose(sp);
        H5Dclose(d);
    }
    H5Fclose(f);
    return len;
}

int h5_has_dataset(const char* path, const char* dataset) {
    char nm[1024];
    abs_name(nm, sizeof nm, dataset);
    hid_t f = open_file(path, NULL, 0);
    if (f < 0) return 0;
    int has = 0;
    if (link_exists(f, nm)) {
        hid_t o = H5Oopen(f, nm, H5P_DEFAULT);
        if (o >= 0) {
            has = H5Iget_type(o) == H5I_DATASET;
            H5Oclose(o);
        }
    }
    H5Fclose(f);
    return has;
}

int h5_read_str_attr(const char* path, const char* obj, const char* attr, char* buf,
                     size_t buflen, char* err, size_t errlen) {
    if (buf && buflen) buf[0] = '\0';
    char nm[1024];
    abs_name(nm, sizeof nm, obj);
    hid_t f = open_file(path, err, errlen);
    if (f < 0) return 1;
    int rc = 1;
    hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    if (strcmp(nm, "/") && !link_exists(f, nm)) {
        vita_fail(err, errlen, "no object %s in %s (looking for attribute '%s')", nm, path, attr);
        goto done;
    }
    htri_t e = H5Aexists_by_name(f, nm, attr, H5P_DEFAULT);
    if (e <= 0) {
        vita_fail(err, errlen, "no attribute '%s' on %s in %s", attr, nm, path);
        goto done;
    }
    a = H5Aopen_by_name(f, nm, attr, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) { vita_fail(err, errlen, "cannot open attribute '%s' on %s in %s", attr, nm, path); goto done; }
    t = H5Aget_type(a);
    if (t < 0 || H5Tget_class(t) != H5T_STRING) {
        vita_fail(err, errlen, "attribute '%s' on %s in %s is not a string", attr, nm, path);
        goto done;
    }
    htri_t vl = H5Tis_variable_str(t);
    if (vl < 0) { vita_fail(err, errlen, "cannot read attribute '%s' on %s in %s", attr, nm, path); goto done; }
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0) { vita_fail(err, errlen, "HDF5 type copy failed"); goto done; }
    H5T_cset_t cs = H5Tget_cset(t);
    if (cs < 0 || H5Tset_cset(mt, cs) < 0) { vita_fail(err, errlen, "HDF5 charset query failed"); goto done; }
    if (vl) {
        char* s = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &s) < 0) {
            vita_fail(err, errlen, "cannot read attribute '%s' on %s in %s", attr, nm, path);
            goto done;
        }
        if (buf && buflen) snprintf(buf, buflen, "%s", s ? s : "");
        if (s) H5free_memory(s);
    } else {
        size_t sz = H5Tget_size(t);
        char* tmp = sz ? calloc(sz + 1, 1) : NULL;
        if (!tmp || H5Tset_size(mt, sz) < 0 || H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 ||
            H5Tset_size(mt, sz + 1) < 0 || H5Aread(a, mt, tmp) < 0) {
            free(tmp);
            vita_fail(err, errlen, "cannot read attribute '%s' on %s in %s", attr, nm, path);
            goto done;
        }
        if (buf && buflen) snprintf(buf, buflen, "%s", tmp);
        free(tmp);
    }
    rc = 0;
done:
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    H5Fclose(f);
    return rc;
}
