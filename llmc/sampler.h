/*
 Sampling a token from logits (shared by the trainers, DESIGN.md section 5 -st -sk): softmax with temperature
 over the top-k logits, inverse CDF with a coin in [0, 1) from the caller's RNG (sessa.h's rng_f32), so a run
 is reproducible. temperature 0 is greedy: the argmax, the lowest id among equal logits (the coin is unused).
 top_k 0 (or >= n) keeps every logit; otherwise every logit >= the k-th largest is kept (ties at the
 threshold are all kept, so equal logits are treated alike).
*/
#ifndef SESSA_SAMPLER_H
#define SESSA_SAMPLER_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// the seed of both trainers' sampling RNG for run seed -S: its own stream, apart from the initialisation's
// (sessa_init_parameters seeds with the run seed itself) and the data order's (the dataloader's)
static inline unsigned long long sampler_seed(unsigned long long run_seed) { return run_seed ^ 0x5e55aULL; }

static inline int argmax_logits(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
    return best;
}

// the k-th largest of x (n,), 1 <= k <= n; reorders the scratch copy only
static inline float kth_largest_(float *scratch, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;   // quickselect for descending position want
    while (lo < hi) {
        float pivot = scratch[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (scratch[i] > pivot) i++;
            while (scratch[j] < pivot) j--;
            if (i <= j) { float t = scratch[i]; scratch[i] = scratch[j]; scratch[j] = t; i++; j--; }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    return scratch[want];
}

// logits (n,) -> token id; temperature >= 0 (0: greedy), top_k >= 0 (0: all)
static inline int sample_logits_topk(const float *logits, int n, float temperature, int top_k, float coin) {
    if (temperature == 0.0f) return argmax_logits(logits, n);
    float threshold = -INFINITY;
    if (top_k > 0 && top_k < n) {
        float *scratch = (float *)malloc((size_t)n * sizeof(float));
        if (scratch == NULL) { fprintf(stderr, "sample_logits: out of memory\n"); exit(EXIT_FAILURE); }
        memcpy(scratch, logits, (size_t)n * sizeof(float));
        threshold = kth_largest_(scratch, n, top_k);
        free(scratch);
    }
    float maxv = -INFINITY;
    for (int i = 0; i < n; i++) maxv = fmaxf(maxv, logits[i]);
    double sum = 0.0;
    for (int i = 0; i < n; i++) if (logits[i] >= threshold) sum += exp((double)(logits[i] - maxv) / temperature);
    double target = coin * sum, cdf = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (logits[i] < threshold) continue;
        cdf += exp((double)(logits[i] - maxv) / temperature);
        last = i;
        if (target < cdf) return i;
    }
    return last; // rounding: the coin fell past the last bucket
}

// logits (n,) -> token id; temperature > 0, all tokens (the trainers' sampler before -st/-sk)
static inline int sample_logits(const float *logits, int n, float temperature, float coin) {
    return sample_logits_topk(logits, n, temperature, 0, coin);
}

#endif // SESSA_SAMPLER_H
