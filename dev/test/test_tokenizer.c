/*
 Tests of llmc/tokenizer.h on small tokenizer files written here.
 Build and run (from the repo root):
   gcc -O2 -Wall -Wextra -I. dev/test/test_tokenizer.c -o dev/test/test_tokenizer && dev/test/test_tokenizer
 Prints "N passed, M failed"; the exit code is 0 only when nothing failed.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "llmc/tokenizer.h"
#include "dev/test/data_testing.h"

static char dir[128];
static char paths[16][256];
static int npaths = 0;

static const char *path_in(const char *name) {
    char *p = paths[npaths++ % 16];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

// header fields, then the pieces (lengths taken from strlen unless lens is given), then `extra` raw bytes
static void write_tokenizer(const char *path, int magic, int version, int vocab, int eot,
                            const char **pieces, const int *lens, int npieces, const char *extra, size_t nextra) {
    int32_t header[256] = {0};
    header[0] = magic; header[1] = version; header[2] = vocab; header[3] = eot;
    FILE *fp = fopenCheck(path, "wb");
    fwriteCheck(header, sizeof(int32_t), 256, fp, path);
    for (int i = 0; i < npieces; i++) {
        uint8_t len = (uint8_t)(lens ? lens[i] : (int)strlen(pieces[i]));
        fwriteCheck(&len, 1, 1, fp, path);
        if (len) fwriteCheck(pieces[i], 1, len, fp, path);
    }
    if (nextra) fwriteCheck(extra, 1, nextra, fp, path);
    fcloseCheck(fp, path);
}

static const char *good_pieces[5] = { "hello", " world", "\n", "<|endoftext|>", "\xc3\xa9" };

static void test_good_file(void) {
    const char *p = path_in("good.bin");
    write_tokenizer(p, TOKENIZER_MAGIC, 2, 5, 3, good_pieces, NULL, 5, NULL, 0);
    Tokenizer tok;
    tokenizer_init(&tok, p);
    CHECK(tok.init_ok == 1, "good file loads");
    CHECK(tok.vocab_size == 5 && tok.eot_token == 3, "vocab %u eot %d (want 5, 3)", tok.vocab_size, tok.eot_token);
    int ok = 1;
    for (uint32_t i = 0; i < 5; i++) ok &= strcmp(tokenizer_decode(&tok, i), good_pieces[i]) == 0;
    CHECK(ok, "decode returns every piece written");
    tokenizer_free(&tok);
    CHECK(tok.init_ok == 0 && tok.token_table == NULL, "free clears the tokenizer");
}

// pieces with a NUL byte and with 255 bytes (the longest a uint8 length allows)
static void test_edge_pieces(void) {
    char big[255]; memset(big, 'x', sizeof(big));
    const char *pieces[2] = { "\0", big };
    int lens[2] = { 1, 255 };
    const char *p = path_in("edge.bin");
    write_tokenizer(p, TOKENIZER_MAGIC, 2, 2, 0, pieces, lens, 2, NULL, 0);
    Tokenizer tok;
    tokenizer_init(&tok, p);
    CHECK(tok.token_lens[0] == 1 && tok.token_lens[1] == 255, "piece lengths 1 and 255 kept");
    CHECK(memcmp(tokenizer_decode(&tok, 1), big, 255) == 0 && tokenizer_decode(&tok, 1)[255] == '\0',
          "255-byte piece decodes, NUL-terminated");
    tokenizer_free(&tok);
}

static void run_missing(void *arg) {
    Tokenizer tok;
    tokenizer_init(&tok, (const char *)arg);
    printf("init_ok=%d\n", tok.init_ok);
}

static void test_missing_file(void) {
    char out[4096];
    int status = run_child(run_missing, (void *)path_in("does_not_exist.bin"), out, sizeof(out));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "missing tokenizer file is not fatal; output: %s", out);
    CHECK(strstr(out, "warning: cannot open tokenizer file") && strstr(out, "does_not_exist.bin") &&
          strstr(out, "init_ok=0"), "missing file warns with its name and leaves init_ok = 0; got: %s", out);
}

static void run_safe_printf(void *arg) {
    (void)arg;
    const char *pieces[] = { "a", "\x01", " b", "\n", "\x7f", "\xc3", "\xa9", "", NULL, "\t<|endoftext|>" };
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) safe_printf(pieces[i]);
}

static void test_safe_printf(void) {
    char out[256];
    run_child(run_safe_printf, NULL, out, sizeof(out));
    // control bytes 0x01 and 0x7f dropped; whitespace and UTF-8 bytes kept; empty and NULL print nothing
    CHECK(strcmp(out, "a b\n\xc3\xa9\t<|endoftext|>") == 0, "safe_printf output: \"%s\"", out);
}

static void run_init(void *arg) { Tokenizer tok; tokenizer_init(&tok, (const char *)arg); }

typedef struct { const char *path; uint32_t id; } DecodeCase;
static void run_decode(void *arg) {
    DecodeCase *c = (DecodeCase *)arg;
    Tokenizer tok;
    tokenizer_init(&tok, c->path);
    printf("[%s]\n", tokenizer_decode(&tok, c->id));
}

static void test_bad_files(void) {
    const char *bad_magic = path_in("magic.bin"), *bad_version = path_in("version.bin"),
               *bad_vocab = path_in("vocab.bin"), *bad_eot = path_in("eot.bin"), *short_header = path_in("header.bin"),
               *truncated = path_in("truncated.bin"), *cut_piece = path_in("cut.bin"), *zero_len = path_in("zero.bin"),
               *trailing = path_in("trailing.bin"), *v1 = path_in("v1.bin"), *good = path_in("good.bin");
    write_tokenizer(bad_magic, 20240520, 2, 5, 3, good_pieces, NULL, 5, NULL, 0);
    write_tokenizer(bad_version, TOKENIZER_MAGIC, 7, 5, 3, good_pieces, NULL, 5, NULL, 0);
    write_tokenizer(bad_vocab, TOKENIZER_MAGIC, 2, 0, 0, good_pieces, NULL, 0, NULL, 0);
    write_tokenizer(bad_eot, TOKENIZER_MAGIC, 2, 5, 5, good_pieces, NULL, 5, NULL, 0);
    write_tokenizer(truncated, TOKENIZER_MAGIC, 2, 6, 3, good_pieces, NULL, 5, NULL, 0);
    write_tokenizer(cut_piece, TOKENIZER_MAGIC, 2, 5, 3, good_pieces, NULL, 4, "\x05hi", 3);
    int lens[5] = { 5, 6, 0, 13, 2 };
    write_tokenizer(zero_len, TOKENIZER_MAGIC, 2, 5, 3, good_pieces, lens, 5, NULL, 0);
    write_tokenizer(trailing, TOKENIZER_MAGIC, 2, 5, 3, good_pieces, NULL, 5, "zz", 2);
    write_tokenizer(v1, TOKENIZER_MAGIC, 1, 5, 3, good_pieces, NULL, 5, NULL, 0);
    FILE *fp = fopenCheck(short_header, "wb"); fwriteCheck("abcd", 1, 4, fp, short_header); fcloseCheck(fp, short_header);

    expect_fatal("bad magic", run_init, (void *)bad_magic, "bad magic 20240520");
    expect_fatal("bad magic names file", run_init, (void *)bad_magic, "magic.bin");
    expect_fatal("bad version", run_init, (void *)bad_version, "unknown tokenizer version 7");
    expect_fatal("bad vocab", run_init, (void *)bad_vocab, "invalid vocab size 0");
    expect_fatal("eot out of range", run_init, (void *)bad_eot, "end-of-text id 5 is outside");
    expect_fatal("short header", run_init, (void *)short_header, "shorter than the 1024-byte header");
    expect_fatal("missing tokens", run_init, (void *)truncated, "truncated: the file ends at token 5 of 6");
    expect_fatal("cut piece", run_init, (void *)cut_piece, "truncated: token 4 needs 5 bytes, 2 remain");
    expect_fatal("zero length", run_init, (void *)zero_len, "token 2 has length 0");
    expect_fatal("trailing bytes", run_init, (void *)trailing, "2 unexpected trailing bytes");
    expect_fatal("v1 not gpt2", run_init, (void *)v1, "version 1 tokenizer files are GPT-2's");
    DecodeCase out_of_range = { good, 5 }, in_range = { good, 1 };
    expect_fatal("decode out of range", run_decode, &out_of_range, "token id 5 out of range for vocab size 5");
    char out[256];
    int status = run_child(run_decode, &in_range, out, sizeof(out));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && strcmp(out, "[ world]\n") == 0,
          "decode in range in a child works (control for the case above): %s", out);
    DecodeCase not_loaded = { path_in("does_not_exist.bin"), 0 };
    expect_fatal("decode without tokenizer", run_decode, &not_loaded, "no tokenizer was loaded");
}

int main(void) {
    snprintf(dir, sizeof(dir), "/tmp/sessa_test_tokenizer_%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", dir);
    if (system(cmd) != 0) fatal("cannot create %s", dir);
    test_good_file();
    test_edge_pieces();
    test_missing_file();
    test_safe_printf();
    test_bad_files();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    return tests_report();
}
