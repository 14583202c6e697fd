/*
 The Sessa model description shared by every sessa.c program (CPU trainer, CUDA trainer, tests, tools):
 - SessaConfig and its validation (non-exiting sessa_config_check + fatal sessa_config_validate)
 - model descriptors: "d12" (L=12, D=64*12, H=12), "d4w256h4" (L=4, D=256, H=4), "d4w256h4k2" (Hkv=2),
   "d4w256h4f0" (the feedback-off baseline: s = f, no Linear_fb and no gamma parameters; DESIGN.md section 1)
 - the parameter table in DESIGN.md section 4 order: sizes, names, carving one contiguous buffer
 - checkpoints: read v1 (fp32) / v2 (bf16) into fp32, write atomically (PATH.tmp, fsync, rename)
 - the reference debug state written by train_sessa.py (for the test binaries)
 - from-scratch init per DESIGN.md section 1 with a seeded RNG (xoshiro256** + Box-Muller)
 Plain C (compiles as C and as CUDA host code).
*/
#ifndef SESSA_H
#define SESSA_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <unistd.h>
#include "utils.h"

#define SESSA_MODEL_MAGIC 20261122
#define SESSA_DEBUG_MAGIC 20261123
#define SESSA_HEADER_INTS 256

// ----------------------------------------------------------------------------
// configuration

typedef struct {
    int max_seq_len;       // longest context the model was made for (metadata: no positional table)
    int vocab_size;        // V
    int padded_vocab_size; // Vp: V rounded up to a multiple of 128 (rows of wte)
    int n_layer;           // L
    int n_head;            // H query heads
    int n_kv_head;         // Hkv key/value heads, H % Hkv == 0
    int d_model;           // D, head width d = D / H
    int use_rope;          // 0/1
    float gamma_max;       // in (0,1), default 0.999
    float ln_eps;          // LayerNorm eps, default 1e-5
    int no_feedback;       // 0 = Sessa (default); 1 = feedback-off baseline "f0": s = f, fb_w/fb_b/gamma_w/gamma_b size 0
} SessaConfig;

static inline int sessa_pad_vocab(int V) { return (V + 127) / 128 * 128; }

// 0 if cfg is a valid model, else -1 with the cause written into err (never exits: fuzzers use it)
static inline int sessa_config_check(const SessaConfig *c, char *err, size_t errlen) {
    #define SESSA_BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)
    if (c->max_seq_len < 1) SESSA_BAD("max_seq_len must be >= 1 (got %d)", c->max_seq_len);
    if (c->vocab_size < 1 || c->vocab_size > (1 << 30)) SESSA_BAD("vocab_size must be in [1, 2^30] (got %d)", c->vocab_size);
    if (c->padded_vocab_size < c->vocab_size)
        SESSA_BAD("padded_vocab_size %d < vocab_size %d", c->padded_vocab_size, c->vocab_size);
    if (c->padded_vocab_size % 128 != 0)
        SESSA_BAD("padded_vocab_size %d is not a multiple of 128", c->padded_vocab_size);
    if (c->n_layer < 1 || c->n_layer > 4096) SESSA_BAD("n_layer must be in [1, 4096] (got %d)", c->n_layer);
    if (c->d_model < 1 || c->d_model > 65536) SESSA_BAD("d_model must be in [1, 65536] (got %d)", c->d_model);
    if (c->n_head < 1) SESSA_BAD("n_head must be >= 1 (got %d)", c->n_head);
    if (c->n_kv_head < 1) SESSA_BAD("n_kv_head must be >= 1 (got %d)", c->n_kv_head);
    if (c->d_model % c->n_head != 0)
        SESSA_BAD("d_model %d is not divisible by n_head %d", c->d_model, c->n_head);
    if (c->n_head % c->n_kv_head != 0)
        SESSA_BAD("n_head %d is not divisible by n_kv_head %d", c->n_head, c->n_kv_head);
    if (c->use_rope != 0 && c->use_rope != 1) SESSA_BAD("use_rope must be 0 or 1 (got %d)", c->use_rope);
    if (c->use_rope && (c->d_model / c->n_head) % 2 != 0)
        SESSA_BAD("head width d_model/n_head = %d is odd, but RoPE needs an even head width",
                  c->d_model / c->n_head);
    if (!(c->gamma_max > 0.0f && c->gamma_max < 1.0f))
        SESSA_BAD("gamma_max must be in the open interval (0, 1) (got %g)", c->gamma_max);
    if (!(c->ln_eps > 0.0f && c->ln_eps < 1.0f)) SESSA_BAD("ln_eps must be in (0, 1) (got %g)", c->ln_eps);
    if (c->no_feedback != 0 && c->no_feedback != 1)
        SESSA_BAD("no_feedback must be 0 (Sessa) or 1 (feedback-off baseline f0) (got %d)", c->no_feedback);
    return 0;
    #undef SESSA_BAD
}

