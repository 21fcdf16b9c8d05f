/* echo_load - a closed-loop load generator for TCP echo servers.
 *
 *   echo_load --port P [--host H] [--conns N] [--size S] [--pipeline K]
 *             [--duration SEC] [--warmup SEC] [--server-pid PID] [--json]
 *             [--window-fifo CTL[,ACK]] [--tls]
 *
 * --tls (when built with OpenSSL: ECHO_LOAD_TLS) speaks TLS on every connection: OpenSSL on the
 * fd (SSL_set_fd), the handshake done while connecting (before the warm-up), the server's
 * certificate NOT verified (this measures; it trusts the server it was pointed at). Messages are
 * SSL_write'n and SSL_read as they are sent and received in plain mode.
 *
 * Opens N connections (all of them before the warm-up starts), keeps K messages of S bytes in
 * flight on each, and checks every byte that comes back. It reports messages per second, MB/s of
 * echoed payload, and the latency of each message (from the moment it was put in flight to the
 * moment its last byte came back) as p50/p99/p99.9, measured after the warm-up only. With
 * --server-pid it also reads the server's CPU time (user + system, all threads) at the start and
 * the end of the measured window and reports it per message: that figure stays meaningful when
 * this generator is the bottleneck. It reads /proc/PID/task/TID/schedstat (ns resolution) where
 * the kernel has it, else utime+stime from /proc/PID/stat (clock ticks, 10 ms); the JSON says
 * which ("server_cpu_source") and gives the utime+stime figure too.
 *
 * With --window-fifo CTL[,ACK] it tells another program when the measured window starts and ends:
 * it writes "enable\n" to the FIFO CTL as the window starts and "disable\n" as it ends, and with
 * ACK waits (at most 10 s) for an answer containing "ack" on that FIFO after each, before it counts
 * messages. That is the protocol of `perf stat --control fifo:CTL,ACK -D -1`, so perf counts the
 * server's events over the same window as the messages reported (bench/count_syscalls.sh).
 *
 * Exit status: 0 on success; 1 if a byte differs, the server closes a connection, sends more than
 * it was sent, or an error occurs; 2 on a bad command line.
 *
 * How it stays out of the way:
 *   - one thread, one epoll set (level-triggered), non-blocking sockets, TCP_NODELAY;
 *   - no allocation after start-up: every connection sends straight out of one shared pattern
 *     buffer, and every recv lands in one shared 256 KiB buffer;
 *   - the whole window of K messages goes out in one send(); a partial send waits for EPOLLOUT;
 *   - verification needs no copy: connection c's byte stream is the pattern buffer read from
 *     offset start(c), and the pattern is laid out twice over (so any window is contiguous), so
 *     each recv is checked with one memcmp against the pattern;
 *   - latencies go into a log-linear histogram (64 sub-buckets per power of two, ~1.6% error),
 *     timestamps into a ring of K per connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef ECHO_LOAD_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
static SSL_CTX *tls_context; /* non-NULL with --tls */
#endif

#define PATTERN_PERIOD 65521u /* a prime: a slipped or repeated chunk never lines up again */
#define RECV_BUFFER (256u * 1024u)
#define MAX_EVENTS 1024
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB * 40u)

struct conn {
    long index;
    int fd;
    int want_out;          /* a partial send is pending: waiting for EPOLLOUT */
    uint32_t start;        /* where this connection's stream starts in the pattern */
    uint64_t sent;         /* bytes sent so far */
    uint64_t received;     /* bytes received and verified so far */
    uint64_t queued_msgs;  /* messages put in flight so far (the stream is queued_msgs * size) */
    uint64_t done_msgs;    /* messages echoed completely */
    uint64_t done_at_warm; /* done_msgs when the measured window began */
    uint64_t *stamps;      /* ring of `pipeline` send times (ns) */
#ifdef ECHO_LOAD_TLS
    SSL *ssl;              /* with --tls */
#endif
};

