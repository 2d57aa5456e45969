/* tests/test_dataset.c — the vita dataset file (SPEC.md §2, engine/dataset.c): bit-exact write /
 * read round trip of every field, one-line validation errors naming the file and the field for
 * malformed files (written with the HDF5 API directly), the atomic writer, targets, int16
 * images, `vita info`, h5py interoperability and concurrent reads from 4 threads. */
#include "testing.h"
#include "../engine/dataset.h"

#include <dirent.h>
#include <hdf5.h>
#include <pthread.h>

static char g_dir[64];
enum { N = 7, C = 2, D = 3, H = 4, W = 5 };
#define VOX (D * H * W)

typedef struct {
    float img[N][C * VOX];
    uint8_t seg[N][VOX];
    int32_t cls[N];
    int split[N], fold[N];
    uint8_t cp[N][C];
    double sp[N][3], org[N][3], dir[N][9];
    int32_t shp[N][3], crop[N][3];
    char id[N][64];
} Ref;
static Ref R;

static void make_ref(void) {
    TRng r = {42};
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < C * VOX; k++) {
            /* awkward values too: negative zero, subnormal, huge */
            float v = (float)(3 * trng_normal(&r));
            if (k == 1) v = -0.0f;
            if (k == 2) v = 1e-41f;
            if (k == 3) v = 3.0e38f;
            R.img[i][k] = v;
        }
        for (int k = 0; k < VOX; k++) R.seg[i][k] = (uint8_t)trng_int(&r, 0, 2);
        R.cls[i] = trng_int(&r, -1, 1);
        R.split[i] = i % 4;
        R.fold[i] = i < 4 ? i % 5 - (i == 3) : -1;
        for (int c = 0; c < C; c++) R.cp[i][c] = (uint8_t)((i + c) % 3 != 0);
        for (int a = 0; a < 3; a++) {
            R.sp[i][a] = 0.5 + trng_uniform(&r);
            R.org[i][a] = 100 * trng_normal(&r);
            R.shp[i][a] = trng_int(&r, 10, 500);
            R.crop[i][a] = trng_int(&r, 0, 9);
        }
        for (int k = 0; k < 9; k++) R.dir[i][k] = trng_normal(&r);
        snprintf(R.id[i], 64, "case-%d-ünï", i);  /* UTF-8 */
    }
}

static DatasetSpec ref_spec(int gzip) {
    DatasetSpec s = {0};
    s.n = N; s.C = C; s.D = D; s.H = H; s.W = W;
    s.channels = "t2w,adc";
    s.label_names = "background,gland,lesion";
    s.class_names = "benign,csPCa";
    s.spacing_zyx[0] = 3.0; s.spacing_zyx[1] = 0.5; s.spacing_zyx[2] = 0.625;
    s.source = "test_dataset";
    s.gzip = gzip;
    return s;
}

/* writes the reference dataset; case 6 with NULL geometry and channel_present (defaults) */
static int write_ref(const char* path, int gzip, char* err, size_t errlen) {
    DatasetSpec s = ref_spec(gzip);
    DatasetWriter* w = dataset_create(path, &s, err, errlen);
    if (!w) return 1;
    for (int j = 0; j < N; j++) {
        int i = (j * 3) % N;  /* out of order on purpose */
        int def = i == N - 1;
        dataset_write_case(w, i, R.id[i], R.img[i], R.seg[i], R.cls[i], R.split[i], R.fold[i],
                           def ? NULL : R.cp[i], def ? NULL : R.sp[i], def ? NULL : R.org[i],
                           def ? NULL : R.dir[i], def ? NULL : R.shp[i], def ? NULL : R.crop[i]);
    }
    return dataset_finish(w, err, errlen);
}

static int count_tmp_files(void) {
    DIR* d = opendir(g_dir);
    int n = 0;
    struct dirent* e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static void copy_file(const char* a, const char* b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "wb");
    char buf[65536];
    size_t n;
    while (fa && fb && (n = fread(buf, 1, sizeof buf, fa)) > 0) fwrite(buf, 1, n, fb);
    if (fa) fclose(fa);
    if (fb) fclose(fb);
}

