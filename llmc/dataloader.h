/*
 Token shard loader for training and validation (llm.c's shard format, DESIGN.md §4).

 Shard file: header of 256 int32 (little-endian)
     [0] magic 20240520   [1] version (1 = uint16 tokens, 2 = uint32 tokens)   [2] number of tokens N
 then N tokens. The file size must be exactly 1024 + N * (2 or 4) bytes.

 How batches are cut (the same on every rank, so ranks agree without talking):
   - the files matching the glob are sorted by name; each epoch visits every shard once,
     in name order, or in a seeded random order when shuffling;
   - a shard of N tokens holds R = (N - 1) / T rows; row r is the tokens [r*T, r*T + T] (T+1 tokens:
     inputs are the first T, targets the last T, i.e. the next token of each input);
   - one optimizer step of all ranks together consumes B * W rows (W = world_size), so a shard
     gives S = R / (B * W) steps; the rows left over at the end of a shard are not used that epoch;
   - the rows are taken through a permutation P of [0, R): at step i, rank r reads the rows
     P[(i*W + r)*B + b], b = 0..B-1. Without shuffling P is the identity, so rank r reads the
     contiguous block of B*T+1 tokens at token offset (i*W + r)*B*T: llm.c's interleaving by rank.
     With shuffling P is a seeded Fisher-Yates permutation, new for every (seed, epoch, shard).
   Hence at each step the W ranks read disjoint rows, and over an epoch they together read every
   row of every shard except the < B*W tail rows of each shard. Every shard must hold at least
   B*T+1 tokens; one with fewer than W*B*T+1 gives no step and is skipped with a warning
   (at least one shard must give a step).
 Every shard is checked completely at init, before step 1: header, size, and every token id against
 vocab_size (read in chunks of 1M tokens, ~1 s per GB); an out-of-range id is a fatal error naming the
 file, position, id and vocabulary, with the hint at -k / -V (the usual cause: the model's vocabulary is
 not the data set's). The ids are checked again in every batch as it is read (the files may change).
 Shards are read row by row with fread into a buffer of B*(T+1) tokens, never whole into memory.

 The parsing pieces (shard_header_check, shard_tokens_decode) work on memory and return an error
 code with a message, so the fuzz harnesses in dev/fuzz can drive them; the loader fatal()s on errors.
*/
#ifndef SESSA_DATALOADER_H
#define SESSA_DATALOADER_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <glob.h>
#include "utils.h"

#define SHARD_MAGIC 20240520
#define SHARD_HEADER_INTS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * sizeof(int32_t))

// ----------------------------------------------------------------------------
// shard parsing (no I/O, no exit: returns 0 on success, -1 with a message in err)

typedef struct {
    int version;              // 1 = uint16 tokens, 2 = uint32 tokens
    size_t bytes_per_token;   // 2 or 4
    size_t num_tokens;        // header [2]
} ShardHeader;

// header: the first 256 int32 of the file; file_bytes: the file's size in bytes
static inline int shard_header_check(const int32_t *header, long long file_bytes, ShardHeader *sh,
                                     char *err, size_t errlen) {
    if (file_bytes < (long long)SHARD_HEADER_BYTES) {
        snprintf(err, errlen, "file has %lld bytes, shorter than the %zu-byte shard header",
                 file_bytes, SHARD_HEADER_BYTES);
        return -1;
    }
    if (header[0] != SHARD_MAGIC) {
        snprintf(err, errlen, "bad magic %d (expected %d): not a token shard", header[0], SHARD_MAGIC);
        return -1;
    }
    if (header[1] != 1 && header[1] != 2) {
        snprintf(err, errlen, "unknown shard version %d (expected 1 = uint16 or 2 = uint32 tokens)", header[1]);
        return -1;
    }
    if (header[2] < 0) {
        snprintf(err, errlen, "negative token count %d in header", header[2]);
        return -1;
    }
    sh->version = header[1];
    sh->bytes_per_token = header[1] == 1 ? 2 : 4;
    sh->num_tokens = (size_t)header[2];
    long long expected = (long long)SHARD_HEADER_BYTES + (long long)sh->num_tokens * (long long)sh->bytes_per_token;
    if (file_bytes != expected) {
        snprintf(err, errlen, "file size %lld bytes does not match the header (%zu tokens of %zu bytes => %lld bytes)%s",
                 file_bytes, sh->num_tokens, sh->bytes_per_token, expected,
                 file_bytes < expected ? ": truncated" : ": trailing data");
        return -1;
    }
    return 0;
}

