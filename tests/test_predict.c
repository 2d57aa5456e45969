/* tests/test_predict.c — `vita predict`'s map from the dataset grid back to each case's native
 * geometry (engine/predict.c predict_to_native), without a model:
 *  (a) hand-computed positions: a tiny dataset whose /geometry says the native T2w grid has a
 *      non-identity direction (a rotation times an x flip), anisotropic spacing (z,y,x) =
 *      (3.0, 0.6, 0.5) mm, a resampled grid_spacing (1.0, 1.0, 1.5) (z upsampled 3x, y and x
 *      downsampled by 5/3 and 3) and a crop offset (2, 3, -1) whose -1 pads one voxel on the
 *      low x side. A label volume on the dataset grid is mapped back; every native voxel must
 *      hold the label of the dataset voxel whose centre is nearest to its world position, both
 *      positions computed here by hand from volume.h's formulas (world = origin +
 *      dir·diag(spacing)·index; dataset voxel (k,j,i) at origin + dir·diag(grid_spacing)·
 *      (i + ox, j + oy, k + oz)), 0 where that position is outside the dataset grid. The
 *      output's geometry must be the native one (volume_index_to_world agrees with the hand
 *      formula), and the NIfTI written and read back must hold the same labels and geometry.
 *  (b) round trip: labels written in native space, resampled onto the dataset grid as the
 *      importer does (nearest neighbour, volume_resample onto the case's grid) and mapped back
 *      must come back on the same native voxels (Dice = 1): blocks along the downsampled axes
 *      are unions of the native voxels nearest to a run of coarse voxels (what a coarser grid
 *      can represent; a block edge inside a coarse voxel cannot survive any resampling), any
 *      run along the upsampled axis.
 *  (c) a case without geometry (identity, native = grid): the map is the identity.
 * Geometry ratios are chosen so that no voxel centre maps to within 0.1 voxel of a
 * nearest-neighbour tie (3j/5, 5k/3, j/3, k/3 never have fraction 0.5): rounding in the
 * composed affine (~1e-13) cannot flip a label, so every comparison is exact (threshold 0). */
#include <sys/stat.h>

#include "../engine/dataset.h"
#include "../engine/predict.h"
#include "../engine/volume.h"
#include "testing.h"

#define GD 20
#define GH 14
#define GW 13

static const double SP[3] = {3.0, 0.6, 0.5};      /* native spacing (z, y, x) */
static const double GS[3] = {1.0, 1.0, 1.5};      /* resampled grid spacing (z, y, x) */
static const int32_t SHAPE[3] = {8, 30, 36};      /* native shape; resampled = (24, 18, 12) */
static const int32_t CROP[3] = {2, 3, -1};        /* dataset (0,0,0) in the resampled grid */
static const double ORIGIN[3] = {-31.7, 12.3, 55.1};
static double DIR[9];

static char g_dir[256];

/* DIR = R(axis (1,2,3), 25°) · diag(-1, 1, 1): a rotation and an x flip (det -1) */
static void make_direction(void) {
    double ax[3] = {1, 2, 3}, n = sqrt(14.0), th = 25 * M_PI / 180, c = cos(th), s = sin(th);
    for (int i = 0; i < 3; i++) ax[i] /= n;
    double R[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double e = i == j ? c : 0;
            e += (1 - c) * ax[i] * ax[j];
            int k = 3 - i - j;   /* the third index when i != j */
            if (i != j) {
                double sign = ((i + 1) % 3 == j) ? -1 : 1;   /* cross-product matrix [a]x */
                e += sign * s * ax[k];
            }
            R[i * 3 + j] = e;
        }
    for (int r = 0; r < 3; r++)
        for (int col = 0; col < 3; col++) DIR[r * 3 + col] = R[r * 3 + col] * (col == 0 ? -1 : 1);
}

/* world (LPS x,y,z) of native voxel (x, y, z) and the continuous dataset index (x, y, z) of a
 * world point, by hand: DIR is orthonormal, so its inverse is its transpose */
