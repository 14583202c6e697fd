/*
 Command-line flags shared by the CPU and CUDA trainers (DESIGN.md section 5, llm.c style: "-x VALUE" pairs).
 A trainer with extra flags (e.g. the CUDA trainer's -r, -z, -pi) passes a callback that handles them.
 Every value is parsed strictly: garbage or an out-of-range value is a fatal error naming the flag.
*/
#ifndef SESSA_ARGS_H
#define SESSA_ARGS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include "utils.h"

typedef struct {
    const char *train_glob;   // -i
    const char *val_glob;     // -j
    const char *out_dir;      // -o (NULL: no log, no checkpoints)
    const char *init;         // -e checkpoint path or descriptor (d12, d4w256h4, d4w256h4k2)
    const char *tokenizer;    // -k tokenizer file (for -V default and for decoding samples)
    int vocab_size;           // -V vocab for a descriptor init (-1: from the tokenizer, else 50257)
    int B;                    // -b micro-batch size
    int T;                    // -t sequence length
    int total_batch;          // -d tokens per optimizer step (-1: B*T); a multiple of B*T -> grad accumulation
    int max_steps;            // -x (-1: one epoch of the training data)
    float lr;                 // -l peak learning rate
    int warmup;               // -u warmup steps
    float final_lr_frac;      // -q final lr as a fraction of the peak
    float weight_decay;       // -c AdamW weight decay (2D weight matrices only in training)
    float grad_clip;          // -G global-norm clip (0: off)
    int val_every;            // -v (0: never)
    int val_steps;            // -m batches per validation
    int sample_every;         // -s (0: never)
    int gen_tokens;           // -g tokens per sample
    int ckpt_every;           // -n (0: never; the last step is always saved when -o is given)
    int resume;               // -y 1: resume from the latest checkpoint in -o
    unsigned long long seed;  // -S init/shuffle/sampling seed
    int shuffle;              // -w shuffle training data (0/1)
} TrainArgs;

static inline void train_args_defaults(TrainArgs *a) {
    a->train_glob = "data/default/*_train_*.bin";
    a->val_glob = "data/default/*_val_*.bin";
    a->out_dir = NULL;
    a->init = "d4w256h4";
    a->tokenizer = "data/default/tokenizer.bin";
    a->vocab_size = -1;
    a->B = 4; a->T = 256; a->total_batch = -1; a->max_steps = -1;
    a->lr = 1e-3f; a->warmup = 0; a->final_lr_frac = 0.1f; a->weight_decay = 0.1f; a->grad_clip = 1.0f;
    a->val_every = 50; a->val_steps = 10; a->sample_every = 100; a->gen_tokens = 64;
    a->ckpt_every = 0; a->resume = 0; a->seed = 1337; a->shuffle = 1;
}

static inline void train_args_usage(const char *prog) {
    fprintf(stderr,
        "usage: %s [flags]\n"
        "  -i GLOB  train shards (default data/default/*_train_*.bin)\n"
        "  -j GLOB  val shards (default data/default/*_val_*.bin)\n"
        "  -o DIR   output dir: main.log, model_NNNNNNNN.bin, state_NNNNNNNN.bin (default: none)\n"
        "  -e INIT  checkpoint path, or descriptor d<L>[w<D>][h<H>][k<Hkv>] (default d4w256h4)\n"
        "  -k PATH  tokenizer file (default data/default/tokenizer.bin)\n"
        "  -V N     vocab size for a descriptor init (default: the tokenizer's, else 50257)\n"
        "  -b N     batch size (default 4)          -t N   sequence length (default 256)\n"
        "  -d N     tokens per step, a multiple of B*T: gradient accumulation (default B*T)\n"
        "  -x N     max steps (default -1: one epoch)\n"
        "  -l LR    peak learning rate (default 1e-3)  -u N  warmup steps (default 0)\n"
        "  -q F     final lr fraction, cosine decay (default 0.1)\n"
        "  -c WD    weight decay of 2D weight matrices (default 0.1)  -G C  grad clip (default 1.0, 0 off)\n"
        "  -v N     validate every N steps (default 50, 0 never)  -m N  val batches (default 10)\n"
        "  -s N     sample every N steps (default 100, 0 never)   -g N  tokens per sample (default 64)\n"
        "  -n N     checkpoint every N steps (default 0: only at the end, when -o is set)\n"
        "  -y 1     resume from the latest checkpoint in -o\n"
        "  -S SEED  seed (default 1337)   -w 0/1  shuffle training data (default 1)\n"
        "  -h       this help\n", prog);
}

