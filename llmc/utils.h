/*
 Small helpers shared by every sessa.c program (CPU trainer, CUDA trainer, tests, dev tools).
 Every failure prints where it happened and what went wrong, then exits non-zero:
 a bad input never turns into a crash or a silent run.
*/
#ifndef SESSA_UTILS_H
#define SESSA_UTILS_H

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <errno.h>
#include <stdint.h>
#include <time.h>

// ----------------------------------------------------------------------------
// fatal errors

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
static void fatal_at(const char *file, int line, const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "error: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  (at %s:%d)\n", file, line);
    exit(EXIT_FAILURE);
}
// fatal("token %d >= vocab %d in %s", tok, V, path): print "error: ..." and exit(1)
#define fatal(...) fatal_at(__FILE__, __LINE__, __VA_ARGS__)

// ----------------------------------------------------------------------------
// checked stdio and malloc (llm.c style: fopenCheck(path, mode) etc.)

static inline FILE *fopen_check_(const char *path, const char *mode, const char *file, int line) {
    FILE *fp = fopen(path, mode);
    if (fp == NULL) fatal_at(file, line, "cannot open '%s' (mode %s): %s", path, mode, strerror(errno));
    return fp;
}
#define fopenCheck(path, mode) fopen_check_(path, mode, __FILE__, __LINE__)

// what names the stream in messages (usually its path)
static inline void fread_check_(void *ptr, size_t size, size_t nmemb, FILE *fp, const char *what,
                                const char *file, int line) {
    size_t got = fread(ptr, size, nmemb, fp);
    if (got != nmemb) {
        if (feof(fp)) fatal_at(file, line, "'%s' is truncated: wanted %zu items of %zu bytes, got %zu",
                               what, nmemb, size, got);
        fatal_at(file, line, "read error on '%s': %s", what, strerror(errno));
    }
}
#define freadCheck(ptr, size, nmemb, fp, what) fread_check_(ptr, size, nmemb, fp, what, __FILE__, __LINE__)

static inline void fwrite_check_(const void *ptr, size_t size, size_t nmemb, FILE *fp, const char *what,
                                 const char *file, int line) {
    size_t put = fwrite(ptr, size, nmemb, fp);
    if (put != nmemb) fatal_at(file, line, "write error on '%s': %s", what, strerror(errno));
}
#define fwriteCheck(ptr, size, nmemb, fp, what) fwrite_check_(ptr, size, nmemb, fp, what, __FILE__, __LINE__)

static inline void fseek_check_(FILE *fp, long long off, int whence, const char *what, const char *file, int line) {
    if (fseeko(fp, (off_t)off, whence) != 0) fatal_at(file, line, "seek failed on '%s': %s", what, strerror(errno));
}
#define fseekCheck(fp, off, whence, what) fseek_check_(fp, off, whence, what, __FILE__, __LINE__)

static inline void fclose_check_(FILE *fp, const char *what, const char *file, int line) {
    if (fclose(fp) != 0) fatal_at(file, line, "close failed on '%s': %s", what, strerror(errno));
}
#define fcloseCheck(fp, what) fclose_check_(fp, what, __FILE__, __LINE__)

// size of an open file in bytes
static inline long long file_size_(FILE *fp, const char *what, const char *file, int line) {
    long long cur = ftello(fp);
    fseek_check_(fp, 0, SEEK_END, what, file, line);
    long long n = ftello(fp);
    fseek_check_(fp, cur, SEEK_SET, what, file, line);
    return n;
}
#define fileSize(fp, what) file_size_(fp, what, __FILE__, __LINE__)

static inline void *malloc_check_(size_t size, const char *file, int line) {
    void *p = malloc(size ? size : 1);
    if (p == NULL) fatal_at(file, line, "out of memory: malloc of %zu bytes (%.2f GiB) failed",
                            size, (double)size / (1u << 30));
    return p;
}
#define mallocCheck(size) malloc_check_(size, __FILE__, __LINE__)

static inline void *calloc_check_(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) fatal_at(file, line, "out of memory: calloc of %zu x %zu bytes failed", n, size);
    return p;
}
#define callocCheck(n, size) calloc_check_(n, size, __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// float <-> bits, bf16 (round to nearest even), as the file formats store them

static inline float bits_to_float(int32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline int32_t float_to_bits(float f) { int32_t b; memcpy(&b, &f, 4); return b; }

static inline uint16_t float_to_bf16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}

// wall-clock seconds from a monotonic clock (step timings of both trainers)
static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif // SESSA_UTILS_H
