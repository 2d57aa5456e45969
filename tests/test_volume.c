/* tests/test_volume.c — engine/volume*.c: NIfTI-1/2 and MetaImage round trips (geometry with a
 * non-identity direction and anisotropic spacing, scl_slope/inter, zlib-compressed MHA, .mhd +
 * raw, 4-D components), byte-level checks of the on-disk orientation conventions (RAS in NIfTI,
 * LPS in MetaImage), resampling (identity exact, linear exact on a linear ramp, B-spline
 * through the samples and exact on a cubic away from the mirror boundary, nearest for labels)
 * and one-line errors on damaged files. Files go to a temp directory removed at the end. */
#include "testing.h"
#include "../engine/volume_internal.h"
#include "../engine/dataset.h"

#include <math.h>
#include <nifti2_io.h>
#include <sys/stat.h>

static char g_dir[256];

static void path_of(char* out, size_t n, const char* name) { snprintf(out, n, "%s/%s", g_dir, name); }

/* a rotation (about z by 30 deg then x by 20 deg) with a flip of the z axis: a direction no
 * axis-aligned code path can get right by accident */
static void test_geometry(Volume* v, int nz, int ny, int nx) {
    const double sp[3] = {3.0, 0.6, 0.5};
    volume_geometry_init(v, nz, ny, nx, sp);
    double a = M_PI / 6, b = M_PI / 9;
    double Rz[9] = {cos(a), -sin(a), 0, sin(a), cos(a), 0, 0, 0, 1};
    double Rx[9] = {1, 0, 0, 0, cos(b), -sin(b), 0, sin(b), cos(b)};
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) {
            double s = 0;
            for (int k = 0; k < 3; k++) s += Rx[r * 3 + k] * Rz[k * 3 + c];
            v->dir[r * 3 + c] = c == 2 ? -s : s;
        }
    v->origin[0] = -12.5; v->origin[1] = 30.25; v->origin[2] = 7.75;
}

static void fill_random(Volume* v, uint64_t seed, int integer) {
    TRng r = {seed};
    size_t n = (size_t)v->nx * v->ny * v->nz;
    v->data = malloc(n * sizeof(float));
    for (size_t k = 0; k < n; k++)
        v->data[k] = integer ? (float)trng_int(&r, 0, 5) : (float)(trng_uniform(&r) * 2000 - 500);
}

static double geom_diff(const Volume* a, const Volume* b) {
    double d = 0;
    for (int k = 0; k < 3; k++) d = fmax(d, fabs(a->spacing[k] - b->spacing[k]) + fabs(a->origin[k] - b->origin[k]));
    for (int k = 0; k < 9; k++) d = fmax(d, fabs(a->dir[k] - b->dir[k]));
    if (a->nx != b->nx || a->ny != b->ny || a->nz != b->nz) d = INFINITY;
    return d;
}

static double data_diff(const Volume* a, const Volume* b) {
    size_t n = (size_t)a->nx * a->ny * a->nz;
    double d = 0;
    for (size_t k = 0; k < n; k++) d = fmax(d, fabs((double)a->data[k] - b->data[k]));
    return d;
}

static void round_trip(const char* name, int labels) {
    Volume v, w;
    test_geometry(&v, 5, 7, 9);
    fill_random(&v, 11, labels);
    char p[512], err[512], what[128];
    path_of(p, sizeof p, name);
    int rc = volume_write(p, &v, labels, err, sizeof err);
    if (rc) printf("  write: %s\n", err);
    rc = rc || volume_read(p, &w, -1, err, sizeof err);
    if (rc) printf("  read: %s\n", err);
    snprintf(what, sizeof what, "%s: write + read succeed", name);
    t_true(what, !rc);
    if (rc) { volume_free(&v); return; }
    /* MetaImage %.17g text keeps doubles: geometry survives to double rounding of a 3x3
     * product and a sqrt (~1e-15 relative on values ~30 mm), 1e-9 leaves ample room; NIfTI-1
     * stores srow / pixdim as float32: 2^-24 * 30 mm = 1.8e-6, bound 4e-6. Any convention
     * error (a flipped axis, a transposed matrix) is >= 1e-1. */
    snprintf(what, sizeof what, "%s: geometry max |diff|", name);
    t_check(what, geom_diff(&v, &w), vol_ends_with(name, ".nii") || vol_ends_with(name, ".nii.gz") ? 4e-6 : 1e-9);
    snprintf(what, sizeof what, "%s: voxels max |diff| (float32 stored as is)", name);
    t_check(what, data_diff(&v, &w), 0);
    snprintf(what, sizeof what, "%s: is_integer flag", name);
    t_true(what, w.is_integer == labels);
    volume_free(&v);
    volume_free(&w);
}