// raw: n little-endian tokens of bytes_per_token bytes -> out[n] ints.
// Returns -1 when every id is < vocab_size, else the index of the first id that is not (*bad_id gets it).
static inline long long shard_tokens_decode(const uint8_t *raw, size_t n, size_t bytes_per_token, int vocab_size,
                                            int *out, uint32_t *bad_id) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = raw + i * bytes_per_token;
        uint32_t id = bytes_per_token == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8
                    : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (id >= (uint32_t)vocab_size) { *bad_id = id; return (long long)i; }
        out[i] = (int)id;
    }
    return -1;
}

// ----------------------------------------------------------------------------
// deterministic shuffling: splitmix64 stream per (seed, epoch, what)

static inline uint64_t dl_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// stream = 0 for the shard order, 1 + shard file index for that shard's row order
static inline uint64_t dl_stream_seed(uint64_t seed, uint64_t epoch, uint64_t stream) {
    uint64_t x = seed;
    uint64_t a = dl_splitmix64(&x);
    x = a ^ epoch;
    uint64_t b = dl_splitmix64(&x);
    x = b ^ stream;
    return dl_splitmix64(&x);
}

// perm[0..n) = identity, then Fisher-Yates with the given stream when shuffle is set
// (the modulo bias is < n / 2^64: irrelevant)
static inline void dl_permutation(uint32_t *perm, size_t n, int shuffle, uint64_t stream_seed) {
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    if (!shuffle) return;
    uint64_t x = stream_seed;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(dl_splitmix64(&x) % i);
        uint32_t t = perm[i - 1]; perm[i - 1] = perm[j]; perm[j] = t;
    }
}

// ----------------------------------------------------------------------------
// the loader

// Exact position of a loader, fwrite-able into a resume file (fixed size, no pointers).
// The geometry fields are checked by dataloader_set_state, so a state is never applied
// to a loader that cuts its batches differently.
#define DATALOADER_STATE_MAGIC 0x53445331u   // "SDS1"
typedef struct {
    uint32_t magic;
    int32_t shuffle;
    uint64_t seed;
    uint64_t B, T;
    int32_t rank, world_size;
    uint64_t num_shards, num_tokens;
    uint64_t epoch;        // epoch of the next batch
    uint64_t shard_pos;    // position in this epoch's shard order of the next batch
    uint64_t step;         // step inside that shard of the next batch
} DataLoaderState;

typedef struct {
    // configuration
    size_t B, T;
    int rank, world_size;
    int shuffle;
    uint64_t seed;
    int vocab_size;
    // the shards
    glob_t glob_result;
    size_t num_shards;
    ShardHeader *headers;       // (num_shards,)
    size_t *shard_steps;        // (num_shards,) steps of all ranks together per shard, S above
    size_t num_tokens;          // total tokens in all shards
    size_t steps_per_epoch;     // sum of shard_steps: batches each rank gets per epoch
    // position
    size_t epoch;
    size_t shard_pos;           // index into shard_order
    size_t step;                // step inside the current shard
    size_t *shard_order;        // (num_shards,) this epoch's order of the shard files
    // the current shard
    size_t cur_shard;           // file index of the open shard, or (size_t)-1
    size_t cur_epoch;           // epoch for which row_perm was made
    FILE *fp;
    uint32_t *row_perm;         // (rows of the current shard,)
    // the batch
    uint8_t *raw;               // (T+1) * 4 bytes: one row as stored
    int *rowbuf;                // (T+1,) one decoded row
    int *inputs;                // (B, T)
    int *targets;               // (B, T)
} DataLoader;

static inline const char *dataloader_path(const DataLoader *l, size_t file) { return l->glob_result.gl_pathv[file]; }

