/*
 Resume state of a training run, next to the model checkpoint (llm.c style):
   OUT/model_NNNNNNNN.bin   parameters (llmc/sessa.h checkpoint, fp32)
   OUT/state_NNNNNNNN.bin   this file: step, AdamW moments, data-loader position, RNG
   OUT/DONE_NNNNNNNN        empty marker written last: the pair above is complete
 Both files are written atomically (PATH.tmp, fsync, rename), so an interrupted save leaves the
 previous checkpoint intact; -y 1 resumes from the highest NNNNNNNN that has a DONE marker.
 Layout: int32 header[256] = { magic 20261124, version 2, step, num_params low 31 bits, num_params >> 31,
 loader_state_bytes, log_bytes low 31 bits, log_bytes >> 31 }, then float m[num_params], float v[num_params],
 loader state bytes, uint64 rng[4]. The moments are the full (unsharded) vectors in checkpoint order, whatever
 the number of GPUs. log_bytes: the size of OUT/main.log when the checkpoint was saved (-1: no log); a resumed
 run truncates main.log to it, so that its log equals the uninterrupted run's line for line. Version 1 (no
 log_bytes) still reads; its log is then left as it is.

 The run directory (DESIGN.md section 5), shared by both trainers (rank 0 of the CUDA trainer does it):
   OUT/lock       held with flock(LOCK_EX) while a run lives (it holds "pid host"): a second run on the same
                  folder is refused naming the first; the kernel drops the lock when a process dies, so a
                  killed run leaves no stale lock behind
   OUT/args.txt   the run's flags (llmc/args.h), reused by -y 1
   cleaning       at start, once the lock is held: our own leftovers of a killed or failed save
                  (model_N.bin.tmp, state_N.bin.tmp, args.txt.tmp, and model_N.bin / state_N.bin without
                  DONE_N) are removed, so that a save that failed on a full disk does not block the next one
   -nk N          after each save only the newest N complete checkpoints are kept (DONE removed first)
   SIGINT/SIGTERM the first one sets train_stop_signal: the trainer finishes the step, saves a checkpoint
                  (with -o) and exits 128+signal; a second one, 1 s or more after the first, exits at once (the
                  last checkpoint is intact, since every file is written atomically); a repeat within 1 s is
                  the same Ctrl-C forwarded by a launcher, and ignored
*/
#ifndef SESSA_TRAIN_STATE_H
#define SESSA_TRAIN_STATE_H

#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include "utils.h"
#include "sessa.h"

#define TRAIN_STATE_MAGIC 20261124

// log_bytes: size of main.log at this save (-1: none)
static inline void train_state_write(const char *path, int step, size_t n, const float *m, const float *v,
                                     const void *loader_state, size_t loader_bytes, const uint64_t rng[4],
                                     long long log_bytes) {
    char tmp[4096];
    FILE *fp = atomic_write_begin(path, tmp, sizeof(tmp));
    int32_t h[SESSA_HEADER_INTS] = {0};
    h[0] = TRAIN_STATE_MAGIC; h[1] = 2; h[2] = step;
    h[3] = (int32_t)(n & 0x7fffffff); h[4] = (int32_t)(n >> 31); h[5] = (int32_t)loader_bytes;
    if (log_bytes < 0) { h[6] = -1; h[7] = -1; }
    else { h[6] = (int32_t)(log_bytes & 0x7fffffff); h[7] = (int32_t)(log_bytes >> 31); }
    fwriteCheck(h, sizeof(int32_t), SESSA_HEADER_INTS, fp, tmp);
    fwriteCheck(m, sizeof(float), n, fp, tmp);
    fwriteCheck(v, sizeof(float), n, fp, tmp);
    fwriteCheck(loader_state, 1, loader_bytes, fp, tmp);
    fwriteCheck(rng, sizeof(uint64_t), 4, fp, tmp);
    atomic_write_commit(fp, tmp, path);
}