static struct {
    const char *host;
    int port;
    long conns;
    long size;
    long pipeline;
    double duration;
    double warmup;
    long server_pid;
    int json;
    double connect_timeout;
    const char *window_fifo;
} opt = {"127.0.0.1", -1, 1, 64, 1, 5.0, 1.0, 0, 0, 5.0, NULL};

static unsigned char *pattern; /* PATTERN_PERIOD bytes, then repeated for `span` more */
static unsigned char *recv_buffer;
static uint64_t histogram[HIST_BUCKETS];
static uint64_t hist_count;
static uint64_t hist_max;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("echo_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- latency histogram ------------------------------------------------------------------- */

static unsigned hist_index(uint64_t v) {
    if (v < HIST_SUB) {
        return (unsigned)v;
    }
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    unsigned top = (unsigned)(v >> (e - HIST_SUB_BITS)); /* in [HIST_SUB, 2*HIST_SUB) */
    unsigned i = (e - HIST_SUB_BITS + 1u) * HIST_SUB + (top - HIST_SUB);
    return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1u;
}

/* The middle of bucket i, in ns. */
static double hist_value(unsigned i) {
    if (i < HIST_SUB) {
        return (double)i;
    }
    unsigned e = i / HIST_SUB + HIST_SUB_BITS - 1u;
    uint64_t top = i % HIST_SUB + HIST_SUB;
    uint64_t width = (uint64_t)1 << (e - HIST_SUB_BITS);
    return (double)(top << (e - HIST_SUB_BITS)) + (double)width / 2.0;
}

static void hist_add(uint64_t v) {
    histogram[hist_index(v)]++;
    hist_count++;
    if (v > hist_max) {
        hist_max = v;
    }
}

static double hist_percentile(double p) {
    if (hist_count == 0) {
        return 0.0;
    }
    uint64_t rank = (uint64_t)(p * (double)hist_count + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; ++i) {
        seen += histogram[i];
        if (seen >= rank) {
            const double v = hist_value(i);
            return v < (double)hist_max ? v : (double)hist_max;
        }
    }
    return (double)hist_max;
}

/* ---- the server's CPU time ---------------------------------------------------------------- */

/* utime + stime of the whole process, in ns (clock-tick resolution: 10 ms on most systems). */
static int64_t process_cpu_ns(long pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    char *p = strrchr(line, ')'); /* the command name may contain spaces and parentheses */
    if (p == NULL) {
        return -1;
    }
    unsigned long long utime = 0, stime = 0;
    /* after ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
        2) {
        return -1;
    }
    long hz = sysconf(_SC_CLK_TCK);
    return (int64_t)((utime + stime) * (1000000000ull / (unsigned long long)hz));
}

/* Time on CPU of all the process's threads, in ns, from /proc/PID/task/TID/schedstat (the
 * scheduler's own sum_exec_runtime: user + system time at ns resolution), or -1. */
static int64_t process_sched_ns(long pid) {
    char path[96];
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *dir = opendir(path);
    if (dir == NULL) {
        return -1;
    }
    int64_t total = 0;
    int found = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') {
            continue;
        }
        snprintf(path, sizeof path, "/proc/%ld/task/%.20s/schedstat", pid, entry->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        unsigned long long ns = 0;
        if (fscanf(f, "%llu", &ns) == 1) {
            total += (int64_t)ns;
            found = 1;
        }
        fclose(f);
    }
    closedir(dir);
    return found ? total : -1;
}

/* ---- command line --------------------------------------------------------------------------- */

static void usage(FILE *out) {
    fprintf(out,
            "usage: echo_load --port P [--host H] [--conns N] [--size S] [--pipeline K]\n"
            "                 [--duration SEC] [--warmup SEC] [--server-pid PID] [--json]\n"
            "\n"
            "Keeps K messages of S bytes in flight on each of N connections to an echo server,\n"
            "verifies every echoed byte, and reports msgs/s, MB/s and latency percentiles.\n"
            "\n"
            "  --host H          numeric IPv4/IPv6 address (default 127.0.0.1)\n"
            "  --port P          TCP port (required)\n"
            "  --conns N         connections (default 1)\n"
            "  --size S          bytes per message (default 64)\n"
            "  --pipeline K      messages in flight per connection (default 1)\n"
            "  --duration SEC    measured window (default 5)\n"
            "  --warmup SEC      unmeasured time before it (default 1)\n"
            "  --server-pid PID  also report that process's CPU time per message\n"
            "  --json            one JSON object on stdout instead of text\n"
            "  --window-fifo CTL[,ACK]  write enable/disable to the FIFO CTL at the start/end of\n"
            "                    the measured window; with ACK, wait for \"ack\" on it after each\n"
            "                    (perf stat --control's protocol)\n");
}

static long parse_long(const char *name, const char *text, long min, long max) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "echo_load: invalid value '%s' for %s (expected %ld..%ld)\n", text, name,
                min, max);
        exit(2);
    }
    return v;
}

