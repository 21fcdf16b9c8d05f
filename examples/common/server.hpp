// examples/common/server.hpp - what every example server does around its own listener task:
// listen, say where, run until SIGINT/SIGTERM, exit with the right status.
#pragma once

#include <csignal>
#include <cstdint>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <sys/socket.h>

#include <corio/corio.hpp>

#include "signal_pipe.hpp"

namespace examples {

/// Where a server listens (see host_option, port_option and backlog_option in options.hpp).
struct ServerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 5001;
    int backlog = SOMAXCONN;
};

/// Listens as `options` say, prints "listening on HOST:PORT" (the port really bound, which
/// matters with --port 0), and runs the task `serve(listener)` until SIGINT or SIGTERM.
/// Returns the exit status: 0 after a signal, 1 if the server could not start or a task failed.
template <class Serve>
int run_server(std::string_view program, const ServerOptions& options, Serve serve) {
    // corio sends with MSG_NOSIGNAL, so a vanished peer is an EPIPE error, not a signal. Ignoring
    // SIGPIPE also keeps us alive if whoever reads our stdout or stderr goes away.
    std::signal(SIGPIPE, SIG_IGN);
    try {
        corio::Scheduler kernel;
        SignalPipe signals(kernel, {SIGINT, SIGTERM}); // before "listening": from then on a
                                                       // signal means "exit cleanly"
        corio::AsyncSocket listener =
            corio::AsyncSocket::listen(options.host, options.port, options.backlog);
        std::cout << "listening on " << listener.local_address().to_string() << std::endl;

        // The connection tasks catch their own errors; any other task that fails (the listener)
        // leaves the server unable to serve: report it and stop with status 1.
        int status = 0;
        kernel.set_exception_handler([&](corio::TaskId, const std::exception_ptr& error) {
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& failure) {
                std::cerr << program << ": " << failure.what() << '\n';
            } catch (...) {
                std::cerr << program << ": unknown error\n";
            }
            status = 1;
            kernel.stop();
        });
        kernel.add_task(stop_on_signal(kernel, signals));
        kernel.add_task(serve(std::move(listener)));
        kernel.run();
        return status;
        // Leaving this scope closes the signal pipe, then the Scheduler ends the tasks still alive
        // (the listener and every connection): their sockets close in their destructors.
    } catch (const std::exception& error) { // e.g. the address is in use
        std::cerr << program << ": " << error.what() << '\n';
        return 1;
    }
}

} // namespace examples
