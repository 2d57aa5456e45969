/* bench/encoder.c — one encoder training step (forward, backward, AdamW) on the CPU backend,
 * timed; the same step as bench/encoder_peer.py runs in PyTorch (same config, batch, loss,
 * optimizer and thread count). Loss: mean over the batch of (mean of the final normed patch
 * tokens) · r for a fixed random r, so the backward touches every parameter.
 * Memory is reported as bytes of tensors vita holds (parameters, gradients, AdamW state,
 * saved activations, scratch) and peak process RSS. --json prints one JSON line at the end. */
#include "../models/vit.h"
#include "../engine/check.h"
#include "../engine/optim.h"
#include "../engine/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double step_gflop(const Vit* m, int B) {
    double N = (double)B * m->T, D = m->cfg.dim, hid = m->hidden, T = m->T;
    double blk = 2 * N * D * 3 * D + 2.0 * 2 * B * T * T * D + 2 * N * D * D + 2 * 2 * N * D * hid;
    double fwd = m->cfg.depth * blk + 2.0 * B * m->P * m->Kp * D;
    return 3 * fwd / 1e9;
}

int main(int argc, char** argv) {
    const char* preset = "vit-tiny-3d";
    int B = 4, steps = 5, warmup = 1, threads = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: encoder [--preset NAME] [--batch B] [--steps S] [--warmup W] "
                    "[--threads N] [--json]\n");
            return 1;
        }
    }
    VitConfig cfg;
    if (vit_preset(&cfg, preset)) USER_ERROR("--preset %s: unknown preset", preset);
    Ctx c;
    if (ctx_open(&c, "cpu", threads, 0)) return 1;
    Vit m;
    vit_create(&m, &c, &cfg);
    vit_init_weights(&m, 0);
    vit_alloc_activations(&m, B);
    int R = m.n_params;
    OptRange* ranges = xmalloc(sizeof(OptRange) * R);
    vit_opt_ranges(&m, 0.05f, 1.0f, ranges);
    AdamW opt;
    adamw_create(&opt, &c, m.n_floats, ranges, R);

    long nimg = (long)B * cfg.in_chans * cfg.img[0] * cfg.img[1] * cfg.img[2];
    float* h = xmalloc(sizeof(float) * (nimg > 4096 ? nimg : 4096));
    Rng r = rng_stream(1, 2);
    for (long i = 0; i < nimg; i++) h[i] = (float)rng_normal(&r);
    float* img = dev_alloc(&c, sizeof(float) * nimg);
    copy_h2d(&c, img, h, sizeof(float) * nimg);
    float* extra = NULL;
    if (cfg.num_extra) {
        for (int i = 0; i < cfg.num_extra * B; i++) h[i] = (float)(rng_uniform(&r) * 20);
        extra = dev_alloc(&c, sizeof(float) * cfg.num_extra * B);
        copy_h2d(&c, extra, h, sizeof(float) * cfg.num_extra * B);
    }
    int D = cfg.dim;
    float* rv = xmalloc(sizeof(float) * D);
    for (int i = 0; i < D; i++) rv[i] = (float)rng_normal(&r);
    float* dpool_h = xmalloc(sizeof(float) * B * D);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < D; i++) dpool_h[b * D + i] = rv[i] / B;
    float* pooled = dev_alloc(&c, sizeof(float) * B * D);
    float* dpool = dev_alloc(&c, sizeof(float) * B * D);
    float* dout = dev_alloc(&c, sizeof(float) * B * m.T * D);
    copy_h2d(&c, dpool, dpool_h, sizeof(float) * B * D);
    if (!json) vit_print_memory(&m);

    double t0 = 0, loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) t0 = now();
        vit_forward(&m, img, extra, B);
        meanpool_forward(&c, pooled, m.out, B, m.T, D, m.T - m.P, m.P);
        copy_d2h(&c, dpool_h, pooled, sizeof(float) * B * D);
        loss = 0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < D; i++) loss += dpool_h[b * D + i] * rv[i] / B;
        vit_zero_grad(&m);
        meanpool_backward(&c, dout, dpool, B, m.T, D, m.T - m.P, m.P);
        vit_backward(&m, img, extra, dout, NULL, NULL);
        adamw_step(&opt, m.w, m.g, 1e-4f);
        if (!json) printf("step %d loss %.6f\n", s, loss);
    }
    double dt = (now() - t0) / steps, gf = step_gflop(&m, B);
    VitBytes by = vit_bytes(&m);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    size_t total = by.params + by.grads + by.optimizer + by.activations + by.scratch;
    printf("vita %s batch %d threads %d: %.3f s/step, %.2f samples/s, %.1f GFLOP/step, %.1f GFLOP/s\n",
           preset, B, c.threads, dt, B / dt, gf, gf / dt);
    if (json)
        printf("{\"impl\":\"vita\",\"preset\":\"%s\",\"batch\":%d,\"threads\":%d,\"steps\":%d,"
               "\"s_per_step\":%.6f,\"samples_per_s\":%.4f,\"gflop_per_step\":%.4f,\"gflops\":%.3f,"
               "\"bytes\":{\"params\":%zu,\"grads\":%zu,\"optimizer\":%zu,\"activations\":%zu,"
               "\"scratch\":%zu,\"total\":%zu},\"peak_rss\":%ld,\"final_loss\":%.6f}\n",
               preset, B, c.threads, steps, dt, B / dt, gf, gf / dt, by.params, by.grads,
               by.optimizer, by.activations, by.scratch, total, ru.ru_maxrss * 1024L, loss);
    adamw_free(&opt);
    vit_free(&m);
    ctx_close(&c);
    free(h); free(rv); free(dpool_h); free(ranges);
    return 0;
}
