/*
 Launching several processes (one per GPU): who am I, how many are we, and how do we share the
 NCCL unique id. Plain C (no CUDA, no NCCL): the id is just DIST_ID_BYTES bytes, so everything
 here is tested on the CPU by dev/test/test_distributed.c. llmc/zero.cuh builds the NCCL
 communicator on top of it.

 Launchers, detected from the environment in this order (the first one present wins, because an
 mpirun or torchrun started inside a Slurm allocation still sees the allocation's SLURM_* variables):
   mpirun (OpenMPI)  OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
   torchrun          RANK, WORLD_SIZE, LOCAL_RANK (+ MASTER_ADDR, MASTER_PORT)
   srun (Slurm)      SLURM_PROCID, SLURM_STEP_NUM_TASKS (srun sets it) else SLURM_NTASKS, SLURM_LOCALID
   none              world size 1, rank 0: the plain single-GPU path, no communication at all
 A launcher's variables must be complete and consistent (0 <= rank < world, 0 <= local rank <= rank
 ...) or the run stops with an error naming the variable. Note: a bare `sbatch` script that runs the
 trainer without srun has SLURM_PROCID=0 and SLURM_NTASKS=N: it waits for N-1 ranks that never come
 and stops at the id-exchange timeout. Launch with srun.

 NCCL id exchange ("id method"):
   "mpi"     MPI_Bcast from rank 0 (only when built with -DUSE_MPI; MPI_Init happens here)
   "tcp"     rank 0 listens on port P of all its interfaces; the other ranks connect to MASTER_ADDR:P
             and receive the id. P = $SESSA_TCP_PORT if set, else MASTER_PORT (default 29500), plus 1
             under torchrun (whose own rendezvous store already listens on MASTER_PORT).
   "fs:DIR"  rank 0 writes DIR/sessa_nccl_id_<job>.bin atomically (write a temp file, fsync, rename);
             the others poll for it. DIR must be on a filesystem shared by all nodes. <job> is the first
             set of SLURM_JOB_ID, OMPI_MCA_ess_base_jobid, TORCHELASTIC_RUN_ID, MASTER_PORT, else "0".
             Rank 0 removes the file once the communicator is up (all ranks have read it by then); a file
             left by a crashed run with the same <job> must be removed by hand (else NCCL fails to
             connect to the dead rank 0 of that run).
   "auto"    mpi when built with MPI and launched by mpirun; else tcp when MASTER_ADDR is set; else an
             error that lists the choices.
 The trainer passes a method, or NULL: then $SESSA_ID_METHOD when set, else "auto".
 Every wait is bounded: $SESSA_DIST_TIMEOUT seconds (default 300), then a clear error.

 ZeRO partition of a flat vector of n elements over W ranks (shared by the optimizer, the
 gradient reduce-scatter, the parameter all-gather, and checkpoint save/load):
   padded length P = ceil(n / W) * W; rank r owns [r*P/W, (r+1)*P/W); the `valid` elements of that
   range are the ones below n (the last ranks may own padding only). Buffers that take part in
   reduce-scatter / all-gather are allocated with P elements, the padding kept at zero.
*/
#ifndef SESSA_DISTRIBUTED_H
#define SESSA_DISTRIBUTED_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <poll.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#ifdef USE_MPI
#include <mpi.h>
#endif
#include "utils.h"

#define DIST_ID_BYTES 128          // == NCCL_UNIQUE_ID_BYTES (zero.cuh checks it)
#define DIST_ID_MAGIC 20261125     // starts every id file and every tcp message
#define DIST_DEFAULT_PORT 29500
#define DIST_DEFAULT_TIMEOUT 300.0

// ----------------------------------------------------------------------------
// who am I: rank, world size, local rank, from the launcher's environment

typedef struct {
    int rank;               // 0 .. world_size-1
    int world_size;
    int local_rank;         // index of this process on its node: picks the GPU
    char launcher[16];      // "none", "mpirun", "torchrun", "srun"
    char master_addr[256];  // MASTER_ADDR, "" when unset
    int tcp_port;           // port of the tcp id exchange (see the top of this file)
    char job[64];           // tag of the run, names the id file of the fs method
    double timeout_s;       // bound on every wait of the id exchange
} DistEnv;