// reads into m, v (n floats each), loader_state (loader_bytes), rng, *log_bytes (-1: unknown); returns the step
static inline int train_state_read(const char *path, size_t n, float *m, float *v,
                                   void *loader_state, size_t loader_bytes, uint64_t rng[4], long long *log_bytes) {
    FILE *fp = fopenCheck(path, "rb");
    long long bytes = fileSize(fp, path);
    long long expect = SESSA_HEADER_INTS * 4LL + 8LL * n + (long long)loader_bytes + 32;
    int32_t h[SESSA_HEADER_INTS];
    if (bytes < SESSA_HEADER_INTS * 4LL) fatal("resume state '%s' is truncated (%lld bytes)", path, bytes);
    freadCheck(h, sizeof(int32_t), SESSA_HEADER_INTS, fp, path);
    if (h[0] != TRAIN_STATE_MAGIC) fatal("resume state '%s': bad magic %d (expected %d)", path, h[0], TRAIN_STATE_MAGIC);
    if (h[1] != 1 && h[1] != 2) fatal("resume state '%s': unsupported version %d", path, h[1]);
    *log_bytes = h[1] == 2 && h[6] >= 0 && h[7] >= 0 ? (long long)h[6] | ((long long)h[7] << 31) : -1;
    size_t file_n = (size_t)(uint32_t)h[3] | ((size_t)(uint32_t)h[4] << 31);
    if (file_n != n) fatal("resume state '%s' holds %zu parameters but the model has %zu", path, file_n, n);
    if ((size_t)h[5] != loader_bytes) fatal("resume state '%s': data-loader state of %d bytes, expected %zu", path, h[5], loader_bytes);
    if (bytes != expect) fatal("resume state '%s' is %lld bytes, expected %lld (truncated or corrupt)", path, bytes, expect);
    freadCheck(m, sizeof(float), n, fp, path);
    freadCheck(v, sizeof(float), n, fp, path);
    freadCheck(loader_state, 1, loader_bytes, fp, path);
    freadCheck(rng, sizeof(uint64_t), 4, fp, path);
    fcloseCheck(fp, path);
    return h[2];
}

// the checkpoint file names of a step
static inline void train_state_paths(char *model, char *state, char *done, size_t len, const char *dir, int step) {
    snprintf(model, len, "%s/model_%08d.bin", dir, step);
    snprintf(state, len, "%s/state_%08d.bin", dir, step);
    snprintf(done, len, "%s/DONE_%08d", dir, step);
}

static inline void train_state_mark_done(const char *done) {
    FILE *fp = fopenCheck(done, "wb");
    fcloseCheck(fp, done);
}

// highest step with a DONE marker in dir, or -1 if none
static inline int train_state_latest(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) fatal("cannot open output dir '%s' to resume from: %s", dir, strerror(errno));
    int best = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int step; char tail;
        if (sscanf(e->d_name, "DONE_%8d%c", &step, &tail) == 1 && strlen(e->d_name) == 13 && step > best) best = step;
    }
    closedir(d);
    return best;
}

// ----------------------------------------------------------------------------
// the run directory: lock, cleaning, pruning, log truncation

// take OUT/lock or exit naming the run that holds it; the descriptor stays open (the lock lives) until exit
static inline void run_dir_lock(const char *dir) {
    char path[4096], holder[256] = "";
    snprintf(path, sizeof(path), "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fatal("cannot open the lock file '%s': %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        ssize_t got = pread(fd, holder, sizeof(holder) - 1, 0);
        holder[got > 0 ? got : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            fatal("output dir '%s' is in use by another run (pid and host: %s, lock file %s): wait for it to end, "
                  "stop it, or give another -o", dir, holder[0] ? holder : "unknown", path);
        // a file system without flock (some network mounts): run on, unprotected, and say so
        printf("warning: cannot lock '%s' (%s): a second run on this folder would not be detected\n", path, strerror(e));
        close(fd);
        return;
    }
    char host[128] = "?";
    gethostname(host, sizeof(host) - 1);
    int len = snprintf(holder, sizeof(holder), "%ld %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, holder, len, 0) != len)
        fatal("cannot write the lock file '%s': %s", path, strerror(errno));
}

static inline int run_dir_exists_(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

// name == PREFIX + 8 digits + SUFFIX: the step, else -1
static inline int run_dir_name_step_(const char *name, const char *prefix, const char *suffix) {
    size_t lp = strlen(prefix), ls = strlen(suffix);
    if (strlen(name) != lp + 8 + ls || strncmp(name, prefix, lp) != 0 || strcmp(name + lp + 8, suffix) != 0) return -1;
    int step = 0;
    for (size_t i = lp; i < lp + 8; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        step = step * 10 + (name[i] - '0');
    }
    return step;
}

// remove our own leftovers of a killed or failed save (call with the lock held); returns how many
static inline int run_dir_clean(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) fatal("cannot open output dir '%s': %s", dir, strerror(errno));
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        int step, stale = 0;
        if (strcmp(n, "args.txt.tmp") == 0) stale = 1;
        else if ((step = run_dir_name_step_(n, "model_", ".bin.tmp")) >= 0
                 || (step = run_dir_name_step_(n, "state_", ".bin.tmp")) >= 0) stale = 1;
        else if ((step = run_dir_name_step_(n, "model_", ".bin")) >= 0
                 || (step = run_dir_name_step_(n, "state_", ".bin")) >= 0) {
            char done[32];
            snprintf(done, sizeof(done), "DONE_%08d", step);
            stale = !run_dir_exists_(dir, done);
        }
        if (!stale) continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, n);
        if (unlink(path) != 0) fatal("cannot remove the stale file '%s': %s", path, strerror(errno));
        printf("removed %s (left by an interrupted or failed save)\n", path);
        removed++;
    }
    closedir(d);
    return removed;
}

