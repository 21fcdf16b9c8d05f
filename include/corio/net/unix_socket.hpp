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

#include <sys/socket.h>
#include <utility>

#include "corio/detail/posix.hpp"
#include "corio/net/async_socket.hpp"

namespace corio {

/// Two connected Unix-domain stream sockets (socketpair), non-blocking and close-on-exec: a
/// channel between two tasks, or to a child process (pass the fd across exec only after
/// clearing FD_CLOEXEC on it).
inline std::pair<AsyncSocket, AsyncSocket> unix_socket_pair() {
    const auto [first, second] = detail::open_socket_pair(AF_UNIX, SOCK_STREAM);
    return {AsyncSocket(first), AsyncSocket(second)};
}

} // namespace corio
