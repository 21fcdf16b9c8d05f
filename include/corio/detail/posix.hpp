// corio/detail/posix.hpp - the fds corio creates, and errno as std::system_error.
//
// Every fd corio creates is made here, non-blocking (the loop must never sleep inside a system
// call) and close-on-exec (a program that execs must not hand corio's sockets and pipes to a
// child that knows nothing of them). Where the system lets the creating call say so
// (SOCK_NONBLOCK | SOCK_CLOEXEC, accept4, pipe2, EFD_/SFD_/EPOLL_CLOEXEC), it does: flags set by
// fcntl afterwards leave a moment in which a fork + exec on another thread inherits the fd.
// Elsewhere fcntl sets them at once. CORIO_FORCE_FCNTL (defined the same way in every
// translation unit) takes the fcntl path on every system, so that Linux tests run it too.
//
// Errors: an errno from a system call becomes std::system_error in std::system_category(), with
// what() "corio: <what>" (throw_errno). corio's own refusals (an invalid argument, a limit)
// stay std::errc values in std::generic_category() where they are thrown.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#if defined(__linux__)
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#endif

#include <array>
#include <cerrno>
#include <initializer_list>
#include <string>
#include <system_error>

#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) && !defined(CORIO_FORCE_FCNTL)
#define CORIO_DETAIL_SOCKET_FLAGS 1 // and accept4, which every such system has
#else
#define CORIO_DETAIL_SOCKET_FLAGS 0
#endif
#if (defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || \
     defined(__DragonFly__)) &&                                                                 \
    !defined(CORIO_FORCE_FCNTL)
#define CORIO_DETAIL_PIPE2 1
#else
#define CORIO_DETAIL_PIPE2 0
#endif

namespace corio::detail {

[[noreturn]] inline void throw_errno(int error, const std::string& what) {
    throw std::system_error(error, std::system_category(), "corio: " + what);
}

// Closes `fd` if it is one. Never retried on EINTR: Linux (like most systems) has released the
// number by then, and a retry could close an fd that another thread has just been given.
inline void close_fd(int fd) noexcept {
    if (fd >= 0) {
        (void)::close(fd);
    }
}

// The fcntl path: adds O_NONBLOCK and FD_CLOEXEC to fds made without them. If that fails, closes
// them all and throws.
inline void make_nonblocking_cloexec(std::initializer_list<int> fds) {
    for (const int fd : fds) {
        const int flags = ::fcntl(fd, F_GETFL);
        if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
            ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            const int error = errno;
            for (const int other : fds) {
                close_fd(other);
            }
            throw_errno(error, "fcntl");
        }
    }
}

// Where the system has SO_NOSIGPIPE, a write to a reset peer fails with EPIPE instead of raising
// SIGPIPE whatever the call (MSG_NOSIGNAL covers send() only, and not everywhere).
inline void no_sigpipe(int socket) noexcept {
#if defined(SO_NOSIGPIPE)
    int on = 1;
    (void)::setsockopt(socket, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#else
    (void)socket;
#endif
}

// A new socket of `family` and `type`. Throws std::system_error.
inline int open_socket(int family, int type = SOCK_STREAM) {
#if CORIO_DETAIL_SOCKET_FLAGS
    const int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw_errno(errno, "socket");
    }
#else
    const int fd = ::socket(family, type, 0);
    if (fd < 0) {
        throw_errno(errno, "socket");
    }
    make_nonblocking_cloexec({fd});
#endif
    no_sigpipe(fd);
    return fd;
}

// Accepts a connection on `listener`: the new fd, or -1 with errno as accept left it (EAGAIN,
// EINTR, ECONNABORTED, EMFILE...: the caller decides). Throws only if the fcntl path fails.
inline int accept_socket(int listener, sockaddr* peer, socklen_t* size) {
#if CORIO_DETAIL_SOCKET_FLAGS
    const int fd = ::accept4(listener, peer, size, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    const int fd = ::accept(listener, peer, size);
    if (fd >= 0) {
        make_nonblocking_cloexec({fd});
    }
#endif
    if (fd >= 0) {
        no_sigpipe(fd);
    }
    return fd;
}

// Two connected sockets (socketpair). Throws std::system_error.
inline std::array<int, 2> open_socket_pair(int family, int type) {
    int fds[2] = {-1, -1};
#if CORIO_DETAIL_SOCKET_FLAGS
    if (::socketpair(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
        throw_errno(errno, "socketpair");
    }
#else
    if (::socketpair(family, type, 0, fds) < 0) {
        throw_errno(errno, "socketpair");
    }
    make_nonblocking_cloexec({fds[0], fds[1]});
#endif
    no_sigpipe(fds[0]);
    no_sigpipe(fds[1]);
    return {fds[0], fds[1]};
}

struct PipeEnds {
    int read = -1;
    int write = -1;
};

// A pipe, both ends non-blocking (a writer never waits for room, a reader never for data).
// Throws std::system_error.
inline PipeEnds open_pipe() {
    int ends[2] = {-1, -1};
#if CORIO_DETAIL_PIPE2
    if (::pipe2(ends, O_NONBLOCK | O_CLOEXEC) < 0) {
        throw_errno(errno, "pipe");
    }
#else
    if (::pipe(ends) < 0) {
        throw_errno(errno, "pipe");
    }
    make_nonblocking_cloexec({ends[0], ends[1]});
#endif
    return {ends[0], ends[1]};
}

// A second fd for what `fd` refers to (F_DUPFD_CLOEXEC). Non-blocking is a flag of the open
// file, shared with `fd`, not of the number. Throws std::system_error.
inline int duplicate_fd(int fd) {
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) {
        throw_errno(errno, "dup");
    }
    return copy;
}

#if defined(__linux__)

// An eventfd with its counter at 0. Throws std::system_error.
inline int open_eventfd() {
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
        throw_errno(errno, "eventfd");
    }
    return fd;
}

// A signalfd for the signals of `set` (which the caller keeps blocked). Throws std::system_error.
inline int open_signalfd(const sigset_t& set) {
    const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        throw_errno(errno, "signalfd");
    }
    return fd;
}

// An epoll instance, close-on-exec only: epoll_wait's timeout, not O_NONBLOCK, says how long it
// waits. Throws std::system_error.
inline int open_epoll() {
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) {
        throw_errno(errno, "epoll_create1");
    }
    return fd;
}

#endif

} // namespace corio::detail
