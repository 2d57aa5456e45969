/* engine/info.c — `vita info FILE.h5` for every HDF5 file vita writes (see info.h).
 * Read-only; every HDF5 call is checked and HDF5's own error printing is off, so a damaged or
 * half-written file gives a line of ours, never an HDF5 stack. */
#include "info.h"
#include "dataset.h"
#include "check.h"
#include "runlog.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t LInfo;
#else
typedef H5L_info_t LInfo;
#endif

/* ---- small readers --------------------------------------------------------------------------- */

/* string attribute (fixed or variable length) as a new malloc'ed string, NULL if absent or not
 * a string */
static char* attr_str_new(hid_t loc, const char* name) {
    if (H5Aexists(loc, name) <= 0) return NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    char* out = NULL;
    if (t >= 0 && sp >= 0 && H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
        if (H5Tis_variable_str(t) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t));
            char* s = NULL;
            if (H5Aread(a, mt, &s) >= 0 && s) {
                out = strdup(s);
                H5free_memory(s);
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(t);
            hid_t mt = H5Tcopy(t);
            out = calloc(n + 1, 1);
            if (out && H5Aread(a, mt, out) < 0) { free(out); out = NULL; }
            H5Tclose(mt);
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return out;
}

/* numeric attribute as doubles: the element count (up to max read), -1 if absent/not numeric */
static long attr_nums(hid_t loc, const char* name, double* v, long max, int dims[2]) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    long n = -1;
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if ((c == H5T_FLOAT || c == H5T_INTEGER) && sp >= 0) {
        hssize_t np = H5Sget_simple_extent_npoints(sp);
        int rank = H5Sget_simple_extent_ndims(sp);
        if (dims) {
            hsize_t d[8] = {0};
            if (rank > 0 && rank <= 8) H5Sget_simple_extent_dims(sp, d, NULL);
            dims[0] = rank >= 1 ? (int)d[0] : 1;
            dims[1] = rank >= 2 ? (int)(np / (d[0] ? d[0] : 1)) : 1;
        }
        if (np >= 0) {
            double* buf = malloc(sizeof(double) * (size_t)(np ? np : 1));
            if (buf && H5Aread(a, H5T_NATIVE_DOUBLE, buf) >= 0) {
                n = (long)np;
                for (long i = 0; i < n && i < max; i++) v[i] = buf[i];
            }
            free(buf);
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return n;
}

/* a whole numeric dataset of rank 1 or 2 as doubles (new malloc'ed array); rows / cols set.
 * NULL when absent, empty (rows = 0) or unreadable. */
static double* ds_doubles(hid_t f, const char* name, long* rows, long* cols) {
    *rows = 0;
    *cols = 0;
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return NULL;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    double* out = NULL;
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if ((rank == 1 || rank == 2) && (c == H5T_FLOAT || c == H5T_INTEGER)) {
        hsize_t dm[2] = {0, 1};
        H5Sget_simple_extent_dims(sp, dm, NULL);
        *rows = (long)dm[0];
        *cols = rank == 2 ? (long)dm[1] : 1;
        size_t n = (size_t)*rows * (size_t)*cols;
        if (n) {
            out = malloc(sizeof(double) * n);
            if (out && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
                free(out);
                out = NULL;
            }
        }
    }
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return out;
}

/* first-dimension length of a dataset, -1 if absent */
static long ds_len(hid_t f, const char* name) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d);
    long n = -1;
    if (sp >= 0) {
        hsize_t dm[8] = {0};
        int r = H5Sget_simple_extent_ndims(sp);
        if (r >= 1 && r <= 8 && H5Sget_simple_extent_dims(sp, dm, NULL) >= 0) n = (long)dm[0];
        else if (r == 0) n = 1;
        H5Sclose(sp);
    }
    H5Dclose(d);
    return n;
}