/* world of index (1,2,3) from the file's own fields (not through vita's reader) */
static void check_nifti_fields(void) {
    Volume v;
    test_geometry(&v, 4, 5, 6);
    fill_random(&v, 3, 0);
    char p[512], err[512];
    path_of(p, sizeof p, "fields.nii");
    t_true("fields.nii written", !volume_write(p, &v, 0, err, sizeof err));
    nifti_set_debug_level(0);
    nifti_image* nim = nifti_image_read(p, 0);
    t_true("fields.nii readable by nifticlib", nim != NULL);
    if (!nim) return;
    double idx[3] = {1, 2, 3}, lps[3], ras[3];
    volume_index_to_world(&v, idx, lps);
    for (int r = 0; r < 3; r++)
        ras[r] = nim->sto_xyz.m[r][0] * 1 + nim->sto_xyz.m[r][1] * 2 + nim->sto_xyz.m[r][2] * 3 + nim->sto_xyz.m[r][3];
    /* RAS = (-L, -P, S) */
    double d = fabs(ras[0] + lps[0]) + fabs(ras[1] + lps[1]) + fabs(ras[2] - lps[2]);
    /* srow is float32 in NIfTI-1: 3 coordinates x 2^-24 x ~40 mm -> 1e-5 */
    t_check("NIfTI sform maps index to RAS = (-x, -y, z) of LPS world", d, 1e-5);
    double dq = 0;
    for (int r = 0; r < 3; r++)
        dq += fabs(nim->qto_xyz.m[r][0] * 1 + nim->qto_xyz.m[r][1] * 2 + nim->qto_xyz.m[r][2] * 3 + nim->qto_xyz.m[r][3] - ras[r]);
    /* qform is built from a quaternion with float64 parameters (the header stores float32:
     * but the value read back here is from the file, so ~1e-6 relative of 30 mm) */
    t_check("NIfTI qform agrees with sform (float32 quaternion in the header)", dq, 1e-3);
    t_true("NIfTI sform_code and qform_code 1", nim->sform_code == 1 && nim->qform_code == 1);
    nifti_image_free(nim);
    volume_free(&v);
}

