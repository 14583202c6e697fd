/*
 Command-line flags shared by the CPU and CUDA trainers (DESIGN.md section 5, llm.c style: "-x VALUE" pairs).
 A trainer with extra flags (e.g. the CUDA trainer's -r, -z, -pi) passes a callback that handles them.
 Every value is parsed strictly: garbage or an out-of-range value is a fatal error naming the flag.

 The run's flags are kept with it: OUT/args.txt holds one "FLAG VALUE" line per flag given (all but -o, -y),
 written by train_args_save at the start of every run with -o. With -y 1 the flags of OUT/args.txt come
 first and the command line's after them, so "-y 1 -o OUT" alone resumes the run as it was started. A flag
 given again with another value overrides the saved one with a note, except the flags that define the model
 or the data order (TRAIN_ARGS_FIXED: -e -V -b -t -d -S -w), which are an error naming both values.
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
    int keep_last;            // -nk keep only the newest N checkpoints in -o (0: keep all)
    int tokenizer_given;      // -k was given (else the default is the one next to the -i shards)
    float temperature;        // -st sampling temperature (0: greedy argmax)
    int top_k;                // -sk sample among the k largest logits (0: all)
    const char *prompt_ids;   // -sp prompt as comma-separated token ids (NULL: none)
    const char *prompt_file;  // -sf prompt from a file of decimal token ids (NULL: none)
    // the flags of the run, as pairs, for OUT/args.txt (the merged ones on -y 1)
    int num_pairs;
    char *pairs[2 * 128];
} TrainArgs;

// flags that define the model or the data order: a resumed run may not change them
#define TRAIN_ARGS_FIXED " -e -V -b -t -d -S -w "

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
    a->keep_last = 0; a->tokenizer_given = 0; a->num_pairs = 0;
    a->temperature = 1.0f; a->top_k = 0; a->prompt_ids = NULL; a->prompt_file = NULL;
}

// the flags of one trainer only (set by train_args_parse), printed after the common ones
static const char *train_args_extra_usage_ = NULL;

// -h prints to stdout (so that `-h | less` works), a usage error to stderr
static inline void train_args_usage(FILE *out, const char *prog) {
    fprintf(out,
        "usage: %s [flags]\n"
        "  -i GLOB  train shards (default data/default/*_train_*.bin)\n"
        "  -j GLOB  val shards (default data/default/*_val_*.bin)\n"
        "  -o DIR   output dir: main.log, model_NNNNNNNN.bin, state_NNNNNNNN.bin (default: none)\n"
        "  -e INIT  checkpoint path, or descriptor d<L>[w<D>][h<H>][k<Hkv>] (default d4w256h4)\n"
        "  -k PATH  tokenizer file (default: tokenizer.bin in the folder of the -i shards)\n"
        "  -V N     vocab size for a descriptor init (default: the tokenizer's; without a tokenizer: required)\n"
        "  -b N     batch size (default 4)          -t N   sequence length (default 256)\n"
        "  -d N     tokens per step, a multiple of B*T: gradient accumulation (default B*T)\n"
        "  -x N     max steps (default -1: one epoch)\n"
        "  -l LR    peak learning rate (default 1e-3)  -u N  warmup steps (default 0)\n"
        "  -q F     final lr fraction, cosine decay (default 0.1)\n"
        "  -c WD    weight decay of 2D weight matrices (default 0.1)  -G C  grad clip (default 1.0, 0 off)\n"
        "  -v N     validate every N steps (default 50, 0 never)  -m N  val batches (default 10)\n"
        "  -s N     sample every N steps (default 100, 0 never)   -g N  tokens per sample (default 64)\n"
        "  -st T    sampling temperature (default 1; 0 = greedy argmax)   -sk K  top-k (default 0: all tokens)\n"
        "  -sp IDS  prompt: comma-separated token ids (default: the end-of-text token)\n"
        "  -sf FILE prompt: a file of decimal token ids (whitespace or commas between them)\n"
        "           (-x 0 -s 1 -e CKPT samples from a checkpoint without training)\n"
        "  -n N     checkpoint every N steps (default 0: only at the end, when -o is set; also on Ctrl-C)\n"
        "  -nk N    keep only the newest N checkpoints in -o, deleting older ones (default 0: keep all)\n"
        "  -y 1     resume from the latest checkpoint in -o, with the run's flags (saved in -o/args.txt);\n"
        "           flags given again override them, except -e -V -b -t -d -S -w (an error if different)\n"
        "  -S SEED  seed (default 1337)   -w 0/1  shuffle training data (default 1)\n"
        "  -h       this help\n", prog);
    if (train_args_extra_usage_ != NULL) fputs(train_args_extra_usage_, out);
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

// the flags as pairs (argv[1..]): checks the shape "-x VALUE ...", handles -h
static inline void args_check_pairs_(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "-h") == 0 || strcmp(f, "--help") == 0) { train_args_usage(stdout, argv[0]); exit(EXIT_SUCCESS); }
        if (f[0] != '-') { train_args_usage(stderr, argv[0]); fatal("unexpected argument '%s' (flags come as -x VALUE)", f); }
        if (i + 1 >= argc) { train_args_usage(stderr, argv[0]); fatal("flag %s needs a value", f); }
        i++;
    }
}

static inline void args_parse_pairs_(TrainArgs *a, const char *prog, int n, char **kv, args_extra_fn extra, void *ctx) {
    for (int i = 0; i + 1 < n; i += 2) {
        const char *f = kv[i], *v = kv[i + 1];
        if (extra && extra(ctx, f, v)) continue;
        if (strcmp(f, "-nk") == 0) { a->keep_last = (int)args_int_(f, v, 0, 1 << 30); continue; }
        if (strcmp(f, "-st") == 0) { a->temperature = args_float_(f, v, 0.0f, 1e4f); continue; }
        if (strcmp(f, "-sk") == 0) { a->top_k = (int)args_int_(f, v, 0, 1 << 30); continue; }
        if (strcmp(f, "-sp") == 0) { a->prompt_ids = v; continue; }
        if (strcmp(f, "-sf") == 0) { a->prompt_file = v; continue; }
        if (strlen(f) != 2) { train_args_usage(stderr, prog); fatal("unknown flag '%s'", f); }
        switch (f[1]) {
            case 'i': a->train_glob = v; break;
            case 'j': a->val_glob = v; break;
            case 'e': a->init = v; break;
            case 'k': a->tokenizer = v; a->tokenizer_given = 1; break;
            case 'V': a->vocab_size = (int)args_int_(f, v, 1, 1 << 30); break;
            case 'b': a->B = (int)args_int_(f, v, 1, 1 << 20); break;
            case 't': a->T = (int)args_int_(f, v, 1, 1 << 24); break;
            case 'd': a->total_batch = (int)args_int_(f, v, -1, 1 << 30);
                      if (a->total_batch == 0) fatal("flag -d: 0 tokens per step (give a positive multiple of B*T, or -1)");
                      break;
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
            case 'S': a->seed = (unsigned long long)args_int_(f, v, 0, 0x7fffffffL); break;
            case 'w': a->shuffle = (int)args_int_(f, v, 0, 1); break;
            default: train_args_usage(stderr, prog); fatal("unknown flag '%s'", f);
        }
    }
}

static inline void args_add_pair_(TrainArgs *a, const char *f, const char *v) {
    if (a->num_pairs >= 128) fatal("too many flags (at most 128)");
    a->pairs[2 * a->num_pairs] = strdup(f);
    a->pairs[2 * a->num_pairs + 1] = strdup(v);
    if (!a->pairs[2 * a->num_pairs] || !a->pairs[2 * a->num_pairs + 1]) fatal("out of memory");
    a->num_pairs++;
}

// index of flag f among the first n pairs of a, or -1
static inline int args_find_pair_(const TrainArgs *a, int n, const char *f) {
    for (int i = 0; i < n; i++) if (strcmp(a->pairs[2 * i], f) == 0) return i;
    return -1;
}

// the run's flags saved in DIR/args.txt ("FLAG VALUE" lines) -> pairs of a; returns 0 if there is no file
static inline int train_args_load_saved(TrainArgs *a, const char *dir) {
    char path[4096], line[8192];
    snprintf(path, sizeof(path), "%s/args.txt", dir);
    FILE *fp = fopen(path, "r");
    if (fp == NULL) return 0;
    int lineno = 0;
    while (fgets(line, sizeof(line), fp)) {
        lineno++;
        size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n') fatal("'%s' line %d: too long or not terminated (the file is damaged: "
                                                     "remove it and give the run's flags again)", path, lineno);
        line[len - 1] = '\0';
        char *sp = strchr(line, ' ');
        if (line[0] != '-' || sp == NULL) fatal("'%s' line %d: '%s' is not \"FLAG VALUE\"", path, lineno, line);
        *sp = '\0';
        if (args_find_pair_(a, a->num_pairs, line) >= 0) fatal("'%s' line %d: flag %s appears twice", path, lineno, line);
        args_add_pair_(a, line, sp + 1);
    }
    fclose(fp);
    return 1;
}

// write the run's flags to DIR/args.txt (atomically: a killed write leaves the previous file)
static inline void train_args_save(const TrainArgs *a, const char *dir) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/args.txt", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *fp = fopenCheck(tmp, "w");
    for (int i = 0; i < a->num_pairs; i++) fprintf(fp, "%s %s\n", a->pairs[2 * i], a->pairs[2 * i + 1]);
    if (fflush(fp) != 0 || ferror(fp)) fatal("write error on '%s': %s", tmp, strerror(errno));
    fcloseCheck(fp, tmp);
    if (rename(tmp, path) != 0) fatal("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
}

// extra_usage: the help text of the flags extra() handles (may be NULL); -h prints it after the common flags
static inline void train_args_parse(TrainArgs *a, int argc, char **argv, const char *extra_usage, args_extra_fn extra,
                                    void *ctx) {
    train_args_extra_usage_ = extra_usage;
    train_args_defaults(a);
    args_check_pairs_(argc, argv);
    // -o and -y first: with -y 1 the run's saved flags come before the command line's
    const char *out_dir = NULL; int resume = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-o") == 0) out_dir = argv[i + 1];
        if (strcmp(argv[i], "-y") == 0) resume = (int)args_int_("-y", argv[i + 1], 0, 1);
    }
    if (resume && out_dir == NULL) fatal("-y 1 (resume) needs -o DIR to find the checkpoint in");
    int saved = 0;
    if (resume && train_args_load_saved(a, out_dir)) {
        saved = a->num_pairs;
        printf("-y 1: the run's flags from %s/args.txt:", out_dir);
        for (int i = 0; i < saved; i++) printf(" %s %s", a->pairs[2 * i], a->pairs[2 * i + 1]);
        printf("\n");
    } else if (resume) {
        printf("-y 1: no %s/args.txt (a run of an older trainer?): only the flags given now are used\n", out_dir);
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *f = argv[i], *v = argv[i + 1];
        if (strcmp(f, "-o") == 0 || strcmp(f, "-y") == 0) continue;
        if (strchr(v, '\n') != NULL) fatal("flag %s: the value may not contain a newline", f);
        int j = args_find_pair_(a, a->num_pairs, f);
        if (j >= 0 && j < saved) {   // given again on resume
            if (strcmp(a->pairs[2 * j + 1], v) == 0) continue;
            char key[16]; snprintf(key, sizeof(key), " %s ", f);
            if (strstr(TRAIN_ARGS_FIXED, key) != NULL)
                fatal("-y 1: %s %s conflicts with %s %s of the run (%s/args.txt): the model and the data order of a "
                      "resumed run cannot change; drop %s to resume, or start a new run in another -o",
                      f, v, f, a->pairs[2 * j + 1], out_dir, f);
            printf("-y 1: %s %s overrides the run's %s %s\n", f, v, f, a->pairs[2 * j + 1]);
            free(a->pairs[2 * j + 1]);
            a->pairs[2 * j + 1] = strdup(v);
            continue;
        }
        if (j >= 0) { free(a->pairs[2 * j + 1]); a->pairs[2 * j + 1] = strdup(v); continue; }   // the last one wins
        args_add_pair_(a, f, v);
    }
    args_parse_pairs_(a, argv[0], 2 * a->num_pairs, a->pairs, extra, ctx);
    a->out_dir = out_dir; a->resume = resume;
    if (!a->tokenizer_given) {   // default: the tokenizer that data/prepare.py wrote next to the -i shards
        static char tok_path[4096];
        const char *slash = strrchr(a->train_glob, '/');
        int dirlen = slash ? (int)(slash - a->train_glob) : 0;
        snprintf(tok_path, sizeof(tok_path), "%.*s%stokenizer.bin", dirlen, a->train_glob, slash ? "/" : "");
        a->tokenizer = tok_path;
    }
    if (a->total_batch == 0 || a->total_batch < -1)
        fatal("-d %d: tokens per step must be a positive multiple of B*T = %d (or -1: B*T)", a->total_batch, a->B * a->T);
    if ((long long)a->B * a->T > (1 << 30)) fatal("B*T = %lld tokens per micro-batch is too large", (long long)a->B * a->T);
    if (a->total_batch != -1 && a->total_batch % (a->B * a->T) != 0)
        fatal("-d %d (tokens per step) must be a multiple of B*T = %d", a->total_batch, a->B * a->T);
}

// vocabulary of a descriptor init: -V, else the tokenizer's; without either it is an error with the hint
// (no silent GPT-2-sized default: a byte-level data set would train a 50x larger output layer)
static inline int train_args_vocab(const TrainArgs *a, int tokenizer_ok, int tokenizer_vocab) {
    if (a->vocab_size > 0) return a->vocab_size;
    if (tokenizer_ok) return tokenizer_vocab;
    fatal("no vocabulary size for -e %s: there is no tokenizer at '%s'%s. Give the data set's tokenizer with -k PATH "
          "(data/prepare.py writes OUT/tokenizer.bin next to the shards), or the vocabulary size with -V N "
          "(e.g. -V 50257 for GPT-2 tokens)", a->init, a->tokenizer,
          a->tokenizer_given ? "" : " (the default: next to the -i shards; run from the repo root for data/default)");
}

// the sampling prompt (-sp IDS or -sf FILE; default: the one token default_token) -> malloc'd ids, *n of them.
// Every id must be in [0, V); an empty prompt, garbage, or both flags at once are errors naming the cause.
static inline int *train_args_prompt(const TrainArgs *a, int default_token, int V, int *n) {
    if (a->prompt_ids != NULL && a->prompt_file != NULL) fatal("give the prompt by -sp or by -sf, not both");
    char *text = NULL;
    const char *what = a->prompt_ids != NULL ? "-sp" : a->prompt_file;
    if (a->prompt_ids != NULL) {
        text = strdup(a->prompt_ids);
        if (text == NULL) fatal("out of memory");
    } else if (a->prompt_file != NULL) {
        FILE *fp = fopenCheck(a->prompt_file, "rb");
        long long bytes = fileSize(fp, a->prompt_file);
        text = (char *)mallocCheck((size_t)bytes + 1);
        if (bytes > 0) freadCheck(text, 1, (size_t)bytes, fp, a->prompt_file);
        text[bytes] = '\0';
        fcloseCheck(fp, a->prompt_file);
    } else {
        int *ids = (int *)mallocCheck(sizeof(int));
        ids[0] = default_token; *n = 1;
        return ids;
    }
    int cap = 16, count = 0;
    int *ids = (int *)mallocCheck(cap * sizeof(int));
    char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') p++;
        if (*p == '\0') break;
        char *end; errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno) fatal("prompt %s: '%.20s' is not a token id (decimal ids separated by commas or spaces)", what, p);
        if (v < 0 || v >= V) fatal("prompt %s: token id %ld is out of range [0, %d) of the model's vocabulary", what, v, V);
        if (count == cap) { cap *= 2; ids = (int *)realloc(ids, cap * sizeof(int)); if (!ids) fatal("out of memory"); }
        ids[count++] = (int)v;
        p = end;
    }
    free(text);
    if (count == 0) fatal("prompt %s holds no token ids", what);
    *n = count;
    return ids;
}

// tokens per optimizer step over all processes: -d when given, else one micro-batch on each process
static inline long long train_args_total_batch(const TrainArgs *a, int num_processes) {
    return a->total_batch != -1 ? a->total_batch : (long long)a->B * a->T * num_processes;
}

#endif // SESSA_ARGS_H
