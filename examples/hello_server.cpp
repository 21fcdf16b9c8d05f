// hello_server - the first server of the course notes: whatever a client sends, it answers
// "Hello world\n" (one answer for each chunk it receives), to any number of clients at once.
//
//     hello_server [--host H] [--port P]
//
// Prints `listening on HOST:PORT` when ready (--port 0 picks a free port), runs until SIGINT or
// SIGTERM and then exits with status 0; a bad command line exits with status 2.
//
// The notes start from a blocking loop (accept, then recv/send until the client leaves) that can
// serve only one client at a time, then turn it into a select() loop. With corio the blocking
// shape stays, and every client still gets served: each one is a task, and a task that waits lets
// the others run.
#include <array>
#include <cstddef>
#include <exception>
#include <utility>

#include <corio/corio.hpp>

#include "common/acceptor.hpp"
#include "common/options.hpp"
#include "common/server.hpp"

namespace {

// One client: answer each message, until the client closes its end.
corio::Task<> greet(corio::AsyncSocket client) {
    std::array<std::byte, 4096> request{};
    try {
        while (co_await client.recv(request) > 0) {
            co_await client.send_all("Hello world\n");
        }
    } catch (const std::exception&) { // the client went away (reset): nobody left to tell
    }
}

corio::Task<> hello_server(corio::AsyncSocket listener) {
    examples::Acceptor acceptor(std::move(listener));
    for (;;) {
        corio::Accepted client = co_await acceptor.accept();
        co_await corio::NewTask{greet(std::move(client.socket))};
    }
}

} // namespace

int main(int argc, char* argv[]) {
    examples::ServerOptions server;
    if (const auto status = examples::parse_command_line(
            argc, argv, "hello_server", "Answers \"Hello world\" to every message.",
            {examples::host_option(server.host), examples::port_option(server.port)})) {
        return *status; // --help, or a bad command line
    }
    return examples::run_server("hello_server", server, [](corio::AsyncSocket listener) {
        return hello_server(std::move(listener));
    });
}