/* a NIfTI file with scl_slope/inter, int16 voxels, no sform (qform only) */
static void check_nifti_scaling(void) {
    int64_t dims[8] = {3, 4, 3, 2, 1, 1, 1, 1};
    nifti_image* nim = nifti_make_new_nim(dims, DT_INT16, 1);
    int16_t* d = nim->data;
    for (int k = 0; k < 24; k++) d[k] = (int16_t)(k * 7 - 40);
    nim->scl_slope = 0.5;
    nim->scl_inter = 10;
    nim->pixdim[1] = nim->dx = 0.7;
    nim->pixdim[2] = nim->dy = 0.8;
    nim->pixdim[3] = nim->dz = 2.5;
    nim->qform_code = 1;
    nim->sform_code = 0;
    nim->quatern_b = nim->quatern_c = nim->quatern_d = 0;
    nim->qfac = 1;
    nim->qoffset_x = 5; nim->qoffset_y = -6; nim->qoffset_z = 7;
    char p[512], err[512];
    path_of(p, sizeof p, "scaled.nii.gz");
    nifti_set_filenames(nim, p, 0, 1);
    nifti_image_write(nim);
    nifti_image_free(nim);
    Volume v;
    int rc = volume_read(p, &v, -1, err, sizeof err);
    if (rc) printf("  %s\n", err);
    t_true("scaled.nii.gz (int16, qform only) reads", !rc);
    if (rc) return;
    double e = 0;
    for (int k = 0; k < 24; k++) e = fmax(e, fabs(v.data[k] - (0.5 * (k * 7 - 40) + 10)));
    t_check("scl_slope 0.5 / scl_inter 10 applied (exact in float)", e, 0);
    t_true("scaled int16 is not flagged integer", v.is_integer == 0);
    /* identity qform in RAS -> LPS direction diag(-1,-1,1), origin (-5, 6, 7) */
    double g = fabs(v.dir[0] + 1) + fabs(v.dir[4] + 1) + fabs(v.dir[8] - 1) + fabs(v.origin[0] + 5) +
               fabs(v.origin[1] - 6) + fabs(v.origin[2] - 7) + fabs(v.spacing[0] - 2.5) +
               fabs(v.spacing[1] - 0.8) + fabs(v.spacing[2] - 0.7);
    /* pixdim is float32 in the NIfTI-1 header: 0.7 -> 0.699999988 (1.2e-8) */
    t_check("qform-only geometry (RAS identity -> LPS flips x, y)", g, 1e-6);
    volume_free(&v);
}

static void check_components(const char* name) {
    Volume a, b, r;
    test_geometry(&a, 3, 4, 5);
    fill_random(&a, 5, 0);
    b = a;
    fill_random(&b, 6, 0);
    const Volume* comps[2] = {&a, &b};
    char p[512], err[512], what[160];
    path_of(p, sizeof p, name);
    int rc = vol_ends_with(name, ".mha") ? volume_mha_write(p, comps, 2, 0, 1, err, sizeof err)
                                         : volume_nifti_write(p, comps, 2, 0, err, sizeof err);
    if (rc) printf("  %s\n", err);
    rc = rc || volume_read(p, &r, 1, err, sizeof err);
    if (rc) printf("  %s\n", err);
    snprintf(what, sizeof what, "%s: 4-D file, component 1 reads", name);
    t_true(what, !rc);
    if (!rc) {
        snprintf(what, sizeof what, "%s: component 1 voxels", name);
        t_check(what, data_diff(&b, &r), 0);
        snprintf(what, sizeof what, "%s: component 1 geometry", name);
        t_check(what, geom_diff(&b, &r), vol_ends_with(name, ".mha") ? 1e-9 : 4e-6);
        volume_free(&r);
        rc = volume_read(p, &r, 2, err, sizeof err);
        snprintf(what, sizeof what, "%s: component 2 of 2 -> one-line error", name);
        t_true(what, rc == 1 && strstr(err, name) && strstr(err, "component") && !strchr(err, '\n'));
        printf("  (%s)\n", err);
    }
    volume_free(&a);
    volume_free(&b);
}

/* a NIfTI-2 file built field by field (nifti2.h's header struct, not through vita's or
 * nifticlib's writer): float64 sform with a shear-free rotation, int32 voxels, 2 volumes */
