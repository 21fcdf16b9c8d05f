// Step 1 of docs/how-it-works.md: the blocking "Hello world" server.
//
//     1_blocking_hello [PORT]
//
// Answers "Hello world\n" to every message a client sends. Every call blocks: while it waits in
// recv() for the first client, the second client's connection sits in the listen queue, unserved.
#include <sys/socket.h>

#include "listening_socket.hpp"

int main(int argc, char* argv[]) {
    const steps::Fd listener = steps::listen_on_loopback(steps::port_argument(argc, argv));
    for (;;) {
        const steps::Fd client(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC)); // blocks
        if (client.get() < 0) {
            continue; // the client gave up before we accepted it (or the fds ran out): next one
        }
        char request[4096];
        while (::recv(client.get(), request, sizeof request, 0) > 0) { // blocks
            // A send can block too, for as long as the client does not read. MSG_NOSIGNAL: a
            // client that left is an error here, not a SIGPIPE that kills the server.
            if (::send(client.get(), steps::hello.data(), steps::hello.size(), MSG_NOSIGNAL) < 0) {
                break;
            }
        } // recv gave 0 (the client closed its end) or an error: `client` closes ours
    }
}
