/*
 libFuzzer harness for the tokenizer file parser (llmc/tokenizer.h): tokenizer_parse works on memory
 and returns an error instead of exiting. A parsed tokenizer must decode every id to a piece of its
 recorded length.
*/
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include "llmc/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tokenizer tok;
    char err[256];
    if (tokenizer_parse(&tok, data, size, err, sizeof(err)) != 0) {
        if (tok.init_ok || tok.token_table != NULL) abort();   // a failed parse leaves nothing behind
        return 0;
    }
    if (tok.eot_token < 0 || (uint32_t)tok.eot_token >= tok.vocab_size) abort();
    for (uint32_t i = 0; i < tok.vocab_size; i++) {
        const char *piece = tokenizer_decode(&tok, i);
        if (tok.token_lens[i] == 0 || piece[tok.token_lens[i]] != '\0') abort();
    }
    tokenizer_free(&tok);
    return 0;
}
