/* idle_conns - what an idle connection costs an echo server, in resident memory.
 *
 *   idle_conns [--conns N] [--ping SIZE] [--settle-ms MS] --server NAME=PATH [--server NAME=PATH
 * ...] idle_conns [--conns N] [--ping SIZE] [--settle-ms MS] --port P --server-pid PID
 *
 * For each server (started here, one after the other, with `--host 127.0.0.1 --port 0`, or one
 * already running that listens on 127.0.0.1:P):
 *   1. reads the server's VmRSS and RssAnon (/proc/PID/status) once it listens;
 *   2. opens N connections (default 10000) to it, in batches, each batch only once the server has
 *      accepted the previous one (the number of fds in /proc/PID/fd), so the listen backlog never
 *      overflows; then waits until all N are accepted and the RSS has settled;
 *   3. reads the RSS again: (after - before) / N is the memory one idle connection costs;
 *   4. with --ping SIZE: sends SIZE bytes on every connection and reads the echo back, then reads
 *      the RSS a third time (a server's buffer pages count once it has used them);
 *   5. closes the connections and stops the server it started (SIGTERM, by PID).
 * and prints one table row per server.
 *
 * File descriptors: it raises its own RLIMIT_NOFILE soft limit to the hard one before it starts a
 * server, so a server started here inherits it. A server given by --server-pid must have been
 * started with enough (`prlimit --nofile=N:N ...` or under `ulimit -n`); its limit is checked.
 *
 * Only user-space memory is counted: socket buffers, the epoll entry and the file itself are
 * kernel memory, outside any RSS. RSS is counted in pages, so a buffer that was allocated but
 * never written costs nothing until it is used: compare servers that allocate alike (see
 * bench/README.md).
 *
 * Exit status: 0 if every server was measured, 1 if one failed (did not start, did not accept
 * every connection in time, died, or echoed wrong bytes), 2 on a bad command line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SERVERS 8
#define BATCH 256

struct options {
    long conns;
    long ping;      /* 0: no ping */
    long settle_ms; /* how long the RSS must stay unchanged to count as settled */
    int port;       /* with --server-pid */
    pid_t given_pid;
    int server_count;
    const char* names[MAX_SERVERS];
    const char* paths[MAX_SERVERS];
};

struct rss {
    long vm_kib;   /* VmRSS */
    long anon_kib; /* RssAnon */
};

struct result {
    struct rss before, idle, pinged;
    int pinged_valid;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) < 0 && errno == EINTR) {
    }
}

static int read_rss(pid_t pid, struct rss* out) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE* f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char line[256];
    out->vm_kib = out->anon_kib = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        sscanf(line, "VmRSS: %ld", &out->vm_kib);
        sscanf(line, "RssAnon: %ld", &out->anon_kib);
    }
    fclose(f);
    return out->vm_kib >= 0 ? 0 : -1;
}

static long count_fds(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR* dir = opendir(path);
    if (dir == NULL) {
        return -1;
    }
    long count = 0;
    struct dirent* entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] != '.') {
            ++count;
        }
    }
    closedir(dir);
    return count;
}

/* The soft limit on open files of `pid` (from /proc/PID/limits), or -1. */
static long fd_limit_of(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    FILE* f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char line[256];
    long soft = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "Max open files", 14) == 0) {
            sscanf(line + 14, "%ld", &soft);
        }
    }
    fclose(f);
    return soft;
}

/* Waits until `pid` has at least `wanted` fds open; -1 after `timeout_s` or if it died. */
static int wait_for_fds(pid_t pid, long wanted, double timeout_s) {
    const double end = now_s() + timeout_s;
    for (;;) {
        long count = count_fds(pid);
        if (count < 0) {
            return -1;
        }
        if (count >= wanted) {
            return 0;
        }
        if (now_s() > end) {
            fprintf(stderr, "idle_conns: the server has %ld fds open, expected %ld\n", count,
                    wanted);
            return -1;
        }
        sleep_ms(2);
    }
}

/* Reads the RSS until it stays the same for `settle_ms` (at most 5 s). */
static int settled_rss(pid_t pid, long settle_ms, struct rss* out) {
    if (read_rss(pid, out) < 0) {
        return -1;
    }
    const double end = now_s() + 5.0;
    double stable_since = now_s();
    while (now_s() - stable_since < (double)settle_ms / 1000.0 && now_s() < end) {
        sleep_ms(20);
        struct rss again;
        if (read_rss(pid, &again) < 0) {
            return -1;
        }
        if (again.vm_kib != out->vm_kib || again.anon_kib != out->anon_kib) {
            *out = again;
            stable_since = now_s();
        }
    }
    return 0;
}

