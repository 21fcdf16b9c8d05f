/* c_echo_server - the baseline: a minimal, honest, hand-written epoll echo server in C.
 *
 *   c_echo_server [--host H] [--port P] [--backlog N] [--per-conn-buffer]
 *
 * Same command line and the same first line of output as examples/echo_server
 * (`listening on HOST:PORT`, flushed), so the benchmark driver treats both alike. SIGINT/SIGTERM
 * end it with status 0.
 *
 * It is the epoll limit: what corio's echo_server does, with nothing in between the loop and the
 * kernel, and no more memory touched per message than the loop needs:
 *   - one thread, one level-triggered epoll set, non-blocking sockets;
 *   - one 64 KiB read buffer shared by every connection: a recv never waits for its echo to go
 *     out, so between two events no connection needs a buffer of its own;
 *   - readable: one recv into the shared buffer, then send it back at once. Only if the kernel
 *     takes part of it does the connection get a buffer of its own (allocated then, 64 KiB, kept
 *     until it closes): the rest is copied there, the fd's interest switches to EPOLLOUT, and
 *     that client is not read until the rest is out (backpressure, like corio's send_all);
 *   - writable: send the rest; when it is all out, switch back to EPOLLIN;
 *   - recv gives 0 or an error: close (a half-closed client has had all its echoes by then).
 * --per-conn-buffer is the earlier baseline, kept for comparison: one 16 KiB buffer per
 * connection, allocated when the connection is accepted; recv into it, and the rest of a partial
 * send stays there.
 * Neither server sets TCP_NODELAY on accepted sockets: they are compared as they are.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SHARED_BUFFER_SIZE (64 * 1024) /* the default: one read buffer for every connection */
#define PER_CONN_BUFFER_SIZE (16 * 1024) /* --per-conn-buffer */
#define MAX_EVENTS 256

struct conn {
    char *buf;    /* the connection's own buffer: NULL until it needs one (shared mode) */
    size_t off;   /* pending echo: buf[off, len) */
    size_t len;
    int open;     /* a connection lives on this fd */
};

static struct conn *conns; /* indexed by fd */
static size_t conns_size;
static volatile sig_atomic_t stop_requested;
static int per_conn_buffer; /* --per-conn-buffer */
static char shared_buffer[SHARED_BUFFER_SIZE];

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void fail(const char *what) {
    fprintf(stderr, "c_echo_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void set_interest(int epfd, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
        fail("epoll_ctl(MOD)");
    }
}

static void close_conn(int fd) {
    free(conns[fd].buf);
    conns[fd].buf = NULL;
    conns[fd].open = 0;
    close(fd); /* also removes it from the epoll set */
}

static void accept_all(int epfd, int listen_fd) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                perror("c_echo_server: accept4");
            }
            return;
        }
        if ((size_t)fd >= conns_size) {
            size_t size = conns_size * 2;
            while (size <= (size_t)fd) {
                size *= 2;
            }
            struct conn *grown = realloc(conns, size * sizeof *conns);
            if (grown == NULL) {
                close(fd);
                continue;
            }
            memset(grown + conns_size, 0, (size - conns_size) * sizeof *conns);
            conns = grown;
            conns_size = size;
        }
        conns[fd].buf = per_conn_buffer ? malloc(PER_CONN_BUFFER_SIZE) : NULL;
        conns[fd].off = conns[fd].len = 0;
        conns[fd].open = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if ((per_conn_buffer && conns[fd].buf == NULL) ||
            epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close_conn(fd);
        }
    }
}

