// hello_server - the first server of the course notes: whatever a client sends, it answers
// "Hello world\n" (one answer for each chunk it receives), to any number of clients at once.
//
//     hello_server [--host H] [--port P] [--monitor PATH]
//
// Prints `listening on HOST:PORT` when ready (--port 0 picks a free port), runs until SIGINT or
// SIGTERM and then exits with status 0; a bad command line exits with status 2.
//
// --monitor PATH serves corio's task monitor (corio/diag/monitor.hpp) on a Unix socket PATH or a
// loopback HOST:PORT: `echo ps | nc -U PATH` lists the tasks (the listener, one `greet` per
// client), `where N` shows where task N waits. The server then prints `monitor on ADDRESS` after
// its `listening on` line, and removes the socket file when it exits. A path that exists already,
// or an address that is not loopback, is a bad command line.
//
// The notes start from a blocking loop (accept, then recv/send until the client leaves) that can
// serve only one client at a time, then turn it into a select() loop. With corio the blocking
// shape stays, and every client still gets served: each one is a task, and a task that waits lets
// the others run.
#include <array>
#include <cstddef>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <corio/corio.hpp>

#include "common/acceptor.hpp"
#include "common/monitor_option.hpp"
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

corio::Task<> hello_server(corio::AsyncSocket listener, std::optional<corio::AsyncSocket> monitor) {
    // Its root coroutine is run_on_threads' (run_root): a name says what it is in the monitor.
    co_await corio::NameTask{"accept loop"};
    co_await examples::serve_monitor_from_here(std::move(monitor));
    examples::Acceptor acceptor(std::move(listener));
    for (;;) {
        corio::Accepted client = co_await acceptor.accept();
        co_await corio::NewTask{greet(std::move(client.socket))};
    }
}

} // namespace

int main(int argc, char* argv[]) {
    examples::ServerOptions server;
    examples::MonitorOption monitor; // removes its socket file when main returns
    if (const auto status = examples::parse_command_line(
            argc, argv, "hello_server", "Answers \"Hello world\" to every message.",
            {examples::host_option(server.host), examples::port_option(server.port),
             monitor.option()})) {
        return *status; // --help, or a bad command line
    }
    return examples::run_server("hello_server", server, [&monitor](corio::AsyncSocket listener) {
        return hello_server(std::move(listener), monitor.take());
    });
}
