/* c_uring_echo_server - the io_uring limit: a minimal, honest, hand-written io_uring echo server
 * in C (liburing).
 *
 *   c_uring_echo_server [--host H] [--port P] [--backlog N] [--buffers N] [--buffer-size B]
 *                       [--stats]
 *
 * Same command line and the same first line of output as c_echo_server and examples/echo_server
 * (`listening on HOST:PORT`, flushed), so the benchmark driver treats all of them alike;
 * --buffers (default 1024, a power of two), --buffer-size (default 16384) and --stats (loop
 * iterations, completions, recvs, sends and short sends, printed to stderr at exit) are its own.
 * SIGINT/SIGTERM end it with status 0.
 *
 * Why it is the limit: it is what an io_uring event loop costs with nothing in between the loop
 * and the kernel, using the features that take work out of the loop:
 *   - one ring, set up with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (completions
 *     run only when the loop asks for them, on its own thread), or without those flags when the
 *     kernel refuses them (EINVAL);
 *   - one multishot accept on the listening socket: one request, a completion per connection;
 *   - one multishot recv per connection into a ring of provided buffers (--buffers of 16 KiB,
 *     shared by every connection; enough by default for each of 1000 connections to have one
 *     in use): the kernel picks the buffer, and the request stays armed, so a
 *     message costs no submission to read it. When a recv completion comes without
 *     IORING_CQE_F_MORE the request has ended (ENOBUFS when every buffer is in use, or the
 *     kernel's own reasons) and is armed again: at once after data, once buffers are back after
 *     ENOBUFS;
 *   - the echo is sent straight from the buffer the data arrived in (no copy). A connection keeps
 *     at most one send in flight: what arrives meanwhile is queued behind it in arrival order,
 *     and a short send resubmits the rest. The buffer goes back to the ring when its send is
 *     complete;
 *   - recv gives 0 or an error: the connection closes once its queued echoes are out (a send
 *     error drops them and shuts the socket down, which ends its recv);
 *   - one io_uring_submit_and_wait per loop iteration: it submits everything the previous batch
 *     of completions asked for and waits for the next batch, in one system call.
 * Like c_echo_server it sets no TCP_NODELAY on accepted sockets.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER_GROUP 0
#define SQ_ENTRIES 2048
#define CQ_ENTRIES 16384

/* user_data: what completed (top byte) and on which fd (low 32 bits). */
enum op { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };
#define USER_DATA(op, fd) (((uint64_t)(op) << 56) | (uint32_t)(fd))

struct conn {
    int32_t head;         /* queued echoes: a list of buffer ids, head first; -1 when empty */
    int32_t tail;
    uint32_t sent;        /* bytes of the head buffer already sent */
    uint8_t open;         /* a connection lives on this fd */
    uint8_t recv_armed;   /* the multishot recv has not ended */
    uint8_t send_busy;    /* a send of the head buffer is in flight */
    uint8_t eof;          /* recv gave 0 or an error: close when the echoes are out */
    uint8_t failed;       /* a send failed: close as soon as nothing is in flight */
    uint8_t starved;      /* recv ended with ENOBUFS: on the starved list */
};

static struct io_uring ring;
static struct io_uring_buf_ring *buf_ring;
static unsigned char *buffers;    /* n_buffers * buffer_size */
static unsigned buffer_size = 16 * 1024;
static unsigned n_buffers = 1024; /* a power of two */
static uint32_t *buf_len;         /* per buffer id: bytes received in it */
static int32_t *buf_next;         /* per buffer id: the next in its connection's queue */
static unsigned buffers_free;     /* in the ring, or about to be given back to it */
static unsigned buffers_returned; /* added to the ring since the last advance */
static int listen_fd;
static struct conn *conns; /* indexed by fd */
static size_t conns_size;
static int *starved; /* fds whose recv ended with ENOBUFS */
static size_t starved_count, starved_cap;
static volatile sig_atomic_t stop_requested;
static int print_stats; /* --stats: counts printed to stderr at exit */
static struct {
    uint64_t loops, cqes, recvs, recv_bytes, sends, short_sends, rearms, enobufs;
} stats;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void fail(const char *what, int err) {
    fprintf(stderr, "c_uring_echo_server: %s: %s\n", what, strerror(err));
    exit(1);
}

