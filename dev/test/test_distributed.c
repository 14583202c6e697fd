/*
 CPU tests of llmc/distributed.h (no GPU, no NCCL): launcher environments and their errors, the
 choice of id method, the NCCL-id exchange over TCP on 127.0.0.1 and through a file (several
 fork()ed ranks, every wait bounded), the ZeRO partition for world sizes 1..8, a sharded optimizer
 state saved at one world size and resumed at another, and the data split across ranks.
   gcc -O2 -Wall -Wextra dev/test/test_distributed.c -lm -o test_distributed && ./test_distributed
 With MPI, the same tests plus the id exchange over MPI_Bcast between real mpirun ranks:
   mpicc -DUSE_MPI -O2 -Wall -Wextra dev/test/test_distributed.c -lm -o test_distributed_mpi
   ./test_distributed_mpi && mpirun -np 3 --oversubscribe ./test_distributed_mpi mpi   (+ --allow-run-as-root as root)
 Prints "N passed, M failed" (per rank in the mpi mode); exit status 0 only when all pass.
*/
#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include "../../llmc/distributed.h"
#include "../../llmc/dataloader.h"
#include "data_testing.h"

static const char *launcher_vars[] = {
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "RANK", "WORLD_SIZE",
    "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_JOB_ID",
    "TORCHELASTIC_RUN_ID", "OMPI_MCA_ess_base_jobid", "MASTER_ADDR", "MASTER_PORT", "SESSA_TCP_PORT", "SESSA_DIST_TIMEOUT", "SESSA_ID_METHOD", NULL };

// clear every launcher variable, then set "NAME=VALUE" pairs (NULL-terminated)
static void set_env(const char *const *pairs) {
    for (int i = 0; launcher_vars[i]; i++) unsetenv(launcher_vars[i]);
    for (int i = 0; pairs[i]; i++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", pairs[i]);
        char *eq = strchr(buf, '=');
        *eq = '\0';
        setenv(buf, eq + 1, 1);
    }
}

// ----------------------------------------------------------------------------
// launchers

static void check_env(const char *name, const char *const *pairs, const char *launcher, int rank, int world,
                      int local, int port) {
    set_env(pairs);
    DistEnv e = dist_env_parse();
    CHECK(strcmp(e.launcher, launcher) == 0 && e.rank == rank && e.world_size == world && e.local_rank == local &&
          e.tcp_port == port, "%s: got launcher %s rank %d world %d local %d port %d", name, e.launcher, e.rank,
          e.world_size, e.local_rank, e.tcp_port);
}

static void parse_env_child(void *pairs) { set_env((const char *const *)pairs); dist_env_parse(); }

static void expect_env_fatal(const char *name, const char *const *pairs, const char *expect) {
    expect_fatal(name, parse_env_child, (void *)pairs, expect);
}

