/* engine/import_layouts.c — which files make up each case, per source layout (`vita import
 * --layout`), plus the small CSV reader the layouts share.
 *
 *   picai        SRC/<patient>/<patient>_<study>_{t2w,adc,hbv}.mha (every *_t2w.mha is a case,
 *                case_id = <patient>_<study>); --labels DIR: DIR/<case_id>.nii.gz lesion labels
 *                (expert: ISUP grade 2..5 per lesion voxel; AI-derived: 1 = csPCa; both:
 *                voxel > 0 = lesion); --gland DIR: DIR/<case_id>.nii.gz whole-gland masks
 *                (> 0 = gland); --marksheet CSV: columns patient_id, study_id and case_ISUP
 *                and/or case_csPCa (YES/NO); --folds (below). Labels: background, gland,
 *                lesion (gland only with --gland; lesion only with --labels). Class: csPCa =
 *                case_ISUP >= 2 (or case_csPCa YES) from the marksheet, else any lesion voxel.
 *   prostate158  SRC/<case>/{t2,adc,dwi}.nii.gz, t2_anatomy_reader1.nii.gz (1 TZ, 2 PZ) and
 *                a tumour label *tumor_reader1.nii.gz (t2_ preferred; no file = no tumour).
 *                Labels: background, tz, pz, lesion (lesion over anatomy); class: tumour present.
 *   flat         --csv F with header case_id,t2w,adc,hbv,seg,cls,split,fold (paths relative
 *                to F's directory; empty = missing; split train|val|test|probe|0..3 or empty
 *                = assign; cls/fold integers or empty = -1); --label-names / --class-names.
 *   --folds      a CSV with columns fold and case_id (or patient_id + study_id), or a
 *                directory of fold<k>.txt / fold_<k>.txt files (k = 0..) listing case_ids,
 *                one per line.
 * A case whose files are missing gets ImportCase.bad (the importer reports or skips it). */
#include "import.h"
#include "numparse.h"
#include "errfmt.h"
#include "check.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* a path into IMP_PATH bytes; a longer one is a user error (never silently truncated) */
static void pathf(char* out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void pathf(char* out, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, IMP_PATH, fmt, ap);
    va_end(ap);
    if (n >= IMP_PATH) USER_ERROR("import: path %.80s... longer than %d bytes; use shorter paths", out, IMP_PATH - 1);
}

static void* xrealloc(void* p, size_t n) {
    void* q = realloc(p, n ? n : 1);
    CHECK(q, "out of host memory (%zu bytes)", n);
    return q;
}

