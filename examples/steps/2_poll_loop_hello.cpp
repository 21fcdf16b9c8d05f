// Step 2 of docs/how-it-works.md: one thread serves many clients with a readiness loop.
//
//     2_poll_loop_hello [PORT]
//
// The same server as step 1, with non-blocking sockets and one poll() that waits for whichever
// socket is ready first (select() is the same idea with fixed-size bitsets). Nothing blocks, so no
// client holds up another; the price is that each client's progress lives in a Client record
// the loop keeps by hand, and the code that serves a client is cut into one piece per event.
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <map>
#include <string>
#include <vector>

#include "listening_socket.hpp"

namespace {

struct Client {
    steps::Fd socket;
    std::string unsent; // answers not yet taken by the kernel: while any remain, we do not read
};

// The listener is readable: a connection is waiting.
void accept_client(const steps::Fd& listener, std::map<int, Client>& clients) {
    steps::Fd socket(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (socket.get() >= 0) { // or the client left already, or the fds ran out: try again later
        const int fd = socket.get();
        clients.emplace(fd, Client{std::move(socket), {}});
    }
}

// The client is readable. False when it is gone.
bool read_request(Client& client) {
    char request[4096];
    const ssize_t received = ::recv(client.socket.get(), request, sizeof request, 0);
    if (received < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR; // readiness was a hint
    }
    if (received == 0) {
        return false; // the client closed its end
    }
    client.unsent += steps::hello;
    return true;
}

// The client is writable. False when it is gone.
bool send_answers(Client& client) {
    const ssize_t sent =
        ::send(client.socket.get(), client.unsent.data(), client.unsent.size(), MSG_NOSIGNAL);
    if (sent < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
    client.unsent.erase(0, static_cast<std::size_t>(sent)); // the kernel may take only a part
    return true;
}

} // namespace

int main(int argc, char* argv[]) {
    const steps::Fd listener = steps::listen_on_loopback(steps::port_argument(argc, argv));
    steps::make_non_blocking(listener.get());
    std::map<int, Client> clients; // by fd
    std::vector<pollfd> watched;
    for (;;) {
        // What each socket waits for follows from its state: the listener for connections, a
        // client for a request, or for room to send the answers it has not sent yet.
        watched.assign(1, pollfd{listener.get(), POLLIN, 0});
        for (const auto& [fd, client] : clients) {
            watched.push_back(pollfd{fd, client.unsent.empty() ? short{POLLIN} : short{POLLOUT}, 0});
        }
        if (::poll(watched.data(), watched.size(), -1) < 0) { // the only place the program waits
            if (errno == EINTR) {
                continue;
            }
            steps::die("poll");
        }
        for (const pollfd& ready : watched) {
            if (ready.revents == 0) {
                continue;
            }
            if (ready.fd == listener.get()) {
                accept_client(listener, clients);
                continue;
            }
            Client& client = clients.at(ready.fd);
            // Hang-up and error (POLLHUP, POLLERR) come here too: the call reports them.
            if (!(client.unsent.empty() ? read_request(client) : send_answers(client))) {
                clients.erase(ready.fd); // closes the socket
            }
        }
    }
}