static double parse_seconds(const char *name, const char *text) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0.0) || v > 86400.0) {
        fprintf(stderr, "echo_load: invalid value '%s' for %s (expected seconds)\n", text, name);
        exit(2);
    }
    return v;
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--json") == 0) {
            opt.json = 1;
            continue;
        }
        if (strcmp(a, "--tls") == 0) {
#ifdef ECHO_LOAD_TLS
            tls_context = SSL_CTX_new(TLS_client_method());
            if (tls_context == NULL) {
                die("SSL_CTX_new failed");
            }
            SSL_CTX_set_verify(tls_context, SSL_VERIFY_NONE, NULL); /* measuring, not trusting */
            SSL_CTX_set_mode(tls_context, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
            continue;
#else
            fprintf(stderr, "echo_load: --tls: built without OpenSSL\n");
            exit(2);
#endif
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "echo_load: '%s' needs a value or is unknown\n", a);
            usage(stderr);
            exit(2);
        }
        const char *v = argv[++i];
        if (strcmp(a, "--host") == 0) {
            opt.host = v;
        } else if (strcmp(a, "--port") == 0) {
            opt.port = (int)parse_long(a, v, 1, 65535);
        } else if (strcmp(a, "--conns") == 0) {
            opt.conns = parse_long(a, v, 1, 1000000);
        } else if (strcmp(a, "--size") == 0) {
            opt.size = parse_long(a, v, 1, 16L * 1024 * 1024);
        } else if (strcmp(a, "--pipeline") == 0) {
            opt.pipeline = parse_long(a, v, 1, 1024);
        } else if (strcmp(a, "--duration") == 0) {
            opt.duration = parse_seconds(a, v);
        } else if (strcmp(a, "--warmup") == 0) {
            opt.warmup = parse_seconds(a, v);
        } else if (strcmp(a, "--server-pid") == 0) {
            opt.server_pid = parse_long(a, v, 1, 1L << 30);
        } else if (strcmp(a, "--window-fifo") == 0) {
            opt.window_fifo = v;
        } else {
            fprintf(stderr, "echo_load: unknown option '%s'\n", a);
            usage(stderr);
            exit(2);
        }
    }
    if (opt.port < 0) {
        fprintf(stderr, "echo_load: --port is required\n");
        usage(stderr);
        exit(2);
    }
    if (opt.duration <= 0.0) {
        fprintf(stderr, "echo_load: --duration must be positive\n");
        exit(2);
    }
}

/* ---- the window's control FIFOs (--window-fifo) ---------------------------------------------- */

static int window_ctl_fd = -1, window_ack_fd = -1;

