/*
 Tests of llmc/dataloader.h on small shards written here, whose tokens are their own global
 positions (shard s, token i has id s*STRIDE + i), so every batch says exactly where it came from.
 Build and run (from the repo root):
   gcc -O2 -Wall -Wextra -I. dev/test/test_dataloader.c -o dev/test/test_dataloader && dev/test/test_dataloader
 Prints "N passed, M failed"; the exit code is 0 only when nothing failed.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "llmc/dataloader.h"
#include "dev/test/data_testing.h"

#define STRIDE 100000          // token ids of shard s start at s*STRIDE
#define VOCAB (10 * STRIDE)    // > every id written by write_positions_shard

static char dir[128];

// write a shard whose header says `header_count` tokens but which holds `n` tokens
static void write_shard_raw(const char *path, int magic, int version, int header_count,
                            const uint32_t *tokens, size_t n) {
    int32_t header[256] = {0};
    header[0] = magic; header[1] = version; header[2] = header_count;
    FILE *fp = fopenCheck(path, "wb");
    fwriteCheck(header, sizeof(int32_t), 256, fp, path);
    for (size_t i = 0; i < n; i++) {
        if (version == 1) { uint16_t t = (uint16_t)tokens[i]; fwriteCheck(&t, 2, 1, fp, path); }
        else fwriteCheck(&tokens[i], 4, 1, fp, path);
    }
    fcloseCheck(fp, path);
}

// shard `s` with tokens s*STRIDE + i, i < n
static void write_positions_shard(const char *path, int s, size_t n, int version) {
    uint32_t *t = (uint32_t *)mallocCheck(n * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) t[i] = (uint32_t)(s * STRIDE + i);
    write_shard_raw(path, SHARD_MAGIC, version, (int)n, t, n);
    free(t);
}

static const char *path_in(const char *sub) {
    static char p[4][512]; static int k = 0;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof(p[k]), "%s/%s", dir, sub);
    return p[k];
}

// ----------------------------------------------------------------------------
// the good path

enum { NB = 2, NT = 8, NW = 3 };   // the good shards' test geometry
// rows per shard R = (n-1)/NT; shard s has R = NB*NW*k_s rows exactly, so nothing is dropped
static const int shard_rows[3] = { NB * NW * 4, NB * NW * 2, NB * NW * 3 };   // 9 steps per epoch in total

static void make_good_shards(void) {
    for (int s = 0; s < 3; s++) {
        char name[64]; snprintf(name, sizeof(name), "good/shard_%03d.bin", s);
        write_positions_shard(path_in(name), s, (size_t)shard_rows[s] * NT + 1, 2);
    }
}

// each batch row must be NT+1 consecutive ids of one shard, starting at a row boundary
static int batch_is_well_formed(const DataLoader *l) {
    for (size_t b = 0; b < l->B; b++)
        for (size_t t = 0; t < l->T; t++) {
            int x = l->inputs[b * l->T + t], y = l->targets[b * l->T + t];
            if (x != l->inputs[b * l->T] + (int)t || y != x + 1) return 0;
        }
    for (size_t b = 0; b < l->B; b++) if ((l->inputs[b * l->T] % STRIDE) % (int)l->T != 0) return 0;
    return 1;
}

// row id of batch row b: shard * STRIDE + row index
static int row_id(const DataLoader *l, size_t b) {
    int x = l->inputs[b * l->T];
    return (x / STRIDE) * STRIDE + (x % STRIDE) / (int)l->T;
}

static void test_ranks_partition(int shuffle) {
    const char *glob = path_in("good/shard_*.bin");
    int total_rows = shard_rows[0] + shard_rows[1] + shard_rows[2];
    char *seen = (char *)callocCheck(3 * STRIDE, 1);
    int steps = -1, ok_form = 1, dup = 0, count = 0;
    for (int r = 0; r < NW; r++) {
        DataLoader l;
        dataloader_init(&l, glob, NB, NT, r, NW, shuffle, 1337, VOCAB);
        if (steps < 0) steps = (int)l.steps_per_epoch;
        CHECK(l.num_tokens == (size_t)total_rows * NT + 3, "num_tokens %zu", l.num_tokens);
        for (int i = 0; i < steps; i++) {
            dataloader_next_batch(&l);
            ok_form &= batch_is_well_formed(&l);
            for (size_t b = 0; b < NB; b++) {
                int id = row_id(&l, b);
                if (seen[id]) dup++;
                seen[id] = 1; count++;
            }
            CHECK(l.epoch == 0, "still epoch 0 at step %d", i);
        }
        dataloader_next_batch(&l);
        CHECK(l.epoch == 1, "epoch should wrap to 1 after steps_per_epoch batches (shuffle=%d), got %zu", shuffle, l.epoch);
        dataloader_free(&l);
    }
    CHECK(steps * NB * NW == total_rows, "steps_per_epoch %d * NB*NW should cover all %d rows", steps, total_rows);
    CHECK(ok_form, "every batch row is NT+1 consecutive tokens with targets = next token (shuffle=%d)", shuffle);
    CHECK(dup == 0, "ranks read disjoint rows (shuffle=%d): %d rows read twice", shuffle, dup);
    CHECK(count == total_rows, "ranks together read all %d rows, read %d (shuffle=%d)", total_rows, count, shuffle);
    free(seen);
}

// without shuffling, rank r at step i of the first shard reads the contiguous block at (i*NW + r)*NB*NT (llm.c's layout)
static void test_unshuffled_layout(void) {
    DataLoader l;
    dataloader_init(&l, path_in("good/shard_*.bin"), NB, NT, 1, NW, 0, 0, VOCAB);
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        dataloader_next_batch(&l);
        for (int k = 0; k < NB * NT; k++) ok &= l.inputs[k] == (i * NW + 1) * NB * NT + k;
    }
    dataloader_next_batch(&l);   // first step of the second shard
    for (int k = 0; k < NB * NT; k++) ok &= l.inputs[k] == STRIDE + (0 * NW + 1) * NB * NT + k;
    CHECK(ok, "unshuffled rank 1 reads contiguous blocks at (i*NW + rank)*NB*NT, shards in name order");
    dataloader_free(&l);
}

// the ids of the next n batches' first tokens of every row
static void record(DataLoader *l, int n, int *out) {
    for (int i = 0; i < n; i++) {
        dataloader_next_batch(l);
        for (size_t b = 0; b < l->B; b++) out[i * l->B + b] = l->inputs[b * l->T];
    }
}

static void test_shuffle_determinism(void) {
    const char *glob = path_in("good/shard_*.bin");
    enum { N = 9 };   // one epoch of rank 0 with NW = 3
    int a0[N * NB], a1[N * NB], b0[N * NB], c0[N * NB];
    DataLoader la, lb, lc;
    dataloader_init(&la, glob, NB, NT, 0, NW, 1, 42, VOCAB);
    dataloader_init(&lb, glob, NB, NT, 0, NW, 1, 42, VOCAB);
    dataloader_init(&lc, glob, NB, NT, 0, NW, 1, 43, VOCAB);
    record(&la, N, a0); record(&la, N, a1);
    record(&lb, N, b0); record(&lc, N, c0);
    CHECK(memcmp(a0, b0, sizeof(a0)) == 0, "same seed gives the same batches");
    CHECK(memcmp(a0, c0, sizeof(a0)) != 0, "a different seed gives different batches");
    CHECK(memcmp(a0, a1, sizeof(a0)) != 0, "epoch 1 is shuffled differently from epoch 0");
    CHECK(la.epoch == 1, "two epochs read, epoch counter %zu", la.epoch);
    // the shard order itself is shuffled: over a few seeds the first batch must not always come from shard 0
    int not_first = 0;
    for (uint64_t seed = 0; seed < 8; seed++) {
        DataLoader l;
        dataloader_init(&l, glob, NB, NT, 0, NW, 1, seed, VOCAB);
        dataloader_next_batch(&l);
        not_first += l.inputs[0] / STRIDE != 0;
        dataloader_free(&l);
    }
    CHECK(not_first > 0, "shard order is shuffled (first shard differs from shard 0 for some seed)");
    // the rows inside one shard are reordered every epoch too (one shard: the shard order cannot change)
    DataLoader l1;
    dataloader_init(&l1, path_in("good/shard_000.bin"), NB, NT, 0, 1, 1, 42, VOCAB);
    int e0[12 * NB], e1[12 * NB];   // shard_000 has NB*NW*4 = 24 rows = 12 steps of NB at world size 1
    CHECK(l1.steps_per_epoch == 12, "shard_000 gives 12 steps, got %zu", l1.steps_per_epoch);
    record(&l1, 12, e0); record(&l1, 12, e1);
    CHECK(memcmp(e0, e1, sizeof(e0)) != 0, "row order inside a shard differs between epochs");
    dataloader_free(&l1);
    // reset goes back to the first batch of epoch 0
    dataloader_reset(&la);
    int r0[N * NB];
    record(&la, N, r0);
    CHECK(memcmp(a0, r0, sizeof(a0)) == 0 && la.epoch == 0, "reset replays epoch 0");
    dataloader_free(&la); dataloader_free(&lb); dataloader_free(&lc);
}

// state saved after k batches, written to a file and read back, reproduces the next batches exactly
static void test_resume(int shuffle, int k) {
    const char *glob = path_in("good/shard_*.bin");
    enum { M = 12 };
    DataLoader l;
    dataloader_init(&l, glob, NB, NT, 2, NW, shuffle, 7, VOCAB);
    for (int i = 0; i < k; i++) dataloader_next_batch(&l);
    DataLoaderState st;
    dataloader_get_state(&l, &st);
    const char *sp = path_in("state.bin");
    FILE *fp = fopenCheck(sp, "wb"); fwriteCheck(&st, sizeof(st), 1, fp, sp); fcloseCheck(fp, sp);
    int want[M * NB], got[M * NB];
    record(&l, M, want);
    DataLoaderState st2;
    fp = fopenCheck(sp, "rb"); freadCheck(&st2, sizeof(st2), 1, fp, sp); fcloseCheck(fp, sp);
    DataLoader l2;
    dataloader_init(&l2, glob, NB, NT, 2, NW, shuffle, 7, VOCAB);
    dataloader_next_batch(&l2);   // the fresh loader's own position must not matter
    dataloader_set_state(&l2, &st2);
    record(&l2, M, got);
    CHECK(memcmp(want, got, sizeof(want)) == 0, "resume after %d batches (shuffle=%d) reproduces the next %d batches",
          k, shuffle, M);
    CHECK(l.epoch == l2.epoch, "resume keeps the epoch (%zu vs %zu)", l.epoch, l2.epoch);
    dataloader_free(&l); dataloader_free(&l2);
}

// a state saved at world size 2 resumes at world size 1: the single rank reads, step after step, the rows
// that ranks 0 and 1 would have read next (the global row sequence does not depend on the world size)
static void test_resume_other_world(int shuffle) {
    const char *glob = path_in("good/shard_*.bin");
    DataLoader r0, r1, one;
    dataloader_init(&r0, glob, NB, NT, 0, 2, shuffle, 11, VOCAB);
    dataloader_init(&r1, glob, NB, NT, 1, 2, shuffle, 11, VOCAB);
    dataloader_init(&one, glob, NB, NT, 0, 1, shuffle, 11, VOCAB);
    for (int i = 0; i < 2; i++) { dataloader_next_batch(&r0); dataloader_next_batch(&r1); }
    DataLoaderState st;
    dataloader_get_state(&r0, &st);
    dataloader_set_state(&one, &st);
    int same = 1;
    for (int i = 0; i < 2; i++) {   // two steps at world size 2 = four steps at world size 1
        dataloader_next_batch(&r0); dataloader_next_batch(&r1);
        for (int r = 0; r < 2; r++) {
            dataloader_next_batch(&one);
            const DataLoader *src = r == 0 ? &r0 : &r1;
            same &= memcmp(one.inputs, src->inputs, NB * NT * sizeof(int)) == 0;
            same &= memcmp(one.targets, src->targets, NB * NT * sizeof(int)) == 0;
        }
    }
    CHECK(same, "state from world size 2 resumes at world size 1 on the same rows (shuffle=%d)", shuffle);
    dataloader_free(&r0); dataloader_free(&r1); dataloader_free(&one);
}

// after 1 step at world size 2 (4 rows) a world size of 3 (6 rows a step) cannot continue exactly
static void run_state_other_world_misaligned(void *arg) {
    (void)arg;
    DataLoader a, b;
    dataloader_init(&a, path_in("good/shard_*.bin"), NB, NT, 0, 2, 0, 0, VOCAB);
    dataloader_init(&b, path_in("good/shard_*.bin"), NB, NT, 0, 3, 0, 0, VOCAB);
    dataloader_next_batch(&a);
    DataLoaderState st;
    dataloader_get_state(&a, &st);
    dataloader_set_state(&b, &st);
}

static void test_uint16_shards(void) {
    write_positions_shard(path_in("u16/a.bin"), 0, 5 * NT + 1, 1);
    DataLoader l;
    dataloader_init(&l, path_in("u16/*.bin"), 1, NT, 0, 1, 0, 0, 65536);
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        dataloader_next_batch(&l);
        for (int t = 0; t < NT; t++) ok &= l.inputs[t] == i * NT + t && l.targets[t] == i * NT + t + 1;
    }
    CHECK(ok, "version 1 (uint16) shards decode to the tokens written");
    CHECK(l.steps_per_epoch == 5, "5 rows of NT -> 5 steps with NB=1, got %zu", l.steps_per_epoch);
    dataloader_free(&l);
}

// a shard too short for one step of all ranks (but not for one batch) is skipped with a warning
static void run_mixed(void *arg) {
    DataLoader l;
    dataloader_init(&l, path_in("mixed/*.bin"), NB, NT, *(int *)arg, NW, 1, 3, VOCAB);
    int from_small = 0;
    for (size_t i = 0; i < 3 * l.steps_per_epoch; i++) {
        dataloader_next_batch(&l);
        from_small += l.inputs[0] / STRIDE == 5;
    }
    printf("steps_per_epoch=%zu from_small=%d epoch=%zu\n", l.steps_per_epoch, from_small, l.epoch);
    dataloader_free(&l);
}

static void test_skip_small_shard(void) {
    write_positions_shard(path_in("mixed/a.bin"), 0, (size_t)NB * NW * 2 * NT + 1, 2);   // 2 steps
    write_positions_shard(path_in("mixed/b.bin"), 5, (size_t)NB * NT + 1, 2);            // one batch, not NW
    for (int rank = 0; rank < 2; rank++) {
        char out[4096];
        int status = run_child(run_mixed, &rank, out, sizeof(out));
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "loader with a too-small shard still runs: %s", out);
        int warned = strstr(out, "mixed/b.bin' has 17 tokens, too few for one batch on each of 3 ranks") != NULL;
        CHECK(warned == (rank == 0), "rank %d: the skip warning is printed by rank 0 only: %s", rank, out);
        CHECK(strstr(out, "steps_per_epoch=2 from_small=0 epoch=2") != NULL,
              "small shard skipped over 3 epochs: %s", out);
    }
}

// ----------------------------------------------------------------------------
// bad inputs: each must exit non-zero with a message naming the cause

typedef struct { const char *glob; size_t b, t; int rank, world, vocab, batches; } InitCase;

static void run_init_case(void *arg) {
    InitCase *c = (InitCase *)arg;
    DataLoader l;
    dataloader_init(&l, c->glob, c->b, c->t, c->rank, c->world, 1, 0, c->vocab);
    for (int i = 0; i < c->batches; i++) dataloader_next_batch(&l);
    dataloader_free(&l);
}

static void expect_init_fatal(const char *name, const char *glob, size_t b, size_t t, int rank, int world,
                              int vocab, int batches, const char *expect) {
    InitCase c = { glob, b, t, rank, world, vocab, batches };
    expect_fatal(name, run_init_case, &c, expect);
}

static void run_bad_state(void *arg) {
    (void)arg;
    DataLoader a, b;
    dataloader_init(&a, path_in("good/shard_*.bin"), NB, NT, 0, 1, 1, 0, VOCAB);
    dataloader_init(&b, path_in("good/shard_*.bin"), NB, 2 * NT, 0, 1, 1, 0, VOCAB);
    DataLoaderState st;
    dataloader_get_state(&a, &st);
    dataloader_set_state(&b, &st);
}

// a state with a corrupted field: which = 0 magic, 1 shard position, 2 step
static void run_corrupt_state(void *arg) {
    int which = *(int *)arg;
    DataLoader l;
    dataloader_init(&l, path_in("good/shard_*.bin"), NB, NT, 0, 1, 1, 0, VOCAB);
    DataLoaderState st;
    dataloader_get_state(&l, &st);
    if (which == 0) st.magic ^= 1;
    if (which == 1) st.shard_pos = 3;
    if (which == 2) st.step = 1000;
    dataloader_set_state(&l, &st);
}

// a good shard at init, rewritten with id 70000 at token 40 (rows 4 and 5 of NT=8) before the batches
static void run_changed_shard(void *arg) {
    (void)arg;
    uint32_t toks[64];
    for (int i = 0; i < 64; i++) toks[i] = (uint32_t)i;
    write_shard_raw(path_in("bad/changed.bin"), SHARD_MAGIC, 2, 64, toks, 64);
    DataLoader l;
    dataloader_init(&l, path_in("bad/changed.bin"), 1, NT, 0, 1, 0, 0, 65536);
    toks[40] = 70000;
    write_shard_raw(path_in("bad/changed.bin"), SHARD_MAGIC, 2, 64, toks, 64);
    for (int i = 0; i < 4; i++) dataloader_next_batch(&l);   // rows 0..3: fine
    if (l.inputs[0] != 24 || l.targets[NT - 1] != 32) fatal("row 3 should be tokens 24..32");
    dataloader_next_batch(&l);                                 // row 4 ends with token 40
    fatal("no error at the batch holding the bad id");
}

static void test_bad_inputs(void) {
    uint32_t toks[64];
    for (int i = 0; i < 64; i++) toks[i] = (uint32_t)i;
    write_shard_raw(path_in("bad/magic.bin"), 12345, 2, 64, toks, 64);
    write_shard_raw(path_in("bad/version.bin"), SHARD_MAGIC, 3, 64, toks, 64);
    write_shard_raw(path_in("bad/truncated.bin"), SHARD_MAGIC, 2, 64, toks, 60);
    write_shard_raw(path_in("bad/trailing.bin"), SHARD_MAGIC, 2, 60, toks, 64);
    write_shard_raw(path_in("bad/negative.bin"), SHARD_MAGIC, 2, -5, toks, 0);
    write_shard_raw(path_in("bad/short.bin"), SHARD_MAGIC, 2, 16, toks, 16);
    toks[40] = 70000;   // beyond vocab 65536: ends row 4 and starts row 5 (rows of NT=8)
    write_shard_raw(path_in("bad/range.bin"), SHARD_MAGIC, 2, 64, toks, 64);
    char hp[512];
    snprintf(hp, sizeof(hp), "%s", path_in("bad/header.bin"));
    FILE *fp = fopenCheck(hp, "wb"); fwriteCheck(toks, 4, 10, fp, hp); fcloseCheck(fp, hp);

    expect_init_fatal("no match", path_in("nothing_*.bin"), 1, NT, 0, 1, VOCAB, 0, "no file matches");
    expect_init_fatal("bad magic", path_in("bad/magic.bin"), 1, NT, 0, 1, VOCAB, 0, "bad magic 12345");
    expect_init_fatal("bad version", path_in("bad/version.bin"), 1, NT, 0, 1, VOCAB, 0, "unknown shard version 3");
    expect_init_fatal("truncated", path_in("bad/truncated.bin"), 1, NT, 0, 1, VOCAB, 0, "truncated");
    expect_init_fatal("trailing data", path_in("bad/trailing.bin"), 1, NT, 0, 1, VOCAB, 0, "trailing data");
    expect_init_fatal("negative count", path_in("bad/negative.bin"), 1, NT, 0, 1, VOCAB, 0, "negative token count");
    expect_init_fatal("short header", hp, 1, NT, 0, 1, VOCAB, 0, "shorter than the 1024-byte shard header");
    expect_init_fatal("shorter than a batch", path_in("bad/short.bin"), 2, NT, 0, 1, VOCAB, 0, "shorter than one batch");
    expect_init_fatal("too short for ranks", path_in("bad/short.bin"), 1, NT, 0, 2, VOCAB, 0,
                      "no shard matching");
    expect_init_fatal("names the file", path_in("bad/magic.bin"), 1, NT, 0, 1, VOCAB, 0, "bad/magic.bin");
    // 7 rows of NT=8; token 40 (id 70000) ends row 4 and starts row 5: some batch of the epoch must hit it
    expect_init_fatal("token out of range", path_in("bad/range.bin"), 1, NT, 0, 1, 65536, 8,
                      "token 40 has id 70000, out of range for vocab_size 65536");
    expect_init_fatal("bad rank", path_in("good/shard_*.bin"), NB, NT, 3, 3, VOCAB, 0, "invalid rank 3");
    expect_init_fatal("zero B", path_in("good/shard_*.bin"), 0, NT, 0, 1, VOCAB, 0, "B and T must be positive");
    expect_init_fatal("bad vocab", path_in("good/shard_*.bin"), NB, NT, 0, 1, 0, 0, "vocab_size must be positive");
    expect_fatal("state from another geometry", run_bad_state, NULL, "dataloader state was saved with B=2 T=8");
    expect_fatal("state at a world size it cannot divide", run_state_other_world_misaligned, NULL,
                 "not a whole number of steps of 6 rows at world size 3");
    int which[3] = { 0, 1, 2 };
    expect_fatal("state bad magic", run_corrupt_state, &which[0], "dataloader state: bad magic");
    expect_fatal("state shard out of range", run_corrupt_state, &which[1], "(shard 3, step 0) is outside the data");
    expect_fatal("state step out of range", run_corrupt_state, &which[2], "step 1000) is outside the data");

    // every id is checked at init, before any batch: the same shard fails with no batch read
    expect_init_fatal("token out of range, at init", path_in("bad/range.bin"), 1, NT, 0, 1, 65536, 0,
                      "token 40 has id 70000, out of range for vocab_size 65536: the data's vocabulary");
    // and each batch again as it is read: a shard rewritten after init fails at the batch that reads the id
    expect_fatal("token out of range, file changed after init", run_changed_shard, NULL,
                 "token 40 has id 70000, out of range for vocab_size 65536 (the file changed");
}

int main(void) {
    snprintf(dir, sizeof(dir), "/tmp/sessa_test_dataloader_%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/good %s/u16 %s/bad %s/mixed", dir, dir, dir, dir);
    if (system(cmd) != 0) fatal("cannot create %s", dir);

    make_good_shards();
    test_ranks_partition(0);
    test_ranks_partition(1);
    test_unshuffled_layout();
    test_shuffle_determinism();
    test_resume(0, 0);
    test_resume(0, 5);
    test_resume(1, 3);
    test_resume(1, 9);    // exactly at the epoch boundary
    test_resume(1, 20);   // inside epoch 2
    test_resume_other_world(0);
    test_resume_other_world(1);
    test_uint16_shards();
    test_skip_small_shard();
    test_bad_inputs();

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    return tests_report();
}
