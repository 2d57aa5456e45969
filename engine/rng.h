/* engine/rng.h — the engine's seeded random numbers (host side; header only).
 * splitmix64: tiny state (one u64, so it checkpoints trivially), identical sequences on every
 * machine and compiler. Streams for different purposes are derived by rng_stream(seed, tag) so
 * that e.g. adding an augmentation never shifts the weight init. */
#ifndef VITA_RNG_H
#define VITA_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct { uint64_t s; } Rng;

static inline uint64_t rng_u64(Rng* r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline Rng rng_stream(uint64_t seed, uint64_t tag) {
    Rng r = {seed * 0xD1B54A32D192ED03ull ^ (tag + 0x8CB92BA72F3D8DD7ull)};
    rng_u64(&r);
    return r;
}
/* uniform in [0, 1) with 53 random bits */
static inline double rng_uniform(Rng* r) { return (rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
static inline double rng_normal(Rng* r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
/* normal(0, std) truncated to [-2, 2] in absolute units, as timm's trunc_normal_(std=.02),
 * whose default bounds a=-2, b=2 are absolute, i.e. >> std: effectively untruncated. */
static inline double rng_trunc_normal(Rng* r, double std, double lo, double hi) {
    for (;;) {
        double v = std * rng_normal(r);
        if (v >= lo && v <= hi) return v;
    }
}

#endif