static inline long args_int_(const char *flag, const char *s, long lo, long hi) {
    char *end; errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        fatal("flag %s: '%s' is not an integer in [%ld, %ld]", flag, s, lo, hi);
    return v;
}
static inline float args_float_(const char *flag, const char *s, float lo, float hi) {
    char *end; errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end != '\0' || !(v >= lo && v <= hi))
        fatal("flag %s: '%s' is not a number in [%g, %g]", flag, s, lo, hi);
    return v;
}

// extra(ctx, flag, value) returns 1 if it handled the flag (may be NULL)
typedef int (*args_extra_fn)(void *ctx, const char *flag, const char *value);

static inline void train_args_parse(TrainArgs *a, int argc, char **argv, args_extra_fn extra, void *ctx) {
    train_args_defaults(a);
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "-h") == 0 || strcmp(f, "--help") == 0) { train_args_usage(argv[0]); exit(EXIT_SUCCESS); }
        if (f[0] != '-') { train_args_usage(argv[0]); fatal("unexpected argument '%s' (flags come as -x VALUE)", f); }
        if (i + 1 >= argc) { train_args_usage(argv[0]); fatal("flag %s needs a value", f); }
        const char *v = argv[++i];
        if (extra && extra(ctx, f, v)) continue;
        if (strlen(f) != 2) { train_args_usage(argv[0]); fatal("unknown flag '%s'", f); }
        switch (f[1]) {
            case 'i': a->train_glob = v; break;
            case 'j': a->val_glob = v; break;
            case 'o': a->out_dir = v; break;
            case 'e': a->init = v; break;
            case 'k': a->tokenizer = v; break;
            case 'V': a->vocab_size = (int)args_int_(f, v, 1, 1 << 30); break;
            case 'b': a->B = (int)args_int_(f, v, 1, 1 << 20); break;
            case 't': a->T = (int)args_int_(f, v, 1, 1 << 24); break;
            case 'd': a->total_batch = (int)args_int_(f, v, -1, 1 << 30); break;
            case 'x': a->max_steps = (int)args_int_(f, v, -1, 1 << 30); break;
            case 'l': a->lr = args_float_(f, v, 0.0f, 10.0f); break;
            case 'u': a->warmup = (int)args_int_(f, v, 0, 1 << 30); break;
            case 'q': a->final_lr_frac = args_float_(f, v, 0.0f, 1.0f); break;
            case 'c': a->weight_decay = args_float_(f, v, 0.0f, 10.0f); break;
            case 'G': a->grad_clip = args_float_(f, v, 0.0f, 1e6f); break;
            case 'v': a->val_every = (int)args_int_(f, v, 0, 1 << 30); break;
            case 'm': a->val_steps = (int)args_int_(f, v, 1, 1 << 30); break;
            case 's': a->sample_every = (int)args_int_(f, v, 0, 1 << 30); break;
            case 'g': a->gen_tokens = (int)args_int_(f, v, 1, 1 << 20); break;
            case 'n': a->ckpt_every = (int)args_int_(f, v, 0, 1 << 30); break;
            case 'y': a->resume = (int)args_int_(f, v, 0, 1); break;
            case 'S': a->seed = (unsigned long long)args_int_(f, v, 0, 0x7fffffffL); break;
            case 'w': a->shuffle = (int)args_int_(f, v, 0, 1); break;
            default: train_args_usage(argv[0]); fatal("unknown flag '%s'", f);
        }
    }
    if (a->resume && a->out_dir == NULL) fatal("-y 1 (resume) needs -o DIR to find the checkpoint in");
    if ((long long)a->B * a->T > (1 << 30)) fatal("B*T = %lld tokens per micro-batch is too large", (long long)a->B * a->T);
    if (a->total_batch != -1 && a->total_batch % (a->B * a->T) != 0)
        fatal("-d %d (tokens per step) must be a multiple of B*T = %d", a->total_batch, a->B * a->T);
}

// tokens per optimizer step over all processes: -d when given, else one micro-batch on each process
static inline long long train_args_total_batch(const TrainArgs *a, int num_processes) {
    return a->total_batch != -1 ? a->total_batch : (long long)a->B * a->T * num_processes;
}

#endif // SESSA_ARGS_H
