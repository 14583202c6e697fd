/*
 Long-context evaluation: reads the eval files of data/long_context.py and scores a model's argmax
 predictions at their positions, per nominal distance (format in data/README.md).

 Eval file, little-endian int32: header of 256 ints
     [0] magic 20261125  [1] version 1  [2] seq_len T  [3] num_sequences  [4] num_scored M
     [5] task (1 mqar, 2 needle, 3 style)  [6] vocab size  [7] fields per record (5)
 then M records (sequence, t, distance, answer, nominal_distance): in row `sequence` of the val shard,
 the prediction made at input position t (its target is token t+1 of the sequence) must be `answer`.

 Use (CPU trainer: -E EVALFILE with the val shards of the same file given by -j):
     eval_tasks_load(&e, path, vocab_size);  eval_tasks_check_loader(&e, &val_loader);
     eval_tasks_zero(&e);
     for k in 0 .. eval_tasks_steps(&e, &val_loader)-1:            (after dataloader_reset)
         dataloader_next_batch(&val_loader); forward; argmax (B,T) of the logits
         eval_tasks_score(&e, eval_tasks_row0(&val_loader, k), B, argmax, val_loader.targets);
     eval_tasks_report(&e, step, log);    (with several ranks: all-reduce e.correct/e.count first)
 The val loader must be unshuffled: then at step k rank r holds rows (k*W + r)*B + b, and row i is
 sequence i. Each scored target is checked against the file's answer, so an eval file that does not
 belong to the val shards (or to this -t) stops with an error instead of giving a wrong accuracy.
 The parser works on memory and returns an error message (no exit), for tests and fuzzing.
*/
#ifndef SESSA_EVAL_TASKS_H
#define SESSA_EVAL_TASKS_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include "utils.h"
#include "dataloader.h"

#define EVAL_MAGIC 20261125
#define EVAL_HEADER_INTS 256
#define EVAL_HEADER_BYTES (EVAL_HEADER_INTS * 4)
#define EVAL_FIELDS 5

typedef struct { int sequence, t, distance, answer, nominal; } EvalRecord;

typedef struct {
    const char *path;
    int T, num_sequences, num_scored, task, vocab_size;
    EvalRecord *records;      // (num_scored,) sorted by (sequence, t)
    int num_distances;
    int *distances;           // (num_distances,) the nominal distances, ascending
    int *dist_index;          // (num_scored,) index of each record's nominal distance in distances
    long long *correct, *count; // (num_distances,) tallies of the current evaluation
} EvalTasks;

static inline const char *eval_task_name(int task) {
    return task == 1 ? "mqar" : task == 2 ? "needle" : task == 3 ? "style" : "unknown";
}