static void round_trip(const char* path, int gzip) {
    char err[1024], what[1200];
    int rc = write_ref(path, gzip, err, sizeof err);
    snprintf(what, sizeof what, "gzip %d: write the reference dataset%s%s", gzip, rc ? ": " : "", rc ? err : "");
    t_true(what, rc == 0);
    t_true("atomic writer: no temp file left", count_tmp_files() == 0);
    Dataset ds;
    rc = dataset_open(&ds, path, err, sizeof err);
    snprintf(what, sizeof what, "gzip %d: dataset_open of the reference%s%s", gzip, rc ? ": " : "", rc ? err : "");
    if (!t_true(what, rc == 0)) return;
    int ok = ds.n == N && ds.C == C && ds.D == D && ds.H == H && ds.W == W && !ds.images_int16 &&
             ds.has_seg && ds.has_cls && ds.n_labels == 3 && ds.n_classes == 2 &&
             !strcmp(ds.channels[0], "t2w") && !strcmp(ds.channels[1], "adc") &&
             !strcmp(ds.label_names[2], "lesion") && !strcmp(ds.class_names[1], "csPCa") &&
             ds.spacing_zyx[0] == 3.0 && ds.spacing_zyx[1] == 0.5 && ds.spacing_zyx[2] == 0.625 &&
             ds.n_targets == 0 && dataset_channel(&ds, "adc") == 1 && dataset_channel(&ds, "hbv") == -1;
    t_true("shape, attrs, names, spacing, channel lookup", ok);
    int bad_img = 0, bad_meta = 0, bad_geo = 0;
    float img[C * VOX];
    uint8_t seg[VOX];
    for (int i = 0; i < N; i++) {
        if (dataset_read_case(&ds, i, img, seg, err, sizeof err)) { bad_img++; continue; }
        bad_img += memcmp(img, R.img[i], sizeof img) != 0 || memcmp(seg, R.seg[i], sizeof seg) != 0;
        bad_meta += ds.cls[i] != R.cls[i] || ds.split[i] != R.split[i] || ds.fold[i] != R.fold[i] ||
                    strcmp(ds.case_id[i], R.id[i]) != 0;
        if (i < N - 1) {
            bad_meta += memcmp(ds.channel_present + i * C, R.cp[i], C) != 0;
            bad_geo += memcmp(ds.g_spacing + 3 * i, R.sp[i], 24) || memcmp(ds.g_origin + 3 * i, R.org[i], 24) ||
                       memcmp(ds.g_direction + 9 * i, R.dir[i], 72) ||
                       memcmp(ds.g_shape_original + 3 * i, R.shp[i], 12) ||
                       memcmp(ds.g_crop_offset + 3 * i, R.crop[i], 12);
        } else {  /* defaults: all present, identity geometry of the common grid */
            bad_meta += ds.channel_present[i * C] != 1 || ds.channel_present[i * C + 1] != 1;
            double* g = ds.g_direction + 9 * i;
            bad_geo += ds.g_spacing[3 * i] != 3.0 || ds.g_spacing[3 * i + 2] != 0.625 ||
                       ds.g_origin[3 * i + 1] != 0 || g[0] != 1 || g[4] != 1 || g[8] != 1 || g[1] != 0 ||
                       ds.g_shape_original[3 * i] != D || ds.g_shape_original[3 * i + 2] != W ||
                       ds.g_crop_offset[3 * i + 1] != 0;
        }
    }
    t_check("cases whose images or seg differ (bit-exact)", bad_img, 0);
    t_check("cases whose cls/split/fold/case_id/channel_present differ", bad_meta, 0);
    t_check("cases whose geometry differs (bit-exact; defaults for NULL)", bad_geo, 0);
    t_true("read_case out of range is an error naming the file",
           dataset_read_case(&ds, N, img, seg, err, sizeof err) == 1 && strstr(err, path) != NULL);
    int dims[4];
    t_true("read_target of an absent target returns 1",
           dataset_read_target(&ds, 0, "sr", NULL, dims, err, sizeof err) == 1);
    dataset_close(&ds);
}

/* ---- malformed files, written with the HDF5 API ---------------------------------------- */
typedef void (*Mutator)(hid_t f);

