// examples/common/server.hpp - what every example server does around its own listener task:
// listen, say where, run until SIGINT/SIGTERM, exit with the right status.
//
// Signals: SIGINT and SIGTERM are claimed for corio::SignalWait (signal_wait.hpp) before anything
// else, so that from the "listening" line on they mean "exit cleanly", and before any thread
// starts, so that every thread inherits the mask (on Linux they are read from a signalfd). One
// task, on the first thread, waits for them and sets a StopEvent, which stops every thread.
//
// Threads: with `threads` > 1 each thread runs a Scheduler of its own with a listener of its own
// on the same address (SO_REUSEPORT), through corio::run_on_threads. With 1 there is one plain
// listener, run on the main thread.
#pragma once

#include <atomic>
#include <csignal>
#include <cstdint>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <type_traits>
#include <utility>
#include <vector>

#include <corio/corio.hpp>

namespace examples {

/// Where a server listens, and on how many threads (see host_option, port_option, backlog_option
/// and threads_option in options.hpp).
struct ServerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 5001;
    int backlog = SOMAXCONN;
    unsigned threads = 1;
};

/// A task: waits for SIGINT or SIGTERM, then sets `stop` (every thread's Scheduler stops; the
/// tasks still alive are destroyed with it, and their sockets close).
inline corio::Task<> stop_on_signal(corio::StopEvent& stop) {
    co_await corio::SignalWait{SIGINT, SIGTERM};
    stop.set();
}

/// The one line a server prints about a failure: "program: what".
inline std::string failure_line(std::string_view program, const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& failure) {
        return std::string(program) + ": " + failure.what() + '\n';
    } catch (...) {
        return std::string(program) + ": unknown error\n";
    }
}

/// Listens as `options` say, prints "listening on HOST:PORT" (the port really bound, which
/// matters with --port 0), and runs the task `serve(listener)` (or `serve(listener, thread
/// index)`) on each thread until SIGINT or SIGTERM. `serve` is called on each thread, possibly at
/// the same time: it must only read what it captured. Returns the exit status: 0 after a signal, 1 if the server could not start or a task
/// failed.
template <class Serve>
int run_server(std::string_view program, const ServerOptions& options, Serve serve) {
    // corio sends with MSG_NOSIGNAL, so a vanished peer is an EPIPE error, not a signal. Ignoring
    // SIGPIPE also keeps us alive if whoever reads our stdout or stderr goes away.
    std::signal(SIGPIPE, SIG_IGN);
    try {
        corio::claim_signals({SIGINT, SIGTERM}); // first: see the top of this file
        std::vector<corio::AsyncSocket> listeners;
        if (options.threads == 1) {
            listeners.push_back(
                corio::AsyncSocket::listen(options.host, options.port, options.backlog));
        } else {
            listeners = corio::listen_reuse_port(options.host, options.port, options.threads,
                                                 options.backlog);
        }
        std::cout << "listening on " << listeners.front().local_address().to_string() << std::endl;

        // The connection tasks catch their own errors; any other task that fails leaves the
        // server unable to serve: report it and stop with status 1. (A listener task that fails
        // is the root of its thread: run_on_threads rethrows its failure below.)
        std::atomic<int> status{0};
        corio::StopEvent stop;
        corio::run_on_threads(
            options.threads,
            [&](unsigned index, corio::Scheduler& kernel) {
                kernel.set_exception_handler([&](corio::TaskId, const std::exception_ptr& error) {
                    std::cerr << failure_line(program, error); // one write: lines never mix
                    status = 1;
                    stop.set();
                });
                if (index == 0) {
                    kernel.add_task(stop_on_signal(stop));
                }
                if constexpr (std::is_invocable_v<Serve&, corio::AsyncSocket, unsigned>) {
                    return serve(std::move(listeners[index]), index);
                } else {
                    return serve(std::move(listeners[index]));
                }
            },
            stop);
        return status;
    } catch (...) { // e.g. the address is in use
        std::cerr << failure_line(program, std::current_exception());
        return 1;
    }
}

} // namespace examples
