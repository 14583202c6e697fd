/*
 libFuzzer harness for the long-context eval file parser (llmc/eval_tasks.h): eval_tasks_parse works on
 memory and returns an error instead of exiting. A parsed file must hold records within its own bounds,
 sorted by (sequence, t), and nominal distances that are distinct, ascending and indexed correctly.
*/
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include "llmc/eval_tasks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    EvalTasks e;
    char err[512];
    if (eval_tasks_parse(&e, data, size, err, sizeof(err)) != 0) {
        if (e.records != NULL || e.distances != NULL) abort();   // a failed parse leaves nothing behind
        return 0;
    }
    for (int i = 0; i < e.num_scored; i++) {
        EvalRecord r = e.records[i];
        if (r.sequence < 0 || r.sequence >= e.num_sequences || r.t < 0 || r.t >= e.T) abort();
        if (r.answer < 0 || r.answer >= e.vocab_size || r.distance < 1) abort();
        if (i > 0 && eval_record_cmp_(&e.records[i - 1], &e.records[i]) > 0) abort();
        if (e.dist_index[i] < 0 || e.dist_index[i] >= e.num_distances || e.distances[e.dist_index[i]] != r.nominal) abort();
    }
    for (int d = 1; d < e.num_distances; d++) if (e.distances[d - 1] >= e.distances[d]) abort();
    eval_tasks_free(&e);
    return 0;
}
