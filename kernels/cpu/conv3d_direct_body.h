/* kernels/cpu/conv3d_direct_body.h — the inner kernels of conv3d_direct.c for one vector width,
 * included once per instruction set (a C "template"). The includer defines:
 *   VW      floats per vector (8: AVX2, 16: AVX-512)
 *   VEC     a GCC vector type of VW floats; VECU the same with 4-byte alignment (unaligned I/O)
 *   TARGET  the target attribute string; SFX the name suffix
 * and Flat, OB, DW_CHUNK. Tiles: forward 4 output channels x 2 vectors (2·VW positions);
 * weight gradient 4 output channels x 3 dx taps, one vector of positions. See conv3d_direct.c
 * for the layouts and the summation order. */
#define CD_CAT_(a, b) a##b
#define CD_CAT(a, b) CD_CAT_(a, b)

__attribute__((target(TARGET)))
static inline VEC CD_CAT(bcast_, SFX)(float s) {
    VEC v;
    for (int k = 0; k < VW; k++) v[k] = s;
    return v;
}

/* one output plane: out points at out[b, 0, z, 0, 0] (channel stride S); P = [Cin][kd][Fp] */
__attribute__((target(TARGET)))
static void CD_CAT(plane_, SFX)(float* out, long S, const float* P, const float* Wt,
                                const float* bias, int Cin, int Cout, int Wd, int kd, int kh,
                                int kw, const Flat* f) {
    const long tile = (long)Cin * kd * kh * kw * OB;    /* Wt floats per output-channel block */
    const int nob = (int)((Cout + OB - 1) / OB);
    for (int ob = 0; ob < nob; ob++) {
        float b4[OB];
        for (int r = 0; r < OB; r++) {
            const int o = ob * OB + r;
            b4[r] = bias && o < Cout ? bias[o] : 0.0f;
        }
        for (long q0 = 0; q0 < f->Qt; q0 += 2 * VW) {
            VEC a00 = CD_CAT(bcast_, SFX)(b4[0]), a10 = CD_CAT(bcast_, SFX)(b4[1]);
            VEC a20 = CD_CAT(bcast_, SFX)(b4[2]), a30 = CD_CAT(bcast_, SFX)(b4[3]);
            VEC a01 = a00, a11 = a10, a21 = a20, a31 = a30;
            const float* w = Wt + ob * tile;
            for (int i = 0; i < Cin; i++)
                for (int dz = 0; dz < kd; dz++)
                    for (int dy = 0; dy < kh; dy++) {
                        const float* row = P + (long)(i * kd + dz) * f->Fp + dy * f->Lq + q0;
                        for (int dx = 0; dx < kw; dx++, w += OB) {
                            const VEC v0 = *(const VECU*)(row + dx), v1 = *(const VECU*)(row + dx + VW);
                            const VEC w0 = CD_CAT(bcast_, SFX)(w[0]), w1 = CD_CAT(bcast_, SFX)(w[1]);
                            const VEC w2 = CD_CAT(bcast_, SFX)(w[2]), w3 = CD_CAT(bcast_, SFX)(w[3]);
                            a00 += w0 * v0; a01 += w0 * v1;
                            a10 += w1 * v0; a11 += w1 * v1;
                            a20 += w2 * v0; a21 += w2 * v1;
                            a30 += w3 * v0; a31 += w3 * v1;
                        }
                    }
            float t[OB][2 * VW];
            *(VECU*)&t[0][0] = a00; *(VECU*)&t[0][VW] = a01;
            *(VECU*)&t[1][0] = a10; *(VECU*)&t[1][VW] = a11;
            *(VECU*)&t[2][0] = a20; *(VECU*)&t[2][VW] = a21;
            *(VECU*)&t[3][0] = a30; *(VECU*)&t[3][VW] = a31;
            long y = q0 / f->Lq, x = q0 - y * f->Lq;
            for (int j = 0; j < 2 * VW && q0 + j < f->Q; j++) {
                if (x < Wd)
                    for (int r = 0; r < OB; r++)
                        if (ob * OB + r < Cout) out[(ob * OB + r) * S + y * Wd + x] = t[r][j];
                if (++x == f->Lq) { x = 0; y++; }
            }
        }
    }
}

/* the weight gradient's sums over one plane, added to A: G = 4 dout planes [4][Qt] (zeros at
 * the dropped positions and past Q), P = the channel's planes [kd][Fp]; A = [kd][kh][ng][4][3]
 * vectors (ng = ⌈kw/3⌉ groups of up to 3 dx taps), as floats */
__attribute__((target(TARGET)))
static void CD_CAT(dw_plane_, SFX)(float* Af, const float* G, const float* P, int kd, int kh,
                                   int kw, const Flat* f) {
    const int ng = (kw + 2) / 3;
    const long Qd = (f->Q + VW - 1) / VW * VW, gs = f->Qt;
    for (long c0 = 0; c0 < Qd; c0 += DW_CHUNK) {
        const long c1 = c0 + DW_CHUNK < Qd ? c0 + DW_CHUNK : Qd;
        VECU* a = (VECU*)Af;
        for (int dz = 0; dz < kd; dz++)
            for (int dy = 0; dy < kh; dy++)
                for (int gi = 0; gi < ng; gi++, a += OB * 3) {
                    /* with fewer than 3 taps left the unused p1 / p2 lanes read up to 2 floats
                     * further: inside the plane's slack (Flat.Fp) */
                    const float* p = P + (long)dz * f->Fp + dy * f->Lq + 3 * gi;
                    VEC a00 = a[0], a01 = a[1], a02 = a[2], a10 = a[3], a11 = a[4], a12 = a[5];
                    VEC a20 = a[6], a21 = a[7], a22 = a[8], a30 = a[9], a31 = a[10], a32 = a[11];
                    for (long q = c0; q < c1; q += VW) {
                        const VEC g0 = *(const VECU*)(G + q), g1 = *(const VECU*)(G + gs + q);
                        const VEC g2 = *(const VECU*)(G + 2 * gs + q), g3 = *(const VECU*)(G + 3 * gs + q);
                        const VEC p0 = *(const VECU*)(p + q), p1 = *(const VECU*)(p + q + 1);
                        const VEC p2 = *(const VECU*)(p + q + 2);
                        a00 += g0 * p0; a10 += g1 * p0; a20 += g2 * p0; a30 += g3 * p0;
                        a01 += g0 * p1; a11 += g1 * p1; a21 += g2 * p1; a31 += g3 * p1;
                        a02 += g0 * p2; a12 += g1 * p2; a22 += g2 * p2; a32 += g3 * p2;
                    }
                    a[0] = a00; a[1] = a01; a[2] = a02; a[3] = a10; a[4] = a11; a[5] = a12;
                    a[6] = a20; a[7] = a21; a[8] = a22; a[9] = a30; a[10] = a31; a[11] = a32;
                }
    }
}

#undef CD_CAT
#undef CD_CAT_