/* A free SQE; when the submission queue is full, submits what is in it first (no wait). */
static struct io_uring_sqe *get_sqe(void) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    while (sqe == NULL) {
        int r = io_uring_submit(&ring);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            fail("io_uring_submit", -r);
        }
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void arm_accept(void) {
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, USER_DATA(OP_ACCEPT, listen_fd));
}

static void arm_recv(int fd) {
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUFFER_GROUP;
    io_uring_sqe_set_data64(sqe, USER_DATA(OP_RECV, fd));
    conns[fd].recv_armed = 1;
}

static void start_send(int fd) {
    struct conn *c = &conns[fd];
    const int32_t bid = c->head;
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_send(sqe, fd, buffers + (size_t)bid * buffer_size + c->sent,
                       buf_len[bid] - c->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, USER_DATA(OP_SEND, fd));
    c->send_busy = 1;
}

/* Gives a buffer back to the ring; the kernel sees it at the next advance (before a submit). */
static void return_buffer(int32_t bid) {
    io_uring_buf_ring_add(buf_ring, buffers + (size_t)bid * buffer_size, buffer_size,
                          (unsigned short)bid, io_uring_buf_ring_mask(n_buffers),
                          (int)buffers_returned);
    buffers_returned++;
    buffers_free++;
}

static void drop_queue(struct conn *c) {
    while (c->head >= 0) {
        int32_t bid = c->head;
        c->head = buf_next[bid];
        return_buffer(bid);
    }
    c->tail = -1;
    c->sent = 0;
}

/* Closes the connection once it is done and no request of its is in flight, so that its fd
 * cannot be reused while a completion for it may still come. */
static void maybe_close(int fd) {
    struct conn *c = &conns[fd];
    if (!(c->eof || c->failed) || c->recv_armed || c->send_busy || c->starved) {
        return;
    }
    drop_queue(c); /* empty unless a send failed */
    c->open = 0;
    close(fd);
}

static void grow_conns(int fd) {
    size_t size = conns_size;
    while (size <= (size_t)fd) {
        size *= 2;
    }
    struct conn *grown = realloc(conns, size * sizeof *conns);
    if (grown == NULL) {
        fail("realloc", ENOMEM);
    }
    memset(grown + conns_size, 0, (size - conns_size) * sizeof *conns);
    conns = grown;
    conns_size = size;
}

static void on_accept(const struct io_uring_cqe *cqe) {
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        arm_accept(); /* the multishot accept ended: arm it again */
    }
    if (cqe->res < 0) {
        return; /* ECONNABORTED, EMFILE...: the next connection may fare better */
    }
    const int fd = cqe->res;
    if ((size_t)fd >= conns_size) {
        grow_conns(fd);
    }
    struct conn *c = &conns[fd];
    memset(c, 0, sizeof *c);
    c->head = c->tail = -1;
    c->open = 1;
    arm_recv(fd);
}

static void on_recv(int fd, const struct io_uring_cqe *cqe) {
    struct conn *c = &conns[fd];
    const int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more) {
        c->recv_armed = 0;
    }
    if (cqe->res > 0) {
        const int32_t bid = (int32_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        buffers_free--;
        stats.recvs++;
        stats.recv_bytes += (uint64_t)cqe->res;
        if (c->failed) {
            return_buffer(bid); /* nowhere to echo it */
        } else {
            buf_len[bid] = (uint32_t)cqe->res;
            buf_next[bid] = -1;
            if (c->tail >= 0) {
                buf_next[c->tail] = bid;
            } else {
                c->head = bid;
            }
            c->tail = bid;
            if (!c->send_busy) {
                start_send(fd);
            }
        }
        if (!more && !c->failed) {
            stats.rearms++;
            arm_recv(fd);
        }
    } else if (cqe->res == -ENOBUFS) {
        stats.enobufs++;
        if (!c->failed) { /* every buffer is in use: armed again once some are back */
            c->starved = 1;
            if (starved_count == starved_cap) {
                starved_cap = starved_cap ? starved_cap * 2 : 64;
                starved = realloc(starved, starved_cap * sizeof *starved);
                if (starved == NULL) {
                    fail("realloc", ENOMEM);
                }
            }
            starved[starved_count++] = fd;
        }
    } else {
        c->eof = 1; /* 0: the client is done sending; < 0: an error */
    }
    maybe_close(fd);
}

