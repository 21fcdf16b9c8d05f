// udp_echo_server - sends every datagram it receives back to whoever sent it.
//
//     udp_echo_server [--host H] [--port P] [--verbose]
//
// Once bound it prints `listening on HOST:PORT` (with --port 0 the kernel picks the port, and
// that line says which); --host ::1 serves IPv6. It runs until a signal ends it (SIGINT, SIGTERM:
// no state to save, so the default action is the clean exit); a bad command line exits with
// status 2, a failure to bind with 1. Try it with `nc -u 127.0.0.1 5001`.
//
// One task serves every client: a datagram is a whole message, with no connection to give a task
// of its own. The 64 KiB buffer holds the largest UDP datagram, so nothing is ever truncated, and
// the loop allocates nothing per datagram.
#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iostream>
#include <span>
#include <string>
#include <system_error>

#include <corio/corio.hpp>

#include "common/options.hpp"

namespace {

corio::Task<> echo_datagrams(corio::UdpSocket& socket, bool verbose) {
    std::array<std::byte, 65536> buffer; // not zeroed: recv_from writes before anyone reads
    for (;;) {
        const corio::Datagram datagram = co_await socket.recv_from(buffer);
        if (verbose) {
            std::cerr << datagram.peer.to_string() + ": " + std::to_string(datagram.size) +
                             " bytes\n"; // one write: lines never mix
        }
        try {
            co_await socket.send_to(std::span(buffer).first(datagram.size), datagram.peer);
        } catch (const std::system_error& error) { // this peer cannot be answered; others can
            if (verbose) {
                std::cerr << datagram.peer.to_string() + ": " + error.what() + '\n';
            }
        }
    }
}

} // namespace

int main(int argc, char* argv[]) {
    std::string host = "127.0.0.1";
    std::uint16_t port = 5001;
    bool verbose = false;
    if (const auto status = examples::parse_command_line(
            argc, argv, "udp_echo_server", "Sends every datagram it receives back to its sender.",
            {examples::host_option(host), examples::port_option(port, 0, "UDP"),
             examples::flag_option("--verbose", "log each datagram to stderr", verbose)})) {
        return *status; // --help, or a bad command line
    }
    try {
        corio::Scheduler kernel;
        corio::UdpSocket socket = corio::UdpSocket::bind(host, port);
        std::cout << "listening on " << socket.local_address().to_string() << std::endl;
        kernel.run_until_complete(echo_datagrams(socket, verbose));
    } catch (const std::exception& error) { // e.g. the port is taken
        std::cerr << "udp_echo_server: " << error.what() << '\n';
        return 1;
    }
}