static void test_launchers(void) {
    const char *none[] = { NULL };
    const char *ompi[] = { "OMPI_COMM_WORLD_RANK=5", "OMPI_COMM_WORLD_SIZE=16", "OMPI_COMM_WORLD_LOCAL_RANK=1",
                           "SLURM_PROCID=0", "SLURM_NTASKS=16", NULL };   // mpirun inside an allocation
    const char *torch[] = { "RANK=3", "WORLD_SIZE=4", "LOCAL_RANK=3", "MASTER_ADDR=node7", "MASTER_PORT=29600", NULL };
    const char *srun[] = { "SLURM_PROCID=9", "SLURM_NTASKS=32", "SLURM_STEP_NUM_TASKS=12", "SLURM_LOCALID=1",
                           "SLURM_JOB_ID=4242", NULL };
    const char *srun_nt[] = { "SLURM_PROCID=2", "SLURM_NTASKS=4", "SLURM_LOCALID=2", "SESSA_TCP_PORT=31000", NULL };
    check_env("no launcher", none, "none", 0, 1, 0, DIST_DEFAULT_PORT);
    check_env("mpirun", ompi, "mpirun", 5, 16, 1, DIST_DEFAULT_PORT);
    check_env("torchrun", torch, "torchrun", 3, 4, 3, 29601);   // torchrun's own store holds MASTER_PORT
    check_env("srun", srun, "srun", 9, 12, 1, DIST_DEFAULT_PORT);
    check_env("srun without step tasks", srun_nt, "srun", 2, 4, 2, 31000);
    set_env(srun);
    DistEnv e = dist_env_parse();
    CHECK(strcmp(e.job, "4242") == 0 && e.timeout_s == DIST_DEFAULT_TIMEOUT, "srun job tag '%s'", e.job);
    set_env(torch);
    e = dist_env_parse();
    CHECK(strcmp(e.master_addr, "node7") == 0 && strcmp(e.job, "29600") == 0, "MASTER_ADDR '%s', job tag '%s'",
          e.master_addr, e.job);
    const char *torch_id[] = { "RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0", "TORCHELASTIC_RUN_ID=my/run 1", NULL };
    set_env(torch_id);
    e = dist_env_parse();
    CHECK(strcmp(e.job, "my_run_1") == 0 && e.timeout_s == DIST_DEFAULT_TIMEOUT, "job tag from the run id: '%s'", e.job);
    const char *timeout[] = { "SESSA_DIST_TIMEOUT=2.5", "TORCHELASTIC_RUN_ID=none", NULL };
    set_env(timeout);
    e = dist_env_parse();
    CHECK(strcmp(e.job, "0") == 0 && e.timeout_s == 2.5, "job tag '%s' (torchrun's 'none' is no tag), timeout %g",
          e.job, e.timeout_s);

    static const char *rank_big[] = { "OMPI_COMM_WORLD_RANK=4", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=0", NULL };
    static const char *no_world[] = { "RANK=1", "LOCAL_RANK=1", NULL };
    static const char *not_int[] = { "RANK=1", "WORLD_SIZE=2x", "LOCAL_RANK=1", NULL };
    static const char *local_big[] = { "RANK=1", "WORLD_SIZE=8", "LOCAL_RANK=2", NULL };
    static const char *no_local[] = { "SLURM_PROCID=1", "SLURM_NTASKS=2", NULL };
    static const char *no_tasks[] = { "SLURM_PROCID=0", "SLURM_LOCALID=0", NULL };
    static const char *world0[] = { "RANK=0", "WORLD_SIZE=0", "LOCAL_RANK=0", NULL };
    static const char *bad_port[] = { "MASTER_ADDR=x", "MASTER_PORT=70000", NULL };
    static const char *port65535[] = { "RANK=0", "WORLD_SIZE=1", "LOCAL_RANK=0", "MASTER_PORT=65535", NULL };
    static const char *bad_timeout[] = { "SESSA_DIST_TIMEOUT=-3", NULL };
    expect_env_fatal("rank >= world", rank_big, "OMPI_COMM_WORLD_RANK='4' is not an integer in [0, 3]");
    expect_env_fatal("RANK without WORLD_SIZE", no_world, "WORLD_SIZE is not set");
    expect_env_fatal("not an integer", not_int, "WORLD_SIZE='2x'");
    expect_env_fatal("local rank > rank", local_big, "LOCAL_RANK='2'");
    expect_env_fatal("srun without SLURM_LOCALID", no_local, "SLURM_LOCALID is not set");
    expect_env_fatal("srun without task count", no_tasks, "SLURM_NTASKS is not set");
    expect_env_fatal("world size 0", world0, "WORLD_SIZE='0'");
    expect_env_fatal("port out of range", bad_port, "MASTER_PORT='70000'");
    expect_env_fatal("torchrun port + 1 out of range", port65535, "SESSA_TCP_PORT");
    expect_env_fatal("bad timeout", bad_timeout, "SESSA_DIST_TIMEOUT='-3'");
}

// ----------------------------------------------------------------------------
// id method

static char tmpdir[64];
static int test_pid;   // names this test's id files, the same in every fork()ed rank

static DistEnv env_of(int rank, int world, const char *addr, int port, double timeout) {
    DistEnv e;
    memset(&e, 0, sizeof(e));
    snprintf(e.launcher, sizeof(e.launcher), "torchrun");
    e.rank = rank; e.world_size = world; e.local_rank = rank;
    snprintf(e.master_addr, sizeof(e.master_addr), "%s", addr);
    e.tcp_port = port;
    snprintf(e.job, sizeof(e.job), "t%d", test_pid);
    e.timeout_s = timeout;
    return e;
}

typedef struct { const char *method; DistEnv env; } MethodCase;
static void method_child(void *arg) { MethodCase *c = (MethodCase *)arg; dist_id_method(c->method, &c->env); }

static void test_id_method(void) {
    DistEnv with_addr = env_of(1, 4, "127.0.0.1", 29500, 1), no_addr = env_of(1, 4, "", 29500, 1);
    DistEnv single = env_of(0, 1, "", 29500, 1);
    char fs[128];
    snprintf(fs, sizeof(fs), "fs:%s", tmpdir);
    CHECK(dist_id_method("auto", &with_addr).kind == DIST_ID_TCP, "auto with MASTER_ADDR is tcp");
    CHECK(dist_id_method(NULL, &single).kind == DIST_ID_NONE, "world size 1 needs no exchange");
    setenv("SESSA_ID_METHOD", fs, 1);   // NULL: the method comes from the environment
    CHECK(dist_id_method(NULL, &with_addr).kind == DIST_ID_FS, "SESSA_ID_METHOD=fs:DIR is used for NULL");
    CHECK(dist_id_method("auto", &with_addr).kind == DIST_ID_TCP, "an explicit method wins over SESSA_ID_METHOD");
    unsetenv("SESSA_ID_METHOD");
    CHECK(dist_id_method("tcp", &single).kind == DIST_ID_NONE, "world size 1 with tcp needs nothing");
    DistIdMethod m = dist_id_method(fs, &no_addr);
    CHECK(m.kind == DIST_ID_FS && strcmp(m.dir, tmpdir) == 0, "fs:DIR keeps DIR ('%s')", m.dir);
    MethodCase auto_none = { "auto", no_addr }, tcp_none = { "tcp", no_addr }, bogus = { "nccl", single };
    MethodCase fs_missing = { "fs:/nonexistent/dir", single }, fs_empty = { "fs:", no_addr };
    expect_fatal("auto finds no way", method_child, &auto_none, "'auto' found no way");
    expect_fatal("tcp without MASTER_ADDR", method_child, &tcp_none, "needs MASTER_ADDR");
    expect_fatal("unknown method (checked at world size 1 too)", method_child, &bogus, "unknown id method 'nccl'");
    expect_fatal("fs dir missing", method_child, &fs_missing, "is not a directory");
    expect_fatal("fs dir empty", method_child, &fs_empty, "empty or too long");
    if (!dist_built_with_mpi()) {
        MethodCase mpi = { "mpi", with_addr };
        expect_fatal("mpi without an MPI build", method_child, &mpi, "needs a build with MPI");
    }
}

// ----------------------------------------------------------------------------
// id exchange with fork()ed ranks

static void make_id(unsigned char *id, unsigned seed) {
    for (int i = 0; i < DIST_ID_BYTES; i++) id[i] = (unsigned char)((i * 131u + seed * 7u + 1u) & 0xff);
}

// world ranks run `exchange`, each in a fork()ed child that exits 0 when it ends up with the id rank 0
// made; rank 0 starts last, so the others also exercise waiting for it. A fatal() in any rank is a
// failed check, not the end of this test program.
static void run_exchange(const char *name, void (*exchange)(unsigned char *, const DistEnv *, const void *),
                         const void *arg, int world, int port) {
    unsigned char sent[DIST_ID_BYTES];
    make_id(sent, (unsigned)world * 1000u + (unsigned)port);
    pid_t pids[16];
    fflush(stdout);
    for (int r = world - 1; r >= 0; r--) {
        pids[r] = fork();
        if (pids[r] == 0) {
            alarm(30);   // a bug that hangs must not hang the test suite
            unsigned char got[DIST_ID_BYTES];
            if (r == 0) memcpy(got, sent, sizeof(got)); else memset(got, 0, sizeof(got));
            DistEnv e = env_of(r, world, "127.0.0.1", port, 20);
            exchange(got, &e, arg);
            _exit(memcmp(got, sent, DIST_ID_BYTES) == 0 ? 0 : 3);
        }
        if (r == 1) usleep(100 * 1000);
    }
    int ok = 0;
    for (int r = 0; r < world; r++) {
        int status;
        waitpid(pids[r], &status, 0);
        ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    CHECK(ok == world, "%s world %d: %d of %d ranks have the id", name, world, ok, world);
}

static void tcp_exchange(unsigned char *id, const DistEnv *e, const void *arg) { (void)arg; dist_id_exchange_tcp(id, e); }

// as tcp_exchange, but rank 1 first connects and sends garbage: rank 0 must drop it and go on
static void tcp_exchange_with_noise(unsigned char *id, const DistEnv *e, const void *arg) {
    if (e->rank == 1) {
        struct sockaddr_in a;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)e->tcp_port);
        for (int tries = 0; tries < 200; tries++) {   // until rank 0 listens
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
                const char junk[12] = "GET / HTTP/";
                send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
                close(fd);
                break;
            }
            close(fd);
            usleep(20 * 1000);
        }
    }
    tcp_exchange(id, e, arg);
}
static void fs_exchange(unsigned char *id, const DistEnv *e, const void *arg) { dist_id_exchange_fs(id, (const char *)arg, e); }