static void native_world(const int idx[3], double w[3]) {
    double s[3] = {SP[2] * idx[0], SP[1] * idx[1], SP[0] * idx[2]};
    for (int r = 0; r < 3; r++) w[r] = ORIGIN[r] + DIR[r * 3] * s[0] + DIR[r * 3 + 1] * s[1] + DIR[r * 3 + 2] * s[2];
}
static void world_to_dataset(const double w[3], double c[3]) {
    double d[3] = {w[0] - ORIGIN[0], w[1] - ORIGIN[1], w[2] - ORIGIN[2]};
    for (int col = 0; col < 3; col++) {
        double u = DIR[col] * d[0] + DIR[3 + col] * d[1] + DIR[6 + col] * d[2];
        c[col] = u / GS[2 - col] - CROP[2 - col];
    }
}

static int write_dataset(const char* path, const uint8_t* seg_case1) {
    DatasetSpec s = {2, 1, GD, GH, GW, "t2w", "background,a,b", NULL, {GS[0], GS[1], GS[2]},
                     "test_predict", 0};
    char err[512];
    DatasetWriter* w = dataset_create(path, &s, err, sizeof err);
    if (!w) { printf("  dataset_create: %s\n", err); return 1; }
    long vol = (long)GD * GH * GW;
    float* img = t_fnew(vol);
    for (long v = 0; v < vol; v++) img[v] = (float)(v % 7);
    uint8_t* seg0 = calloc(vol, 1);
    int rc = dataset_write_case(w, 0, "plain", img, seg0, -1, SPLIT_TRAIN, -1, NULL, NULL, NULL,
                                NULL, NULL, NULL) ||
             dataset_write_case(w, 1, "oblique/01", img, seg_case1, -1, SPLIT_TEST, -1, NULL, SP,
                                ORIGIN, DIR, SHAPE, CROP) ||
             dataset_set_grid_spacing(w, 1, GS);
    if (dataset_finish(w, err, sizeof err) || rc) { printf("  dataset: %s\n", err); rc = 1; }
    free(img); free(seg0);
    return rc;
}