// fatal with the cause; where names the source (a path, "descriptor d12", ...)
static inline void sessa_config_validate(const SessaConfig *c, const char *where) {
    char err[256];
    if (sessa_config_check(c, err, sizeof(err)) != 0) fatal("invalid model config (%s): %s", where, err);
}

static inline void sessa_config_print(const SessaConfig *c) {
    if (c->no_feedback)
        printf("| max_seq_len %d | V %d (padded %d) | L %d | D %d | H %d | Hkv %d | head %d | rope %d | no feedback (f0) |\n",
               c->max_seq_len, c->vocab_size, c->padded_vocab_size, c->n_layer, c->d_model, c->n_head,
               c->n_kv_head, c->d_model / c->n_head, c->use_rope);
    else
        printf("| max_seq_len %d | V %d (padded %d) | L %d | D %d | H %d | Hkv %d | head %d | rope %d | gamma_max %g |\n",
               c->max_seq_len, c->vocab_size, c->padded_vocab_size, c->n_layer, c->d_model, c->n_head,
               c->n_kv_head, c->d_model / c->n_head, c->use_rope, c->gamma_max);
}

// reads a decimal int in [1, 2^24] at *p, advances *p; -1 if there is none
static inline int sessa_parse_count_(const char **p) {
    long v = 0; int n = 0;
    while (**p >= '0' && **p <= '9' && n < 9) { v = v * 10 + (**p - '0'); (*p)++; n++; }
    if (n == 0 || (**p >= '0' && **p <= '9') || v < 1 || v > (1 << 24)) return -1;
    return (int)v;
}