static void window_open(void) {
    if (opt.window_fifo == NULL) {
        return;
    }
    char ctl[4096];
    snprintf(ctl, sizeof ctl, "%s", opt.window_fifo);
    char *ack = strchr(ctl, ',');
    if (ack != NULL) {
        *ack++ = '\0';
    }
    /* Blocks until the other side has CTL open for reading. */
    window_ctl_fd = open(ctl, O_WRONLY | O_CLOEXEC);
    if (window_ctl_fd < 0) {
        die("--window-fifo: %s: %s", ctl, strerror(errno));
    }
    if (ack != NULL && *ack != '\0') {
        window_ack_fd = open(ack, O_RDWR | O_CLOEXEC); /* O_RDWR: a FIFO opens without waiting */
        if (window_ack_fd < 0) {
            die("--window-fifo: %s: %s", ack, strerror(errno));
        }
    }
}

/* Writes a command to CTL and waits for its acknowledgement on ACK, if there is one. */
static void window_command(const char *command) {
    if (window_ctl_fd < 0) {
        return;
    }
    const size_t len = strlen(command);
    if (write(window_ctl_fd, command, len) != (ssize_t)len) {
        die("--window-fifo: write: %s", strerror(errno));
    }
    if (window_ack_fd < 0) {
        return;
    }
    struct pollfd p = {window_ack_fd, POLLIN, 0};
    int r;
    do {
        r = poll(&p, 1, 10000);
    } while (r < 0 && errno == EINTR);
    char answer[64];
    ssize_t n = r > 0 ? read(window_ack_fd, answer, sizeof answer) : -1;
    if (n <= 0 || memmem(answer, (size_t)n, "ack", 3) == NULL) {
        die("--window-fifo: no acknowledgement of '%.*s' within 10 s", (int)len - 1, command);
    }
}

/* ---- connections ---------------------------------------------------------------------------- */

static void raise_fd_limit(long needed) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        (rlim_t)needed + 16 > lim.rlim_cur) {
        die("%ld connections need more file descriptors than the limit (%llu)", needed,
            (unsigned long long)lim.rlim_cur);
    }
}

static int connect_one(const struct sockaddr *addr, socklen_t addr_len, long index) {
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die("socket (connection %ld): %s", index, strerror(errno));
    }
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    if (connect(fd, addr, addr_len) < 0) {
        if (errno != EINPROGRESS) {
            die("connect (connection %ld): %s", index, strerror(errno));
        }
        struct pollfd p = {fd, POLLOUT, 0};
        int r;
        do {
            r = poll(&p, 1, (int)(opt.connect_timeout * 1000));
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            die("connect (connection %ld): timed out after %.0f s", index, opt.connect_timeout);
        }
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error != 0) {
            die("connect (connection %ld): %s", index, strerror(error));
        }
    }
    return fd;
}

#ifdef ECHO_LOAD_TLS
/* The TLS handshake on a connected non-blocking socket, waiting with poll (bounded). */
static SSL *tls_handshake(int fd, long index) {
    SSL *ssl = SSL_new(tls_context);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        die("SSL_new (connection %ld)", index);
    }
    SSL_set_connect_state(ssl);
    for (;;) {
        int r = SSL_do_handshake(ssl);
        if (r == 1) {
            return ssl;
        }
        int error = SSL_get_error(ssl, r);
        struct pollfd p = {fd, error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, 0};
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
            ERR_print_errors_fp(stderr);
            die("TLS handshake failed (connection %ld)", index);
        }
        if (poll(&p, 1, (int)(opt.connect_timeout * 1000)) == 0) {
            die("TLS handshake (connection %ld): timed out", index);
        }
    }
}

/* send()/recv() through OpenSSL: the same results, errno EAGAIN for "wait". */
static ssize_t tls_io(SSL *ssl, int r) {
    if (r > 0) {
        return r;
    }
    int error = SSL_get_error(ssl, r);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (error == SSL_ERROR_ZERO_RETURN) {
        return 0;
    }
    ERR_print_errors_fp(stderr);
    errno = EPROTO;
    return -1;
}
#endif

static ssize_t send_bytes(struct conn *c, const void *data, size_t size) {
#ifdef ECHO_LOAD_TLS
    if (c->ssl != NULL) {
        return tls_io(c->ssl, SSL_write(c->ssl, data, size > INT32_MAX ? INT32_MAX : (int)size));
    }
#endif
    return send(c->fd, data, size, MSG_NOSIGNAL);
}