static void del(hid_t f, const char* name) { H5Ldelete(f, name, H5P_DEFAULT); }
static void set_attr_str(hid_t f, const char* name, const char* val) {
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, &val);
    H5Aclose(a); H5Sclose(sp); H5Tclose(t);
}
static void set_attr_int(hid_t f, const char* name, int v) {
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT, &v);
    H5Aclose(a); H5Sclose(sp);
}
static void put(hid_t f, const char* name, hid_t type, int rank, const hsize_t* dims, const void* buf) {
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) del(f, name);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d); H5Sclose(sp);
}
/* writes one value at element `idx` (flattened per-case offset) of case i */
static void poke(hid_t f, const char* name, hid_t mem, int i, long idx, const void* val) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8], coord[8];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    coord[0] = i;
    for (int k = rank - 1; k >= 1; k--) { coord[k] = idx % dims[k]; idx /= dims[k]; }
    H5Sselect_elements(sp, H5S_SELECT_SET, 1, coord);
    hsize_t one = 1;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Dwrite(d, mem, ms, sp, H5P_DEFAULT, val);
    H5Sclose(ms); H5Sclose(sp); H5Dclose(d);
}

static void m_no_images(hid_t f) { del(f, "/images"); }
static void m_images_rank4(hid_t f) {
    hsize_t d[4] = {N, C, D, H * W};
    put(f, "/images", H5T_NATIVE_FLOAT, 4, d, R.img);
}
static void m_images_int32(hid_t f) {
    static int32_t buf[N * C * VOX];
    hsize_t d[5] = {N, C, D, H, W};
    put(f, "/images", H5T_NATIVE_INT32, 5, d, buf);
}
static void m_format_wrong(hid_t f) { set_attr_str(f, "format", "vita-log"); }
static void m_format_missing(hid_t f) { H5Adelete(f, "format"); }
static void m_version_2(hid_t f) { set_attr_int(f, "version", 2); }
static void m_version_missing(hid_t f) { H5Adelete(f, "version"); }
static void m_label_range(hid_t f) { uint8_t v = 3; poke(f, "/seg", H5T_NATIVE_UINT8, 2, 17, &v); }
static void m_nan(hid_t f) { float v = NAN; poke(f, "/images", H5T_NATIVE_FLOAT, 3, VOX + 5, &v); }
static void m_inf(hid_t f) { float v = -INFINITY; poke(f, "/images", H5T_NATIVE_FLOAT, 5, 0, &v); }
static void m_no_train(hid_t f) {
    uint8_t s[N];
    for (int i = 0; i < N; i++) s[i] = 1 + i % 3;
    hsize_t d = N;
    put(f, "/split", H5T_NATIVE_UINT8, 1, &d, s);
}
static void m_split_value(hid_t f) { uint8_t v = 7; poke(f, "/split", H5T_NATIVE_UINT8, 4, 0, &v); }
static void m_channels(hid_t f) { set_attr_str(f, "channels", "t2w,adc,hbv"); }
static void m_channels_missing(hid_t f) { H5Adelete(f, "channels"); }
static void m_cls_len(hid_t f) {
    hsize_t d = N - 1;
    put(f, "/cls", H5T_NATIVE_INT32, 1, &d, R.cls);
}
static void m_split_len(hid_t f) {
    uint8_t s[N + 2] = {0};
    hsize_t d = N + 2;
    put(f, "/split", H5T_NATIVE_UINT8, 1, &d, s);
}
static void m_seg_shape(hid_t f) {
    static uint8_t buf[N * VOX];
    hsize_t d[4] = {N, D, W, H};
    put(f, "/seg", H5T_NATIVE_UINT8, 4, d, buf);
}
static void m_cls_value(hid_t f) { int32_t v = 2; poke(f, "/cls", H5T_NATIVE_INT32, 1, 0, &v); }
static void m_no_case_id(hid_t f) { del(f, "/case_id"); }
static void m_no_spacing(hid_t f) { H5Adelete(f, "spacing_zyx"); }
static void m_no_label_names(hid_t f) { H5Adelete(f, "label_names"); }
static void m_no_class_names(hid_t f) { H5Adelete(f, "class_names"); }
static void m_geometry_partial(hid_t f) { del(f, "/geometry/origin"); }
static void m_geometry_shape(hid_t f) {
    static double buf[N * 4];
    hsize_t d[2] = {N, 4};
    put(f, "/geometry/direction", H5T_NATIVE_DOUBLE, 2, d, buf);
}
static void m_fold_value(hid_t f) { int8_t v = -3; poke(f, "/fold", H5T_NATIVE_INT8, 0, 0, &v); }
static void m_cp_shape(hid_t f) {
    static uint8_t buf[N * 3];
    hsize_t d[2] = {N, 3};
    put(f, "/channel_present", H5T_NATIVE_UINT8, 2, d, buf);
}