// strict integer from an environment variable: the whole string, within [lo, hi]
static int dist_env_int(const char *name, int lo, int hi) {
    const char *s = getenv(name);
    if (s == NULL) fatal("environment variable %s is not set", name);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
        fatal("environment variable %s='%s' is not an integer in [%d, %d]", name, s, lo, hi);
    return (int)v;
}

static void dist_env_launcher(DistEnv *e, const char *launcher, const char *rank_var, const char *world_var,
                              const char *local_var) {
    snprintf(e->launcher, sizeof(e->launcher), "%s", launcher);
    e->world_size = dist_env_int(world_var, 1, 1 << 20);
    e->rank = dist_env_int(rank_var, 0, e->world_size - 1);
    e->local_rank = dist_env_int(local_var, 0, e->rank);   // a node's ranks are a subset of all ranks
}

static DistEnv dist_env_parse(void) {
    DistEnv e;
    memset(&e, 0, sizeof(e));
    if (getenv("OMPI_COMM_WORLD_RANK") || getenv("OMPI_COMM_WORLD_SIZE")) {
        dist_env_launcher(&e, "mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK");
    } else if (getenv("RANK") || getenv("WORLD_SIZE")) {
        dist_env_launcher(&e, "torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK");
    } else if (getenv("SLURM_PROCID")) {
        const char *world_var = getenv("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
        dist_env_launcher(&e, "srun", "SLURM_PROCID", world_var, "SLURM_LOCALID");
    } else {
        snprintf(e.launcher, sizeof(e.launcher), "none");
        e.rank = 0; e.world_size = 1; e.local_rank = 0;
    }
    const char *addr = getenv("MASTER_ADDR");
    if (addr != NULL) {
        if (addr[0] == '\0' || strlen(addr) >= sizeof(e.master_addr)) fatal("MASTER_ADDR='%s' is empty or too long", addr);
        snprintf(e.master_addr, sizeof(e.master_addr), "%s", addr);
    }
    int port = getenv("MASTER_PORT") ? dist_env_int("MASTER_PORT", 1, 65535) : DIST_DEFAULT_PORT;
    if (strcmp(e.launcher, "torchrun") == 0) port += 1;
    e.tcp_port = getenv("SESSA_TCP_PORT") ? dist_env_int("SESSA_TCP_PORT", 1, 65535) : port;
    if (e.tcp_port > 65535) fatal("tcp port %d (MASTER_PORT + 1 under torchrun) is out of range: set SESSA_TCP_PORT", e.tcp_port);
    // the run's tag: the first of these that is set (torchrun's default run id "none" is no tag)
    const char *tags[] = { "SLURM_JOB_ID", "OMPI_MCA_ess_base_jobid", "TORCHELASTIC_RUN_ID", "MASTER_PORT" };
    snprintf(e.job, sizeof(e.job), "0");
    for (int i = 0; i < 4; i++) {
        const char *v = getenv(tags[i]);
        if (v != NULL && v[0] != '\0' && strcmp(v, "none") != 0) { snprintf(e.job, sizeof(e.job), "%s", v); break; }
    }
    for (char *c = e.job; *c; c++)   // the tag becomes part of a file name
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '.')) *c = '_';
    e.timeout_s = DIST_DEFAULT_TIMEOUT;
    const char *t = getenv("SESSA_DIST_TIMEOUT");
    if (t != NULL) {
        char *end;
        e.timeout_s = strtod(t, &end);
        if (end == t || *end != '\0' || !(e.timeout_s > 0)) fatal("SESSA_DIST_TIMEOUT='%s' is not a positive number of seconds", t);
    }
    return e;
}

// ----------------------------------------------------------------------------
// which id exchange

typedef enum { DIST_ID_NONE, DIST_ID_MPI, DIST_ID_TCP, DIST_ID_FS } DistIdKind;
typedef struct {
    DistIdKind kind;
    char dir[1024];   // DIST_ID_FS only
} DistIdMethod;

static int dist_built_with_mpi(void) {
#ifdef USE_MPI
    return 1;
#else
    return 0;
#endif
}