// keep only the newest `keep` complete checkpoints (keep 0: all); DONE goes first, so a kill midway leaves
// files that run_dir_clean removes
static inline void train_state_prune(const char *dir, int keep) {
    if (keep <= 0) return;
    for (;;) {
        DIR *d = opendir(dir);
        if (d == NULL) fatal("cannot open output dir '%s': %s", dir, strerror(errno));
        int count = 0, oldest = -1;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            int step; char tail;
            if (sscanf(e->d_name, "DONE_%8d%c", &step, &tail) == 1 && strlen(e->d_name) == 13) {
                count++;
                if (oldest < 0 || step < oldest) oldest = step;
            }
        }
        closedir(d);
        if (count <= keep) return;
        char model[4096], state[4096], done[4096];
        train_state_paths(model, state, done, sizeof(model), dir, oldest);
        if (unlink(done) != 0) fatal("cannot remove '%s': %s", done, strerror(errno));
        if (unlink(model) != 0 && errno != ENOENT) fatal("cannot remove '%s': %s", model, strerror(errno));
        if (unlink(state) != 0 && errno != ENOENT) fatal("cannot remove '%s': %s", state, strerror(errno));
        printf("removed checkpoint %s (-nk %d keeps the newest %d)\n", model, keep, keep);
    }
}

// main.log of a resumed run: cut back to its size at the checkpoint (log_bytes), dropping the lines the
// interrupted run wrote after it; then open it for appending
static inline FILE *run_dir_open_log(const char *dir, int resumed, long long log_bytes) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/main.log", dir);
    if (resumed && log_bytes >= 0) {
        struct stat st;
        if (stat(path, &st) == 0 && (long long)st.st_size > log_bytes) {
            if (truncate(path, (off_t)log_bytes) != 0) fatal("cannot truncate '%s': %s", path, strerror(errno));
            printf("main.log: dropped the %lld bytes logged after the checkpoint\n", (long long)st.st_size - log_bytes);
        } else if (stat(path, &st) == 0 && (long long)st.st_size < log_bytes) {
            printf("warning: '%s' is shorter (%lld bytes) than at the checkpoint (%lld): appending to it\n", path,
                   (long long)st.st_size, log_bytes);
        }
    }
    return fopenCheck(path, resumed ? "a" : "w");
}

// the lines both trainers write (scripts/plot_log.py reads them): the validation loss of step `step` to stdout
// and main.log; the main.log line of optimizer step `step` (the stdout line differs: the CUDA trainer adds MFU)
static inline void run_log_val(FILE *log, int step, float val_loss) {
    printf("step %d | val loss %.6f\n", step, val_loss);
    if (log) { fprintf(log, "step %d val_loss %.6f\n", step, val_loss); fflush(log); }
}
static inline void run_log_train(FILE *log, int step, float loss, float lr, float norm, double tok_s) {
    if (log) { fprintf(log, "step %d train_loss %.6f lr %.6e norm %.6f tok_s %.1f\n", step, loss, lr, norm, tok_s); fflush(log); }
}

// current size of an open log (for train_state_write), -1 without one
static inline long long run_dir_log_bytes(FILE *log) {
    if (log == NULL) return -1;
    if (fflush(log) != 0) fatal("write error on main.log: %s", strerror(errno));
    return (long long)ftello(log);
}

// ----------------------------------------------------------------------------
// SIGINT / SIGTERM: the first one asks for a checkpoint at the next step boundary, a second one exits at once

static volatile sig_atomic_t train_stop_signal = 0;
static struct timespec train_stop_time_;

// A repeat within 1 s counts as the same request: a launcher that forwards the terminal's Ctrl-C to ranks
// that got it from the terminal too (scripts/launch_local.sh, mpirun) must not turn it into "exit at once".
static void train_on_signal_(int sig) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (train_stop_signal) {
        double dt = (double)(now.tv_sec - train_stop_time_.tv_sec) + 1e-9 * (double)(now.tv_nsec - train_stop_time_.tv_nsec);
        if (dt < 1.0) return;
        static const char bye[] = "\nsecond signal: exiting now (the last complete checkpoint is intact)\n";
        ssize_t r = write(STDERR_FILENO, bye, sizeof(bye) - 1);
        (void)r;
        _exit(128 + sig);
    }
    train_stop_time_ = now;
    train_stop_signal = sig;
    static const char msg[] = "\nsignal received: saving a checkpoint after this step, then exiting "
                              "(signal again to exit at once)\n";
    ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)r;
}

static inline void train_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = train_on_signal_;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

#endif // SESSA_TRAIN_STATE_H