/* (a) + the NIfTI round trip */
static void test_hand_positions(void) {
    long vol = (long)GD * GH * GW;
    uint8_t* seg = calloc(vol, 1);
    float* lab = t_fnew(vol);
    /* two blocks and the padded x = 0 column (outside the native extent: must not appear) */
    for (int z = 0; z < GD; z++)
        for (int y = 0; y < GH; y++)
            for (int x = 0; x < GW; x++) {
                int v = 0;
                if (z >= 3 && z < 9 && y >= 2 && y < 7 && x >= 2 && x < 6) v = 1;
                if (z >= 10 && z < 17 && y >= 6 && y < 12 && x >= 5 && x < 12) v = 2;
                if (x == 0 && y == 5) v = 1;
                seg[((long)z * GH + y) * GW + x] = (uint8_t)v;
                lab[((long)z * GH + y) * GW + x] = (float)v;
            }
    char path[400], err[512];
    snprintf(path, sizeof path, "%s/geo.h5", g_dir);
    if (!t_true("(a) dataset with rotated + flipped, resampled, cropped/padded geometry written",
                write_dataset(path, seg) == 0)) { free(seg); free(lab); return; }
    Dataset ds;
    if (!t_true("(a) dataset opens", dataset_open(&ds, path, err, sizeof err) == 0)) {
        printf("  %s\n", err); free(seg); free(lab); return;
    }
    Volume nat;
    int rc = predict_to_native(&ds, 1, lab, VOL_NEAREST, &nat, err, sizeof err);
    if (!t_true("(a) predict_to_native (nearest) succeeds", rc == 0)) {
        printf("  %s\n", err); dataset_close(&ds); free(seg); free(lab); return;
    }
    int geo_ok = nat.nz == SHAPE[0] && nat.ny == SHAPE[1] && nat.nx == SHAPE[2];
    for (int a = 0; a < 3; a++) geo_ok &= nat.spacing[a] == SP[a] && nat.origin[a] == ORIGIN[a];
    for (int a = 0; a < 9; a++) geo_ok &= nat.dir[a] == DIR[a];
    t_true("(a) output geometry = the native grid of /geometry (shape, spacing, origin, direction)", geo_ok);

    long mism = 0, labelled = 0, expected_lab = 0, lab_counts[3] = {0, 0, 0};
    double tie = 1, wdiff = 0;
    for (int z = 0; z < SHAPE[0]; z++)
        for (int y = 0; y < SHAPE[1]; y++)
            for (int x = 0; x < SHAPE[2]; x++) {
                int idx[3] = {x, y, z};
                double w[3], c[3], w2[3], xyz[3] = {x, y, z};
                native_world(idx, w);
                volume_index_to_world(&nat, xyz, w2);
                for (int r = 0; r < 3; r++) wdiff = fmax(wdiff, fabs(w[r] - w2[r]));
                world_to_dataset(w, c);
                int n[3] = {GW, GH, GD}, inside = 1, ri[3];
                for (int a = 0; a < 3; a++) {
                    double f = c[a] - floor(c[a]);
                    tie = fmin(tie, fabs(f - 0.5));
                    inside &= c[a] >= -0.5 && c[a] <= n[a] - 0.5;
                    ri[a] = (int)floor(c[a] + 0.5);
                }
                int want = inside ? seg[((long)ri[2] * GH + ri[1]) * GW + ri[0]] : 0;
                int got = (int)nat.data[((long)z * SHAPE[1] + y) * SHAPE[2] + x];
                mism += want != got;
                expected_lab += want > 0;
                labelled += got > 0;
                if (got >= 0 && got < 3) lab_counts[got]++;
            }
    printf("  native voxels labelled: %ld (label 1: %ld, label 2: %ld); min distance of a mapped "
           "index to a rounding tie %.3f voxel\n", labelled, lab_counts[1], lab_counts[2], tie);
    t_true("(a) labels reach native space (both labels, > 100 voxels each)",
           lab_counts[1] > 100 && lab_counts[2] > 100 && expected_lab == labelled);
    t_check("(a) geometry chosen away from rounding ties: 0.1 - min tie distance", 0.1 - tie, 1e-9);
    t_check("(a) volume_index_to_world of the output vs hand formula (mm)", wdiff, 1e-9);
    t_check("(a) native voxels whose label differs from the hand-computed nearest dataset voxel",
            (double)mism, 0);

    /* the NIfTI file: written atomically, read back with the same labels and geometry */
    char nii[400];
    snprintf(nii, sizeof nii, "%s/oblique_seg.nii.gz", g_dir);
    Volume back;
    memset(&back, 0, sizeof back);
    rc = volume_write(nii, &nat, 1, err, sizeof err) || volume_read(nii, &back, -1, err, sizeof err);
    if (rc) printf("  %s\n", err);
    double gd = 0;
    long dd = 0;
    if (!rc && back.nx == nat.nx && back.ny == nat.ny && back.nz == nat.nz) {
        for (int a = 0; a < 3; a++) gd = fmax(gd, fmax(fabs(back.spacing[a] - SP[a]), fabs(back.origin[a] - ORIGIN[a])));
        for (int a = 0; a < 9; a++) gd = fmax(gd, fabs(back.dir[a] - DIR[a]));
        for (long v = 0; v < (long)nat.nx * nat.ny * nat.nz; v++) dd += back.data[v] != nat.data[v];
    } else {
        gd = dd = 1000000;
    }
    /* NIfTI stores the sform as float32: geometry back to ~1e-7 relative (|origin| < 60 mm) */
    t_check("(a) NIfTI read back: max |geometry difference| (float32 sform)", gd, 1e-4);
    t_check("(a) NIfTI read back: voxels that differ", (double)dd, 0);
    volume_free(&back);
    volume_free(&nat);

    /* (c) the case without geometry: native = grid, the map is the identity */
    rc = predict_to_native(&ds, 0, lab, VOL_NEAREST, &nat, err, sizeof err);
    long diff = rc || nat.nz != GD || nat.ny != GH || nat.nx != GW;
    for (long v = 0; !diff && v < vol; v++) diff += nat.data[v] != lab[v];
    t_check("(c) identity geometry: voxels that differ from the dataset grid", (double)diff, 0);
    volume_free(&nat);
    dataset_close(&ds);
    free(seg); free(lab);
}

