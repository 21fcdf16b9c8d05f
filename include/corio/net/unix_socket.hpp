// corio/net/unix_socket.hpp - Unix-domain stream sockets: the same AsyncSocket, another address.
//
//     auto path = corio::SocketAddress::from_path("/run/me/server.sock");
//     corio::AsyncSocket listener = corio::AsyncSocket::listen(path);     // creates the file
//     corio::AsyncSocket client = co_await corio::AsyncSocket::connect(path);
//     auto [left, right] = corio::unix_socket_pair();                    // connected, no file
//
// accept, recv, send, send_all, shutdown_write, timeouts and kills work as over TCP. Addresses
// are SocketAddress (socket_address.hpp says why not a type of their own): from_path for a file,
// abstract_name (Linux) for a name with no file. An accepted peer is usually unnamed: its
// address prints as "(unnamed)".
//
// Who removes the file: the program that bound it, itself. corio never unlinks a path, neither
// before binding nor when the listener closes:
//   * before: a file already at the path makes listen fail with EADDRINUSE rather than silently
//     take the name from a server that may still be running (or remove a file that is no socket
//     at all). A program that knows the path is its own stale one removes it first.
//   * after: an AsyncSocket does not remember the path it was bound to, and the file may have
//     been replaced meanwhile; a closed listener leaves the file behind, and connecting to it
//     gives ECONNREFUSED. Remove it (std::filesystem::remove, ::unlink) once the listener is
//     closed.
// Abstract names (Linux) need none of this: the name vanishes with the last socket bound to it.
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