/* a 1-D string dataset (variable or fixed length) into names[max][32]; count or -1 */
static int ds_names(hid_t f, const char* name, char (*names)[32], int max) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int n = -1;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && np >= 0 && np <= 4096) {
        if (H5Tis_variable_str(t) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            char** s = calloc((size_t)(np ? np : 1), sizeof(char*));
            if (s && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) >= 0) {
                n = 0;
                for (hssize_t i = 0; i < np; i++) {
                    if (n < max) snprintf(names[n++], 32, "%s", s[i] ? s[i] : "");
                    if (s[i]) H5free_memory(s[i]);
                }
            }
            free(s);
            H5Tclose(mt);
        } else {
            size_t sz = H5Tget_size(t);
            char* buf = calloc((size_t)(np ? np : 1), sz + 1);
            hid_t mt = H5Tcopy(t);
            if (buf && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) {
                n = 0;
                for (hssize_t i = 0; i < np && n < max; i++)
                    snprintf(names[n++], 32, "%.*s", (int)(sz < 31 ? sz : 31), buf + (size_t)i * sz);
            }
            H5Tclose(mt);
            free(buf);
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    H5Dclose(d);
    return n;
}

static const char* type_str(hid_t t, char* buf, size_t len) {
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    if (c == H5T_FLOAT) snprintf(buf, len, "float%zu", sz * 8);
    else if (c == H5T_INTEGER)
        snprintf(buf, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", sz * 8);
    else if (c == H5T_STRING)
        snprintf(buf, len, H5Tis_variable_str(t) > 0 ? "string(vlen)" : "string[%zu]", sz);
    else if (c == H5T_COMPOUND) snprintf(buf, len, "compound");
    else snprintf(buf, len, "other");
    return buf;
}

static void shape_of(hid_t sp, char* buf, size_t len) {
    hsize_t d[16] = {0};
    int r = H5Sget_simple_extent_ndims(sp);
    if (r < 0 || r > 16) { snprintf(buf, len, "[?]"); return; }
    if (r > 0) H5Sget_simple_extent_dims(sp, d, NULL);
    size_t k = snprintf(buf, len, "[");
    for (int i = 0; i < r && k < len; i++)
        k += snprintf(buf + k, len - k, i ? ", %llu" : "%llu", (unsigned long long)d[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

/* prints one attribute: strings quoted (long / multi-line ones shortened), numbers (<= 16) */
static herr_t print_attr_cb(hid_t loc, const char* name, const H5A_info_t* ai, void* op) {
    (void)ai;
    const char* indent = op ? (const char*)op : "  ";
    char* s = attr_str_new(loc, name);
    if (s) {
        char* nl = strchr(s, '\n');
        size_t n = strlen(s);
        if (nl || n > 100) {
            int lines = 1;
            for (char* p = s; *p; p++) lines += *p == '\n' && p[1];
            size_t show = nl ? (size_t)(nl - s) : 100;
            if (show > 80) show = 80;
            printf("%s@%-18s \"%.*s...\" (%zu chars, %d lines)\n", indent, name, (int)show, s, n, lines);
        } else {
            printf("%s@%-18s \"%s\"\n", indent, name, s);
        }
        free(s);
        return 0;
    }
    double v[16];
    int dims[2];
    long n = attr_nums(loc, name, v, 16, dims);
    if (n < 0) {
        printf("%s@%-18s (not a string or number)\n", indent, name);
        return 0;
    }
    printf("%s@%-18s ", indent, name);
    if (n == 0) printf("(empty)");
    for (long k = 0; k < n && k < 16; k++) printf(k ? ", %.6g" : "%.6g", v[k]);
    if (n > 16) printf(", ... (%ld values)", n);
    if (dims[1] > 1) printf("  [%d x %d]", dims[0], dims[1]);
    printf("\n");
    return 0;
}

static void print_attrs(hid_t loc, const char* indent) {
    hsize_t idx = 0;
    H5Aiterate2(loc, H5_INDEX_NAME, H5_ITER_INC, &idx, print_attr_cb, (void*)indent);
}

/* ---- the generic listing ------------------------------------------------------------------- */

static herr_t list_cb(hid_t g, const char* name, const void* op) {
    (void)op;
    H5O_info_t oi;
#if H5_VERSION_GE(1, 12, 0)
    if (H5Oget_info_by_name3(g, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return 0;
#else
    if (H5Oget_info_by_name2(g, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return 0;
#endif
    if (oi.type == H5O_TYPE_GROUP) {
        printf("  /%s/\n", name);
        hid_t o = H5Gopen2(g, name, H5P_DEFAULT);
        if (o >= 0) { print_attrs(o, "      "); H5Gclose(o); }
    } else if (oi.type == H5O_TYPE_DATASET) {
        hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
        if (d < 0) return 0;
        hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
        char ty[32] = "?", sh[160] = "[?]";
        if (t >= 0) type_str(t, ty, sizeof ty);
        if (sp >= 0) shape_of(sp, sh, sizeof sh);
        printf("  /%-30s %-13s %s\n", name, ty, sh);
        print_attrs(d, "      ");
        if (sp >= 0) H5Sclose(sp);
        if (t >= 0) H5Tclose(t);
        H5Dclose(d);
    }
    return 0;
}
static herr_t list_cb_l(hid_t g, const char* name, const LInfo* info, void* op) {
    (void)info;
    return list_cb(g, name, op);
}

static void print_generic(hid_t f, const char* path, const char* format) {
    struct stat st;
    printf("%s: HDF5, %.2f MB, %s\n", path, stat(path, &st) == 0 ? st.st_size / 1e6 : 0.0,
           format ? "format attribute not a vita one" : "no format attribute");
    if (format) printf("format: \"%s\" (vita writes vita-dataset, vita-log, vita-features)\n", format);
    printf("attributes:\n");
    print_attrs(f, "  ");
    printf("objects:\n");
    H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, list_cb_l, NULL);
}

/* ---- file status flags (superblock v2/v3 byte 11) ------------------------------------------ */

/* the superblock's file consistency flags, -1 when unreadable or an old superblock without
 * them (version 0/1). Bit 0: opened for writing; bit 2: opened for SWMR writing. */
static int status_flags(const char* path) {
    FILE* fp = fopen(path, "rb");
    if (!fp) return -1;
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    int flags = -1;
    for (long off = 0; off <= (1L << 20); off = off ? off * 2 : 512) {
        unsigned char b[16];
        if (fseek(fp, off, SEEK_SET) || fread(b, 1, sizeof b, fp) != sizeof b) break;
        if (memcmp(b, sig, 8)) continue;
        if (b[8] >= 2) flags = b[11];
        break;
    }
    fclose(fp);
    return flags;
}

static void print_status(const char* path, int flags, int swmr_opened, int finished) {
    if (flags > 0) {
        printf("status: the file's status flags are set (0x%02x: open for %swriting) — ", flags,
               (flags & 4) ? "SWMR " : "");
        if (finished)
            printf("a writer has it open\n");
        else
            printf("the run is still going, or it was killed\n");
        printf("        if no process is writing it any more, `h5clear -s %s` clears them "
               "(vita train --resume does too)%s\n", path,
               swmr_opened ? "; opened here with SWMR read" : "");
    } else if (swmr_opened) {
        printf("status: opened with SWMR read (a writer holds it)\n");
    }
}

/* ---- vita-log ------------------------------------------------------------------------------ */

static void print_kv(hid_t f, const char* key, const char* label) {
    char* s = attr_str_new(f, key);
    if (s) printf("  %-14s %s\n", label ? label : key, s[0] ? s : "(empty)");
    free(s);
}

static void print_curve(const double* ep, const double* v, long n) {
    const int per_line = 8;
    int col = 0;
    for (long i = 0; i < n; i++) {
        if (n > 40 && i == 16) {
            printf("%s    ... %ld epochs ...\n", col ? "\n" : "", n - 32);
            col = 0;
            i = n - 16;
        }
        if (col == 0) printf("   ");
        printf(" %4ld:%-8.4g", ep ? (long)ep[i] : i, v[i]);
        if (++col == per_line) { printf("\n"); col = 0; }
    }
    if (col) printf("\n");
}

static herr_t align_est_cb(hid_t g, const char* name, const LInfo* info, void* op);

typedef struct {
    hid_t f;
    int L;
    char (*layers)[32];
    long n;
} AlignCtx;

static void print_log(hid_t f, const char* path, int show_config, int swmr_opened, int flags) {
    struct stat st;
    double ver = 0;
    char vs[32] = "";
    if (attr_nums(f, "version", &ver, 1, NULL) == 1) snprintf(vs, sizeof vs, " v%g", ver);
    printf("%s: vita run log (vita-log%s), %.2f MB\n", path, vs,
           stat(path, &st) == 0 ? st.st_size / 1e6 : 0.0);
    int finished = H5Lexists(f, "/summary", H5P_DEFAULT) > 0;
    if (finished) {
        hid_t g = H5Gopen2(f, "/summary", H5P_DEFAULT);
        H5O_info_t oi;
#if H5_VERSION_GE(1, 12, 0)
        int ok = g >= 0 && H5Oget_info3(g, &oi, H5O_INFO_NUM_ATTRS) >= 0;
#else
        int ok = g >= 0 && H5Oget_info2(g, &oi, H5O_INFO_NUM_ATTRS) >= 0;
#endif
        finished = ok && oi.num_attrs > 0;
        if (g >= 0) H5Gclose(g);
    }
    print_status(path, flags, swmr_opened, finished);
    printf("run:\n");
    static const char* keys[] = {"task", "model", "init", "weights", "seed", "start_time",
                                 "git_describe", "vita_version", "data_path", "precision",
                                 "device", "gpu_name", "threads", "world_size", "host",
                                 "slurm_job_id"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        if (!strcmp(keys[i], "gpu_name") || !strcmp(keys[i], "slurm_job_id")) {
            char* s = attr_str_new(f, keys[i]);
            int skip = !s || !s[0] || !strcmp(s, "none");
            free(s);
            if (skip) continue;
        }
        print_kv(f, keys[i], NULL);
    }
    char* cfg = attr_str_new(f, "config");
    if (cfg) {
        if (show_config) {
            printf("config:\n%s%s", cfg, cfg[0] && cfg[strlen(cfg) - 1] != '\n' ? "\n" : "");
        } else {
            int lines = 0;
            for (char* p = cfg; *p; p++) lines += *p == '\n';
            if (cfg[0] && cfg[strlen(cfg) - 1] != '\n') lines++;
            printf("config: %d lines (vita info --config shows it)\n", lines);
        }
        free(cfg);
    } else {
        printf("config: (no config attribute)\n");
    }

    long ns = ds_len(f, "/steps/step"), ne = ds_len(f, "/epochs/epoch"), na = ds_len(f, "/align/epoch");
    printf("rows: /steps %ld, /epochs %ld, /align %ld\n", ns < 0 ? 0 : ns, ne < 0 ? 0 : ne,
           na < 0 ? 0 : na);

    /* the val_metric curve */
    long r1, c1, r2, c2;
    double* ep = ds_doubles(f, "/epochs/epoch", &r1, &c1);
    double* vm = ds_doubles(f, "/epochs/val_metric", &r2, &c2);
    char* metric = attr_str_new(f, "metric");
    if (vm && r2 > 0) {
        long n = r2 < r1 || !ep ? r2 : r1;
        if (!ep) n = r2;
        printf("val_%s per epoch:\n", metric ? metric : "metric");
        print_curve(ep && r1 >= n ? ep : NULL, vm, n);
    } else {
        printf("val_%s per epoch: (no rows yet)\n", metric ? metric : "metric");
    }
    free(metric);
    free(ep);
    free(vm);

    /* /align */
    if (H5Lexists(f, "/align", H5P_DEFAULT) > 0) {
        char layers[32][32];
        int L = ds_names(f, "/align/layers", layers, 32);
        hid_t g = H5Gopen2(f, "/align", H5P_DEFAULT);
        if (g >= 0) {
            printf("align: layers");
            for (int l = 0; l < L; l++) printf(" %s", layers[l]);
            printf("%s\n", L <= 0 ? " (none)" : "");
            print_attrs(g, "  ");
            long n = na < 0 ? 0 : na;
            if (n > 0 && L > 0) {
                double* ae = ds_doubles(f, "/align/epoch", &r1, &c1);
                printf("  last row (epoch %ld):%*s", ae ? (long)ae[n - 1] : n - 1, 6, "");
                for (int l = 0; l < L; l++) printf(" %12s", layers[l]);
                printf("\n");
                free(ae);
                AlignCtx ac = {f, L, layers, n};
                hsize_t idx = 0;
                H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, align_est_cb, &ac);
            }
            H5Gclose(g);
        }
    } else {
        printf("align: (none)\n");
    }

    static const char* groups[] = {"summary", "test"};
    for (int k = 0; k < 2; k++) {
        char gname[16];
        snprintf(gname, sizeof gname, "/%s", groups[k]);
        hid_t g = H5Lexists(f, gname, H5P_DEFAULT) > 0 ? H5Gopen2(f, gname, H5P_DEFAULT) : -1;
        H5O_info_t oi;
        int has = 0;
#if H5_VERSION_GE(1, 12, 0)
        if (g >= 0 && H5Oget_info3(g, &oi, H5O_INFO_NUM_ATTRS) >= 0) has = oi.num_attrs > 0;
#else
        if (g >= 0 && H5Oget_info2(g, &oi, H5O_INFO_NUM_ATTRS) >= 0) has = oi.num_attrs > 0;
#endif
        if (has) {
            printf("%s:\n", groups[k]);
            print_attrs(g, "  ");
        } else {
            printf("%s: (not written yet: the run is going, was killed, or had no %s)\n", groups[k],
                   k ? "test split" : "end");
        }
        if (g >= 0) H5Gclose(g);
    }
}

static herr_t align_est_cb(hid_t g, const char* name, const LInfo* info, void* op) {
    (void)g;
    (void)info;
    AlignCtx* ac = op;
    if (!strcmp(name, "epoch") || !strcmp(name, "layers")) return 0;
    char full[300];
    snprintf(full, sizeof full, "/align/%s", name);
    long r, c;
    double* v = ds_doubles(ac->f, full, &r, &c);
    if (v && r > 0 && c == ac->L) {
        printf("  %-26s", name);
        for (long l = 0; l < c; l++) printf(" %12.5g", v[(r - 1) * c + l]);
        printf("\n");
    }
    free(v);
    return 0;
}

/* ---- vita-features ------------------------------------------------------------------------- */

typedef struct {
    hid_t f;
    int n;
} FeatCtx;

static herr_t feat_cb(hid_t g, const char* name, const LInfo* info, void* op) {
    (void)info;
    FeatCtx* fc = op;
    if (strncmp(name, "layer_", 6)) return 0;
    hid_t lg = H5Gopen2(g, name, H5P_DEFAULT);
    if (lg < 0) return 0;
    fc->n++;
    printf("  layer %-6s", name + 6);
    static const char* kinds[] = {"pooled", "tokens", "cls"};
    for (int k = 0; k < 3; k++) {
        if (H5Lexists(lg, kinds[k], H5P_DEFAULT) <= 0) continue;
        hid_t d = H5Dopen2(lg, kinds[k], H5P_DEFAULT);
        if (d < 0) continue;
        hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
        char ty[32] = "?", sh[96] = "[?]";
        if (t >= 0) type_str(t, ty, sizeof ty);
        if (sp >= 0) shape_of(sp, sh, sizeof sh);
        printf("  %s %s %s", kinds[k], ty, sh);
        if (sp >= 0) H5Sclose(sp);
        if (t >= 0) H5Tclose(t);
        H5Dclose(d);
    }
    printf("\n");
    H5Gclose(lg);
    return 0;
}

static void print_features(hid_t f, const char* path) {
    struct stat st;
    double ver = 0;
    char vs[32] = "";
    if (attr_nums(f, "version", &ver, 1, NULL) == 1) snprintf(vs, sizeof vs, " v%g", ver);
    long n = ds_len(f, "/case_id");
    printf("%s: vita features (vita-features%s), %.2f MB, %ld cases\n", path, vs,
           stat(path, &st) == 0 ? st.st_size / 1e6 : 0.0, n < 0 ? 0 : n);
    static const char* keys[] = {"weights", "weights_sha256", "data_path", "split", "layers",
                                 "normalize", "tokens", "seed"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        char* s = attr_str_new(f, keys[i]);
        if (s) {
            printf("  %-15s %s\n", keys[i], s);
            free(s);
            continue;
        }
        double v;
        if (attr_nums(f, keys[i], &v, 1, NULL) == 1) printf("  %-15s %.17g\n", keys[i], v);
    }
    printf("layers:\n");
    FeatCtx fc = {f, 0};
    hsize_t idx = 0;
    H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, &idx, feat_cb, &fc);
    if (!fc.n) printf("  (no /layer_<name> groups)\n");
}

/* ---- entry ---------------------------------------------------------------------------------- */

int info_print_h5(const char* path, int show_config) {
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "vita: cannot read %s: %s (check the path)\n", path, strerror(errno));
        return VITA_EXIT_USER;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (H5Fis_hdf5(path) <= 0) {
        fprintf(stderr, "vita: %s is not an HDF5 file (vita info reads .h5 and .safetensors files)\n",
                path);
        return VITA_EXIT_USER;
    }
    int flags = status_flags(path);
    int swmr = 0;
    dataset_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        hid_t fa = runlog_read_fapl(RUNLOG_READ_ATTEMPTS);
        f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fa);
        H5Pclose(fa);
        swmr = f >= 0;
    }
#if H5_VERSION_GE(1, 10, 7)
    if (f < 0) {   /* a non-SWMR writer's lock: read anyway, it may be stale (killed run) */
        hid_t fa = runlog_read_fapl(RUNLOG_READ_ATTEMPTS);
        if (fa >= 0 && H5Pset_file_locking(fa, 0, 1) >= 0)
            f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fa);
        if (fa >= 0) H5Pclose(fa);
        swmr = f >= 0;
    }
#endif
    if (f < 0) {
        dataset_h5_unlock();
        if (flags > 0)
            fprintf(stderr, "vita: cannot open %s: its status flags say a writer has it open "
                    "(0x%02x); if no run is writing it (a killed run), clear them with "
                    "`h5clear -s %s` and retry\n", path, flags, path);
        else
            fprintf(stderr, "vita: cannot open %s as HDF5 (damaged, or still being written?)\n", path);
        return VITA_EXIT_USER;
    }
    char* format = attr_str_new(f, "format");
    int rc = 0;
    if (format && !strcmp(format, "vita-dataset")) {
        H5Fclose(f);
        dataset_h5_unlock();
        free(format);
        return dataset_print_info(path) ? VITA_EXIT_USER : 0;
    } else if (format && !strcmp(format, "vita-log")) {
        print_log(f, path, show_config, swmr, flags);
    } else if (format && !strcmp(format, "vita-features")) {
        print_features(f, path);
        print_status(path, flags, swmr, 1);
    } else {
        print_generic(f, path, format);
        print_status(path, flags, swmr, 1);
    }
    free(format);
    H5Fclose(f);
    dataset_h5_unlock();
    fflush(stdout);
    return rc;
}