/* per axis: native j is in the block when its nearest coarse voxel (resampled index j·sp/gs)
 * lies in [lo, hi] — for an upsampled axis (gs < sp) this is the native run [lo·gs/sp, ...] */
static int in_block(int j, int axis, int lo, int hi) {
    int k = (int)floor(j * SP[axis] / GS[axis] + 0.5);
    return k >= lo && k <= hi;
}

/* (b) native -> dataset grid (the importer's nearest resampling) -> native */
static void test_round_trip(void) {
    char path[400], err[512];
    snprintf(path, sizeof path, "%s/geo.h5", g_dir);
    Dataset ds;
    if (!t_true("(b) dataset opens", dataset_open(&ds, path, err, sizeof err) == 0)) return;
    Volume nat, grid;
    volume_dataset_grids(&ds, 1, &nat, &grid);
    long nv = (long)nat.nx * nat.ny * nat.nz;
    nat.data = t_fnew(nv);
    /* resampled-grid runs (z, y, x) inside the crop (z 2..21, y 3..16, x 0..11 of the
     * resampled grid), each longer than the resampling factor */
    const int blk[2][3][2] = {{{3, 9}, {4, 8}, {1, 4}}, {{12, 20}, {9, 15}, {5, 10}}};
    long count[3] = {0, 0, 0};
    for (int z = 0; z < nat.nz; z++)
        for (int y = 0; y < nat.ny; y++)
            for (int x = 0; x < nat.nx; x++) {
                int v = 0;
                for (int b = 0; b < 2; b++)
                    if (in_block(z, 0, blk[b][0][0], blk[b][0][1]) && in_block(y, 1, blk[b][1][0], blk[b][1][1]) &&
                        in_block(x, 2, blk[b][2][0], blk[b][2][1]))
                        v = b + 1;
                nat.data[((long)z * nat.ny + y) * nat.nx + x] = (float)v;
                count[v]++;
            }
    int rc = volume_resample(&nat, &grid, VOL_NEAREST, 0, err, sizeof err);
    Volume back;
    memset(&back, 0, sizeof back);
    if (!rc) rc = predict_to_native(&ds, 1, grid.data, VOL_NEAREST, &back, err, sizeof err);
    if (rc) printf("  %s\n", err);
    long inter[3] = {0, 0, 0}, pc[3] = {0, 0, 0};
    for (long v = 0; !rc && v < nv; v++) {
        int a = (int)nat.data[v], b = (int)back.data[v];
        if (b >= 0 && b < 3) pc[b]++;
        if (a == b) inter[a]++;
    }
    printf("  native block voxels: label 1 %ld, label 2 %ld\n", count[1], count[2]);
    for (int l = 1; l < 3; l++) {
        double dice = rc ? NAN : 2.0 * inter[l] / (double)(count[l] + pc[l]);
        char what[96];
        snprintf(what, sizeof what, "(b) native -> grid -> native, 1 - Dice of label %d", l);
        t_check(what, 1 - dice, 0);
    }
    t_true("(b) blocks are larger than the resampling factors (> 3x5x9 native voxels)",
           count[1] > 135 && count[2] > 135);
    volume_free(&nat); volume_free(&grid); volume_free(&back);
    dataset_close(&ds);
}

int main(void) {
    t_set_threads(2);
    make_direction();
    snprintf(g_dir, sizeof g_dir, "/tmp/vita_test_predict_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    test_hand_positions();
    test_round_trip();
    if (!t_failed) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd)) printf("  (could not remove %s)\n", g_dir);
    }
    return t_summary();
}