static void check_nifti2(void) {
    int64_t dims[8] = {4, 3, 4, 2, 2, 1, 1, 1};
    nifti_2_header* h = nifti_make_new_n2_header(dims, DT_INT32);
    h->vox_offset = 544;
    memcpy(h->magic, "n+2\0\r\n\032\n", 8);
    h->pixdim[1] = 0.6; h->pixdim[2] = 0.7; h->pixdim[3] = 3.3;
    h->sform_code = 2;
    h->qform_code = 0;
    /* RAS srow: x index along -R (= +L) * 0.6, y index along +A * 0.7, z along +S * 3.3 */
    double srow[3][4] = {{-0.6, 0, 0, 11.125}, {0, 0.7, 0, -20.5}, {0, 0, 3.3, 0.1}};
    memcpy(h->srow_x, srow[0], sizeof srow[0]);
    memcpy(h->srow_y, srow[1], sizeof srow[1]);
    memcpy(h->srow_z, srow[2], sizeof srow[2]);
    char p[512], err[512];
    path_of(p, sizeof p, "hand2.nii");
    FILE* f = fopen(p, "wb");
    fwrite(h, sizeof *h, 1, f);
    char ext[4] = {0, 0, 0, 0};
    fwrite(ext, 1, 4, f);
    for (int k = 0; k < 48; k++) {
        int32_t v = k * 1000 - 7;
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
    free(h);
    Volume v;
    int rc = volume_read(p, &v, 1, err, sizeof err);
    if (rc) printf("  %s\n", err);
    t_true("hand-built NIfTI-2 (540-byte header) reads, component 1", !rc && sizeof(nifti_2_header) == 540);
    if (rc) return;
    double e = 0;
    for (int k = 0; k < 24; k++) e = fmax(e, fabs(v.data[k] - ((24 + k) * 1000 - 7)));
    t_check("NIfTI-2 int32 voxels of the second volume", e, 0);
    /* LPS: direction x = (+1, 0, 0) (RAS -R), y = (0, -1, 0) (RAS +A = -P), z = +S;
     * origin LPS = (-11.125, 20.5, 0.1); float64 fields: exact */
    double g = fabs(v.dir[0] - 1) + fabs(v.dir[4] + 1) + fabs(v.dir[8] - 1) + fabs(v.origin[0] + 11.125) +
               fabs(v.origin[1] - 20.5) + fabs(v.origin[2] - 0.1) + fabs(v.spacing[2] - 0.6) +
               fabs(v.spacing[1] - 0.7) + fabs(v.spacing[0] - 3.3);
    t_check("NIfTI-2 float64 sform -> LPS geometry", g, 1e-12);
    volume_free(&v);
}

/* a MetaImage header written by hand: TransformMatrix values are the direction columns one
 * after another (ITK), MET_SHORT big-endian, .mhd + external raw */
static void check_mha_handwritten(void) {
    char hp[512], rp[512], err[512];
    path_of(hp, sizeof hp, "hand.mhd");
    path_of(rp, sizeof rp, "hand.raw");
    FILE* f = fopen(hp, "w");
    fprintf(f, "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = True\n"
            "CompressedData = False\nTransformMatrix = 0 1 0 -1 0 0 0 0 1\nOffset = 1 2 3\n"
            "AnatomicalOrientation = PLI\nElementSpacing = 0.5 0.75 4\nDimSize = 3 2 2\n"
            "ElementType = MET_SHORT\nElementDataFile = hand.raw\n");
    fclose(f);
    f = fopen(rp, "wb");
    for (int k = 0; k < 12; k++) {
        int v = k * 300 - 1000;
        unsigned char b[2] = {(unsigned char)((v >> 8) & 255), (unsigned char)(v & 255)};
        fwrite(b, 1, 2, f);
    }
    fclose(f);
    Volume v;
    int rc = volume_read(hp, &v, -1, err, sizeof err);
    if (rc) printf("  %s\n", err);
    t_true("hand-written .mhd (MSB MET_SHORT, external raw) reads", !rc);
    if (rc) return;
    double e = 0;
    for (int k = 0; k < 12; k++) e = fmax(e, fabs(v.data[k] - (k * 300 - 1000)));
    t_check("big-endian shorts decoded", e, 0);
    /* axis x along (0,1,0) LPS, y along (-1,0,0): world of index (1,1,1) = (1-0.75, 2+0.5, 3+4) */
    double idx[3] = {1, 1, 1}, w[3];
    volume_index_to_world(&v, idx, w);
    t_check("TransformMatrix columns: world of index (1,1,1)",
            fabs(w[0] - 0.25) + fabs(w[1] - 2.5) + fabs(w[2] - 7), 1e-12);
    t_true("MET_SHORT flagged integer", v.is_integer == 1);
    double back[3];
    volume_world_to_index(&v, w, back);
    t_check("world_to_index inverts index_to_world", fabs(back[0] - 1) + fabs(back[1] - 1) + fabs(back[2] - 1), 1e-12);
    volume_free(&v);
}

static void expect_error(const char* name, const char* content, size_t len, const char* field) {
    char p[512], err[512] = "", what[200];
    path_of(p, sizeof p, name);
    FILE* f = fopen(p, "wb");
    fwrite(content, 1, len, f);
    fclose(f);
    Volume v;
    int rc = volume_read(p, &v, -1, err, sizeof err);
    snprintf(what, sizeof what, "bad file %s -> one line naming it and '%s'", name, field);
    t_true(what, rc == 1 && strstr(err, p) && strstr(err, field) && !strchr(err, '\n') && !v.data);
    printf("  (%s)\n", err);
}

static void check_bad_files(void) {
    /* damaged MetaImage headers: file name, content, the field the error must name */
    static const char* bad[][3] = {
        {"short.mha", "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_FLOAT\n"
                      "ElementDataFile = LOCAL\n0123", "truncated"},
        {"type.mha", "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_BOGUS\n"
                     "ElementDataFile = LOCAL\n", "ElementType"},
        {"dims.mha", "ObjectType = Image\nNDims = 3\nDimSize = 2 2\nElementType = MET_UCHAR\n"
                     "ElementDataFile = LOCAL\n", "DimSize"},
        {"zlib.mha", "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n"
                     "CompressedData = True\nElementDataFile = LOCAL\nnot zlib at all", "CompressedData"},
        {"singular.mha", "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nTransformMatrix = 1 0 0 0 1 0 0 0 0\n"
                         "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n01234567", "TransformMatrix"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) expect_error(bad[k][0], bad[k][1], strlen(bad[k][1]), bad[k][2]);
    char junk[400];
    memset(junk, 'x', sizeof junk);
    expect_error("junk.nii", junk, sizeof junk, "NIfTI");
    /* a valid NIfTI cut in the middle of its data */
    Volume v;
    test_geometry(&v, 4, 8, 8);
    fill_random(&v, 9, 0);
    char p[512], err[512];
    path_of(p, sizeof p, "cut.nii");
    volume_write(p, &v, 0, err, sizeof err);
    t_true("cut.nii: truncate to 600 bytes", truncate(p, 600) == 0);
    Volume w;
    int rc = volume_read(p, &w, -1, err, sizeof err);
    t_true("truncated NIfTI -> one-line error naming the file", rc == 1 && strstr(err, p) && !strchr(err, '\n'));
    printf("  (%s)\n", err);
    volume_free(&v);
    rc = volume_read("/nonexistent/x.nii.gz", &w, -1, err, sizeof err);
    t_true("missing file -> error naming it", rc == 1 && strstr(err, "/nonexistent/x.nii.gz"));
    expect_error("image.png", "abc", 3, "unknown image format");
}

/* ---- resampling ---------------------------------------------------------------------------- */
static void check_resample(void) {
    char err[512];
    Volume src;
    test_geometry(&src, 6, 7, 8);
    fill_random(&src, 21, 0);
    for (int interp = 0; interp <= 3; interp += interp == 1 ? 2 : 1) {
        Volume dst = src;
        dst.data = NULL;
        volume_resample(&src, &dst, interp, -7, err, sizeof err);
        char what[120];
        /* identity grid: nearest/linear hit the samples exactly (weights 0/1); the B-spline
         * interpolates the samples up to double rounding of the prefilter (~1e-13 relative
         * on values ~2000, then float32 rounding 2000 * 6e-8 = 1.2e-4) */
        snprintf(what, sizeof what, "resample onto its own grid (interp %d) max |diff|", interp);
        t_check(what, data_diff(&src, &dst), interp == 3 ? 2.5e-4 : 0);
        volume_free(&dst);
    }
    /* linear ramp f = 2x - 3y + 5z (index units of the source): trilinear is exact for it;
     * destination grid rotated/shifted and finer inside the source */
    Volume ramp;
    test_geometry(&ramp, 8, 9, 10);
    size_t n = 8 * 9 * 10;
    ramp.data = malloc(n * sizeof(float));
    Volume cubic = ramp;
    cubic.data = malloc(n * sizeof(float));
    for (int z = 0; z < 8; z++)
        for (int y = 0; y < 9; y++)
            for (int x = 0; x < 10; x++) {
                ramp.data[(z * 9 + y) * 10 + x] = (float)(2 * x - 3 * y + 5 * z);
                cubic.data[(z * 9 + y) * 10 + x] = 0;
            }
    Volume dst;
    double sp[3] = {1.1, 0.4, 0.3};
    volume_geometry_init(&dst, 4, 6, 7, sp);
    double c0[3] = {3.3, 4.1, 3.2}, w[3];
    volume_index_to_world(&ramp, c0, w);
    memcpy(dst.origin, w, sizeof w);
    double maxe = 0, outside = 0;
    volume_resample(&ramp, &dst, VOL_LINEAR, NAN, err, sizeof err);
    for (int z = 0; z < dst.nz; z++)
        for (int y = 0; y < dst.ny; y++)
            for (int x = 0; x < dst.nx; x++) {
                double i[3] = {x, y, z}, wo[3], s[3];
                volume_index_to_world(&dst, i, wo);
                volume_world_to_index(&ramp, wo, s);
                float got = dst.data[(z * dst.ny + y) * dst.nx + x];
                int in = s[0] >= 0 && s[0] <= 9 && s[1] >= 0 && s[1] <= 8 && s[2] >= 0 && s[2] <= 7;
                if (in) maxe = fmax(maxe, fabs(got - (2 * s[0] - 3 * s[1] + 5 * s[2])));
                else if (s[0] < -0.5 || s[0] > 9.5 || s[1] < -0.5 || s[1] > 8.5 || s[2] < -0.5 || s[2] > 7.5)
                    outside += !isnan(got);
            }
    /* values up to ~50: float32 output rounding 50 * 6e-8 = 3e-6, plus the double geometry */
    t_check("linear on a linear ramp, rotated finer grid: max |err|", maxe, 1e-5);
    t_check("points outside the source get the fill value (count not filled)", outside, 0);
    volume_free(&dst);
    /* B-spline along x on a long line: f(x) = ((x - 20) / 10)^3 - ((x - 20)/10) + 0.5 */
    Volume line;
    double sp1[3] = {1, 1, 1};
    volume_geometry_init(&line, 1, 1, 41, sp1);
    line.data = malloc(41 * sizeof(float));
    for (int x = 0; x < 41; x++) {
        double u = (x - 20) / 10.0;
        line.data[x] = (float)(u * u * u - u + 0.5);
    }
    Volume fine;
    double spf[3] = {1, 1, 0.25};
    volume_geometry_init(&fine, 1, 1, 41, spf);
    fine.origin[0] = 15;   /* x in [15, 25]: 15 samples from either end */
    volume_resample(&line, &fine, VOL_BSPLINE, NAN, err, sizeof err);
    maxe = 0;
    for (int k = 0; k < 41; k++) {
        double x = 15 + 0.25 * k, u = (x - 20) / 10.0;
        maxe = fmax(maxe, fabs(fine.data[k] - (u * u * u - u + 0.5)));
    }
    /* cubic splines reproduce cubics exactly on an infinite line; the mirror boundary perturbs
     * coefficients by |z|^k = 0.268^k at distance k: 0.268^15 * (value ~8 at the ends) ~ 2e-8,
     * plus float32 samples (1e-7 relative, gain ~3 through the prefilter) -> 1e-6 bound */
    t_check("B-spline reproduces a cubic 15+ samples from the boundary", maxe, 1e-6);
    volume_free(&fine);
    volume_free(&line);
    /* nearest on labels: only source values appear; a shift by exactly one voxel moves labels */
    Volume lab;
    test_geometry(&lab, 5, 6, 7);
    fill_random(&lab, 33, 1);
    Volume sh = lab;
    sh.data = NULL;
    double one[3] = {1, 0, 0};
    volume_index_to_world(&lab, one, sh.origin);
    volume_resample(&lab, &sh, VOL_NEAREST, 0, err, sizeof err);
    double e = 0;
    for (int z = 0; z < 5; z++)
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 6; x++)
                e = fmax(e, fabs(sh.data[(z * 6 + y) * 7 + x] - lab.data[(z * 6 + y) * 7 + x + 1]));
    t_check("nearest: grid shifted one voxel in x picks the neighbour's label", e, 0);
    int last_fill = 1;
    for (int z = 0; z < 5; z++)
        for (int y = 0; y < 6; y++) last_fill &= sh.data[(z * 6 + y) * 7 + 6] == 0;
    t_true("nearest: the column shifted out of the source is fill (0)", last_fill);
    volume_free(&sh);
    volume_free(&lab);
    volume_free(&ramp);
    volume_free(&cubic);
    volume_free(&src);
}

/* volume_dataset_grids: dataset voxel (k, j, i) sits at origin + dir * diag(grid_spacing) *
 * (i + ox, j + oy, k + oz) (volume.h), checked at a corner and an interior voxel */
static void check_dataset_grids(void) {
    Volume g0;
    test_geometry(&g0, 1, 1, 1);
    double sp[3] = {3.0, 0.6, 0.5}, gs[3] = {2.0, 1.0, 1.0}, org[3] = {1.5, -2, 4};
    int32_t shape[3] = {20, 300, 280}, crop[3] = {-2, 40, 33};
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n = 1; ds.D = 16; ds.H = 64; ds.W = 48;
    ds.g_spacing = sp; ds.g_origin = org; ds.g_direction = g0.dir; ds.g_grid_spacing = gs;
    ds.g_shape_original = shape; ds.g_crop_offset = crop;
    Volume nat, grid;
    volume_dataset_grids(&ds, 0, &nat, &grid);
    t_true("dataset grids: native shape / grid shape", nat.nz == 20 && nat.ny == 300 && nat.nx == 280 &&
           grid.nz == 16 && grid.ny == 64 && grid.nx == 48 && !nat.data && !grid.data);
    double e = 0;
    int pts[2][3] = {{0, 0, 0}, {5, 7, 11}};   /* (i, j, k) */
    for (int q = 0; q < 2; q++) {
        double idx[3] = {pts[q][0], pts[q][1], pts[q][2]}, w[3], want[3];
        volume_index_to_world(&grid, idx, w);
        double s[3] = {gs[2] * (pts[q][0] + crop[2]), gs[1] * (pts[q][1] + crop[1]), gs[0] * (pts[q][2] + crop[0])};
        for (int r = 0; r < 3; r++)
            want[r] = org[r] + g0.dir[r * 3] * s[0] + g0.dir[r * 3 + 1] * s[1] + g0.dir[r * 3 + 2] * s[2];
        for (int r = 0; r < 3; r++) e = fmax(e, fabs(w[r] - want[r]));
    }
    /* double arithmetic on values ~100 mm: 1e-12 */
    t_check("dataset grids: grid voxel world = volume.h formula", e, 1e-12);
    double d = 0;
    for (int k = 0; k < 9; k++) d = fmax(d, fabs(grid.dir[k] - g0.dir[k]) + fabs(nat.dir[k] - g0.dir[k]));
    t_check("dataset grids: both grids keep the case's direction", d, 0);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/vita_test_volume_%d", (int)getpid());
    if (mkdir(g_dir, 0700) != 0) { perror(g_dir); return 2; }
    round_trip("geo.nii", 0);
    round_trip("geo.nii.gz", 0);
    round_trip("lab.nii.gz", 1);
    round_trip("geo.mha", 0);
    round_trip("lab.mha", 1);
    round_trip("geo.mhd", 0);
    check_nifti_fields();
    check_nifti_scaling();
    check_components("four.nii.gz");
    check_components("four.mha");
    check_nifti2();
    check_mha_handwritten();
    check_bad_files();
    check_resample();
    check_dataset_grids();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (getenv("KEEP")) cmd[0] = 0;
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_dir);
    return t_summary();
}