static int is_file(const char* p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}
static int is_dir(const char* p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- CSV (RFC 4180 quotes; first row = header) ------------------------------------------ */
typedef struct {
    int nrow, ncol;     /* data rows (header excluded) */
    char** head;        /* [ncol] */
    char*** rows;       /* [nrow][ncol] ("" where a row is short) */
} Csv;

static void csv_free(Csv* c) {
    for (int j = 0; j < c->ncol; j++) free(c->head[j]);
    for (int i = 0; i < c->nrow; i++) {
        for (int j = 0; j < c->ncol; j++) free(c->rows[i][j]);
        free(c->rows[i]);
    }
    free(c->head);
    free(c->rows);
    memset(c, 0, sizeof *c);
}

/* one record from p (advanced); fields trimmed of surrounding blanks unless quoted */
static int csv_record(const char** p, char*** out) {
    int n = 0, cap = 8;
    char** f = xmalloc(cap * sizeof(char*));
    const char* s = *p;
    for (;;) {
        size_t len = 0, fcap = 64;
        char* buf = xmalloc(fcap);
        while (*s == ' ' || *s == '\t') s++;
        int quoted = *s == '"';
        if (quoted) {
            s++;
            while (*s && !(*s == '"' && s[1] != '"')) {
                if (*s == '"') s++;   /* doubled quote */
                if (len + 2 > fcap) buf = xrealloc(buf, fcap *= 2);
                buf[len++] = *s++;
            }
            if (*s == '"') s++;
            while (*s == ' ' || *s == '\t') s++;
        } else {
            while (*s && *s != ',' && *s != '\n' && *s != '\r') {
                if (len + 2 > fcap) buf = xrealloc(buf, fcap *= 2);
                buf[len++] = *s++;
            }
            while (len && (buf[len - 1] == ' ' || buf[len - 1] == '\t')) len--;
        }
        buf[len] = 0;
        if (n == cap) f = xrealloc(f, (cap *= 2) * sizeof(char*));
        f[n++] = buf;
        if (*s == ',') { s++; continue; }
        if (*s == '\r') s++;
        if (*s == '\n') s++;
        break;
    }
    *p = s;
    *out = f;
    return n;
}

static int csv_read(const char* path, Csv* c, char* err, size_t errlen) {
    memset(c, 0, sizeof *c);
    FILE* f = fopen(path, "rb");
    if (!f) return vita_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char* text = xmalloc(cap);
    size_t got;
    while ((got = fread(text + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 >= cap) text = xrealloc(text, cap *= 2);
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(text);
        return vita_fail(err, errlen, "%s: read error", path);
    }
    text[n] = 0;
    const char* p = text;
    if (!strncmp(p, "\xEF\xBB\xBF", 3)) p += 3;   /* UTF-8 byte order mark (spreadsheet exports) */
    while (*p == '\n' || *p == '\r') p++;
    if (!*p) {
        free(text);
        return vita_fail(err, errlen, "%s: empty CSV; a header row is needed", path);
    }
    c->ncol = csv_record(&p, &c->head);
    int cap_rows = 64;
    c->rows = xmalloc(cap_rows * sizeof(char**));
    while (*p) {
        if (*p == '\n' || *p == '\r') { p++; continue; }
        char** r;
        int k = csv_record(&p, &r);
        if (k > c->ncol) {
            for (int j = 0; j < k; j++) free(r[j]);
            free(r);
            vita_fail(err, errlen, "%s: row %d has %d fields but the header has %d; quote fields "
                  "with commas", path, c->nrow + 2, k, c->ncol);
            csv_free(c);
            free(text);
            return 1;
        }
        r = xrealloc(r, (c->ncol ? c->ncol : 1) * sizeof(char*));
        for (int j = k; j < c->ncol; j++) r[j] = strdup("");
        if (c->nrow == cap_rows) c->rows = xrealloc(c->rows, (cap_rows *= 2) * sizeof(char**));
        c->rows[c->nrow++] = r;
    }
    free(text);
    return 0;
}

static int csv_col(const Csv* c, const char* name) {
    for (int j = 0; j < c->ncol; j++)
        if (!strcasecmp(c->head[j], name)) return j;
    return -1;
}

/* ---- directory listing (sorted) ------------------------------------------------------- */
static int cmp_str(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

static char** list_dir(const char* dir, int want_dirs, int* n) {
    *n = 0;
    DIR* d = opendir(dir);
    if (!d) return NULL;
    int cap = 64;
    char** names = xmalloc(cap * sizeof(char*));
    struct dirent* e;
    char p[IMP_PATH * 2];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (want_dirs ? !is_dir(p) : !is_file(p)) continue;
        if (*n == cap) names = xrealloc(names, (cap *= 2) * sizeof(char*));
        names[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, *n, sizeof(char*), cmp_str);
    return names;
}
static void free_names(char** names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static void add_case(ImportList* L, int* cap, const ImportCase* c) {
    if (L->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        L->cases = xrealloc(L->cases, *cap * sizeof(ImportCase));
    }
    L->cases[L->n++] = *c;
}

static ImportCase* find_case(ImportList* L, const char* id) {
    for (int i = 0; i < L->n; i++)
        if (!strcmp(L->cases[i].case_id, id)) return &L->cases[i];
    return NULL;
}

static void set_bad(ImportCase* c, const char* what, const char* path) {
    if (!c->bad[0]) vita_fail(c->bad, sizeof c->bad, "%s %s is missing", what, path);
}

/* path = dir/<id>.nii.gz, else dir/<id>.nii, else dir/<id>.mha; "" when none exists */
static void find_label(const char* dir, const char* id, char* out) {
    static const char* ext[3] = {".nii.gz", ".nii", ".mha"};
    for (int k = 0; k < 3; k++) {
        pathf(out, "%s/%s%s", dir, id, ext[k]);
        if (is_file(out)) return;
    }
    pathf(out, "%s/%s.nii.gz", dir, id);   /* the name reported as missing */
}

static int read_folds(const char* path, ImportList* L, char* err, size_t errlen) {
    if (is_dir(path)) {
        int n;
        char** names = list_dir(path, 0, &n);
        int used = 0;
        for (int i = 0; i < n; i++) {
            long k;
            char num[32] = "";
            const char* s = names[i];
            if (strncasecmp(s, "fold", 4)) continue;
            s += 4;
            if (*s == '_' || *s == '-') s++;
            size_t m = strspn(s, "0123456789");
            if (!m || m > 3 || (strcmp(s + m, ".txt") && strcmp(s + m, ".csv"))) continue;
            memcpy(num, s, m);
            parse_long_in(num, 0, 127, &k);
            char fp[IMP_PATH * 2];
            snprintf(fp, sizeof fp, "%s/%s", path, names[i]);
            FILE* f = fopen(fp, "r");
            if (!f) {
                free_names(names, n);
                return vita_fail(err, errlen, "%s: cannot open: %s", fp, strerror(errno));
            }
            char line[512];
            while (fgets(line, sizeof line, f)) {
                line[strcspn(line, ",\r\n")] = 0;
                char* id = line;
                while (isspace((unsigned char)*id)) id++;
                ImportCase* c = *id ? find_case(L, id) : NULL;
                if (c) c->fold = (int)k;
            }
            fclose(f);
            used++;
        }
        free_names(names, n);
        if (!used)
            return vita_fail(err, errlen, "%s: no fold<k>.txt / fold_<k>.txt files in this folds directory", path);
        return 0;
    }
    Csv c;
    if (csv_read(path, &c, err, errlen)) return 1;
    int jf = csv_col(&c, "fold"), jc = csv_col(&c, "case_id"), jp = csv_col(&c, "patient_id"),
        js = csv_col(&c, "study_id");
    if (jf < 0 || (jc < 0 && (jp < 0 || js < 0))) {
        csv_free(&c);
        return vita_fail(err, errlen, "%s: folds CSV needs columns fold and case_id (or patient_id and "
                     "study_id)", path);
    }
    for (int i = 0; i < c.nrow; i++) {
        char id[160];
        if (jc >= 0) snprintf(id, sizeof id, "%s", c.rows[i][jc]);
        else snprintf(id, sizeof id, "%s_%s", c.rows[i][jp], c.rows[i][js]);
        long k;
        if (parse_long_in(c.rows[i][jf], 0, 127, &k)) {
            vita_fail(err, errlen, "%s: row %d: fold \"%s\" is not an integer 0..127", path, i + 2,
                  c.rows[i][jf]);
            csv_free(&c);
            return 1;
        }
        ImportCase* ic = find_case(L, id);
        if (ic) ic->fold = (int)k;
    }
    csv_free(&c);
    return 0;
}

static int read_marksheet(const char* path, ImportList* L, char* err, size_t errlen) {
    Csv c;
    if (csv_read(path, &c, err, errlen)) return 1;
    int jp = csv_col(&c, "patient_id"), js = csv_col(&c, "study_id"), ji = csv_col(&c, "case_ISUP"),
        jy = csv_col(&c, "case_csPCa");
    if (jp < 0 || js < 0 || (ji < 0 && jy < 0)) {
        csv_free(&c);
        return vita_fail(err, errlen, "%s: marksheet needs columns patient_id, study_id and case_ISUP "
                     "or case_csPCa", path);
    }
    for (int i = 0; i < c.nrow; i++) {
        char id[160];
        snprintf(id, sizeof id, "%s_%s", c.rows[i][jp], c.rows[i][js]);
        ImportCase* ic = find_case(L, id);
        if (!ic) continue;
        long isup;
        if (ji >= 0 && c.rows[i][ji][0] && !parse_long_in(c.rows[i][ji], 0, 5, &isup)) {
            ic->cls = isup >= 2;
        } else if (jy >= 0 && (!strcasecmp(c.rows[i][jy], "YES") || !strcasecmp(c.rows[i][jy], "NO"))) {
            ic->cls = !strcasecmp(c.rows[i][jy], "YES");
        } else if ((ji >= 0 && c.rows[i][ji][0]) || (jy >= 0 && c.rows[i][jy][0])) {
            int line = i + 2;
            csv_free(&c);
            return vita_fail(err, errlen, "%s: row %d (%s): case_ISUP must be 0..5 and case_csPCa YES/NO",
                         path, line, id);
        }
    }
    csv_free(&c);
    return 0;
}

static void init_case(ImportCase* c, const char* id) {
    memset(c, 0, sizeof *c);
    snprintf(c->case_id, sizeof c->case_id, "%s", id);
    c->cls = -1;
    c->fold = -1;
    c->split = -1;
}

static int list_picai(const ImportOptions* o, ImportList* L, char* err, size_t errlen) {
    int np, cap = 0;
    char** pats = list_dir(o->src, 1, &np);
    if (!pats) return vita_fail(err, errlen, "%s: cannot open the PI-CAI image directory: %s", o->src, strerror(errno));
    for (int p = 0; p < np; p++) {
        char pdir[IMP_PATH];
        pathf(pdir, "%s/%s", o->src, pats[p]);
        int nf;
        char** files = list_dir(pdir, 0, &nf);
        for (int k = 0; k < nf; k++) {
            size_t len = strlen(files[k]);
            if (len <= 8 || strcmp(files[k] + len - 8, "_t2w.mha")) continue;
            char id[64];
            if (len - 8 >= sizeof id) continue;
            snprintf(id, sizeof id, "%.*s", (int)(len - 8), files[k]);
            ImportCase c;
            init_case(&c, id);
            static const char* suf[IMP_CH] = {"t2w", "adc", "hbv"};
            for (int ch = 0; ch < IMP_CH; ch++) {
                pathf(c.img[ch], "%s/%s_%s.mha", pdir, id, suf[ch]);
                if (!is_file(c.img[ch])) set_bad(&c, suf[ch], c.img[ch]);
            }
            c.seg_kind = o->labels || o->gland ? SEG_PICAI : SEG_NONE;
            if (o->labels) {
                find_label(o->labels, id, c.lesion);
                if (!is_file(c.lesion)) set_bad(&c, "lesion label", c.lesion);
            }
            if (o->gland) {
                find_label(o->gland, id, c.gland);
                if (!is_file(c.gland)) set_bad(&c, "gland mask", c.gland);
            }
            add_case(L, &cap, &c);
        }
        free_names(files, nf);
    }
    free_names(pats, np);
    if (!L->n)
        return vita_fail(err, errlen, "%s: no <patient>/<patient>_<study>_t2w.mha files; is this the "
                     "PI-CAI images directory (--layout picai)?", o->src);
    if (o->marksheet && read_marksheet(o->marksheet, L, err, errlen)) return 1;
    L->label_names = o->labels && o->gland ? "background,gland,lesion"
                     : o->labels           ? "background,lesion"
                     : o->gland            ? "background,gland"
                                           : NULL;
    L->class_names = o->labels || o->marksheet ? "benign,csPCa" : NULL;
    return 0;
}

static int list_p158(const ImportOptions* o, ImportList* L, char* err, size_t errlen) {
    int nd, cap = 0;
    char** dirs = list_dir(o->src, 1, &nd);
    if (!dirs) return vita_fail(err, errlen, "%s: cannot open the Prostate158 directory: %s", o->src, strerror(errno));
    for (int d = 0; d < nd; d++) {
        char cdir[IMP_PATH];
        pathf(cdir, "%s/%s", o->src, dirs[d]);
        char t2[IMP_PATH];
        pathf(t2, "%s/t2.nii.gz", cdir);
        if (!is_file(t2)) continue;   /* not a case directory */
        ImportCase c;
        init_case(&c, dirs[d]);
        static const char* names[IMP_CH] = {"t2.nii.gz", "adc.nii.gz", "dwi.nii.gz"};
        for (int ch = 0; ch < IMP_CH; ch++) {
            pathf(c.img[ch], "%s/%s", cdir, names[ch]);
            if (!is_file(c.img[ch])) set_bad(&c, names[ch], c.img[ch]);
        }
        pathf(c.gland, "%s/t2_anatomy_reader1.nii.gz", cdir);
        if (!is_file(c.gland)) set_bad(&c, "anatomy label", c.gland);
        int nf;
        char** files = list_dir(cdir, 0, &nf);
        for (int k = 0; k < nf; k++) {
            size_t len = strlen(files[k]);
            if (len < 20 || strcmp(files[k] + len - 20, "tumor_reader1.nii.gz") != 0) continue;
            if (!c.lesion[0] || !strncmp(files[k], "t2_", 3))
                pathf(c.lesion, "%s/%s", cdir, files[k]);
        }
        free_names(files, nf);
        c.seg_kind = SEG_P158;
        add_case(L, &cap, &c);
    }
    free_names(dirs, nd);
    if (!L->n)
        return vita_fail(err, errlen, "%s: no <case>/t2.nii.gz directories; is this the Prostate158 "
                     "data directory (--layout prostate158)?", o->src);
    L->label_names = "background,tz,pz,lesion";
    L->class_names = "no_tumor,tumor";
    return 0;
}

static int list_flat(const ImportOptions* o, ImportList* L, char* err, size_t errlen) {
    const char* csv = o->csv ? o->csv : o->src;
    Csv c;
    if (csv_read(csv, &c, err, errlen)) return 1;
    static const char* cols[8] = {"case_id", "t2w", "adc", "hbv", "seg", "cls", "split", "fold"};
    int j[8];
    for (int k = 0; k < 8; k++) {
        j[k] = csv_col(&c, cols[k]);
        if (j[k] < 0 && k < 2) {
            csv_free(&c);
            return vita_fail(err, errlen, "%s: column %s missing; the flat CSV header is "
                         "case_id,t2w,adc,hbv,seg,cls,split,fold", csv, cols[k]);
        }
    }
    char base[IMP_PATH];
    const char* slash = strrchr(csv, '/');
    snprintf(base, sizeof base, "%.*s", slash ? (int)(slash - csv) : 1, slash ? csv : ".");
    int cap = 0, any_seg = 0, any_cls = 0;
    for (int i = 0; i < c.nrow; i++) {
        char** r = c.rows[i];
        int line = i + 2;
        if (!r[j[0]][0] || strlen(r[j[0]]) >= 64) {
            csv_free(&c);
            return vita_fail(err, errlen, "%s: row %d: case_id must be 1..63 characters", csv, line);
        }
        if (find_case(L, r[j[0]])) {
            int rc = vita_fail(err, errlen, "%s: row %d: case_id %s appears twice", csv, line, r[j[0]]);
            csv_free(&c);
            return rc;
        }
        ImportCase ic;
        init_case(&ic, r[j[0]]);
        for (int k = 1; k <= 4; k++) {
            char* dst = k <= 3 ? ic.img[k - 1] : ic.seg;
            if (j[k] < 0 || !r[j[k]][0]) continue;
            if (r[j[k]][0] == '/') pathf(dst, "%s", r[j[k]]);
            else pathf(dst, "%s/%s", base, r[j[k]]);
            if (!is_file(dst)) set_bad(&ic, cols[k], dst);
        }
        if (!ic.img[0][0]) set_bad(&ic, "t2w", "(empty in the CSV)");
        if (ic.seg[0]) any_seg = 1, ic.seg_kind = SEG_FLAT;
        long v;
        if (j[5] >= 0 && r[j[5]][0]) {
            if (parse_long_in(r[j[5]], -1, 255, &v)) {
                vita_fail(err, errlen, "%s: row %d: cls \"%s\" must be an integer (-1 = unknown)", csv, line, r[j[5]]);
                csv_free(&c);
                return 1;
            }
            ic.cls = (int)v;
            any_cls = 1;
        }
        if (j[6] >= 0 && r[j[6]][0]) {
            static const char* sn[4] = {"train", "val", "test", "probe"};
            for (int s = 0; s < 4; s++)
                if (!strcasecmp(r[j[6]], sn[s])) ic.split = s;
            if (ic.split < 0 && !parse_long_in(r[j[6]], 0, 3, &v)) ic.split = (int)v;
            if (ic.split < 0) {
                csv_free(&c);
                return vita_fail(err, errlen, "%s: row %d: split must be train, val, test, probe or 0..3", csv, line);
            }
        }
        if (j[7] >= 0 && r[j[7]][0]) {
            if (parse_long_in(r[j[7]], -1, 127, &v)) {
                csv_free(&c);
                return vita_fail(err, errlen, "%s: row %d: fold must be an integer -1..127", csv, line);
            }
            ic.fold = (int)v;
        }
        add_case(L, &cap, &ic);
    }
    csv_free(&c);
    if (!L->n) return vita_fail(err, errlen, "%s: no cases (only a header row)", csv);
    L->label_names = any_seg ? (o->label_names ? o->label_names : "background,foreground") : NULL;
    L->class_names = any_cls ? (o->class_names ? o->class_names : "negative,positive") : NULL;
    return 0;
}

int import_list_cases(const ImportOptions* o, ImportList* L, char* err, size_t errlen) {
    memset(L, 0, sizeof *L);
    int rc;
    if (!strcmp(o->layout, "picai")) rc = list_picai(o, L, err, errlen);
    else if (!strcmp(o->layout, "prostate158")) rc = list_p158(o, L, err, errlen);
    else if (!strcmp(o->layout, "flat")) rc = list_flat(o, L, err, errlen);
    else rc = vita_fail(err, errlen, "--layout %s; use picai, prostate158 or flat", o->layout);
    if (!rc && o->folds) rc = read_folds(o->folds, L, err, errlen);
    if (rc) import_list_free(L);
    return rc;
}

void import_list_free(ImportList* L) {
    free(L->cases);
    memset(L, 0, sizeof *L);
}
