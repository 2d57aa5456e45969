/* engine/sampler.c — crop sampling and epoch orders (see sampler.h). */
#include "sampler.h"

#include <string.h>

#include "check.h"

void crop_start(const int dims[3], const int crop[3], const int centre[3], int start[3]) {
    for (int a = 0; a < 3; a++) {
        if (dims[a] < crop[a]) {
            start[a] = -((crop[a] - dims[a]) / 2);
            continue;
        }
        int s = centre[a] - crop[a] / 2;
        if (s < 0) s = 0;
        if (s > dims[a] - crop[a]) s = dims[a] - crop[a];
        start[a] = s;
    }
}

static uint64_t below(Rng* r, uint64_t n) { return n ? rng_u64(r) % n : 0; }

int crop_pick_centre(Rng* r, const int dims[3], const uint8_t* lab, int fg_label,
                     double pos_fraction, int centre[3]) {
    long n = (long)dims[0] * dims[1] * dims[2];
    double u = rng_uniform(r);
    long pick;
    int fg = 0;
    if (!lab) {
        pick = (long)below(r, (uint64_t)n);
    } else {
        long nfg = 0;
        for (long i = 0; i < n; i++) nfg += fg_label >= 0 ? lab[i] == fg_label : lab[i] > 0;
        fg = u < pos_fraction;
        if (fg && nfg == 0) fg = 0;
        if (!fg && nfg == n) fg = 1;
        long k = (long)below(r, (uint64_t)(fg ? nfg : n - nfg));
        pick = 0;
        for (long i = 0; i < n; i++) {
            int isfg = fg_label >= 0 ? lab[i] == fg_label : lab[i] > 0;
            if (isfg == fg && k-- == 0) { pick = i; break; }
        }
    }
    centre[2] = (int)(pick % dims[2]);
    centre[1] = (int)((pick / dims[2]) % dims[1]);
    centre[0] = (int)(pick / ((long)dims[1] * dims[2]));
    return fg;
}

static void shuffle(int* a, int n, Rng* r) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)below(r, (uint64_t)i + 1);
        int t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

void order_shuffled(int n, uint64_t seed, long epoch, int* out) {
    Rng r = rng_stream(seed, 0x0dde0000ull + (uint64_t)epoch);
    for (int i = 0; i < n; i++) out[i] = i;
    shuffle(out, n, &r);
}

int order_balanced(int n, const int32_t* cls, int n_classes, int len, uint64_t seed, long epoch,
                   int* out) {
    Rng r = rng_stream(seed, 0xba1a0000ull + (uint64_t)epoch);
    int* cnt = xcalloc(n_classes, sizeof(int));
    for (int i = 0; i < n; i++)
        if (cls[i] >= 0 && cls[i] < n_classes) cnt[cls[i]]++;
    int K = 0;
    int* cl = xmalloc(sizeof(int) * (n_classes ? n_classes : 1));
    for (int c = 0; c < n_classes; c++)
        if (cnt[c]) cl[K++] = c;
    if (!K) { free(cnt); free(cl); return 0; }
    /* items of each class, contiguous */
    int* first = xcalloc(n_classes + 1, sizeof(int));
    for (int c = 0; c < n_classes; c++) first[c + 1] = first[c] + cnt[c];
    int* items = xmalloc(sizeof(int) * (n ? n : 1));
    int* fill = xcalloc(n_classes, sizeof(int));
    for (int i = 0; i < n; i++)
        if (cls[i] >= 0 && cls[i] < n_classes) items[first[cls[i]] + fill[cls[i]]++] = i;
    for (int k = 0; k < K; k++) shuffle(items + first[cl[k]], cnt[cl[k]], &r);
    /* slot sequence: classes in turn, shuffled */
    int* slot = xmalloc(sizeof(int) * (len ? len : 1));
    for (int t = 0; t < len; t++) slot[t] = cl[t % K];
    shuffle(slot, len, &r);
    int* pos = xcalloc(n_classes, sizeof(int));
    for (int t = 0; t < len; t++) {
        int c = slot[t];
        if (pos[c] == cnt[c]) { shuffle(items + first[c], cnt[c], &r); pos[c] = 0; }
        out[t] = items[first[c] + pos[c]++];
    }
    free(cnt); free(cl); free(first); free(items); free(fill); free(slot); free(pos);
    return K;
}