static ssize_t recv_bytes(struct conn *c, void *data, size_t size) {
#ifdef ECHO_LOAD_TLS
    if (c->ssl != NULL) {
        return tls_io(c->ssl, SSL_read(c->ssl, data, (int)size));
    }
#endif
    return recv(c->fd, data, size, 0);
}

/* Puts messages in flight up to the window and sends what is not sent yet. */
static void pump(struct conn *c, int epfd, uint64_t now) {
    const uint64_t window = (uint64_t)opt.pipeline;
    while (c->queued_msgs < c->done_msgs + window) {
        c->stamps[c->queued_msgs % window] = now;
        c->queued_msgs++;
    }
    if (c->want_out) {
        return; /* EPOLLOUT will send it */
    }
    const uint64_t target = c->queued_msgs * (uint64_t)opt.size;
    while (c->sent < target) {
        size_t len = (size_t)(target - c->sent);
        const unsigned char *from = pattern + (c->start + c->sent) % PATTERN_PERIOD;
        ssize_t n = send_bytes(c, from, len);
        if (n > 0) {
            c->sent += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
                die("epoll_ctl: %s", strerror(errno));
            }
            c->want_out = 1;
            return;
        }
        die("send: %s on connection %ld", n < 0 ? strerror(errno) : "sent nothing", c->index);
    }
}

/* Reads what is there, verifies it, and records the messages it completes. */
static void on_readable(struct conn *c, int epfd, uint64_t *done_total) {
    for (int round = 0; round < 4; ++round) {
        ssize_t n = recv_bytes(c, recv_buffer, RECV_BUFFER);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            die("recv: %s on connection %ld after %" PRIu64 " bytes echoed", strerror(errno),
                c->index, c->received);
        }
        if (n == 0) {
            die("the server closed connection %ld early, after echoing %" PRIu64 " of %" PRIu64
                " bytes sent",
                c->index, c->received, c->sent);
        }
        if (c->received + (uint64_t)n > c->sent) {
            die("connection %ld: the server sent %" PRIu64 " bytes more than it was sent",
                c->index, c->received + (uint64_t)n - c->sent);
        }
        const unsigned char *expected = pattern + (c->start + c->received) % PATTERN_PERIOD;
        if (memcmp(recv_buffer, expected, (size_t)n) != 0) {
            size_t at = 0;
            while (recv_buffer[at] == expected[at]) {
                ++at;
            }
            die("MISMATCH on connection %ld at stream byte %" PRIu64
                " (message %" PRIu64 ", byte %" PRIu64 "): expected 0x%02x, got 0x%02x",
                c->index, c->received + at, (c->received + at) / (uint64_t)opt.size,
                (c->received + at) % (uint64_t)opt.size, expected[at], recv_buffer[at]);
        }
        c->received += (uint64_t)n;
        const uint64_t done = c->received / (uint64_t)opt.size;
        if (done > c->done_msgs) {
            const uint64_t now = now_ns();
            while (c->done_msgs < done) {
                hist_add(now - c->stamps[c->done_msgs % (uint64_t)opt.pipeline]);
                c->done_msgs++;
                (*done_total)++;
            }
            pump(c, epfd, now);
        }
        if ((size_t)n < RECV_BUFFER) {
            return;
        }
    }
}

