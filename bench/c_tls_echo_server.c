/* c_tls_echo_server - the TLS baseline: a hand-written C epoll echo server with OpenSSL.
 *
 *   c_tls_echo_server --tls CERT KEY [--host H] [--port P] [--backlog N]
 *
 * Same command line and first line (`listening on HOST:PORT`) as `echo_server --tls`, so the
 * benchmark driver treats both alike. SIGINT/SIGTERM end it with status 0.
 *
 * OpenSSL is given the fd (SSL_set_fd): the way a C programmer writes it, and the fastest, since
 * OpenSSL reads straight into its own record buffer, with no memory BIO to copy through. corio
 * cannot do that (the fd's I/O must stay in corio so that every backend works and no readiness
 * hides: see include/corio/tls/tls_stream.hpp), so the ratio of the two includes the price of
 * corio's design, one memcpy per direction per record, not only the price of the loop.
 *
 *   - one thread, one level-triggered epoll set, non-blocking sockets, TLS 1.2 minimum;
 *   - per connection: an SSL object and a 16 KiB plaintext buffer (allocated at accept);
 *   - readable: SSL_read records until WANT_READ, each echoed with SSL_write at once; when a
 *     write wants to wait (WANT_WRITE) it is retried with the same buffer on EPOLLOUT, and the
 *     connection is not read meanwhile (backpressure);
 *   - the peer's close_notify: our close_notify, then close; any error: close.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER_SIZE (16 * 1024)
#define MAX_EVENTS 256

struct conn {
    SSL *ssl;     /* NULL: no connection on this fd */
    char *buf;    /* plaintext being echoed */
    int pending;  /* bytes of buf an SSL_write must be retried with (WANT_WRITE) */
    int accepted; /* the handshake is done */
};

static struct conn *conns; /* indexed by fd */
static size_t conns_size;
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void fail(const char *what) {
    fprintf(stderr, "c_tls_echo_server: %s: %s\n", what, strerror(errno));
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void set_interest(int epfd, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
        fail("epoll_ctl(MOD)");
    }
}

static void close_conn(int fd) {
    SSL_free(conns[fd].ssl);
    free(conns[fd].buf);
    memset(&conns[fd], 0, sizeof conns[fd]);
    ERR_clear_error(); /* one connection's errors never reach another */
    close(fd);
}

static void accept_all(int epfd, int listen_fd, SSL_CTX *context) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
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
        struct conn *c = &conns[fd];
        c->ssl = SSL_new(context);
        c->buf = malloc(BUFFER_SIZE);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (c->ssl == NULL || c->buf == NULL || SSL_set_fd(c->ssl, fd) != 1 ||
            epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close_conn(fd);
            continue;
        }
        SSL_set_accept_state(c->ssl);
    }
}

/* Waits for what OpenSSL asked (a read or a write), or closes on anything else. */
static void wait_or_close(int epfd, int fd, int result) {
    switch (SSL_get_error(conns[fd].ssl, result)) {
    case SSL_ERROR_WANT_READ:
        set_interest(epfd, fd, EPOLLIN);
        return;
    case SSL_ERROR_WANT_WRITE:
        set_interest(epfd, fd, EPOLLOUT);
        return;
    case SSL_ERROR_ZERO_RETURN: /* the peer's close_notify: ours, then close */
        SSL_shutdown(conns[fd].ssl);
        close_conn(fd);
        return;
    default:
        close_conn(fd);
        return;
    }
}

static void on_event(int epfd, int fd) {
    struct conn *c = &conns[fd];
    if (!c->accepted) {
        int result = SSL_do_handshake(c->ssl);
        if (result != 1) {
            wait_or_close(epfd, fd, result);
            return;
        }
        c->accepted = 1;
    }
    if (c->pending > 0) { /* a write that wanted to wait: the same buffer again */
        int result = SSL_write(c->ssl, c->buf, c->pending);
        if (result <= 0) {
            wait_or_close(epfd, fd, result);
            return;
        }
        c->pending = 0;
        set_interest(epfd, fd, EPOLLIN);
    }
    for (;;) {
        int received = SSL_read(c->ssl, c->buf, BUFFER_SIZE);
        if (received <= 0) {
            wait_or_close(epfd, fd, received);
            return;
        }
        int result = SSL_write(c->ssl, c->buf, received);
        if (result <= 0) {
            if (SSL_get_error(c->ssl, result) == SSL_ERROR_WANT_WRITE) {
                c->pending = received;
            }
            wait_or_close(epfd, fd, result);
            return;
        }
    }
}

static long parse_number(const char *name, const char *text, long min, long max) {
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "c_tls_echo_server: invalid value '%s' for %s\n", text, name);
        exit(2);
    }
    return value;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *certificate = NULL, *key = NULL;
    long port = 5001, backlog = SOMAXCONN;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--tls") == 0 && i + 2 < argc) {
            certificate = argv[++i];
            key = argv[++i];
        } else if (i + 1 >= argc) {
            fprintf(stderr, "c_tls_echo_server: '%s' needs a value or is unknown\n", argv[i]);
            return 2;
        } else if (strcmp(argv[i], "--host") == 0) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0) {
            port = parse_number("--port", argv[++i], 0, 65535);
        } else if (strcmp(argv[i], "--backlog") == 0) {
            backlog = parse_number("--backlog", argv[++i], 1, 1L << 30);
        } else {
            fprintf(stderr, "c_tls_echo_server: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (certificate == NULL) {
        fprintf(stderr, "usage: c_tls_echo_server --tls CERT KEY [--host H] [--port P] [--backlog N]\n");
        return 2;
    }
    SSL_CTX *context = SSL_CTX_new(TLS_server_method());
    if (context == NULL || SSL_CTX_use_certificate_chain_file(context, certificate) != 1 ||
        SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) != 1) {
        fail("certificate or key");
    }
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "c_tls_echo_server: invalid --host '%s' (IPv4 only)\n", host);
        return 2;
    }
    socklen_t addr_len = sizeof addr;
    int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (listen_fd < 0 || setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
        bind(listen_fd, (struct sockaddr *)&addr, addr_len) < 0 || listen(listen_fd, (int)backlog) < 0 ||
        getsockname(listen_fd, (struct sockaddr *)&addr, &addr_len) < 0) {
        fail("listen");
    }
    printf("listening on %s:%u\n", host, (unsigned)ntohs(addr.sin_port));
    fflush(stdout);

    conns_size = 1024;
    conns = calloc(conns_size, sizeof *conns);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listen_fd};
    if (conns == NULL || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        fail("setup");
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
                accept_all(epfd, listen_fd, context);
            } else if (conns[fd].ssl != NULL) {
                on_event(epfd, fd);
            }
        }
    }
    for (size_t fd = 0; fd < conns_size; ++fd) {
        if (conns[fd].ssl != NULL) {
            close_conn((int)fd);
        }
    }
    SSL_CTX_free(context);
    close(epfd);
    close(listen_fd);
    free(conns);
    return 0;
}