// method: "auto", "mpi", "tcp", "fs:DIR", or NULL ($SESSA_ID_METHOD, else "auto"). World size 1 needs no
// exchange: DIST_ID_NONE, but the string is still checked so that a typo fails on a single GPU too.
static DistIdMethod dist_id_method(const char *method, const DistEnv *e) {
    DistIdMethod m;
    memset(&m, 0, sizeof(m));
    if (method == NULL) method = getenv("SESSA_ID_METHOD") ? getenv("SESSA_ID_METHOD") : "auto";
    if (strcmp(method, "auto") == 0) {
        if (dist_built_with_mpi() && strcmp(e->launcher, "mpirun") == 0) m.kind = DIST_ID_MPI;
        else if (e->master_addr[0] != '\0') m.kind = DIST_ID_TCP;
        else if (e->world_size > 1)
            fatal("%d processes (launcher %s) must share the NCCL id, and 'auto' found no way: launch with mpirun "
                  "on a build with USE_MPI=1, or set MASTER_ADDR (and MASTER_PORT) for tcp, or pass fs:DIR with "
                  "DIR on a filesystem shared by all nodes", e->world_size, e->launcher);
    } else if (strcmp(method, "mpi") == 0) {
        if (!dist_built_with_mpi()) fatal("id method 'mpi' needs a build with MPI (make USE_MPI=1); or use tcp or fs:DIR");
        m.kind = DIST_ID_MPI;
    } else if (strcmp(method, "tcp") == 0) {
        if (e->world_size > 1 && e->master_addr[0] == '\0') fatal("id method 'tcp' needs MASTER_ADDR (the host of rank 0)");
        m.kind = DIST_ID_TCP;
    } else if (strncmp(method, "fs:", 3) == 0) {
        const char *dir = method + 3;
        if (dir[0] == '\0' || strlen(dir) >= sizeof(m.dir) - 128) fatal("id method '%s': the directory is empty or too long", method);
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) fatal("id method '%s': '%s' is not a directory", method, dir);
        snprintf(m.dir, sizeof(m.dir), "%s", dir);
        m.kind = DIST_ID_FS;
    } else {
        fatal("unknown id method '%s' (use auto, mpi, tcp or fs:DIR)", method);
    }
    if (e->world_size == 1) m.kind = DIST_ID_NONE;
    return m;
}

// ----------------------------------------------------------------------------
// id exchange through a file on a shared filesystem

static double dist_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void dist_id_path(char *path, size_t n, const char *dir, const char *job) {
    snprintf(path, n, "%s/sessa_nccl_id_%s.bin", dir, job);
}

// file: int32 magic, int32 world size, DIST_ID_BYTES bytes of id
static void dist_id_exchange_fs(unsigned char *id, const char *dir, const DistEnv *e) {
    char path[1200], tmp[1300];
    dist_id_path(path, sizeof(path), dir, e->job);
    int32_t head[2] = { DIST_ID_MAGIC, e->world_size };
    if (e->rank == 0) {
        snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
        FILE *fp = fopenCheck(tmp, "wb");
        fwriteCheck(head, sizeof(int32_t), 2, fp, tmp);
        fwriteCheck(id, 1, DIST_ID_BYTES, fp, tmp);
        if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) fatal("cannot flush '%s': %s", tmp, strerror(errno));
        fcloseCheck(fp, tmp);
        if (rename(tmp, path) != 0) fatal("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        return;
    }
    double start = dist_now();
    for (;;) {
        FILE *fp = fopen(path, "rb");
        if (fp != NULL) {   // rename is atomic: a file that exists is complete
            int32_t got[2];
            size_t n = fread(got, sizeof(int32_t), 2, fp);
            n += fread(id, 1, DIST_ID_BYTES, fp);
            fclose(fp);
            if (n != 2 + DIST_ID_BYTES || got[0] != DIST_ID_MAGIC)
                fatal("'%s' is not an id file written by rank 0 (bad size or magic)", path);
            if (got[1] != e->world_size)
                fatal("'%s' was written for world size %d but this run has %d processes (a stale file of another run? "
                      "remove it)", path, got[1], e->world_size);
            return;
        }
        if (dist_now() - start > e->timeout_s)
            fatal("rank %d timed out after %.0f s waiting for rank 0 to write '%s' (is the directory shared by all "
                  "nodes? did rank 0 start?)", e->rank, e->timeout_s, path);
        usleep(20 * 1000);
    }
}

// rank 0, once every rank has read the id (after the communicator is built)
static void dist_id_fs_remove(const char *dir, const DistEnv *e) {
    char path[1200];
    dist_id_path(path, sizeof(path), dir, e->job);
    if (unlink(path) != 0 && errno != ENOENT) fprintf(stderr, "warning: cannot remove '%s': %s\n", path, strerror(errno));
}