static void expect_error(const char* ref, const char* label, Mutator m, const char* field,
                         const char* also) {
    char path[256], err[1024] = "", what[400];
    snprintf(path, sizeof path, "%s/bad.h5", g_dir);
    copy_file(ref, path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    m(f);
    H5Fclose(f);
    Dataset ds;
    int rc = dataset_open(&ds, path, err, sizeof err);
    if (rc == 0) dataset_close(&ds);
    int ok = rc == 1 && strstr(err, path) && strstr(err, field) && (!also || strstr(err, also)) &&
             !strchr(err, '\n');
    snprintf(what, sizeof what, "%-26s -> %s", label, err[0] ? err : "(no error)");
    t_true(what, ok);
}

/* ---- concurrency ------------------------------------------------------------------------ */
typedef struct {
    Dataset* ds;
    int tid, rounds, mismatches, errors;
    float* ref;  /* [n][C*vox] */
    uint8_t* refseg;
} ThreadArg;

static void* reader(void* p) {
    ThreadArg* a = p;
    Dataset* ds = a->ds;
    size_t cv = (size_t)ds->C * ds->D * ds->H * ds->W, v = (size_t)ds->D * ds->H * ds->W;
    float* img = malloc(cv * sizeof(float));
    uint8_t* seg = malloc(v);
    char err[512];
    for (int r = 0; r < a->rounds; r++)
        for (int k = 0; k < ds->n; k++) {
            int i = (k * 5 + a->tid * 3 + r) % ds->n;
            if (dataset_read_case(ds, i, img, seg, err, sizeof err)) { a->errors++; continue; }
            a->mismatches += memcmp(img, a->ref + i * cv, cv * sizeof(float)) != 0 ||
                             memcmp(seg, a->refseg + i * v, v) != 0;
        }
    free(img);
    free(seg);
    return NULL;
}

static void concurrent(void) {
    char path[256], err[1024];
    snprintf(path, sizeof path, "%s/conc.h5", g_dir);
    enum { CN = 24, CC = 3, CD = 8, CH = 32, CW = 32 };
    size_t v = (size_t)CD * CH * CW, cv = CC * v;
    DatasetSpec s = {0};
    s.n = CN; s.C = CC; s.D = CD; s.H = CH; s.W = CW;
    s.channels = "t2w,adc,hbv";
    s.label_names = "background,tz,pz,lesion";
    s.spacing_zyx[0] = s.spacing_zyx[1] = s.spacing_zyx[2] = 1;
    s.gzip = 3;
    float* ref = malloc(CN * cv * sizeof(float));
    uint8_t* refseg = malloc(CN * v);
    TRng r = {7};
    for (size_t k = 0; k < CN * cv; k++) ref[k] = (float)trng_normal(&r);
    for (size_t k = 0; k < CN * v; k++) refseg[k] = (uint8_t)trng_int(&r, 0, 3);
    DatasetWriter* w = dataset_create(path, &s, err, sizeof err);
    for (int i = 0; w && i < CN; i++) {
        char id[32];
        snprintf(id, sizeof id, "c%02d", i);
        dataset_write_case(w, i, id, ref + i * cv, refseg + i * v, -1, i % 4, -1, NULL, NULL, NULL,
                           NULL, NULL, NULL);
    }
    int rc = !w || dataset_finish(w, err, sizeof err);
    t_true("concurrency dataset (gzip 3) written", rc == 0);
    Dataset ds;
    if (!t_true("concurrency dataset opens", dataset_open(&ds, path, err, sizeof err) == 0)) return;
    hbool_t ts = 0;
    H5is_library_threadsafe(&ts);
    printf("HDF5 library thread-safe: %s; reads %s\n", ts ? "yes" : "no",
           dataset_h5_serialized() ? "serialised by the dataset lock" : "concurrent");
    pthread_t th[4];
    ThreadArg a[4];
    for (int t = 0; t < 4; t++) {
        a[t] = (ThreadArg){&ds, t, 10, 0, 0, ref, refseg};
        pthread_create(&th[t], NULL, reader, &a[t]);
    }
    int mism = 0, errs = 0;
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        mism += a[t].mismatches;
        errs += a[t].errors;
    }
    t_check("4 threads x 10 rounds x 24 cases: read errors", errs, 0);
    t_check("4 threads x 10 rounds x 24 cases: reads differing from the data", mism, 0);
    dataset_close(&ds);
    free(ref);
    free(refseg);
}

