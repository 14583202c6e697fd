/*
 libFuzzer harness for the model checkpoint header parser (llmc/sessa.h):
 sessa_config_from_header is the non-exiting part of sessa_checkpoint_read. When it accepts a header,
 the file size must match the parameter count, and the parameters are decoded from memory as the
 reader would (fp32, or bf16 -> fp32).
*/
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include "llmc/sessa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < SESSA_HEADER_INTS * 4) return 0;   // the reader rejects this before parsing
    int32_t h[SESSA_HEADER_INTS];
    memcpy(h, data, sizeof(h));
    SessaConfig c;
    int version;
    char err[512];
    if (sessa_config_from_header(&c, &version, h, (long long)size, err, sizeof(err)) != 0) return 0;
    char cerr[256];
    if (sessa_config_check(&c, cerr, sizeof(cerr)) != 0) abort();
    size_t n = sessa_num_parameters(&c);
    if (size != SESSA_HEADER_INTS * 4 + n * (version == 1 ? 4 : 2)) abort();
    float *params = (float *)malloc(n * sizeof(float) + 1);
    const uint8_t *p = data + sizeof(h);
    for (size_t i = 0; i < n; i++) {
        if (version == 1) memcpy(&params[i], p + 4 * i, 4);
        else { uint16_t b; memcpy(&b, p + 2 * i, 2); params[i] = bf16_to_float(b); }
    }
    ParameterTensors pt;
    sessa_carve_parameters(&pt, params, &c);   // the tensor table must fill the buffer exactly
    if (pt.lnf_b + c.d_model != params + n) abort();
    free(params);
    return 0;
}