// a port that was free a moment ago (bind to port 0, read what the kernel chose)
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        fatal("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct { int rank, world, port, claimed_world; double timeout; } TcpCase;
static void tcp_child(void *arg) {
    TcpCase *c = (TcpCase *)arg;
    unsigned char id[DIST_ID_BYTES];
    make_id(id, 1);
    DistEnv e = env_of(c->rank, c->world, "127.0.0.1", c->port, c->timeout);
    if (c->claimed_world != c->world) {   // a rank of another launch connects to this rank 0
        if (fork() == 0) {
            DistEnv other = env_of(1, c->claimed_world, "127.0.0.1", c->port, c->timeout);
            dist_id_exchange_tcp(id, &other);
            _exit(0);
        }
    }
    dist_id_exchange_tcp(id, &e);
}

static void test_tcp(void) {
    for (int world = 2; world <= 5; world += 3) run_exchange("tcp", tcp_exchange, NULL, world, free_port());
    run_exchange("tcp with a stray connection", tcp_exchange_with_noise, NULL, 3, free_port());
    TcpCase client_alone = { 1, 2, free_port(), 2, 0.5 }, server_alone = { 0, 3, free_port(), 3, 0.5 };
    TcpCase mismatch = { 0, 2, free_port(), 3, 5 };
    expect_fatal("tcp rank 1 without rank 0", tcp_child, &client_alone, "timed out after 0 s connecting to rank 0");
    expect_fatal("tcp rank 0 without the others", tcp_child, &server_alone, "0 of 2 ranks connected");
    expect_fatal("tcp world size mismatch", tcp_child, &mismatch, "says world size 3 but rank 0 has 2");
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

typedef struct { int rank, world; double timeout; } FsCase;
static void fs_child(void *arg) {
    FsCase *c = (FsCase *)arg;
    unsigned char id[DIST_ID_BYTES];
    DistEnv e = env_of(c->rank, c->world, "", 0, c->timeout);
    dist_id_exchange_fs(id, tmpdir, &e);
}

static void test_fs(void) {
    for (int world = 2; world <= 4; world += 2) {
        run_exchange("fs", fs_exchange, tmpdir, world, 0);
        DistEnv e0 = env_of(0, world, "", 0, 1);
        char path[1200];
        dist_id_path(path, sizeof(path), tmpdir, e0.job);
        CHECK(access(path, F_OK) == 0, "fs: rank 0 wrote %s", path);
        dist_id_fs_remove(tmpdir, &e0);
        CHECK(access(path, F_OK) != 0, "fs: rank 0 removed %s", path);
    }
    FsCase alone = { 1, 2, 0.3 };
    expect_fatal("fs rank 1 without rank 0", fs_child, &alone, "timed out after 0 s waiting for rank 0");
    unsigned char id[DIST_ID_BYTES];
    make_id(id, 2);
    DistEnv writer = env_of(0, 3, "", 0, 1);   // a file of a run with 3 ranks, read by a run with 2
    dist_id_exchange_fs(id, tmpdir, &writer);
    FsCase stale = { 1, 2, 1 };
    expect_fatal("fs stale file of another world size", fs_child, &stale, "written for world size 3");
    dist_id_fs_remove(tmpdir, &writer);
}

// ----------------------------------------------------------------------------
// ZeRO partition: every element exactly once, shards equal, padding < world size

static void test_partition(void) {
    size_t sizes[] = { 1, 5, 7, 8, 64, 997, 1000, 12345 };
    for (int W = 1; W <= 8; W++) {
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            size_t n = sizes[k], P = dist_padded_size(n, W);
            int *count = (int *)callocCheck(P, sizeof(int));
            int ok = P % (size_t)W == 0 && P >= n && P - n < (size_t)W, valid_total = 0;
            for (int r = 0; r < W; r++) {
                ShardInfo s = dist_shard(n, r, W);
                ok &= s.size == P / (size_t)W && s.offset == (size_t)r * s.size && s.valid <= s.size;
                for (size_t i = s.offset; i < s.offset + s.size; i++) count[i]++;
                for (size_t i = s.offset; i < s.offset + s.valid; i++) ok &= i < n;
                valid_total += (int)s.valid;
            }
            for (size_t i = 0; i < P; i++) ok &= count[i] == 1;
            CHECK(ok && valid_total == (int)n, "partition of %zu over %d ranks", n, W);
            free(count);
        }
    }
}

// ranges of gradients cut into pieces, each reduced onto the rank that owns it
static void test_owner_pieces(void) {
    size_t n = 997;
    for (int W = 1; W <= 8; W++) {
        size_t P = dist_padded_size(n, W);
        int ok = 1, pieces = 0;
        for (size_t b0 = 0; b0 < P; b0 += 37) {
            for (size_t len = 1; b0 + len <= P; len += 101) {
                size_t b = b0, end = b0 + len;
                while (b < end) {
                    int owner;
                    size_t stop = dist_owner_piece(b, end, P / (size_t)W, &owner);
                    ShardInfo s = dist_shard(n, owner, W);
                    ok &= owner >= 0 && owner < W && b < stop && b >= s.offset && stop <= s.offset + s.size;
                    ok &= stop == end || stop == s.offset + s.size;   // a piece ends at the range or the shard end
                    b = stop;
                    pieces++;
                }
                ok &= b == end;
            }
        }
        CHECK(ok, "world %d: %d pieces of gradient ranges, each inside its owner's shard", W, pieces);
    }
}

// ----------------------------------------------------------------------------
// checkpoints independent of the world size: AdamW on shards, gathered, equals AdamW on the whole

typedef struct { float *p, *m, *v; } OptState;

// the optimizer's view: one rank's elements [0, n) of p, m, v with gradients g (PyTorch's AdamW)
static void adamw(float *p, float *m, float *v, const float *g, size_t n, int t) {
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        float mhat = m[i] / (1 - powf(b1, (float)t)), vhat = v[i] / (1 - powf(b2, (float)t));
        p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
    }
}