/* ---- targets and int16 ------------------------------------------------------------------ */
static void targets_and_int16(const char* ref) {
    char path[256], err[1024];
    snprintf(path, sizeof path, "%s/extra.h5", g_dir);
    copy_file(ref, path);
    static float tg[N][1 * 2 * 3 * 4];
    static int16_t im16[N][C * VOX];
    TRng r = {3};
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 24; k++) tg[i][k] = (float)trng_normal(&r);
        for (int k = 0; k < C * VOX; k++) im16[i][k] = (int16_t)trng_int(&r, -32768, 32767);
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/targets", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    hsize_t d[5] = {N, 1, 2, 3, 4};
    put(f, "/targets/sr", H5T_NATIVE_FLOAT, 5, d, tg);
    hsize_t di[5] = {N, C, D, H, W};
    put(f, "/images", H5T_NATIVE_INT16, 5, di, im16);
    H5Fclose(f);
    Dataset ds;
    if (!t_true("dataset with /targets/sr and int16 /images opens", dataset_open(&ds, path, err, sizeof err) == 0)) {
        printf("  %s\n", err);
        return;
    }
    t_true("n_targets 1, name sr, images_int16", ds.n_targets == 1 && !strcmp(ds.targets[0], "sr") && ds.images_int16);
    float out[24];
    int dims[4] = {0};
    int rc = dataset_read_target(&ds, 4, "sr", out, dims, err, sizeof err);
    t_true("read_target case 4: dims [1,2,3,4] and bit-exact values",
           rc == 0 && dims[0] == 1 && dims[1] == 2 && dims[2] == 3 && dims[3] == 4 &&
           memcmp(out, tg[4], sizeof out) == 0);
    float img[C * VOX];
    int bad = 0;
    for (int i = 0; i < N; i++) {
        bad += dataset_read_case(&ds, i, img, NULL, err, sizeof err) != 0;
        for (int k = 0; k < C * VOX; k++) bad += img[k] != (float)im16[i][k];
    }
    t_check("int16 images read as exact floats: mismatches", bad, 0);
    dataset_close(&ds);
    t_true("vita info of a dataset with targets and int16 images returns 0", dataset_print_info(path) == 0);
}

