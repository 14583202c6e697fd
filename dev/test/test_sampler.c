/*
 Unit test of llmc/sampler.h (DESIGN.md section 5 -st -sk), exact checks on small vectors:
 - temperature 0 is the argmax, the lowest id among equal maxima
 - the k-th largest (quickselect) equals the k-th of a sorted copy, for random vectors with repeated values
 - top-k: over many coins every sampled id is among the logits >= the k-th largest, and each of those is drawn
   with its softmax frequency among them (chi-square-free bound: |freq - p| <= 0.01 at 200k draws, 5x the
   binomial standard deviation of at most 1.1e-3)
 - top-k 1 at any temperature is the argmax; top-k >= n is no truncation
 Exit 0 only when all pass.
*/
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include "llmc/utils.h"
#include "llmc/sessa.h"
#include "llmc/sampler.h"

static int fails = 0;
#define CHECK(cond, ...) do { int ok_ = (cond); printf("%s ", ok_ ? "OK  " : "FAIL"); printf(__VA_ARGS__); printf("\n"); \
                              if (!ok_) fails++; } while (0)

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int main(void) {
    float ties[6] = { 0.5f, 2.0f, -1.0f, 2.0f, 1.9f, 2.0f };
    CHECK(sample_logits_topk(ties, 6, 0.0f, 0, 0.99f) == 1, "greedy: the lowest id among equal maxima (got %d)",
          sample_logits_topk(ties, 6, 0.0f, 0, 0.99f));

    Rng rng;
    rng_seed(&rng, 7);
    int bad = 0;
    for (int trial = 0; trial < 2000; trial++) {
        int n = 1 + (int)(rng_u64(&rng) % 60);
        float x[64], sorted[64], scratch[64];
        for (int i = 0; i < n; i++) x[i] = (float)(rng_u64(&rng) % 9) - 4.0f;   // many repeats
        memcpy(sorted, x, n * sizeof(float));
        qsort(sorted, n, sizeof(float), cmp_desc);
        for (int k = 1; k <= n; k++) {
            memcpy(scratch, x, n * sizeof(float));
            if (kth_largest_(scratch, n, k) != sorted[k - 1]) bad++;
        }
    }
    CHECK(bad == 0, "k-th largest by quickselect = sorted copy's, 2000 random vectors, every k (%d wrong)", bad);

    float lg[8] = { 0.1f, 1.5f, -0.3f, 1.2f, 0.9f, 2.0f, -2.0f, 1.2f };
    int k = 4;   // the 4 largest: 2.0 (id 5), 1.5 (1), 1.2 (3), 1.2 (7); the 4th largest is 1.2
    float T = 0.8f;
    double z = 0.0, p[8] = { 0 };
    int keep[8] = { 0, 1, 0, 1, 0, 1, 0, 1 };
    for (int i = 0; i < 8; i++) if (keep[i]) z += exp((lg[i] - 2.0) / T);
    for (int i = 0; i < 8; i++) p[i] = keep[i] ? exp((lg[i] - 2.0) / T) / z : 0.0;
    int count[8] = { 0 }, outside = 0, draws = 200000;
    for (int i = 0; i < draws; i++) {
        int id = sample_logits_topk(lg, 8, T, k, rng_f32(&rng));
        count[id]++;
        if (!keep[id]) outside++;
    }
    double worst = 0.0;
    for (int i = 0; i < 8; i++) worst = fmax(worst, fabs((double)count[i] / draws - p[i]));
    CHECK(outside == 0, "top-4: no draw outside the 4 largest logits (%d outside)", outside);
    CHECK(worst <= 0.01, "top-4 at temperature 0.8: frequencies within 0.01 of the softmax over the kept logits (worst %.4f)",
          worst);
    int ok1 = 1;
    for (int i = 0; i < 1000; i++) ok1 &= sample_logits_topk(lg, 8, 3.0f, 1, rng_f32(&rng)) == 5;
    CHECK(ok1, "top-1 at temperature 3 is the argmax");
    // k >= n: the plain softmax (the old sample_logits)
    int same = 1;
    for (int i = 0; i < 1000; i++) {
        float c = rng_f32(&rng);
        same &= sample_logits_topk(lg, 8, 1.0f, 8, c) == sample_logits(lg, 8, 1.0f, c) &&
                sample_logits_topk(lg, 8, 1.0f, 100, c) == sample_logits(lg, 8, 1.0f, c);
    }
    CHECK(same, "top-k >= n is no truncation (the same ids as without top-k for the same coins)");
    printf(fails ? "%d sampler checks FAILED\n" : "all sampler checks passed\n", fails);
    return fails ? 1 : 0;
}
