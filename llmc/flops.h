/*
 Model FLOPs per token (DESIGN.md section 3), for the MFU the CUDA trainer prints (and dev/test/test_flops.c
 checks; the CPU trainer prints tok/s only). Per layer, forward:
   2 x (weights of the layer's Linears: in 2D*D, q/k/v D*(H+2Hkv)*d, feedback 2D*D, o D*D when H > 1, out D*D)
   + 2*T*D for causal attention (QK^T and PV, each 2*(T/2)*D)
   + 2*T*D for the feedback branch (logits and substitution, each 2*(T/2)*D; with Linear_fb, absent for f0)
 plus the tied head, 2*V*D. Training (forward + backward) costs 3x the forward.
 Elementwise work (LayerNorm, GELU, RoPE, gamma, gate) is not counted, as in llm.c.
 Plain C.
*/
#ifndef SESSA_FLOPS_H
#define SESSA_FLOPS_H

#include "sessa.h"

// forward FLOPs per token at sequence length T
static inline double sessa_forward_flops_per_token(const SessaConfig *c, int T) {
    double D = c->d_model, hd = (double)c->d_model / c->n_head;
    double linear = 2.0 * D * D                                   // Linear_in
                  + D * (c->n_head + 2.0 * c->n_kv_head) * hd     // Linear_q, Linear_k, Linear_v
                  + (c->no_feedback ? 0.0 : 2.0 * D * D)          // Linear_fb (none for f0)
                  + (c->n_head > 1 ? D * D : 0.0)                 // Linear_o
                  + D * D;                                        // Linear_out
    double layer = 2.0 * linear + 2.0 * T * D + (c->no_feedback ? 0.0 : 2.0 * T * D);
    return c->n_layer * layer + 2.0 * c->vocab_size * D;
}

// training (forward + backward) FLOPs per token
static inline double sessa_flops_per_token(const SessaConfig *c, int T) {
    return 3.0 * sessa_forward_flops_per_token(c, T);
}

#endif // SESSA_FLOPS_H
