/*
 The schedule shared by the trainers (DESIGN.md section 5).
 Learning rate: linear warmup, then cosine decay to a final fraction.
   step < warmup:  lr * (step + 1) / warmup
   after:          lr * (frac + (1 - frac) * 0.5 * (1 + cos(pi * progress))),  progress in [0, 1]
 What happens at step s of a run over steps [start, max] (train_sessa.c and train_sessa.cu loop the same way):
 validation, sample and checkpoint of step s, then the optimizer step s -> s + 1 (none at s = max). What belongs
 to step s is not repeated by a run resumed from the checkpoint of step s (s = start > 0).
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

typedef struct { int start, max; } StepRange;   // the run's first step (0, or the resumed one) and last step

static inline int step_resumed_here(StepRange r, int step) { return r.start > 0 && step == r.start; }

// validation (and -E) at step 0, every `every` steps and at the last step; every = 0: never
static inline int step_validates(StepRange r, int step, int every) {
    return !step_resumed_here(r, step) && every > 0 && (step % every == 0 || step == r.max);
}

// a sample every `every` steps and at the last step, not at step 0 unless nothing is trained (-x 0: a way to
// sample from a checkpoint)
static inline int step_samples(StepRange r, int step, int every) {
    return !step_resumed_here(r, step) && every > 0 && (step > 0 || r.max == 0) && (step % every == 0 || step == r.max);
}

// a checkpoint every `every` steps, at the last step and after a signal, of steps this run trained
static inline int step_checkpoints(StepRange r, int step, int every, int stop) {
    return step > r.start && ((every > 0 && step % every == 0) || step == r.max || stop);
}

#endif // SESSA_SCHEDULE_H