/* Starts `path --host 127.0.0.1 --port 0`; gives its PID and the port from its first line. */
static pid_t start_server(const char* path, int* port) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0) {
        perror("idle_conns: pipe");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("idle_conns: fork");
        return -1;
    }
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        execl(path, path, "--host", "127.0.0.1", "--port", "0", (char*)NULL);
        fprintf(stderr, "idle_conns: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(out[1]);
    FILE* f = fdopen(out[0], "r");
    char line[256];
    *port = -1;
    if (f != NULL && fgets(line, sizeof line, f) != NULL) {
        const char* colon = strrchr(line, ':');
        if (strncmp(line, "listening on ", 13) == 0 && colon != NULL) {
            *port = atoi(colon + 1);
        }
    }
    if (f != NULL) {
        fclose(f); /* the server's later output, if any, goes nowhere (SIGPIPE is its business) */
    } else {
        close(out[0]);
    }
    if (*port <= 0) {
        fprintf(stderr, "idle_conns: %s did not print 'listening on HOST:PORT'\n", path);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

static void stop_server(pid_t pid) {
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; ++i) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            return;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "idle_conns: server %d ignored SIGTERM: SIGKILL\n", (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int connect_one(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("idle_conns: socket");
        return -1;
    }
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr*)&address, sizeof address) < 0) {
        perror("idle_conns: connect");
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends `size` pattern bytes on every connection and checks the echo (blocking sockets). */
static int ping_all(const int* fds, long count, long size) {
    unsigned char *message = malloc((size_t)size), *reply = malloc((size_t)size);
    if (message == NULL || reply == NULL) {
        free(message);
        free(reply);
        return -1;
    }
    for (long i = 0; i < size; ++i) {
        message[i] = (unsigned char)(i * 13 + (i >> 8));
    }
    int status = 0;
    for (long c = 0; c < count && status == 0; ++c) {
        for (long sent = 0; sent < size;) {
            ssize_t n = send(fds[c], message + sent, (size_t)(size - sent), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                perror("idle_conns: ping send");
                status = -1;
                break;
            }
            sent += n;
        }
        for (long got = 0; status == 0 && got < size;) {
            ssize_t n = recv(fds[c], reply + got, (size_t)(size - got), 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                fprintf(stderr, "idle_conns: ping: the server %s\n",
                        n == 0 ? "closed" : strerror(errno));
                status = -1;
                break;
            }
            got += n;
        }
        if (status == 0 && memcmp(message, reply, (size_t)size) != 0) {
            fprintf(stderr, "idle_conns: ping: wrong echo on connection %ld\n", c);
            status = -1;
        }
    }
    free(message);
    free(reply);
    return status;
}

/* Measures one server; returns 0 on success. */
static int measure(const struct options* o, pid_t pid, int port, struct result* r) {
    long base_fds = count_fds(pid);
    long limit = fd_limit_of(pid);
    if (base_fds < 0) {
        fprintf(stderr, "idle_conns: cannot read /proc/%d/fd\n", (int)pid);
        return -1;
    }
    if (limit >= 0 && limit < base_fds + o->conns) {
        fprintf(stderr,
                "idle_conns: the server may open %ld files, it needs %ld: start it with "
                "prlimit --nofile=... or under ulimit -n\n",
                limit, base_fds + o->conns);
        return -1;
    }
    if (settled_rss(pid, o->settle_ms, &r->before) < 0) {
        return -1;
    }
    int* fds = calloc((size_t)o->conns, sizeof *fds);
    if (fds == NULL) {
        return -1;
    }
    long opened = 0;
    int status = 0;
    while (opened < o->conns && status == 0) {
        long batch_end = opened + BATCH < o->conns ? opened + BATCH : o->conns;
        for (; opened < batch_end; ++opened) {
            if ((fds[opened] = connect_one(port)) < 0) {
                status = -1;
                break;
            }
        }
        if (status == 0 && wait_for_fds(pid, base_fds + opened, 10.0) < 0) {
            status = -1;
        }
    }
    if (status == 0 && settled_rss(pid, o->settle_ms, &r->idle) < 0) {
        status = -1;
    }
    r->pinged_valid = 0;
    if (status == 0 && o->ping > 0) {
        status = ping_all(fds, o->conns, o->ping);
        if (status == 0 && settled_rss(pid, o->settle_ms, &r->pinged) == 0) {
            r->pinged_valid = 1;
        }
    }
    for (long i = 0; i < opened; ++i) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    free(fds);
    return status;
}

static long parse_long(const char* name, const char* text, long min, long max) {
    char* end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "idle_conns: invalid value '%s' for %s\n", text, name);
        exit(2);
    }
    return v;
}

