/*
 Tiny test harness shared by dev/test/test_dataloader.c and dev/test/test_tokenizer.c:
 CHECK counts passes and failures; run_child runs a function in a forked child and captures its output;
 expect_fatal checks that it exits non-zero with a given text in its output (the way every bad input must fail).
*/
#ifndef SESSA_DATA_TESTING_H
#define SESSA_DATA_TESTING_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

static int tests_passed = 0, tests_failed = 0;

#define CHECK(cond, ...) do { \
    if (cond) { tests_passed++; } \
    else { tests_failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
} while (0)

// Run fn(arg) in a forked child with its stdout and stderr captured into out (NUL-terminated).
// Returns the wait status.
static int run_child(void (*fn)(void *), void *arg, char *out, size_t outlen) {
    fflush(stdout); fflush(stderr);
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); exit(2); }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(2); }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0; ssize_t r;
    while (len + 1 < outlen && (r = read(fds[0], out + len, outlen - 1 - len)) > 0) len += (size_t)r;
    out[len] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

// Passes when fn(arg) exits with a non-zero code (not by a signal: a crash is a failure)
// and its output contains `expect`.
static void expect_fatal(const char *name, void (*fn)(void *), void *arg, const char *expect) {
    char buf[4096];
    int status = run_child(fn, arg, buf, sizeof(buf));
    int exited_nonzero = WIFEXITED(status) && WEXITSTATUS(status) != 0;
    CHECK(exited_nonzero, "%s: child should exit non-zero (%s %d); output: %s", name,
          WIFEXITED(status) ? "exit code" : "killed by signal",
          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), buf);
    CHECK(strstr(buf, expect) != NULL, "%s: output should contain \"%s\"; got: %s", name, expect, buf);
}

static int tests_report(void) {
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}

#endif // SESSA_DATA_TESTING_H