static inline void dataloader_order_shards(DataLoader *l) {
    uint32_t *perm = (uint32_t *)mallocCheck(l->num_shards * sizeof(uint32_t));
    dl_permutation(perm, l->num_shards, l->shuffle, dl_stream_seed(l->seed, l->epoch, 0));
    for (size_t i = 0; i < l->num_shards; i++) l->shard_order[i] = perm[i];
    free(perm);
}

// open the shard at l->shard_pos of the current epoch and make its row order
static inline void dataloader_load_shard(DataLoader *l) {
    size_t file = l->shard_order[l->shard_pos];
    if (l->cur_shard == file && l->cur_epoch == l->epoch) return;
    if (l->fp != NULL) fcloseCheck(l->fp, dataloader_path(l, l->cur_shard));
    l->fp = fopenCheck(dataloader_path(l, file), "rb");
    size_t rows = (l->headers[file].num_tokens - 1) / l->T;
    free(l->row_perm);
    l->row_perm = (uint32_t *)mallocCheck(rows * sizeof(uint32_t));
    dl_permutation(l->row_perm, rows, l->shuffle, dl_stream_seed(l->seed, l->epoch, 1 + (uint64_t)file));
    l->cur_shard = file;
    l->cur_epoch = l->epoch;
}

static inline void dataloader_reset(DataLoader *l) {
    l->epoch = 0;
    l->shard_pos = 0;
    l->step = 0;
    dataloader_order_shards(l);
    dataloader_load_shard(l);
}

#define DATALOADER_VOCAB_HINT "the data's vocabulary is larger than the model's: give the data set's tokenizer " \
    "with -k PATH (data/prepare.py writes it next to the shards), or -V N"

// every token id of a shard < vocab_size, or a fatal error naming file, position, id and vocabulary
static inline void dataloader_scan_shard(const char *path, const ShardHeader *h, int vocab_size) {
    const size_t chunk = 1 << 20;
    uint8_t *raw = (uint8_t *)mallocCheck(chunk * h->bytes_per_token);
    int *ids = (int *)mallocCheck(chunk * sizeof(int));
    FILE *fp = fopenCheck(path, "rb");
    fseekCheck(fp, (long long)SHARD_HEADER_BYTES, SEEK_SET, path);
    for (size_t pos = 0; pos < h->num_tokens; pos += chunk) {
        size_t n = h->num_tokens - pos < chunk ? h->num_tokens - pos : chunk;
        freadCheck(raw, h->bytes_per_token, n, fp, path);
        uint32_t bad_id;
        long long bad = shard_tokens_decode(raw, n, h->bytes_per_token, vocab_size, ids, &bad_id);
        if (bad >= 0) fatal("dataloader: shard '%s': token %zu has id %u, out of range for vocab_size %d: "
                            DATALOADER_VOCAB_HINT, path, pos + (size_t)bad, bad_id, vocab_size);
    }
    fcloseCheck(fp, path);
    free(raw); free(ids);
}

