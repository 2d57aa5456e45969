/* engine/mmd_internal.h — test hooks of engine/mmd.c: compute with caller-supplied
 * permutation / bootstrap draws (so that an oracle can replay the very same draws by brute
 * force) and read back every replicate statistic. Not part of the engine's public API.
 *
 * Draw matrices are HOST float [N, B] row-major, N = n + m pooled rows (X rows, then Y rows):
 *   permutations, paired:    V[i, b] = V[n+i, b] = ±1, the sign flip of row i's case
 *                            (+1 keeps (x_i, y_i), -1 swaps them);
 *   permutations, unpaired:  V[p, b] = 1 if pooled row p is in the relabelled X (exactly n
 *                            ones, whole cases), else 0;
 *   bootstrap:               V[p, b] = multiplicity of row p's case in the resample (paired:
 *                            the same counts on X row i and Y row i; unpaired: independent
 *                            counts for X cases and Y cases, each summing to its set's size).
 * Replicates are returned per statistic in the order MMD_REP_U, MMD_REP_B, MMD_REP_PAIRED
 * (NaN where not applicable): out[r * B + b].
 */
#ifndef VITA_MMD_INTERNAL_H
#define VITA_MMD_INTERNAL_H

#include "mmd.h"

enum { MMD_REP_U = 0, MMD_REP_B = 1, MMD_REP_PAIRED = 2, MMD_NREP = 3 };

typedef struct {
    const float* Vperm; int Bp;   /* host [N, Bp] or NULL/0 */
    const float* Vboot; int Bb;   /* host [N, Bb] or NULL/0 */
    double* perm_T;               /* optional out [MMD_NREP * Bp] */
    double* boot_T;               /* optional out [MMD_NREP * Bb] */
} MmdDraws;

/* mmd_compute with these draws instead of cfg->permutations / cfg->bootstrap */
int mmd_compute_with_draws(Ctx* c, const float* X, const float* Y, int n, int m, int d,
                           const MmdConfig* cfg, const MmdDraws* draws, MmdResult* res,
                           char* err, size_t errlen);

/* the draws mmd_compute makes from cfg (seeded by cfg->seed); malloc'd host [N, B], NULL
 * when B = 0; the caller frees */
float* mmd_draw_permutations(const MmdConfig* cfg, int n, int m);
float* mmd_draw_bootstrap(const MmdConfig* cfg, int n, int m);

#endif
