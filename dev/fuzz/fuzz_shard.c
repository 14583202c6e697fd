/*
 libFuzzer harness for the token shard parser (llmc/dataloader.h).
 Input: the bytes of one shard file. The header check and the token decoder run on memory (they return
 errors, never exit); when the input is a valid shard of in-range tokens, the real loader also reads it
 from a file (B=1, T=8, shuffled, over two epochs) and every batch is checked against the bytes.
*/
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>
#include <limits.h>
#include "llmc/dataloader.h"

#define FT 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int32_t header[SHARD_HEADER_INTS] = {0};
    if (size >= SHARD_HEADER_BYTES) memcpy(header, data, SHARD_HEADER_BYTES);
    ShardHeader sh;
    char err[256];
    if (shard_header_check(header, (long long)size, &sh, err, sizeof(err)) != 0) return 0;
    const uint8_t *raw = data + SHARD_HEADER_BYTES;
    int *tokens = (int *)malloc((sh.num_tokens + 1) * sizeof(int));
    uint32_t bad_id;
    long long bad = shard_tokens_decode(raw, sh.num_tokens, sh.bytes_per_token, 1000, tokens, &bad_id);
    if (bad >= 0 && bad_id < 1000) abort();   // reported an id that is in range
    if (bad < 0) bad = shard_tokens_decode(raw, sh.num_tokens, sh.bytes_per_token, INT_MAX, tokens, &bad_id);
    if (bad < 0 && sh.num_tokens >= FT + 1) {
        // the loader over a real file: each row must be T+1 consecutive tokens of the shard
        char path[64];
        snprintf(path, sizeof(path), "/tmp/fuzz_shard_%d.bin", (int)getpid());
        FILE *fp = fopen(path, "wb");
        fwrite(data, 1, size, fp);
        fclose(fp);
        DataLoader l;
        dataloader_init(&l, path, 1, FT, 0, 1, 1, size, INT_MAX);
        for (size_t i = 0; i < 2 * l.steps_per_epoch; i++) {
            dataloader_next_batch(&l);
            size_t row = l.row_perm[l.step - 1];
            for (int t = 0; t < FT; t++)
                if (l.inputs[t] != tokens[row * FT + t] || l.targets[t] != tokens[row * FT + t + 1]) abort();
        }
        if (l.epoch != 1) abort();
        dataloader_free(&l);
        unlink(path);
    }
    free(tokens);
    return 0;
}