static float fake_grad(size_t i, int t) { return sinf(0.37f * (float)i + (float)t) * 0.5f; }

// one AdamW step t over W shards: each rank takes its shard of the full state (padding zero, as
// multi_gpu_copy_shard_from_host does), steps it, and rank 0 puts the valid parts back (as
// multi_gpu_gather_to_host does). Returns 0 if some padding did not stay zero.
static int sharded_step(OptState *full, size_t n, int W, int t) {
    int pad_ok = 1;
    for (int r = 0; r < W; r++) {
        ShardInfo s = dist_shard(n, r, W);
        float *buf = (float *)callocCheck(4 * s.size, sizeof(float)), *p = buf, *m = buf + s.size,
              *v = buf + 2 * s.size, *g = buf + 3 * s.size;
        memcpy(p, full->p + s.offset, s.valid * sizeof(float));
        memcpy(m, full->m + s.offset, s.valid * sizeof(float));
        memcpy(v, full->v + s.offset, s.valid * sizeof(float));
        for (size_t i = 0; i < s.valid; i++) g[i] = fake_grad(s.offset + i, t);
        adamw(p, m, v, g, s.size, t);
        for (size_t i = s.valid; i < s.size; i++) pad_ok &= p[i] == 0 && m[i] == 0 && v[i] == 0;
        memcpy(full->p + s.offset, p, s.valid * sizeof(float));
        memcpy(full->m + s.offset, m, s.valid * sizeof(float));
        memcpy(full->v + s.offset, v, s.valid * sizeof(float));
        free(buf);
    }
    return pad_ok;
}