static void usage(FILE* to) {
    fputs(
        "usage: idle_conns [--conns N] [--ping SIZE] [--settle-ms MS] --server NAME=PATH ...\n"
        "       idle_conns [--conns N] [--ping SIZE] [--settle-ms MS] --port P --server-pid PID\n",
        to);
}

int main(int argc, char** argv) {
    struct options o = {.conns = 10000, .ping = 0, .settle_ms = 300, .port = -1, .given_pid = -1};
    for (int i = 1; i < argc; ++i) {
        const char* arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "idle_conns: %s needs a value or is unknown\n", arg);
            usage(stderr);
            return 2;
        }
        const char* value = argv[++i];
        if (strcmp(arg, "--conns") == 0) {
            o.conns = parse_long(arg, value, 1, 1000000);
        } else if (strcmp(arg, "--ping") == 0) {
            o.ping = parse_long(arg, value, 0, 1 << 20);
        } else if (strcmp(arg, "--settle-ms") == 0) {
            o.settle_ms = parse_long(arg, value, 0, 10000);
        } else if (strcmp(arg, "--port") == 0) {
            o.port = (int)parse_long(arg, value, 1, 65535);
        } else if (strcmp(arg, "--server-pid") == 0) {
            o.given_pid = (pid_t)parse_long(arg, value, 1, 1L << 30);
        } else if (strcmp(arg, "--server") == 0) {
            const char* eq = strchr(value, '=');
            if (eq == NULL || eq == value || o.server_count == MAX_SERVERS) {
                fprintf(stderr, "idle_conns: --server wants NAME=PATH (at most %d)\n", MAX_SERVERS);
                return 2;
            }
            o.names[o.server_count] = strndup(value, (size_t)(eq - value));
            o.paths[o.server_count++] = eq + 1;
        } else {
            fprintf(stderr, "idle_conns: unknown option %s\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if ((o.server_count == 0) == (o.given_pid < 0) || (o.given_pid >= 0) != (o.port > 0)) {
        usage(stderr);
        return 2;
    }

    /* N client fds here, and (inherited) N server fds in a server started here. */
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && (long)limit.rlim_cur < o.conns + 32) {
        fprintf(stderr,
                "idle_conns: RLIMIT_NOFILE is %ld, %ld connections need more (raise the "
                "hard limit: ulimit -Hn)\n",
                (long)limit.rlim_cur, o.conns);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    printf("idle_conns: %ld idle connections per server over loopback%s; RSS from "
           "/proc/PID/status\n\n",
           o.conns, o.ping > 0 ? ", then one echo of --ping bytes on each" : "");
    printf("| server | VmRSS before KiB | VmRSS idle KiB | VmRSS B/conn | RssAnon B/conn |%s\n",
           o.ping > 0 ? " VmRSS B/conn after ping | RssAnon B/conn after ping |" : "");
    printf("| --- | ---: | ---: | ---: | ---: |%s\n", o.ping > 0 ? " ---: | ---: |" : "");
    int failures = 0;
    int runs = o.given_pid >= 0 ? 1 : o.server_count;
    for (int s = 0; s < runs; ++s) {
        const char* name = o.given_pid >= 0 ? "given" : o.names[s];
        int port = o.port;
        pid_t pid = o.given_pid >= 0 ? o.given_pid : start_server(o.paths[s], &port);
        if (pid < 0) {
            ++failures;
            continue;
        }
        struct result r;
        int status = measure(&o, pid, port, &r);
        if (o.given_pid < 0) {
            stop_server(pid);
        }
        if (status != 0) {
            fprintf(stderr, "idle_conns: %s: failed\n", name);
            ++failures;
            continue;
        }
        const double n = (double)o.conns;
        printf("| %s | %ld | %ld | %.0f | %.0f |", name, r.before.vm_kib, r.idle.vm_kib,
               (double)(r.idle.vm_kib - r.before.vm_kib) * 1024.0 / n,
               (double)(r.idle.anon_kib - r.before.anon_kib) * 1024.0 / n);
        if (r.pinged_valid) {
            printf(" %.0f | %.0f |", (double)(r.pinged.vm_kib - r.before.vm_kib) * 1024.0 / n,
                   (double)(r.pinged.anon_kib - r.before.anon_kib) * 1024.0 / n);
        } else if (o.ping > 0) {
            printf(" - | - |");
        }
        printf("\n");
        fflush(stdout);
    }
    return failures == 0 ? 0 : 1;
}