// pattern: glob of the shard files; vocab_size: every token id must be < it; shuffle: 0/1, with seed
static inline void dataloader_init(DataLoader *l, const char *pattern, size_t B, size_t T, int rank, int world_size,
                                   int shuffle, uint64_t seed, int vocab_size) {
    memset(l, 0, sizeof(*l));
    if (B == 0 || T == 0) fatal("dataloader: B and T must be positive (got B=%zu, T=%zu)", B, T);
    if (world_size < 1 || rank < 0 || rank >= world_size)
        fatal("dataloader: invalid rank %d for world_size %d", rank, world_size);
    if (vocab_size <= 0) fatal("dataloader: vocab_size must be positive (got %d)", vocab_size);
    l->B = B; l->T = T; l->rank = rank; l->world_size = world_size;
    l->shuffle = shuffle != 0; l->seed = seed; l->vocab_size = vocab_size;

    int g = glob(pattern, 0, NULL, &l->glob_result);   // sorted by name
    if (g == GLOB_NOMATCH) fatal("dataloader: no file matches '%s'", pattern);
    if (g != 0) fatal("dataloader: glob of '%s' failed (code %d)", pattern, g);
    l->num_shards = l->glob_result.gl_pathc;

    // check every shard's header and size, so a bad file fails at startup, not hours in
    l->headers = (ShardHeader *)mallocCheck(l->num_shards * sizeof(ShardHeader));
    l->shard_steps = (size_t *)mallocCheck(l->num_shards * sizeof(size_t));
    size_t rows_per_step = B * (size_t)world_size;
    for (size_t i = 0; i < l->num_shards; i++) {
        const char *path = dataloader_path(l, i);
        FILE *fp = fopenCheck(path, "rb");
        long long bytes = fileSize(fp, path);
        int32_t header[SHARD_HEADER_INTS] = {0};
        if (bytes >= (long long)SHARD_HEADER_BYTES) freadCheck(header, sizeof(int32_t), SHARD_HEADER_INTS, fp, path);
        fcloseCheck(fp, path);
        char err[256];
        if (shard_header_check(header, bytes, &l->headers[i], err, sizeof(err)) != 0)
            fatal("dataloader: shard '%s': %s", path, err);
        size_t ntok = l->headers[i].num_tokens;
        dataloader_scan_shard(path, &l->headers[i], vocab_size);
        if (ntok < B * T + 1)
            fatal("dataloader: shard '%s' has %zu tokens, shorter than one batch (B*T+1 = %zu)", path, ntok, B * T + 1);
        if ((ntok - 1) / T > UINT32_MAX) fatal("dataloader: shard '%s' has more than 2^32 rows", path);
        l->shard_steps[i] = ((ntok - 1) / T) / rows_per_step;
        if (l->shard_steps[i] == 0 && rank == 0)
            fprintf(stderr, "warning: dataloader: shard '%s' has %zu tokens, too few for one batch on each of "
                    "%d ranks (world_size*B*T+1 = %zu): skipped\n", path, ntok, world_size, rows_per_step * T + 1);
        l->num_tokens += ntok;
        l->steps_per_epoch += l->shard_steps[i];
    }
    if (l->steps_per_epoch == 0)
        fatal("dataloader: no shard matching '%s' has enough tokens for one batch on each of %d ranks "
              "(world_size*B*T+1 = %zu)", pattern, world_size, rows_per_step * T + 1);

    l->shard_order = (size_t *)mallocCheck(l->num_shards * sizeof(size_t));
    l->raw = (uint8_t *)mallocCheck((T + 1) * sizeof(uint32_t));
    l->rowbuf = (int *)mallocCheck((T + 1) * sizeof(int));
    l->inputs = (int *)mallocCheck(B * T * sizeof(int));
    l->targets = (int *)mallocCheck(B * T * sizeof(int));
    l->cur_shard = (size_t)-1;
    dataloader_reset(l);
}

// read row `row` of the open shard into l->rowbuf (T+1 ids), checking every id
static inline void dataloader_read_row(DataLoader *l, size_t row) {
    const char *path = dataloader_path(l, l->cur_shard);
    size_t bpt = l->headers[l->cur_shard].bytes_per_token;
    size_t first = row * l->T;
    fseekCheck(l->fp, (long long)(SHARD_HEADER_BYTES + first * bpt), SEEK_SET, path);
    freadCheck(l->raw, bpt, l->T + 1, l->fp, path);
    uint32_t bad_id;
    long long bad = shard_tokens_decode(l->raw, l->T + 1, bpt, l->vocab_size, l->rowbuf, &bad_id);
    if (bad >= 0) fatal("dataloader: shard '%s': token %zu has id %u, out of range for vocab_size %d (the file "
                        "changed since the check at startup?)", path, first + (size_t)bad, bad_id, l->vocab_size);
}

static inline void dataloader_next_batch(DataLoader *l) {
    // move on to the next shard, and the next epoch, when this shard is used up (or gives no step:
    // steps_per_epoch > 0, so some shard does)
    while (l->step >= l->shard_steps[l->shard_order[l->shard_pos]]) {
        l->step = 0;
        l->shard_pos++;
        if (l->shard_pos == l->num_shards) {
            l->shard_pos = 0;
            l->epoch++;
            dataloader_order_shards(l);
        }
    }
    dataloader_load_shard(l);
    size_t B = l->B, T = l->T;
    size_t base = (l->step * (size_t)l->world_size + (size_t)l->rank) * B;
    for (size_t b = 0; b < B; b++) {
        dataloader_read_row(l, l->row_perm[base + b]);
        memcpy(l->inputs + b * T, l->rowbuf, T * sizeof(int));
        memcpy(l->targets + b * T, l->rowbuf + 1, T * sizeof(int));
    }
    l->step++;
}