static OptState opt_new(size_t n) {
    OptState s = { (float *)callocCheck(n, sizeof(float)), (float *)callocCheck(n, sizeof(float)),
                   (float *)callocCheck(n, sizeof(float)) };
    for (size_t i = 0; i < n; i++) s.p[i] = cosf((float)i);
    return s;
}
static void opt_free(OptState *s) { free(s->p); free(s->m); free(s->v); }
static int opt_equal(const OptState *a, const OptState *b, size_t n) {
    return !memcmp(a->p, b->p, n * 4) && !memcmp(a->m, b->m, n * 4) && !memcmp(a->v, b->v, n * 4);
}

static void test_checkpoint_world_size(void) {
    size_t n = 1001;
    OptState ref = opt_new(n);
    float *g = (float *)mallocCheck(n * sizeof(float));
    for (int t = 1; t <= 2; t++) {   // the unsharded run: 2 steps
        for (size_t i = 0; i < n; i++) g[i] = fake_grad(i, t);
        adamw(ref.p, ref.m, ref.v, g, n, t);
    }
    for (int W1 = 1; W1 <= 8; W1++) {
        int W2 = (W1 * 5) % 8 + 1;   // resume on another world size: 1->6, 2->3, ..., 8->1
        OptState s = opt_new(n);
        int pad_ok = sharded_step(&s, n, W1, 1);   // step 1 on W1 ranks, saved in full
        pad_ok &= sharded_step(&s, n, W2, 2);      // resumed on W2 ranks
        // elementwise math on the same inputs: the sharded run must be bit-identical, tolerance 0
        CHECK(pad_ok && opt_equal(&s, &ref, n), "AdamW state saved at world size %d, resumed at %d", W1, W2);
        opt_free(&s);
    }
    opt_free(&ref);
    free(g);
}

