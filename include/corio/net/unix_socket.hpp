// corio/net/unix_socket.hpp - Unix-domain stream sockets: the same AsyncSocket, another address.
//
//     auto path = corio::SocketAddress::from_path("/run/me/server.sock");
//     corio::AsyncSocket listener = corio::AsyncSocket::listen(path);     // creates the file
//     corio::AsyncSocket client = co_await corio::AsyncSocket::connect(path);
//     auto [left, right] = corio::unix_socket_pair();                    // connected, no file
//
// Addresses are SocketAddress (socket_address.hpp says why not a type of their own). corio never
// unlinks a path: removing a file before binding could take the name from a server that still
// runs, and an AsyncSocket does not remember the path it was bound to, which may have been
// replaced meanwhile. Who removes the file, and when: docs/guide.md#unix-domain-sockets.
#pragma once

#include <cerrno>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>

#include "corio/net/async_socket.hpp"

namespace corio {

/// Two connected Unix-domain stream sockets (socketpair), non-blocking and close-on-exec: a
/// channel between two tasks, or to a child process (pass the fd across exec only after
/// clearing FD_CLOEXEC on it).
inline std::pair<AsyncSocket, AsyncSocket> unix_socket_pair() {
    int fds[2] = {-1, -1};
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
        detail::throw_errno(errno, "socketpair");
    }
    std::pair<AsyncSocket, AsyncSocket> pair{AsyncSocket(fds[0]), AsyncSocket(fds[1])};
#else
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) {
        detail::throw_errno(errno, "socketpair");
    }
    std::pair<AsyncSocket, AsyncSocket> pair{AsyncSocket(fds[0]), AsyncSocket(fds[1])};
    for (const int fd : fds) {
        if (::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || ::fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
            detail::throw_errno(errno, "fcntl"); // the pair closes both
        }
#if defined(SO_NOSIGPIPE)
        int on = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
    }
#endif
    return pair;
}

} // namespace corio