// descriptor d<L>[w<D>][h<H>][k<Hkv>][f0] -> config with use_rope 1, gamma_max 0.999, ln_eps 1e-5.
// Defaults: D = 64*L, H = D/64 (at least 1), Hkv = H; the suffix f0 sets no_feedback = 1 (no other suffix
// exists). Returns 0, or -1 with the cause in err.
static inline int sessa_config_from_descriptor(SessaConfig *c, const char *desc, int vocab_size, int max_seq_len,
                                        char *err, size_t errlen) {
    const char *p = desc;
    int L = -1, D = -1, H = -1, K = -1, nofb = 0;
    if (*p == 'd') { p++; L = sessa_parse_count_(&p); }
    if (L > 0 && *p == 'w') { p++; D = sessa_parse_count_(&p); if (D < 0) L = -1; }
    if (L > 0 && *p == 'h') { p++; H = sessa_parse_count_(&p); if (H < 0) L = -1; }
    if (L > 0 && *p == 'k') { p++; K = sessa_parse_count_(&p); if (K < 0) L = -1; }
    if (L > 0 && p[0] == 'f' && p[1] == '0' && p[2] == '\0') { p += 2; nofb = 1; }
    if (L < 0 || *p != '\0') {
        snprintf(err, errlen, "bad model descriptor '%s'%s%s%s: expected d<layers>[w<width>][h<heads>][k<kv_heads>][f0], "
                 "e.g. d12, d4w256h4, d4w256h4k2, d4w256h4f0 (f0 = no feedback branch)", desc,
                 L > 0 ? " (unknown suffix '" : "", L > 0 ? p : "", L > 0 ? "')" : "");
        return -1;
    }
    if (D < 0) D = 64 * L;
    if (H < 0) H = D / 64 > 0 ? D / 64 : 1;
    if (K < 0) K = H;
    c->max_seq_len = max_seq_len;
    c->vocab_size = vocab_size;
    c->padded_vocab_size = vocab_size > 0 && vocab_size <= (1 << 30) ? sessa_pad_vocab(vocab_size) : 0;
    c->n_layer = L; c->d_model = D; c->n_head = H; c->n_kv_head = K;
    c->use_rope = 1; c->gamma_max = 0.999f; c->ln_eps = 1e-5f; c->no_feedback = nofb;
    char cerr[200];
    if (sessa_config_check(c, cerr, sizeof(cerr)) != 0) {
        snprintf(err, errlen, "model descriptor '%s': %s", desc, cerr);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// parameters: 20 tensor kinds, all layers of one kind together (DESIGN.md section 4 order)

enum {
    P_WTE, P_LN_W, P_LN_B, P_IN_W, P_IN_B, P_Q_W, P_Q_B, P_K_W, P_K_B, P_V_W, P_V_B,
    P_FB_W, P_FB_B, P_O_W, P_GAMMA_W, P_GAMMA_B, P_OUT_W, P_OUT_B, P_LNF_W, P_LNF_B,
    NUM_PARAMETER_TENSORS
};
static const char *const sessa_param_names[NUM_PARAMETER_TENSORS] = {
    "wte", "ln_w", "ln_b", "in_w", "in_b", "q_w", "q_b", "k_w", "k_b", "v_w", "v_b",
    "fb_w", "fb_b", "o_w", "gamma_w", "gamma_b", "out_w", "out_b", "lnf_w", "lnf_b"
};

// the weight-decay mask of both trainers: AdamW decays the weight matrices of the Linears and the embedding;
// biases, LayerNorm parameters and the gamma path (w_gamma, gamma_b) are not decayed. (The reference debug
// state decays every parameter, PyTorch's AdamW default: the trainers' update takes decay_all for it.)
static inline int sessa_param_decays(int t) {
    return t == P_WTE || t == P_IN_W || t == P_Q_W || t == P_K_W || t == P_V_W || t == P_FB_W || t == P_O_W ||
           t == P_OUT_W;
}

typedef struct {
    float *wte;              // (Vp, D)
    float *ln_w, *ln_b;      // (L, D)
    float *in_w, *in_b;      // (L, 2D, D), (L, 2D)
    float *q_w, *q_b;        // (L, H*d, D), (L, H*d)
    float *k_w, *k_b;        // (L, Hkv*d, D), (L, Hkv*d)
    float *v_w, *v_b;        // (L, Hkv*d, D), (L, Hkv*d)
    float *fb_w, *fb_b;      // (L, 2D, D), (L, 2D)
    float *o_w;              // (L, D, D), size 0 when H == 1
    float *gamma_w, *gamma_b;// (L, D), (L)
    float *out_w, *out_b;    // (L, D, D), (L, D)
    float *lnf_w, *lnf_b;    // (D), (D)
} ParameterTensors;

// element counts of the 20 tensors
static inline void sessa_param_sizes(const SessaConfig *c, size_t sizes[NUM_PARAMETER_TENSORS]) {
    size_t L = c->n_layer, D = c->d_model, Vp = c->padded_vocab_size;
    size_t hd = D / c->n_head, Dq = c->n_head * hd, Dkv = c->n_kv_head * hd;
    sizes[P_WTE] = Vp * D;
    sizes[P_LN_W] = L * D;            sizes[P_LN_B] = L * D;
    sizes[P_IN_W] = L * 2 * D * D;    sizes[P_IN_B] = L * 2 * D;
    sizes[P_Q_W] = L * Dq * D;        sizes[P_Q_B] = L * Dq;
    sizes[P_K_W] = L * Dkv * D;       sizes[P_K_B] = L * Dkv;
    sizes[P_V_W] = L * Dkv * D;       sizes[P_V_B] = L * Dkv;
    size_t fb = c->no_feedback ? 0 : 1;   // the f0 baseline has no Linear_fb and no gamma parameters
    sizes[P_FB_W] = fb * L * 2 * D * D; sizes[P_FB_B] = fb * L * 2 * D;
    sizes[P_O_W] = c->n_head > 1 ? L * D * D : 0;
    sizes[P_GAMMA_W] = fb * L * D;    sizes[P_GAMMA_B] = fb * L;
    sizes[P_OUT_W] = L * D * D;       sizes[P_OUT_B] = L * D;
    sizes[P_LNF_W] = D;               sizes[P_LNF_B] = D;
}

static inline size_t sessa_num_parameters(const SessaConfig *c) {
    size_t sizes[NUM_PARAMETER_TENSORS], n = 0;
    sessa_param_sizes(c, sizes);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) n += sizes[i];
    return n;
}

// the 20 pointer slots of a ParameterTensors, in table order
static inline void sessa_param_slots(ParameterTensors *p, float **slots[NUM_PARAMETER_TENSORS]) {
    float **s[NUM_PARAMETER_TENSORS] = {
        &p->wte, &p->ln_w, &p->ln_b, &p->in_w, &p->in_b, &p->q_w, &p->q_b, &p->k_w, &p->k_b, &p->v_w, &p->v_b,
        &p->fb_w, &p->fb_b, &p->o_w, &p->gamma_w, &p->gamma_b, &p->out_w, &p->out_b, &p->lnf_w, &p->lnf_b
    };
    memcpy(slots, s, sizeof(s));
}

// point the tensors of p into one contiguous buffer mem of sessa_num_parameters(c) floats
// (a tensor of size 0 gets a NULL pointer)
static inline void sessa_carve_parameters(ParameterTensors *p, float *mem, const SessaConfig *c) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    float **slots[NUM_PARAMETER_TENSORS];
    sessa_param_sizes(c, sizes);
    sessa_param_slots(p, slots);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        *slots[i] = sizes[i] ? mem : NULL;
        mem += sizes[i];
    }
}

