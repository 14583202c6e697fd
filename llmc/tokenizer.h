/*
 Decoding-only tokenizer: token id -> bytes, for printing samples (llm.c's format, DESIGN.md §4).

 File: header of 256 int32 (little-endian)
     [0] magic 20240328   [1] version (2; llm.c's version 1 has no eot field and means GPT-2, eot 50256)
     [2] vocab size V     [3] end-of-text token id
 then for each of the V tokens: one uint8 length (>= 1) and that many bytes. Nothing may follow.

 A missing file is not an error (training works without it): a warning, init_ok = 0.
 A file that exists but is malformed is fatal, naming the file and the cause.
 tokenizer_parse works on memory and returns an error code, so dev/fuzz can drive it.
*/
#ifndef SESSA_TOKENIZER_H
#define SESSA_TOKENIZER_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <ctype.h>
#include "utils.h"

#define TOKENIZER_MAGIC 20240328
#define TOKENIZER_HEADER_INTS 256

typedef struct {
    uint32_t vocab_size;
    int eot_token;
    int init_ok;
    char **token_table;    // (vocab_size,) NUL-terminated pieces (a piece may contain NUL bytes itself)
    uint8_t *token_lens;   // (vocab_size,) byte length of each piece
} Tokenizer;

// Parse a whole tokenizer file held in memory. Returns 0 on success (tok filled, init_ok = 1),
// or -1 with a message in err (tok left empty, nothing allocated).
static inline int tokenizer_parse(Tokenizer *tok, const uint8_t *buf, size_t n, char *err, size_t errlen) {
    memset(tok, 0, sizeof(*tok));
    int32_t header[TOKENIZER_HEADER_INTS];
    if (n < sizeof(header)) {
        snprintf(err, errlen, "file has %zu bytes, shorter than the %zu-byte header", n, sizeof(header));
        return -1;
    }
    memcpy(header, buf, sizeof(header));
    if (header[0] != TOKENIZER_MAGIC) {
        snprintf(err, errlen, "bad magic %d (expected %d): not a tokenizer file", header[0], TOKENIZER_MAGIC);
        return -1;
    }
    int version = header[1];
    if (version != 1 && version != 2) {
        snprintf(err, errlen, "unknown tokenizer version %d (expected 1 or 2)", version);
        return -1;
    }
    if (header[2] <= 0) {
        snprintf(err, errlen, "invalid vocab size %d", header[2]);
        return -1;
    }
    uint32_t V = (uint32_t)header[2];
    int eot = version == 1 ? 50256 : header[3];
    if (version == 1 && V != 50257) {
        snprintf(err, errlen, "version 1 tokenizer files are GPT-2's (vocab 50257), this one has vocab %u", V);
        return -1;
    }
    if (eot < 0 || (uint32_t)eot >= V) {
        snprintf(err, errlen, "end-of-text id %d is outside the vocabulary [0, %u)", eot, V);
        return -1;
    }
    // walk the table once to validate it before allocating anything
    size_t pos = sizeof(header);
    for (uint32_t i = 0; i < V; i++) {
        if (pos >= n) {
            snprintf(err, errlen, "truncated: the file ends at token %u of %u", i, V);
            return -1;
        }
        uint8_t len = buf[pos];
        if (len == 0) {
            snprintf(err, errlen, "token %u has length 0", i);
            return -1;
        }
        if (n - pos - 1 < len) {
            snprintf(err, errlen, "truncated: token %u needs %u bytes, %zu remain", i, len, n - pos - 1);
            return -1;
        }
        pos += 1 + (size_t)len;
    }
    if (pos != n) {
        snprintf(err, errlen, "%zu unexpected trailing bytes after the %u tokens", n - pos, V);
        return -1;
    }
    tok->vocab_size = V;
    tok->eot_token = eot;
    tok->token_table = (char **)mallocCheck(V * sizeof(char *));
    tok->token_lens = (uint8_t *)mallocCheck(V);
    pos = sizeof(header);
    for (uint32_t i = 0; i < V; i++) {
        uint8_t len = buf[pos];
        tok->token_lens[i] = len;
        tok->token_table[i] = (char *)mallocCheck((size_t)len + 1);
        memcpy(tok->token_table[i], buf + pos + 1, len);
        tok->token_table[i][len] = '\0';
        pos += 1 + (size_t)len;
    }
    tok->init_ok = 1;
    return 0;
}

static inline void tokenizer_init(Tokenizer *tok, const char *path) {
    memset(tok, 0, sizeof(*tok));
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        fprintf(stderr, "warning: cannot open tokenizer file '%s' (%s): samples will be printed as token ids\n",
                path, strerror(errno));
        return;
    }
    long long n = fileSize(fp, path);
    if (n > (64ll << 20)) fatal("tokenizer file '%s' is %lld bytes: too large to be a tokenizer", path, n);
    uint8_t *buf = (uint8_t *)mallocCheck((size_t)n);
    freadCheck(buf, 1, (size_t)n, fp, path);
    fcloseCheck(fp, path);
    char err[256];
    if (tokenizer_parse(tok, buf, (size_t)n, err, sizeof(err)) != 0) fatal("tokenizer file '%s': %s", path, err);
    free(buf);
}

// the bytes of token id, NUL-terminated; an id outside the vocabulary is fatal
static inline const char *tokenizer_decode(Tokenizer *tok, uint32_t id) {
    if (!tok->init_ok) fatal("tokenizer_decode called but no tokenizer was loaded");
    if (id >= tok->vocab_size) fatal("tokenizer_decode: token id %u out of range for vocab size %u", id, tok->vocab_size);
    return tok->token_table[id];
}

// print a piece only if it is printable text: a lone byte that is a control character
// (other than whitespace) is skipped; multi-byte pieces (UTF-8 fragments included) are printed
static inline void safe_printf(const char *piece) {
    if (piece == NULL || piece[0] == '\0') return;
    if (piece[1] == '\0') {
        unsigned char b = (unsigned char)piece[0];
        if (b < 0x80 && !(isprint(b) || isspace(b))) return;
    }
    printf("%s", piece);
}

static inline void tokenizer_free(Tokenizer *tok) {
    if (tok->init_ok) {
        for (uint32_t i = 0; i < tok->vocab_size; i++) free(tok->token_table[i]);
        free(tok->token_table);
        free(tok->token_lens);
    }
    memset(tok, 0, sizeof(*tok));
}

#endif // SESSA_TOKENIZER_H
