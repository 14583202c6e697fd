/*
 Sampling a token from logits (shared by the trainers): softmax with temperature, inverse CDF
 with a coin in [0, 1) from the caller's RNG (sessa.h's rng_f32), so a run is reproducible.
*/
#ifndef SESSA_SAMPLER_H
#define SESSA_SAMPLER_H

#include <math.h>

// logits (n,) -> token id; temperature > 0
static inline int sample_logits(const float *logits, int n, float temperature, float coin) {
    float maxv = -INFINITY;
    for (int i = 0; i < n; i++) maxv = fmaxf(maxv, logits[i]);
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)(logits[i] - maxv) / temperature);
    double target = coin * sum, cdf = 0.0;
    for (int i = 0; i < n; i++) {
        cdf += exp((double)(logits[i] - maxv) / temperature);
        if (target < cdf) return i;
    }
    return n - 1; // rounding: the coin fell past the last bucket
}

#endif // SESSA_SAMPLER_H