// ----------------------------------------------------------------------------
// random numbers: xoshiro256** seeded through splitmix64; normals by Box-Muller

typedef struct { uint64_t s[4]; } Rng;

static inline uint64_t splitmix64_(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline void rng_seed(Rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64_(&seed);
}
static inline uint64_t rng_u64(Rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5, result = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}
// uniform in [0, 1) with 24 random bits
static inline float rng_f32(Rng *r) { return (float)(rng_u64(r) >> 40) * (1.0f / 16777216.0f); }
// n samples of N(mean, std) (Box-Muller in double)
static inline void rng_normal(Rng *r, float *out, size_t n, float mean, float std) {
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0); // (0, 1]
        double u2 = (rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
        double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
        out[i] = (float)(mean + std * rad * cos(th));
        if (i + 1 < n) out[i + 1] = (float)(mean + std * rad * sin(th));
    }
}

// DESIGN.md section 1 init: Linear weights N(0,0.02), out_w N(0, 0.02/sqrt(2L)), biases 0, wte N(0,0.02),
// LayerNorm weight 1 bias 0, gamma_w 0, gamma_b 1
static inline void sessa_init_parameters(float *params, const SessaConfig *c, uint64_t seed) {
    ParameterTensors p;
    size_t sizes[NUM_PARAMETER_TENSORS];
    sessa_param_sizes(c, sizes);
    sessa_carve_parameters(&p, params, c);
    memset(params, 0, sessa_num_parameters(c) * sizeof(float));
    Rng rng;
    rng_seed(&rng, seed);
    rng_normal(&rng, p.wte, sizes[P_WTE], 0.0f, 0.02f);
    const int normal_002[] = { P_IN_W, P_Q_W, P_K_W, P_V_W, P_FB_W, P_O_W };
    float **slots[NUM_PARAMETER_TENSORS];
    sessa_param_slots(&p, slots);
    for (int i = 0; i < 6; i++) {
        int t = normal_002[i];
        if (sizes[t]) rng_normal(&rng, *slots[t], sizes[t], 0.0f, 0.02f);
    }
    rng_normal(&rng, p.out_w, sizes[P_OUT_W], 0.0f, 0.02f / sqrtf(2.0f * c->n_layer));
    for (size_t i = 0; i < sizes[P_LN_W]; i++) p.ln_w[i] = 1.0f;
    for (size_t i = 0; i < sizes[P_LNF_W]; i++) p.lnf_w[i] = 1.0f;
    for (size_t i = 0; i < sizes[P_GAMMA_B]; i++) p.gamma_b[i] = 1.0f;   // none for f0
}

// ----------------------------------------------------------------------------
// checkpoint header <-> config (non-exiting, for fuzzers; the readers below wrap it in fatal)

static inline void sessa_header_from_config(int32_t h[SESSA_HEADER_INTS], const SessaConfig *c, int version) {
    memset(h, 0, SESSA_HEADER_INTS * sizeof(int32_t));
    h[0] = SESSA_MODEL_MAGIC; h[1] = version;
    h[2] = c->max_seq_len; h[3] = c->vocab_size; h[4] = c->n_layer; h[5] = c->n_head; h[6] = c->n_kv_head;
    h[7] = c->d_model; h[8] = c->padded_vocab_size; h[9] = c->use_rope;
    h[10] = float_to_bits(c->gamma_max); h[11] = float_to_bits(c->ln_eps);
    h[12] = c->no_feedback;   // 0 in checkpoints older than the f0 option: they read as Sessa
}

