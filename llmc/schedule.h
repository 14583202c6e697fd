/*
 Learning-rate schedule shared by the trainers: linear warmup, then cosine decay to a final fraction.
   step < warmup:  lr * (step + 1) / warmup
   after:          lr * (frac + (1 - frac) * 0.5 * (1 + cos(pi * progress))),  progress in [0, 1]
*/
#ifndef SESSA_SCHEDULE_H
#define SESSA_SCHEDULE_H

#include <math.h>

static inline float lr_at_step(float max_lr, int step, int warmup, int max_steps, float final_frac) {
    if (step < warmup) return max_lr * (float)(step + 1) / (float)warmup;
    if (max_steps <= warmup) return max_lr;
    float progress = (float)(step - warmup) / (float)(max_steps - warmup);
    if (progress > 1.0f) progress = 1.0f;
    float cosine = 0.5f * (1.0f + cosf((float)M_PI * progress));
    return max_lr * (final_frac + (1.0f - final_frac) * cosine);
}

#endif // SESSA_SCHEDULE_H
