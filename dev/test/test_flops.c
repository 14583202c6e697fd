/*
 llmc/flops.h against FLOP counts worked out by hand from DESIGN.md section 3.
   gcc -O2 -Wall dev/test/test_flops.c -lm -o dev/test/bin/test_flops && dev/test/bin/test_flops
 d12 (L 12, D 768, H = Hkv = 12, V 50257) at T 1024, per token, forward:
   Linears per layer: in 2D^2 + q,k,v 3D^2 + fb 2D^2 + o D^2 + out D^2 = 9 D^2 = 5,308,416 weights -> x2
   attention 2TD + feedback 2TD = 4 * 1024 * 768 = 3,145,728
   layer 10,616,832 + 3,145,728 = 13,762,560;  x 12 = 165,150,720;  head 2 * 50257 * 768 = 77,194,752
   forward 242,345,472; training 3x = 727,036,416
 GQA without Linear_o (H 1 has no o; here H 4, Hkv 2 keeps o): d2w256h4k2, V 61, T 64:
   Linears 2D^2 + D*(4 + 2*2)*64 + 2D^2 + D^2 + D^2 = 6D^2 + 2D^2 = 8D^2 = 524,288 -> x2 = 1,048,576
   + 4 * 64 * 256 = 65,536 -> layer 1,114,112; x 2 = 2,228,224; head 2 * 61 * 256 = 31,232; forward 2,259,456
 H = 1 (no Linear_o): d1w64h1, V 100, T 10: Linears 8 D^2 = 32,768 -> 65,536 + 4*10*64 = 2,560 -> 68,096;
   head 12,800; forward 80,896
 f0 (no feedback: no Linear_fb, no feedback 2TD): d1w64h1f0, V 100, T 10: Linears 6 D^2 = 24,576 -> 49,152
   + 2*10*64 = 1,280 -> 50,432; head 12,800; forward 63,232
 All counts are exact in double: the test compares for equality.
*/
#include <stdio.h>
#include "../../llmc/flops.h"

static int check(const char *desc, int V, int T, double expect_forward) {
    SessaConfig c; char err[256];
    if (sessa_config_from_descriptor(&c, desc, V, T, err, sizeof(err)) != 0) { printf("FAIL %s: %s\n", desc, err); return 0; }
    double f = sessa_forward_flops_per_token(&c, T), t = sessa_flops_per_token(&c, T);
    int ok = f == expect_forward && t == 3.0 * expect_forward;
    printf("%s %-12s V %-6d T %-5d forward %.0f (expected %.0f), training %.0f\n", ok ? "OK  " : "FAIL", desc, V, T, f,
           expect_forward, t);
    return ok;
}

int main(void) {
    int ok = check("d12", 50257, 1024, 242345472.0) & check("d2w256h4k2", 61, 64, 2259456.0) &
             check("d1w64h1", 100, 10, 80896.0) & check("d1w64h1f0", 100, 10, 63232.0);
    printf(ok ? "test_flops: all passed\n" : "test_flops: FAILED\n");
    return ok ? 0 : 1;
}