// header (+ the file's total size in bytes) -> config and version; 0, or -1 with the cause in err
static inline int sessa_config_from_header(SessaConfig *c, int *version, const int32_t h[SESSA_HEADER_INTS],
                                    long long file_bytes, char *err, size_t errlen) {
    if (h[0] != SESSA_MODEL_MAGIC) {
        snprintf(err, errlen, "bad magic %d (expected %d: not a sessa model checkpoint)", h[0], SESSA_MODEL_MAGIC);
        return -1;
    }
    if (h[1] != 1 && h[1] != 2) {
        snprintf(err, errlen, "unsupported checkpoint version %d (1 = fp32, 2 = bf16)", h[1]);
        return -1;
    }
    *version = h[1];
    c->max_seq_len = h[2]; c->vocab_size = h[3]; c->n_layer = h[4]; c->n_head = h[5]; c->n_kv_head = h[6];
    c->d_model = h[7]; c->padded_vocab_size = h[8]; c->use_rope = h[9];
    c->gamma_max = bits_to_float(h[10]); c->ln_eps = bits_to_float(h[11]);
    c->no_feedback = h[12];
    char cerr[200];
    if (sessa_config_check(c, cerr, sizeof(cerr)) != 0) {
        snprintf(err, errlen, "invalid config in header: %s", cerr);
        return -1;
    }
    long long expect = SESSA_HEADER_INTS * 4LL + (long long)sessa_num_parameters(c) * (*version == 1 ? 4 : 2);
    if (file_bytes != expect) {
        snprintf(err, errlen, "file is %lld bytes but its header implies %lld (%zu %s parameters): %s",
                 file_bytes, expect, sessa_num_parameters(c), *version == 1 ? "fp32" : "bf16",
                 file_bytes < expect ? "truncated" : "trailing data");
        return -1;
    }
    return 0;
}

// read a checkpoint (v1 fp32 or v2 bf16) -> config and a malloc'd fp32 parameter buffer
static inline float *sessa_checkpoint_read(const char *path, SessaConfig *c) {
    FILE *fp = fopenCheck(path, "rb");
    long long bytes = fileSize(fp, path);
    if (bytes < SESSA_HEADER_INTS * 4LL) fatal("checkpoint '%s' is truncated: %lld bytes, less than its 1024-byte header", path, bytes);
    int32_t h[SESSA_HEADER_INTS];
    freadCheck(h, sizeof(int32_t), SESSA_HEADER_INTS, fp, path);
    int version; char err[512];
    if (sessa_config_from_header(c, &version, h, bytes, err, sizeof(err)) != 0) fatal("checkpoint '%s': %s", path, err);
    size_t n = sessa_num_parameters(c);
    float *params = (float *)mallocCheck(n * sizeof(float));
    if (version == 1) {
        freadCheck(params, sizeof(float), n, fp, path);
    } else {
        uint16_t *tmp = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
        freadCheck(tmp, sizeof(uint16_t), n, fp, path);
        for (size_t i = 0; i < n; i++) params[i] = bf16_to_float(tmp[i]);
        free(tmp);
    }
    fcloseCheck(fp, path);
    return params;
}

