/*
 Resume state of a training run, next to the model checkpoint (llm.c style):
   OUT/model_NNNNNNNN.bin   parameters (llmc/sessa.h checkpoint, fp32)
   OUT/state_NNNNNNNN.bin   this file: step, AdamW moments, data-loader position, RNG
   OUT/DONE_NNNNNNNN        empty marker written last: the pair above is complete
 Both files are written atomically (PATH.tmp, fsync, rename), so an interrupted save leaves the
 previous checkpoint intact; -y 1 resumes from the highest NNNNNNNN that has a DONE marker.
 Layout: int32 header[256] = { magic 20261124, version 1, step, num_params low 31 bits, num_params >> 31,
 loader_state_bytes }, then float m[num_params], float v[num_params], loader state bytes, uint64 rng[4].
 The moments are the full (unsharded) vectors in checkpoint order, whatever the number of GPUs.
*/
#ifndef SESSA_TRAIN_STATE_H
#define SESSA_TRAIN_STATE_H

#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <dirent.h>
#include "utils.h"
#include "sessa.h"

#define TRAIN_STATE_MAGIC 20261124

static inline void train_state_write(const char *path, int step, size_t n, const float *m, const float *v,
                                     const void *loader_state, size_t loader_bytes, const uint64_t rng[4]) {
    char tmp[4096];
    FILE *fp = atomic_write_begin(path, tmp, sizeof(tmp));
    int32_t h[SESSA_HEADER_INTS] = {0};
    h[0] = TRAIN_STATE_MAGIC; h[1] = 1; h[2] = step;
    h[3] = (int32_t)(n & 0x7fffffff); h[4] = (int32_t)(n >> 31); h[5] = (int32_t)loader_bytes;
    fwriteCheck(h, sizeof(int32_t), SESSA_HEADER_INTS, fp, tmp);
    fwriteCheck(m, sizeof(float), n, fp, tmp);
    fwriteCheck(v, sizeof(float), n, fp, tmp);
    fwriteCheck(loader_state, 1, loader_bytes, fp, tmp);
    fwriteCheck(rng, sizeof(uint64_t), 4, fp, tmp);
    atomic_write_commit(fp, tmp, path);
}

// reads into m, v (n floats each), loader_state (loader_bytes), rng; returns the step
static inline int train_state_read(const char *path, size_t n, float *m, float *v,
                                   void *loader_state, size_t loader_bytes, uint64_t rng[4]) {
    FILE *fp = fopenCheck(path, "rb");
    long long bytes = fileSize(fp, path);
    long long expect = SESSA_HEADER_INTS * 4LL + 8LL * n + (long long)loader_bytes + 32;
    int32_t h[SESSA_HEADER_INTS];
    if (bytes < SESSA_HEADER_INTS * 4LL) fatal("resume state '%s' is truncated (%lld bytes)", path, bytes);
    freadCheck(h, sizeof(int32_t), SESSA_HEADER_INTS, fp, path);
    if (h[0] != TRAIN_STATE_MAGIC) fatal("resume state '%s': bad magic %d (expected %d)", path, h[0], TRAIN_STATE_MAGIC);
    if (h[1] != 1) fatal("resume state '%s': unsupported version %d", path, h[1]);
    size_t file_n = (size_t)(uint32_t)h[3] | ((size_t)(uint32_t)h[4] << 31);
    if (file_n != n) fatal("resume state '%s' holds %zu parameters but the model has %zu", path, file_n, n);
    if ((size_t)h[5] != loader_bytes) fatal("resume state '%s': data-loader state of %d bytes, expected %zu", path, h[5], loader_bytes);
    if (bytes != expect) fatal("resume state '%s' is %lld bytes, expected %lld (truncated or corrupt)", path, bytes, expect);
    freadCheck(m, sizeof(float), n, fp, path);
    freadCheck(v, sizeof(float), n, fp, path);
    freadCheck(loader_state, 1, loader_bytes, fp, path);
    freadCheck(rng, sizeof(uint64_t), 4, fp, path);
    fcloseCheck(fp, path);
    return h[2];
}

// the checkpoint file names of a step
static inline void train_state_paths(char *model, char *state, char *done, size_t len, const char *dir, int step) {
    snprintf(model, len, "%s/model_%08d.bin", dir, step);
    snprintf(state, len, "%s/state_%08d.bin", dir, step);
    snprintf(done, len, "%s/DONE_%08d", dir, step);
}

static inline void train_state_mark_done(const char *done) {
    FILE *fp = fopenCheck(done, "wb");
    fcloseCheck(fp, done);
}

// highest step with a DONE marker in dir, or -1 if none
static inline int train_state_latest(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) fatal("cannot open output dir '%s' to resume from: %s", dir, strerror(errno));
    int best = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int step; char tail;
        if (sscanf(e->d_name, "DONE_%8d%c", &step, &tail) == 1 && strlen(e->d_name) == 13 && step > best) best = step;
    }
    closedir(d);
    return best;
}

#endif // SESSA_TRAIN_STATE_H