// ----------------------------------------------------------------------------
// data split: each rank's loader, with the rank from its launcher's environment

static void write_positions_shard(const char *path, size_t n) {   // token at position i is i
    int32_t header[SHARD_HEADER_INTS] = { SHARD_MAGIC, 1, (int32_t)n };
    uint16_t *t = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) t[i] = (uint16_t)i;
    FILE *fp = fopenCheck(path, "wb");
    fwriteCheck(header, sizeof(int32_t), SHARD_HEADER_INTS, fp, path);
    fwriteCheck(t, sizeof(uint16_t), n, fp, path);
    fcloseCheck(fp, path);
    free(t);
}

static void test_data_split(void) {
    const size_t B = 2, T = 8, n = 1 + 24 * T;   // 24 rows: divisible by B*W for W = 1..4
    char path[128], pattern[128];
    snprintf(path, sizeof(path), "%s/shard_000.bin", tmpdir);
    snprintf(pattern, sizeof(pattern), "%s/shard_*.bin", tmpdir);
    write_positions_shard(path, n);
    for (int W = 1; W <= 4; W++) {
        int seen[24] = { 0 }, ok = 1;
        for (int r = 0; r < W; r++) {
            char rank[32], world[32], local[32];
            snprintf(rank, sizeof(rank), "RANK=%d", r);
            snprintf(world, sizeof(world), "WORLD_SIZE=%d", W);
            snprintf(local, sizeof(local), "LOCAL_RANK=%d", r);
            const char *pairs[] = { rank, world, local, NULL };
            set_env(pairs);
            DistEnv e = dist_env_parse();
            DataLoader l;
            dataloader_init(&l, pattern, B, T, e.rank, e.world_size, 1, 42, 65536);
            ok &= l.steps_per_epoch == 24 / (B * (size_t)W);
            for (size_t step = 0; step < l.steps_per_epoch; step++) {
                dataloader_next_batch(&l);
                for (size_t b = 0; b < B; b++) {
                    int first = l.inputs[b * T];   // the row's first token = its position = row * T
                    ok &= first % (int)T == 0 && l.targets[b * T] == first + 1;
                    seen[first / (int)T]++;
                }
            }
            dataloader_free(&l);
        }
        for (int row = 0; row < 24; row++) ok &= seen[row] == 1;
        CHECK(ok, "world %d: the ranks' batches are disjoint and cover every row once", W);
    }
    unlink(path);
}

// under mpirun: the launcher's environment, then the id from rank 0 to every rank over MPI_Bcast
static int test_mpi_exchange(void) {
    DistEnv e = dist_env_parse();
    DistIdMethod m = dist_id_method("auto", &e);
    CHECK(strcmp(e.launcher, "mpirun") == 0 && (e.world_size == 1 || m.kind == DIST_ID_MPI),
          "launched by mpirun (%s), auto picks mpi", e.launcher);
    m.kind = DIST_ID_MPI;   // exchange even at world size 1
    unsigned char sent[DIST_ID_BYTES], got[DIST_ID_BYTES];
    make_id(sent, 99);
    memcpy(got, sent, sizeof(got));
    if (e.rank != 0) memset(got, 0, sizeof(got));
    dist_share_id(got, &m, &e);
    CHECK(memcmp(got, sent, DIST_ID_BYTES) == 0, "rank %d of %d got the id over MPI", e.rank, e.world_size);
    dist_finalize();
    printf("rank %d: ", e.rank);
    return tests_report();
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "mpi") == 0) return test_mpi_exchange();
    test_pid = (int)getpid();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_distributed_XXXXXX");
    if (mkdtemp(tmpdir) == NULL) fatal("mkdtemp: %s", strerror(errno));
    test_launchers();
    test_id_method();
    test_tcp();
    test_fs();
    test_partition();
    test_owner_pieces();
    test_checkpoint_world_size();
    test_data_split();
    rmdir(tmpdir);
    return tests_report();
}