// atomic file writes: write PATH.tmp, fflush + fsync, then rename over PATH, so that an interrupted
// write leaves the previous PATH intact. tmp must hold strlen(path) + 5 bytes.
static inline FILE *atomic_write_begin(const char *path, char *tmp, size_t tmplen) {
    if ((size_t)snprintf(tmp, tmplen, "%s.tmp", path) >= tmplen) fatal("path too long: '%s'", path);
    return fopenCheck(tmp, "wb");
}
static inline void atomic_write_commit(FILE *fp, const char *tmp, const char *path) {
    if (fflush(fp) != 0) fatal("write error on '%s': %s", tmp, strerror(errno));
    if (fsync(fileno(fp)) != 0) fatal("fsync failed on '%s': %s", tmp, strerror(errno));
    fcloseCheck(fp, tmp);
    if (rename(tmp, path) != 0) fatal("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
}

// write a checkpoint atomically: version 1 (fp32) or 2 (bf16, round to nearest even)
static inline void sessa_checkpoint_write(const char *path, const SessaConfig *c, const float *params, int version) {
    if (version != 1 && version != 2) fatal("checkpoint version must be 1 or 2 (got %d)", version);
    sessa_config_validate(c, path);
    char tmp[4096];
    FILE *fp = atomic_write_begin(path, tmp, sizeof(tmp));
    int32_t h[SESSA_HEADER_INTS];
    sessa_header_from_config(h, c, version);
    fwriteCheck(h, sizeof(int32_t), SESSA_HEADER_INTS, fp, tmp);
    size_t n = sessa_num_parameters(c);
    if (version == 1) {
        fwriteCheck(params, sizeof(float), n, fp, tmp);
    } else {
        uint16_t buf[1 << 15];
        const size_t chunk = sizeof(buf) / sizeof(buf[0]);
        for (size_t i = 0; i < n; i += chunk) {
            size_t m = n - i < chunk ? n - i : chunk;
            for (size_t j = 0; j < m; j++) buf[j] = float_to_bf16(params[i + j]);
            fwriteCheck(buf, sizeof(uint16_t), m, fp, tmp);
        }
    }
    atomic_write_commit(fp, tmp, path);
}

// ----------------------------------------------------------------------------
// reference debug state (DESIGN.md section 4), written by train_sessa.py, read by the test binaries

typedef struct {
    int B, T, n_steps;
    float lr, weight_decay, beta1, beta2, eps;
    int *inputs, *targets;   // (B*T)
    float *logits;           // (B*T*V), unpadded V
    float loss;
    float *grads;            // (num_parameters), checkpoint order
    float *losses;           // (n_steps)
} SessaDebugState;

static inline void sessa_debug_state_read(SessaDebugState *ds, const char *path, const SessaConfig *c) {
    FILE *fp = fopenCheck(path, "rb");
    long long bytes = fileSize(fp, path);
    if (bytes < SESSA_HEADER_INTS * 4LL) fatal("debug state '%s' is truncated: %lld bytes, less than its header", path, bytes);
    int32_t h[SESSA_HEADER_INTS];
    freadCheck(h, sizeof(int32_t), SESSA_HEADER_INTS, fp, path);
    if (h[0] != SESSA_DEBUG_MAGIC) fatal("debug state '%s': bad magic %d (expected %d)", path, h[0], SESSA_DEBUG_MAGIC);
    if (h[1] != 1) fatal("debug state '%s': unsupported version %d (expected 1)", path, h[1]);
    ds->B = h[2]; ds->T = h[3]; ds->n_steps = h[4];
    if (ds->B < 1 || ds->T < 1 || ds->n_steps < 1 || (long long)ds->B * ds->T > (1 << 26) || ds->n_steps > 100000)
        fatal("debug state '%s': bad B=%d T=%d n_steps=%d", path, ds->B, ds->T, ds->n_steps);
    ds->lr = bits_to_float(h[5]); ds->weight_decay = bits_to_float(h[6]);
    ds->beta1 = bits_to_float(h[7]); ds->beta2 = bits_to_float(h[8]); ds->eps = bits_to_float(h[9]);
    size_t BT = (size_t)ds->B * ds->T, V = c->vocab_size, n = sessa_num_parameters(c);
    long long expect = SESSA_HEADER_INTS * 4LL + 4LL * (2 * BT + BT * V + 1 + n + ds->n_steps);
    if (bytes != expect)
        fatal("debug state '%s' is %lld bytes, but B=%d T=%d V=%zu params=%zu n_steps=%d imply %lld "
              "(does it belong to this model?)", path, bytes, ds->B, ds->T, V, n, ds->n_steps, expect);
    ds->inputs = (int *)mallocCheck(BT * sizeof(int));
    ds->targets = (int *)mallocCheck(BT * sizeof(int));
    ds->logits = (float *)mallocCheck(BT * V * sizeof(float));
    ds->grads = (float *)mallocCheck(n * sizeof(float));
    ds->losses = (float *)mallocCheck(ds->n_steps * sizeof(float));
    freadCheck(ds->inputs, sizeof(int), BT, fp, path);
    freadCheck(ds->targets, sizeof(int), BT, fp, path);
    freadCheck(ds->logits, sizeof(float), BT * V, fp, path);
    freadCheck(&ds->loss, sizeof(float), 1, fp, path);
    freadCheck(ds->grads, sizeof(float), n, fp, path);
    freadCheck(ds->losses, sizeof(float), ds->n_steps, fp, path);
    fcloseCheck(fp, path);
    for (size_t i = 0; i < BT; i++) {
        if (ds->inputs[i] < 0 || ds->inputs[i] >= c->vocab_size || ds->targets[i] < 0 || ds->targets[i] >= c->vocab_size)
            fatal("debug state '%s': token %zu out of range [0, %d)", path, i, c->vocab_size);
    }
}

static inline void sessa_debug_state_free(SessaDebugState *ds) {
    free(ds->inputs); free(ds->targets); free(ds->logits); free(ds->grads); free(ds->losses);
}

#endif // SESSA_H