static void writer_errors(void) {
    char path[256], err[1024];
    snprintf(path, sizeof path, "%s/w.h5", g_dir);
    DatasetSpec s = ref_spec(0);
    s.channels = "t2w";
    t_true("dataset_create: channels not matching C is an error",
           dataset_create(path, &s, err, sizeof err) == NULL && strstr(err, "channels"));
    s = ref_spec(0);
    DatasetWriter* w = dataset_create(path, &s, err, sizeof err);
    t_true("writer: target absent while writing (temp file only)", w && access(path, F_OK) != 0 && count_tmp_files() == 1);
    float bad[C * VOX];
    memcpy(bad, R.img[0], sizeof bad);
    bad[7] = NAN;
    for (int i = 0; w && i < N; i++)
        dataset_write_case(w, i, R.id[i], i == 2 ? bad : R.img[i], R.seg[i], R.cls[i], R.split[i],
                           R.fold[i], NULL, NULL, NULL, NULL, NULL, NULL);
    int rc = w ? dataset_finish(w, err, sizeof err) : 0;
    t_true("writer: a NaN image makes dataset_finish fail naming the case", rc == 1 && strstr(err, R.id[2]));
    t_true("writer: failed write leaves neither target nor temp file", access(path, F_OK) != 0 && count_tmp_files() == 0);
    w = dataset_create(path, &s, err, sizeof err);
    for (int i = 0; w && i < N - 1; i++)
        dataset_write_case(w, i, R.id[i], R.img[i], R.seg[i], R.cls[i], R.split[i], R.fold[i], NULL,
                           NULL, NULL, NULL, NULL, NULL);
    rc = w ? dataset_finish(w, err, sizeof err) : 0;
    t_true("writer: a case never written makes dataset_finish fail", rc == 1 && strstr(err, "never written"));
    t_true("writer: ... and leaves no file behind", access(path, F_OK) != 0 && count_tmp_files() == 0);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/vita_test_dataset_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    make_ref();
    /* the serialised path (what a non-thread-safe HDF5 gets), forced in a child process before
     * this process touches HDF5: VITA_HDF5_LOCK=1 makes dataset.c take its lock around every call */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("VITA_HDF5_LOCK", "1", 1);
        printf("--- child process with VITA_HDF5_LOCK=1:\n");
        concurrent();
        t_true("child: dataset_h5_serialized() is 1", dataset_h5_serialized() == 1);
        fflush(stdout);
        _exit(t_failed ? 1 : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    t_true("concurrent reads under the forced HDF5 lock (child process)", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char ref[256], refz[256], cmd[1024];
    snprintf(ref, sizeof ref, "%s/ref.h5", g_dir);
    snprintf(refz, sizeof refz, "%s/refz.h5", g_dir);
    round_trip(ref, 0);
    round_trip(refz, 6);
    writer_errors();

    /* validation: every malformed file gives one line naming the file and the field */
    expect_error(ref, "missing /images", m_no_images, "/images", NULL);
    expect_error(ref, "/images rank 4", m_images_rank4, "/images", "rank 4");
    expect_error(ref, "/images int32", m_images_int32, "/images", "float32 or int16");
    expect_error(ref, "format wrong", m_format_wrong, "format", "vita-log");
    expect_error(ref, "format missing", m_format_missing, "format", NULL);
    expect_error(ref, "version 2", m_version_2, "version", NULL);
    expect_error(ref, "version missing", m_version_missing, "version", NULL);
    expect_error(ref, "label out of range", m_label_range, "/seg", R.id[2]);
    expect_error(ref, "NaN in an image", m_nan, "NaN", R.id[3]);
    expect_error(ref, "Inf in an image", m_inf, "Inf", R.id[5]);
    expect_error(ref, "empty train split", m_no_train, "/split", "train");
    expect_error(ref, "split value 7", m_split_value, "/split", R.id[4]);
    expect_error(ref, "channels vs C", m_channels, "channels", "C=2");
    expect_error(ref, "channels missing", m_channels_missing, "channels", NULL);
    expect_error(ref, "/cls first dim N-1", m_cls_len, "/cls", "first dimension");
    expect_error(ref, "/split first dim N+2", m_split_len, "/split", "first dimension");
    expect_error(ref, "/seg grid mismatch", m_seg_shape, "/seg", "shape");
    expect_error(ref, "/cls value 2", m_cls_value, "/cls", R.id[1]);
    expect_error(ref, "/fold value -3", m_fold_value, "/fold", R.id[0]);
    expect_error(ref, "missing /case_id", m_no_case_id, "/case_id", NULL);
    expect_error(ref, "missing spacing_zyx", m_no_spacing, "spacing_zyx", NULL);
    expect_error(ref, "/seg without label_names", m_no_label_names, "label_names", NULL);
    expect_error(ref, "/cls without class_names", m_no_class_names, "class_names", NULL);
    expect_error(ref, "partial /geometry", m_geometry_partial, "/geometry/origin", NULL);
    expect_error(ref, "direction [N,4]", m_geometry_shape, "/geometry/direction", NULL);
    expect_error(ref, "channel_present [N,3]", m_cp_shape, "/channel_present", NULL);
    {
        char path[256], err[1024];
        snprintf(path, sizeof path, "%s/text.h5", g_dir);
        FILE* f = fopen(path, "w");
        fputs("not hdf5\n", f);
        fclose(f);
        Dataset ds;
        t_true("a text file: one line naming it as not HDF5",
               dataset_open(&ds, path, err, sizeof err) == 1 && strstr(err, path) && strstr(err, "not an HDF5"));
        snprintf(path, sizeof path, "%s/missing.h5", g_dir);
        t_true("a missing file: one line naming it",
               dataset_open(&ds, path, err, sizeof err) == 1 && strstr(err, path) && !strchr(err, '\n'));
    }

    targets_and_int16(ref);
    t_true("vita info of the reference dataset returns 0", dataset_print_info(ref) == 0);
    {
        char path[256];
        snprintf(path, sizeof path, "%s/bad.h5", g_dir);  /* the last malformed file */
        t_true("vita info of a malformed dataset returns 1", dataset_print_info(path) == 1);
    }
    concurrent();

    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0) {
        const char* src = getenv("VITA_SRC") ? getenv("VITA_SRC") : ".";
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/dataset_check.py %s && "
                 "/usr/bin/python3 %s/tests/oracle/dataset_check.py %s", src, ref, src, refz);
        int st = system(cmd);
        t_true("h5py reads both reference files (tests/oracle/dataset_check.py)", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    } else {
        printf("SKIP h5py cross-check (python3-h5py not installed; make deps installs it)\n");
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    return t_summary();
}