// ----------------------------------------------------------------------------
// id exchange over TCP: rank r>0 sends {magic, rank, world}; rank 0 answers {magic, id}

static void dist_send_all(int fd, const void *buf, size_t n, const char *what) {
    const char *p = (const char *)buf;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) fatal("tcp id exchange: sending %s failed: %s", what, strerror(errno));
        p += k; n -= (size_t)k;
    }
}

// reads n bytes before the deadline; returns 0 when the peer closed or time ran out
static int dist_recv_all(int fd, void *buf, size_t n, double deadline) {
    char *p = (char *)buf;
    while (n > 0) {
        int ms = (int)((deadline - dist_now()) * 1000.0);
        if (ms <= 0) return 0;
        struct pollfd pfd = { fd, POLLIN, 0 };
        int r = poll(&pfd, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0;
        p += k; n -= (size_t)k;
    }
    return 1;
}

static void dist_tcp_serve(const unsigned char *id, const DistEnv *e) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fatal("tcp id exchange: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons((uint16_t)e->tcp_port);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fatal("tcp id exchange: rank 0 cannot listen on port %d: %s (set SESSA_TCP_PORT or MASTER_PORT to a free port)",
              e->tcp_port, strerror(errno));
    if (listen(fd, e->world_size) != 0) fatal("tcp id exchange: listen: %s", strerror(errno));
    char *served = (char *)callocCheck((size_t)e->world_size, 1);
    int n_served = 0;
    double deadline = dist_now() + e->timeout_s;
    while (n_served < e->world_size - 1) {
        int ms = (int)((deadline - dist_now()) * 1000.0);
        struct pollfd pfd = { fd, POLLIN, 0 };
        int r = ms > 0 ? poll(&pfd, 1, ms) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) fatal("tcp id exchange: rank 0 timed out after %.0f s on port %d: %d of %d ranks connected",
                          e->timeout_s, e->tcp_port, n_served, e->world_size - 1);
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        int32_t hello[3];
        // a connection that is not one of our ranks (wrong magic, silent) is dropped, not fatal
        if (!dist_recv_all(c, hello, sizeof(hello), dist_now() + 10.0) || hello[0] != DIST_ID_MAGIC) {
            fprintf(stderr, "warning: tcp id exchange: dropped a connection that is not a sessa rank\n");
            close(c);
            continue;
        }
        if (hello[2] != e->world_size)
            fatal("tcp id exchange: rank %d says world size %d but rank 0 has %d (inconsistent launch)",
                  hello[1], hello[2], e->world_size);
        if (hello[1] < 1 || hello[1] >= e->world_size || served[hello[1]])
            fatal("tcp id exchange: rank %d connected twice or is out of range (world size %d)", hello[1], e->world_size);
        int32_t magic = DIST_ID_MAGIC;
        dist_send_all(c, &magic, sizeof(magic), "the magic");
        dist_send_all(c, id, DIST_ID_BYTES, "the id");
        close(c);
        served[hello[1]] = 1;
        n_served++;
    }
    free(served);
    close(fd);
}

// connect that gives up at the deadline (a blocking connect to an unreachable host can take minutes);
// returns 0 when connected, else -1 with errno set
static int dist_connect(int fd, const struct sockaddr *addr, socklen_t len, double deadline) {
    int flags = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int r = connect(fd, addr, len);
    if (r != 0 && errno == EINPROGRESS) {
        int ms = (int)((deadline - dist_now()) * 1000.0);
        struct pollfd pfd = { fd, POLLOUT, 0 };
        int err = 0;
        socklen_t err_len = sizeof(err);
        if (ms <= 0 || poll(&pfd, 1, ms) <= 0) { errno = ETIMEDOUT; r = -1; }
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 || err != 0) { errno = err; r = -1; }
        else r = 0;
    }
    fcntl(fd, F_SETFL, flags);
    return r;
}