static inline void dataloader_get_state(const DataLoader *l, DataLoaderState *st) {
    memset(st, 0, sizeof(*st));
    st->magic = DATALOADER_STATE_MAGIC;
    st->shuffle = l->shuffle;
    st->seed = l->seed;
    st->B = l->B; st->T = l->T;
    st->rank = l->rank; st->world_size = l->world_size;
    st->num_shards = l->num_shards; st->num_tokens = l->num_tokens;
    st->epoch = l->epoch; st->shard_pos = l->shard_pos; st->step = l->step;
}

// Apply a saved position. The state is the same on every rank (the ranks move in lockstep), so a state
// saved by rank 0 restores every rank. It may come from another world size W: the global row sequence
// does not depend on W (only how its rows are dealt to ranks), so the position inside the shard,
// step * B * W rows, carries over when it is a whole number of steps of the new world size.
static inline void dataloader_set_state(DataLoader *l, const DataLoaderState *st) {
    if (st->magic != DATALOADER_STATE_MAGIC) fatal("dataloader state: bad magic 0x%08x", st->magic);
    if (st->B != l->B || st->T != l->T || st->shuffle != l->shuffle || st->seed != l->seed || st->world_size < 1)
        fatal("dataloader state was saved with B=%llu T=%llu shuffle=%d seed=%llu world_size=%d, "
              "this loader has B=%zu T=%zu shuffle=%d seed=%llu: resume with the run's flags (-y 1 reuses them from "
              "OUT/args.txt; a run without it needs -b %llu -t %llu -w %d -S %llu)",
              (unsigned long long)st->B, (unsigned long long)st->T, st->shuffle,
              (unsigned long long)st->seed, st->world_size, l->B, l->T, l->shuffle, (unsigned long long)l->seed,
              (unsigned long long)st->B, (unsigned long long)st->T, st->shuffle, (unsigned long long)st->seed);
    if (st->num_shards != l->num_shards || st->num_tokens != l->num_tokens)
        fatal("dataloader state was saved over %llu shards / %llu tokens, the files now have %zu shards / %zu tokens",
              (unsigned long long)st->num_shards, (unsigned long long)st->num_tokens, l->num_shards, l->num_tokens);
    uint64_t rows_done = st->step * st->B * (uint64_t)st->world_size;   // rows of this shard already used
    uint64_t rows_per_step = (uint64_t)l->B * (uint64_t)l->world_size;
    if (rows_done % rows_per_step != 0)
        fatal("dataloader state: saved at world size %d after %llu rows of the shard, which is not a whole "
              "number of steps of %llu rows at world size %d; resume at a world size W with B*W dividing %llu",
              st->world_size, (unsigned long long)rows_done, (unsigned long long)rows_per_step, l->world_size,
              (unsigned long long)rows_done);
    uint64_t step = rows_done / rows_per_step;
    l->epoch = (size_t)st->epoch;
    dataloader_order_shards(l);
    if (st->shard_pos >= l->num_shards || step > l->shard_steps[l->shard_order[st->shard_pos]])
        fatal("dataloader state: position (shard %llu, step %llu) is outside the data",
              (unsigned long long)st->shard_pos, (unsigned long long)step);
    l->shard_pos = (size_t)st->shard_pos;
    l->step = (size_t)step;
    dataloader_load_shard(l);
}

static inline void dataloader_free(DataLoader *l) {
    if (l->fp != NULL) fcloseCheck(l->fp, dataloader_path(l, l->cur_shard));
    free(l->headers); free(l->shard_steps); free(l->shard_order); free(l->row_perm);
    free(l->raw); free(l->rowbuf); free(l->inputs); free(l->targets);
    globfree(&l->glob_result);
    memset(l, 0, sizeof(*l));
}

#endif // SESSA_DATALOADER_H