static inline int32_t eval_le32_(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

static inline int eval_int_cmp_(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

// index of the first element >= v in the ascending x[0..n)
static inline int eval_lower_bound_(const int *x, int n, int v) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (x[mid] < v) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static inline int eval_record_cmp_(const void *a, const void *b) {
    const EvalRecord *x = (const EvalRecord *)a, *y = (const EvalRecord *)b;
    if (x->sequence != y->sequence) return x->sequence < y->sequence ? -1 : 1;
    return (x->t > y->t) - (x->t < y->t);
}

static inline void eval_tasks_free(EvalTasks *e) {
    free(e->records); free(e->distances); free(e->dist_index); free(e->correct); free(e->count);
    memset(e, 0, sizeof(*e));
}

// data: the whole file (bytes long) -> e; returns 0, or -1 with a message in err (e left empty)
static inline int eval_tasks_parse(EvalTasks *e, const uint8_t *data, size_t bytes, char *err, size_t errlen) {
    memset(e, 0, sizeof(*e));
    if (bytes < EVAL_HEADER_BYTES) {
        snprintf(err, errlen, "file has %zu bytes, shorter than the %d-byte header: truncated", bytes, EVAL_HEADER_BYTES);
        return -1;
    }
    int32_t h[8];
    for (int i = 0; i < 8; i++) h[i] = eval_le32_(data + 4 * i);
    if (h[0] != EVAL_MAGIC) {
        snprintf(err, errlen, "bad magic %d (expected %d): not a long-context eval file", h[0], EVAL_MAGIC);
        return -1;
    }
    if (h[1] != 1) { snprintf(err, errlen, "unknown eval file version %d (expected 1)", h[1]); return -1; }
    if (h[7] != EVAL_FIELDS) {
        snprintf(err, errlen, "%d fields per record (expected %d)", h[7], EVAL_FIELDS);
        return -1;
    }
    if (h[2] < 2 || h[3] < 1 || h[4] < 1 || h[6] < 1 || h[5] < 1 || h[5] > 3) {
        snprintf(err, errlen, "invalid header: seq_len %d (>= 2), num_sequences %d (>= 1), num_scored %d (>= 1), "
                 "task %d (1..3), vocab size %d (>= 1)", h[2], h[3], h[4], h[5], h[6]);
        return -1;
    }
    unsigned long long want = EVAL_HEADER_BYTES + (unsigned long long)h[4] * EVAL_FIELDS * 4;
    if (bytes != want) {
        snprintf(err, errlen, "file has %zu bytes, but its header says %d records (%llu bytes)%s", bytes, h[4], want,
                 bytes < want ? ": truncated" : ": trailing data");
        return -1;
    }
    e->T = h[2]; e->num_sequences = h[3]; e->num_scored = h[4]; e->task = h[5]; e->vocab_size = h[6];
    e->records = (EvalRecord *)mallocCheck((size_t)e->num_scored * sizeof(EvalRecord));
    for (int i = 0; i < e->num_scored; i++) {
        const uint8_t *p = data + EVAL_HEADER_BYTES + (size_t)i * EVAL_FIELDS * 4;
        EvalRecord r = { eval_le32_(p), eval_le32_(p + 4), eval_le32_(p + 8), eval_le32_(p + 12), eval_le32_(p + 16) };
        const char *bad = r.sequence < 0 || r.sequence >= e->num_sequences ? "sequence out of range [0, num_sequences)"
                        : r.t < 0 || r.t >= e->T ? "position t out of range [0, seq_len T)"
                        : r.answer < 0 || r.answer >= e->vocab_size ? "answer out of range [0, vocab size)"
                        : r.distance < 1 || r.nominal < 1 ? "distance < 1" : NULL;
        if (bad) {
            snprintf(err, errlen, "record %d (sequence %d, t %d, distance %d, answer %d, nominal %d): %s "
                     "(T %d, num_sequences %d, vocab %d)", i, r.sequence, r.t, r.distance, r.answer, r.nominal, bad,
                     e->T, e->num_sequences, e->vocab_size);
            eval_tasks_free(e);
            return -1;
        }
        e->records[i] = r;
    }
    qsort(e->records, e->num_scored, sizeof(EvalRecord), eval_record_cmp_);
    // the distinct nominal distances, ascending, and each record's index among them
    e->distances = (int *)mallocCheck((size_t)e->num_scored * sizeof(int));
    e->dist_index = (int *)mallocCheck((size_t)e->num_scored * sizeof(int));
    for (int i = 0; i < e->num_scored; i++) e->distances[i] = e->records[i].nominal;
    qsort(e->distances, e->num_scored, sizeof(int), eval_int_cmp_);
    for (int i = 0; i < e->num_scored; i++)
        if (i == 0 || e->distances[i] != e->distances[e->num_distances - 1]) e->distances[e->num_distances++] = e->distances[i];
    for (int i = 0; i < e->num_scored; i++)
        e->dist_index[i] = eval_lower_bound_(e->distances, e->num_distances, e->records[i].nominal);
    e->correct = (long long *)callocCheck((size_t)e->num_distances, sizeof(long long));
    e->count = (long long *)callocCheck((size_t)e->num_distances, sizeof(long long));
    return 0;
}

// read and parse the file at path; vocab_size: the model's (answers must be < it). Errors are fatal.
static inline void eval_tasks_load(EvalTasks *e, const char *path, int vocab_size) {
    FILE *fp = fopenCheck(path, "rb");
    long long bytes = fileSize(fp, path);
    uint8_t *data = (uint8_t *)mallocCheck(bytes > 0 ? (size_t)bytes : 1);
    if (bytes > 0) freadCheck(data, 1, (size_t)bytes, fp, path);
    fcloseCheck(fp, path);
    char err[512];
    if (eval_tasks_parse(e, data, (size_t)bytes, err, sizeof(err)) != 0) fatal("eval file '%s': %s", path, err);
    free(data);
    e->path = path;
    if (e->vocab_size > vocab_size)
        fatal("eval file '%s' is for a vocabulary of %d tokens, the model has %d", path, e->vocab_size, vocab_size);
}

// the run must cut the val shards into the file's sequences: same T, no shuffling, whole batches of
// sequences, all in the first shard
static inline void eval_tasks_check_loader(const EvalTasks *e, const DataLoader *l) {
    size_t rows_per_step = l->B * (size_t)l->world_size;
    if (l->T != (size_t)e->T)
        fatal("eval file '%s' holds sequences of T=%d, but the run has -t %zu: its val rows would not be the "
              "file's sequences", e->path, e->T, l->T);
    if (l->shuffle) fatal("eval file '%s': the val loader must not shuffle", e->path);
    if (e->num_sequences % rows_per_step != 0)
        fatal("eval file '%s' has %d sequences, not a multiple of B*world_size = %zu (the loader drops a "
              "partial batch): choose -b dividing it", e->path, e->num_sequences, rows_per_step);
    size_t rows = l->shard_steps[l->shard_order[0]] * rows_per_step;
    if (rows < (size_t)e->num_sequences)
        fatal("eval file '%s' has %d sequences, but the first val shard '%s' gives only %zu rows of T=%zu",
              e->path, e->num_sequences, dataloader_path(l, l->shard_order[0]), rows, l->T);
}

// batches per evaluation, and the first row (= sequence) of this rank's batch k
static inline int eval_tasks_steps(const EvalTasks *e, const DataLoader *l) {
    return e->num_sequences / (int)(l->B * l->world_size);
}
static inline int eval_tasks_row0(const DataLoader *l, int k) {
    return (k * l->world_size + l->rank) * (int)l->B;
}

static inline void eval_tasks_zero(EvalTasks *e) {
    memset(e->correct, 0, (size_t)e->num_distances * sizeof(long long));
    memset(e->count, 0, (size_t)e->num_distances * sizeof(long long));
}

// argmax, targets: (B, T) for the sequences row0 .. row0+B-1
static inline void eval_tasks_score(EvalTasks *e, int row0, int B, const int *argmax, const int *targets) {
    int lo = 0, hi = e->num_scored;              // the first record of sequence >= row0 (records are sorted)
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (e->records[mid].sequence < row0) lo = mid + 1; else hi = mid;
    }
    for (int i = lo; i < e->num_scored && e->records[i].sequence < row0 + B; i++) {
        const EvalRecord *r = &e->records[i];
        size_t idx = (size_t)(r->sequence - row0) * e->T + r->t;
        if (targets[idx] != r->answer)
            fatal("eval file '%s' does not match the val shards: sequence %d has target %d at position %d, "
                  "the file's answer is %d (is -j the val shard this file was written with?)",
                  e->path, r->sequence, targets[idx], r->t, r->answer);
        e->count[e->dist_index[i]]++;
        e->correct[e->dist_index[i]] += argmax[idx] == r->answer;
    }
}

// one line per nominal distance on stdout, and in the log when given:
//   stdout "step N | eval_acc d=128 0.953125 (61/64)",  log "step N eval_acc d=128 0.953125 61/64"
static inline void eval_tasks_report(const EvalTasks *e, int step, FILE *log) {
    for (int j = 0; j < e->num_distances; j++) {
        double acc = e->count[j] ? (double)e->correct[j] / (double)e->count[j] : 0.0;
        printf("step %d | eval_acc d=%d %.6f (%lld/%lld)\n", step, e->distances[j], acc, e->correct[j], e->count[j]);
        if (log) fprintf(log, "step %d eval_acc d=%d %.6f %lld/%lld\n", step, e->distances[j], acc, e->correct[j],
                         e->count[j]);
    }
    if (log) fflush(log);
}

#endif // SESSA_EVAL_TASKS_H