static void on_send(int fd, const struct io_uring_cqe *cqe) {
    struct conn *c = &conns[fd];
    c->send_busy = 0;
    stats.sends++;
    if (cqe->res <= 0) {
        c->failed = 1;
        drop_queue(c);
        if (c->recv_armed) {
            shutdown(fd, SHUT_RDWR); /* its recv completes with 0 and ends */
        }
        maybe_close(fd);
        return;
    }
    const int32_t bid = c->head;
    c->sent += (uint32_t)cqe->res;
    if (c->sent < buf_len[bid]) {
        stats.short_sends++;
        start_send(fd); /* a short send: the rest, before anything queued behind it */
        return;
    }
    c->head = buf_next[bid];
    if (c->head < 0) {
        c->tail = -1;
    }
    c->sent = 0;
    return_buffer(bid);
    if (c->head >= 0) {
        start_send(fd);
    }
    maybe_close(fd);
}

/* Arms the recv of the connections that ran out of buffers, once there are buffers again. */
static void rearm_starved(void) {
    if (starved_count == 0 || buffers_free == 0) {
        return;
    }
    size_t n = starved_count;
    starved_count = 0; /* arm_recv cannot add to the list */
    for (size_t i = 0; i < n; ++i) {
        const int fd = starved[i];
        struct conn *c = &conns[fd];
        c->starved = 0;
        if (c->failed || c->eof) {
            maybe_close(fd);
        } else {
            arm_recv(fd);
        }
    }
}

static long parse_number(const char *name, const char *text, long min, long max) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
        fprintf(stderr, "c_uring_echo_server: invalid value '%s' for %s\n", text, name);
        exit(2);
    }
    return v;
}