static void dist_tcp_fetch(unsigned char *id, const DistEnv *e) {
    char port[16];
    snprintf(port, sizeof(port), "%d", e->tcp_port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(e->master_addr, port, &hints, &res);
    if (gai != 0) fatal("tcp id exchange: cannot resolve MASTER_ADDR '%s': %s", e->master_addr, gai_strerror(gai));
    double deadline = dist_now() + e->timeout_s;
    for (;;) {   // rank 0 may not listen yet: retry until the deadline
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) fatal("tcp id exchange: socket: %s", strerror(errno));
        if (dist_connect(fd, res->ai_addr, res->ai_addrlen, deadline) == 0) {
            int32_t hello[3] = { DIST_ID_MAGIC, e->rank, e->world_size };
            int32_t magic = 0;
            dist_send_all(fd, hello, sizeof(hello), "hello");
            if (!dist_recv_all(fd, &magic, sizeof(magic), deadline) || magic != DIST_ID_MAGIC ||
                !dist_recv_all(fd, id, DIST_ID_BYTES, deadline))
                fatal("tcp id exchange: rank %d got no id from %s:%d (not rank 0 of this run, or it stopped)",
                      e->rank, e->master_addr, e->tcp_port);
            close(fd);
            freeaddrinfo(res);
            return;
        }
        int err = errno;
        close(fd);
        if (dist_now() > deadline)
            fatal("tcp id exchange: rank %d timed out after %.0f s connecting to rank 0 at %s:%d (last error: %s)",
                  e->rank, e->timeout_s, e->master_addr, e->tcp_port, strerror(err));
        usleep(50 * 1000);
    }
}

static void dist_id_exchange_tcp(unsigned char *id, const DistEnv *e) {
    if (e->rank == 0) dist_tcp_serve(id, e);
    else dist_tcp_fetch(id, e);
}

// ----------------------------------------------------------------------------
// MPI (only in a USE_MPI build): initialised by the mpi id exchange, finalised by dist_finalize

static void dist_id_exchange_mpi(unsigned char *id, const DistEnv *e) {
#ifdef USE_MPI
    int initialized = 0, rank = 0, size = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init(NULL, NULL) != MPI_SUCCESS) fatal("MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != e->rank || size != e->world_size)
        fatal("MPI says rank %d of %d but the %s environment says rank %d of %d", rank, size, e->launcher,
              e->rank, e->world_size);
    if (MPI_Bcast(id, DIST_ID_BYTES, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) fatal("MPI_Bcast of the NCCL id failed");
#else
    (void)id; (void)e;
    fatal("id method 'mpi' needs a build with MPI (make USE_MPI=1)");
#endif
}

// rank 0 passes the id it made; the others receive it. Nothing happens for DIST_ID_NONE.
static void dist_share_id(unsigned char *id, const DistIdMethod *m, const DistEnv *e) {
    switch (m->kind) {
        case DIST_ID_NONE: break;
        case DIST_ID_MPI: dist_id_exchange_mpi(id, e); break;
        case DIST_ID_TCP: dist_id_exchange_tcp(id, e); break;
        case DIST_ID_FS: dist_id_exchange_fs(id, m->dir, e); break;
    }
}

static void dist_finalize(void) {
#ifdef USE_MPI
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Finalize();
#endif
}

// ----------------------------------------------------------------------------
// ZeRO partition of a flat vector (see the top of this file)

typedef struct {
    size_t offset;   // first element this rank owns
    size_t size;     // elements it owns, padding included: the same on every rank (P / W)
    size_t valid;    // of those, the ones below n (real parameters); the rest is padding
} ShardInfo;

static size_t dist_padded_size(size_t n, int world_size) {
    return (n + (size_t)world_size - 1) / (size_t)world_size * (size_t)world_size;
}

static ShardInfo dist_shard(size_t n, int rank, int world_size) {
    if (world_size < 1 || rank < 0 || rank >= world_size) fatal("bad shard request: rank %d of %d", rank, world_size);
    ShardInfo s;
    s.size = dist_padded_size(n, world_size) / (size_t)world_size;
    s.offset = (size_t)rank * s.size;
    s.valid = s.offset >= n ? 0 : (n - s.offset < s.size ? n - s.offset : s.size);
    return s;
}

// the first piece [b, stop) of the range [b, end) that lies in one rank's shard (shards of shard_size
// elements, rank r owning [r*shard_size, (r+1)*shard_size)); returns stop, sets *owner. Reducing a range of
// gradients onto the ranks that own it walks it piece by piece (llmc/zero.cuh).
static size_t dist_owner_piece(size_t b, size_t end, size_t shard_size, int *owner) {
    *owner = (int)(b / shard_size);
    size_t shard_end = (size_t)(*owner + 1) * shard_size;
    return shard_end < end ? shard_end : end;
}

#endif // SESSA_DISTRIBUTED_H