static void on_writable(struct conn *c, int epfd) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        die("epoll_ctl: %s", strerror(errno));
    }
    c->want_out = 0;
    pump(c, epfd, now_ns());
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    window_open();
    raise_fd_limit(opt.conns);

    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    socklen_t addr_len;
    if (strchr(opt.host, ':') != NULL) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)opt.port);
        if (inet_pton(AF_INET6, opt.host, &a6->sin6_addr) != 1) {
            fprintf(stderr, "echo_load: invalid --host '%s'\n", opt.host);
            return 2;
        }
        addr_len = sizeof *a6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)opt.port);
        if (inet_pton(AF_INET, opt.host, &a4->sin_addr) != 1) {
            fprintf(stderr, "echo_load: invalid --host '%s'\n", opt.host);
            return 2;
        }
        addr_len = sizeof *a4;
    }

    /* Everything is allocated here, once. */
    const uint64_t window_bytes = (uint64_t)opt.size * (uint64_t)opt.pipeline;
    const size_t span = (size_t)(window_bytes > RECV_BUFFER ? window_bytes : RECV_BUFFER);
    pattern = malloc(PATTERN_PERIOD + span);
    recv_buffer = malloc(RECV_BUFFER);
    struct conn *conns = calloc((size_t)opt.conns, sizeof *conns);
    uint64_t *stamps = calloc((size_t)(opt.conns * opt.pipeline), sizeof *stamps);
    struct epoll_event *events = calloc(MAX_EVENTS, sizeof *events);
    if (!pattern || !recv_buffer || !conns || !stamps || !events) {
        die("out of memory");
    }
    uint32_t x = 0x9e3779b9u; /* xorshift32: a fixed pseudo-random pattern */
    for (size_t i = 0; i < PATTERN_PERIOD; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pattern[i] = (unsigned char)(x >> 11);
    }
    for (size_t i = 0; i < span; ++i) {
        pattern[PATTERN_PERIOD + i] = pattern[i % PATTERN_PERIOD];
    }

    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        die("epoll_create1: %s", strerror(errno));
    }
    for (long i = 0; i < opt.conns; ++i) {
        struct conn *c = &conns[i];
        c->index = i;
        c->fd = connect_one((struct sockaddr *)&addr, addr_len, i);
#ifdef ECHO_LOAD_TLS
        if (tls_context != NULL) {
            c->ssl = tls_handshake(c->fd, i);
        }
#endif
        c->start = (uint32_t)(((uint64_t)i * 7919u) % PATTERN_PERIOD);
        c->stamps = stamps + (size_t)i * (size_t)opt.pipeline;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            die("epoll_ctl: %s", strerror(errno));
        }
    }

    /* All connected: the warm-up starts now. */
    uint64_t done_total = 0;
    const uint64_t t_start = now_ns();
    const uint64_t t_warm = t_start + (uint64_t)(opt.warmup * 1e9);
    const uint64_t t_end = t_warm + (uint64_t)(opt.duration * 1e9);
    for (long i = 0; i < opt.conns; ++i) {
        pump(&conns[i], epfd, t_start);
    }

    int measuring = 0;
    uint64_t done_at_warm = 0, t_measure = t_warm;
    int64_t cpu_at_warm = -1, cpu_at_end = -1;   /* utime + stime (clock ticks) */
    int64_t sched_at_warm = -1, sched_at_end = -1; /* schedstat (ns) */
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_warm) {
            measuring = 1;
            window_command("enable\n");
            t_measure = now = now_ns();
            done_at_warm = done_total;
            for (long i = 0; i < opt.conns; ++i) {
                conns[i].done_at_warm = conns[i].done_msgs;
            }
            memset(histogram, 0, sizeof histogram);
            hist_count = 0;
            hist_max = 0;
            if (opt.server_pid > 0) {
                cpu_at_warm = process_cpu_ns(opt.server_pid);
                sched_at_warm = process_sched_ns(opt.server_pid);
            }
        }
        if (now >= t_end) {
            break;
        }
        const uint64_t next = measuring ? t_end : t_warm;
        uint64_t wait_ms = (next - now + 999999u) / 1000000u;
        if (wait_ms > 100) {
            wait_ms = 100;
        }
        int n = epoll_wait(epfd, events, MAX_EVENTS, (int)wait_ms);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; ++i) {
            struct conn *c = events[i].data.ptr;
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                on_readable(c, epfd, &done_total);
            }
            if (c->want_out && (events[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
                on_writable(c, epfd);
            }
        }
    }
    window_command("disable\n");
    const uint64_t t_stop = now_ns();
    if (opt.server_pid > 0) {
        cpu_at_end = process_cpu_ns(opt.server_pid);
        sched_at_end = process_sched_ns(opt.server_pid);
    }

    const double seconds = (double)(t_stop - t_measure) / 1e9;
    const uint64_t msgs = done_total - done_at_warm;
    const double rate = (double)msgs / seconds;
    const double mbps = rate * (double)opt.size / 1e6;
    long idle = 0;
    for (long i = 0; i < opt.conns; ++i) {
        if (conns[i].done_msgs == conns[i].done_at_warm) {
            ++idle;
        }
        close(conns[i].fd);
    }
    /* Server CPU over the window: schedstat (ns) when the kernel has it, else utime+stime. */
    double cpu_s = -1.0, cpu_ns_per_msg = -1.0, stat_ns_per_msg = -1.0;
    const char *cpu_source = "none";
    if (cpu_at_warm >= 0 && cpu_at_end >= 0 && msgs > 0) {
        stat_ns_per_msg = (double)(cpu_at_end - cpu_at_warm) / (double)msgs;
    }
    if (sched_at_warm >= 0 && sched_at_end >= 0 && msgs > 0) {
        cpu_s = (double)(sched_at_end - sched_at_warm) / 1e9;
        cpu_ns_per_msg = (double)(sched_at_end - sched_at_warm) / (double)msgs;
        cpu_source = "schedstat";
    } else if (stat_ns_per_msg >= 0) {
        cpu_s = (double)(cpu_at_end - cpu_at_warm) / 1e9;
        cpu_ns_per_msg = stat_ns_per_msg;
        cpu_source = "stat";
    } else if (opt.server_pid > 0) {
        fprintf(stderr, "echo_load: warning: could not read the CPU time of process %ld\n",
                opt.server_pid);
    }
    if (idle > 0) {
        fprintf(stderr, "echo_load: warning: %ld of %ld connections completed no message in the "
                        "measured window (starved?)\n",
                idle, opt.conns);
    }
    if (msgs == 0) {
        die("no message was echoed in the measured window");
    }

    const double p50 = hist_percentile(0.50) / 1e3, p99 = hist_percentile(0.99) / 1e3,
                 p999 = hist_percentile(0.999) / 1e3, max = (double)hist_max / 1e3;
    if (opt.json) {
        printf("{\"conns\": %ld, \"size\": %ld, \"pipeline\": %ld, \"seconds\": %.3f, "
               "\"msgs\": %" PRIu64 ", \"msgs_per_sec\": %.1f, \"mb_per_sec\": %.2f, "
               "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f, "
               "\"server_cpu_s\": %.4f, \"server_cpu_ns_per_msg\": %.1f, "
               "\"server_cpu_source\": \"%s\", \"server_stat_ns_per_msg\": %.1f, "
               "\"idle_conns\": %ld, \"verified_bytes\": %" PRIu64 "}\n",
               opt.conns, opt.size, opt.pipeline, seconds, msgs, rate, mbps, p50, p99, p999, max,
               cpu_s, cpu_ns_per_msg, cpu_source, stat_ns_per_msg, idle,
               msgs * (uint64_t)opt.size);
    } else {
        printf("conns %ld, size %ld B, pipeline %ld, measured %.2f s after %.2f s warm-up\n",
               opt.conns, opt.size, opt.pipeline, seconds, opt.warmup);
        printf("messages     %" PRIu64 " (every byte verified)\n", msgs);
        printf("throughput   %.0f msgs/s, %.2f MB/s\n", rate, mbps);
        printf("latency      p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n", p50, p99,
               p999, max);
        if (cpu_ns_per_msg >= 0) {
            printf("server CPU   %.3f s, %.0f ns/msg (%s)\n", cpu_s, cpu_ns_per_msg, cpu_source);
        }
    }
    return 0;
}