static void setup_ring(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    params.cq_entries = CQ_ENTRIES;
    int r = io_uring_queue_init_params(SQ_ENTRIES, &ring, &params);
    if (r == -EINVAL) {
        fprintf(stderr, "c_uring_echo_server: note: the kernel refuses SINGLE_ISSUER | "
                        "DEFER_TASKRUN: a plain ring\n");
        memset(&params, 0, sizeof params);
        params.flags = IORING_SETUP_CQSIZE;
        params.cq_entries = CQ_ENTRIES;
        r = io_uring_queue_init_params(SQ_ENTRIES, &ring, &params);
    }
    if (r < 0) {
        fail("io_uring_queue_init_params", -r);
    }

    /* The provided-buffer ring: n_buffers entries, page-aligned, registered as group 0. */
    const size_t ring_bytes = (size_t)n_buffers * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        fail("mmap", errno);
    }
    buf_ring = mem;
    io_uring_buf_ring_init(buf_ring);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)mem;
    reg.ring_entries = n_buffers;
    reg.bgid = BUFFER_GROUP;
    r = io_uring_register_buf_ring(&ring, &reg, 0);
    if (r < 0) {
        fail("io_uring_register_buf_ring", -r);
    }
    buffers = mmap(NULL, (size_t)n_buffers * buffer_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    buf_len = calloc(n_buffers, sizeof *buf_len);
    buf_next = calloc(n_buffers, sizeof *buf_next);
    if (buffers == MAP_FAILED || buf_len == NULL || buf_next == NULL) {
        fail("buffers", ENOMEM);
    }
    for (unsigned bid = 0; bid < n_buffers; ++bid) {
        return_buffer((int32_t)bid); /* all of them free: buffers_free = n_buffers */
    }
    io_uring_buf_ring_advance(buf_ring, (int)buffers_returned);
    buffers_returned = 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 5001, backlog = SOMAXCONN;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--help") == 0) {
            puts("usage: c_uring_echo_server [--host H] [--port P] [--backlog N] [--buffers N] "
                 "[--buffer-size B] [--stats]");
            return 0;
        }
        if (strcmp(argv[i], "--stats") == 0) {
            print_stats = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "c_uring_echo_server: '%s' needs a value or is unknown\n", argv[i]);
            return 2;
        }
        if (strcmp(argv[i], "--host") == 0) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0) {
            port = parse_number("--port", argv[++i], 0, 65535);
        } else if (strcmp(argv[i], "--backlog") == 0) {
            backlog = parse_number("--backlog", argv[++i], 1, 1L << 30);
        } else if (strcmp(argv[i], "--buffers") == 0) {
            n_buffers = (unsigned)parse_number("--buffers", argv[++i], 1, 32768);
            if (n_buffers & (n_buffers - 1)) {
                fprintf(stderr, "c_uring_echo_server: --buffers must be a power of two\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--buffer-size") == 0) {
            buffer_size = (unsigned)parse_number("--buffer-size", argv[++i], 1, 1L << 24);
        } else {
            fprintf(stderr, "c_uring_echo_server: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: io_uring_enter returns EINTR and we exit */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    socklen_t addr_len;
    int v6 = strchr(host, ':') != NULL;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
            fprintf(stderr, "c_uring_echo_server: invalid --host '%s'\n", host);
            return 2;
        }
        addr_len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&addr;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            fprintf(stderr, "c_uring_echo_server: invalid --host '%s'\n", host);
            return 2;
        }
        addr_len = sizeof *a;
    }

    listen_fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) {
        fail("socket", errno);
    }
    int on = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(listen_fd, (struct sockaddr *)&addr, addr_len) < 0) {
        fail("bind", errno);
    }
    if (listen(listen_fd, (int)backlog) < 0) {
        fail("listen", errno);
    }
    if (getsockname(listen_fd, (struct sockaddr *)&addr, &addr_len) < 0) {
        fail("getsockname", errno);
    }

    setup_ring();
    conns_size = 1024;
    conns = calloc(conns_size, sizeof *conns);
    if (conns == NULL) {
        fail("calloc", ENOMEM);
    }
    arm_accept();

    uint16_t bound = v6 ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                        : ntohs(((struct sockaddr_in *)&addr)->sin_port);
    printf(v6 ? "listening on [%s]:%u\n" : "listening on %s:%u\n", host, (unsigned)bound);
    fflush(stdout);

    while (!stop_requested) {
        /* What the last batch gave back and asked for, then the next batch: one system call. */
        rearm_starved();
        if (buffers_returned) {
            io_uring_buf_ring_advance(buf_ring, (int)buffers_returned);
            buffers_returned = 0;
        }
        int r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            fail("io_uring_submit_and_wait", -r);
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        stats.loops++;
        io_uring_for_each_cqe(&ring, head, cqe) {
            ++seen;
            const uint64_t data = io_uring_cqe_get_data64(cqe);
            const int fd = (int)(uint32_t)data;
            switch ((enum op)(data >> 56)) {
            case OP_ACCEPT: on_accept(cqe); break;
            case OP_RECV: on_recv(fd, cqe); break;
            case OP_SEND: on_send(fd, cqe); break;
            }
        }
        io_uring_cq_advance(&ring, seen);
        stats.cqes += seen;
    }
    if (print_stats) {
        fprintf(stderr,
                "c_uring_echo_server: %llu loop iterations, %llu completions (%.2f per iteration): "
                "%llu recvs (%.0f B each), %llu sends (%llu short), %llu recv re-armed after "
                "data, %llu ENOBUFS\n",
                (unsigned long long)stats.loops, (unsigned long long)stats.cqes,
                stats.loops ? (double)stats.cqes / (double)stats.loops : 0.0,
                (unsigned long long)stats.recvs,
                stats.recvs ? (double)stats.recv_bytes / (double)stats.recvs : 0.0,
                (unsigned long long)stats.sends, (unsigned long long)stats.short_sends,
                (unsigned long long)stats.rearms, (unsigned long long)stats.enobufs);
    }
    for (size_t fd = 0; fd < conns_size; ++fd) {
        if (conns[fd].open) {
            close((int)fd);
        }
    }
    io_uring_queue_exit(&ring);
    close(listen_fd);
    free(conns);
    free(starved);
    return 0;
}
