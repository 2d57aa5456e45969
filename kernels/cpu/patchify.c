/* kernels/cpu/patchify.c — image [B, C, D, H, W] <-> patch rows [B, P, C*pd*ph*pw].
 *
 * Patches are numbered in (z, y, x) raster order over the (D/pd, H/ph, W/pw) patch grid;
 * inside a row the order is (c, dz, dy, dx), the flattened Conv3d/Conv2d weight
 * [dim, C, pd, ph, pw], so a patch-embedding conv with stride = kernel is patchify + linear.
 * Both directions are pure permutations (no arithmetic): each is the other's exact inverse
 * and therefore the other's backward. One OpenMP task per output patch row; every element
 * is written exactly once, so any thread count gives the same bits.
 */
#include "cpu.h"
#include "../../engine/check.h"

static void check_patch_args(int B, int C, int D, int H, int W, int pd, int ph, int pw) {
    CHECK(B > 0 && C > 0 && D > 0 && H > 0 && W > 0, "image shape B=%d C=%d D=%d H=%d W=%d",
          B, C, D, H, W);
    CHECK(pd > 0 && ph > 0 && pw > 0, "patch %dx%dx%d must be positive", pd, ph, pw);
    CHECK(D % pd == 0 && H % ph == 0 && W % pw == 0,
          "image %dx%dx%d is not a multiple of the patch %dx%dx%d", D, H, W, pd, ph, pw);
}

/* dir = 0: img -> rows; dir = 1: rows -> img. Shared so the two index maps cannot drift. */
static void patch_copy(float* rows, float* img, int dir,
                       int B, int C, int D, int H, int W, int pd, int ph, int pw) {
    const int nd = D / pd, nh = H / ph, nw = W / pw;
    const long P = (long)nd * nh * nw, K = (long)C * pd * ph * pw;
    #pragma omp parallel for schedule(static)
    for (long bp = 0; bp < (long)B * P; bp++) {
        const long b = bp / P, p = bp % P;
        const int pz = (int)(p / ((long)nh * nw)), py = (int)(p / nw % nh), px = (int)(p % nw);
        float* row = rows + bp * K;
        long k = 0;
        for (int ci = 0; ci < C; ci++)
            for (int dz = 0; dz < pd; dz++)
                for (int dy = 0; dy < ph; dy++) {
                    float* src = img + ((((b * C + ci) * D + (long)pz * pd + dz) * H
                                         + (long)py * ph + dy) * W + (long)px * pw);
                    if (dir == 0) for (int dx = 0; dx < pw; dx++) row[k++] = src[dx];
                    else          for (int dx = 0; dx < pw; dx++) src[dx] = row[k++];
                }
    }
}

void cpu_patchify_forward(Ctx* c, float* out, const float* img,
                          int B, int C, int D, int H, int W, int pd, int ph, int pw) {
    (void)c;
    check_patch_args(B, C, D, H, W, pd, ph, pw);
    patch_copy(out, (float*)img, 0, B, C, D, H, W, pd, ph, pw);   /* dir 0 only reads img */
}

void cpu_unpatchify_forward(Ctx* c, float* img, const float* patches,
                            int B, int C, int D, int H, int W, int pd, int ph, int pw) {
    (void)c;
    check_patch_args(B, C, D, H, W, pd, ph, pw);
    patch_copy((float*)patches, img, 1, B, C, D, H, W, pd, ph, pw); /* dir 1 only reads rows */
}