/* Sends buf[off, len). Returns 0 when all is out, 1 when some is left, -1 on error. */
static int flush(int fd, struct conn *c) {
    while (c->off < c->len) {
        ssize_t n = send(fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n >= 0) {
            c->off += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* --per-conn-buffer: recv into the connection's buffer, send from there. */
static void on_readable_per_conn(int epfd, int fd) {
    struct conn *c = &conns[fd];
    ssize_t n = recv(fd, c->buf, PER_CONN_BUFFER_SIZE, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        close_conn(fd);
        return;
    }
    c->off = 0;
    c->len = (size_t)n;
    int r = flush(fd, c);
    if (r < 0) {
        close_conn(fd);
    } else if (r > 0) {
        set_interest(epfd, fd, EPOLLOUT); /* stop reading until the echo is out */
    }
}

/* The default: recv into the shared buffer, send from there; only what the kernel does not take
 * is copied into the connection's own buffer. */
static void on_readable(int epfd, int fd) {
    ssize_t n = recv(fd, shared_buffer, SHARED_BUFFER_SIZE, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        close_conn(fd);
        return;
    }
    size_t sent = 0;
    while (sent < (size_t)n) {
        ssize_t w = send(fd, shared_buffer + sent, (size_t)n - sent, MSG_NOSIGNAL);
        if (w >= 0) {
            sent += (size_t)w;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            close_conn(fd);
            return;
        }
    }
    if (sent == (size_t)n) {
        return;
    }
    struct conn *c = &conns[fd];
    if (c->buf == NULL && (c->buf = malloc(SHARED_BUFFER_SIZE)) == NULL) {
        close_conn(fd);
        return;
    }
    memcpy(c->buf, shared_buffer + sent, (size_t)n - sent);
    c->off = 0;
    c->len = (size_t)n - sent;
    set_interest(epfd, fd, EPOLLOUT); /* stop reading until the echo is out */
}

static void on_writable(int epfd, int fd) {
    int r = flush(fd, &conns[fd]);
    if (r < 0) {
        close_conn(fd);
    } else if (r == 0) {
        set_interest(epfd, fd, EPOLLIN);
    }
}

static long parse_number(const char *name, const char *text, long min, long max) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
        fprintf(stderr, "c_echo_server: invalid value '%s' for %s\n", text, name);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 5001, backlog = SOMAXCONN;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--help") == 0) {
            puts("usage: c_echo_server [--host H] [--port P] [--backlog N] [--per-conn-buffer]");
            return 0;
        }
        if (strcmp(argv[i], "--per-conn-buffer") == 0) {
            per_conn_buffer = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "c_echo_server: '%s' needs a value or is unknown\n", argv[i]);
            return 2;
        }
        if (strcmp(argv[i], "--host") == 0) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0) {
            port = parse_number("--port", argv[++i], 0, 65535);
        } else if (strcmp(argv[i], "--backlog") == 0) {
            backlog = parse_number("--backlog", argv[++i], 1, 1L << 30);
        } else {
            fprintf(stderr, "c_echo_server: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR and we exit */
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
            fprintf(stderr, "c_echo_server: invalid --host '%s'\n", host);
            return 2;
        }
        addr_len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&addr;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            fprintf(stderr, "c_echo_server: invalid --host '%s'\n", host);
            return 2;
        }
        addr_len = sizeof *a;
    }

    int listen_fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) {
        fail("socket");
    }
    int on = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(listen_fd, (struct sockaddr *)&addr, addr_len) < 0) {
        fail("bind");
    }
    if (listen(listen_fd, (int)backlog) < 0) {
        fail("listen");
    }
    if (getsockname(listen_fd, (struct sockaddr *)&addr, &addr_len) < 0) {
        fail("getsockname");
    }
    uint16_t bound = v6 ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                        : ntohs(((struct sockaddr_in *)&addr)->sin_port);
    printf(v6 ? "listening on [%s]:%u\n" : "listening on %s:%u\n", host, (unsigned)bound);
    fflush(stdout);

    conns_size = 1024;
    conns = calloc(conns_size, sizeof *conns);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || epfd < 0) {
        fail("setup");
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listen_fd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        fail("epoll_ctl(ADD)");
    }

    struct epoll_event events[MAX_EVENTS];
    while (!stop_requested) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == listen_fd) {
                accept_all(epfd, listen_fd);
            } else if (!conns[fd].open) {
                continue; /* closed earlier in this batch */
            } else if (conns[fd].off < conns[fd].len) {
                on_writable(epfd, fd); /* EPOLLOUT, or HUP/ERR: send reports it */
            } else if (per_conn_buffer) {
                on_readable_per_conn(epfd, fd); /* EPOLLIN, or HUP/ERR: recv reports it */
            } else {
                on_readable(epfd, fd);
            }
        }
    }
    for (size_t fd = 0; fd < conns_size; ++fd) {
        if (conns[fd].open) {
            close_conn((int)fd);
        }
    }
    close(epfd);
    close(listen_fd);
    free(conns);
    return 0;
}
