// echo_client - sends each line of stdin to an echo server and prints what comes back.
//
//     echo_client [--host H] [--port P]          e.g.  printf 'one\ntwo\n' | echo_client
//
// For each line it sends the line, waits for the echo and prints it (a last line without a newline
// is sent with one). At the end of stdin it shuts down its sending side, reads until the server
// closes the connection, and exits with status 0.
// It exits with status 1 if the connection fails, 2 for a bad command line.
#include <cstdint>
#include <exception>
#include <iostream>
#include <span>
#include <stdexcept>
#include <string>

#include <corio/corio.hpp>

#include "common/options.hpp"

namespace {

// Fills `buffer` from the socket. False if the server closed the connection first.
corio::Task<bool> receive_exactly(corio::AsyncSocket& socket, std::span<char> buffer) {
    while (!buffer.empty()) {
        const std::size_t received = co_await socket.recv(buffer);
        if (received == 0) {
            co_return false;
        }
        buffer = buffer.subspan(received);
    }
    co_return true;
}

corio::Task<> echo_lines(std::string host, std::uint16_t port) {
    corio::AsyncSocket server = co_await corio::AsyncSocket::connect(host, port);
    std::string line;
    std::string echo;
    // std::getline blocks, and with it the whole event loop. On purpose: this client has one
    // connection and nothing else to do while it waits for input, so the simplest correct code
    // wins. (A server must never do this: one slow input would stop every other client.)
    while (std::getline(std::cin, line)) {
        line += '\n';
        co_await server.send_all(line);
        echo.resize(line.size());
        if (!co_await receive_exactly(server, echo)) {
            throw std::runtime_error("the server closed the connection before echoing everything");
        }
        std::cout << echo << std::flush;
    }
    // End of input: say so (the server sees end-of-stream), then read until it closes.
    server.shutdown_write();
    char rest[4096];
    while (const std::size_t received = co_await server.recv(std::span(rest))) {
        std::cout.write(rest,
                        static_cast<std::streamsize>(received)); // nothing, from an echo server
    }
    std::cout.flush();
}

} // namespace

int main(int argc, char* argv[]) {
    std::string host = "127.0.0.1";
    std::uint16_t port = 5001;
    if (const auto status = examples::parse_command_line(
            argc, argv, "echo_client",
            "Sends each line of stdin to an echo server and prints the echo.",
            {examples::host_option(host), examples::port_option(port, 1)})) {
        return *status; // --help, or a bad command line
    }
    try {
        corio::run(echo_lines(host, port));
        return 0;
    } catch (const std::exception& error) { // e.g. connection refused or reset
        std::cerr << "echo_client: " << error.what() << '\n';
        return 1;
    }
}
