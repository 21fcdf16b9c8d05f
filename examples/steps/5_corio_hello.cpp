// Step 5 of docs/how-it-works.md: the server as corio is meant to be used.
//
//     5_corio_hello [PORT [IDLE_SECONDS]]
//
// AsyncSocket wraps step 4's pattern (try the call, wait on EAGAIN, forget the fd before closing
// it) and corio::timeout_after bounds any wait: a client that says nothing for IDLE_SECONDS
// (default 10) is disconnected.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <iostream>
#include <string>
#include <system_error>
#include <utility>

#include <corio/corio.hpp>

#include "listening_socket.hpp"

namespace {

using Seconds = std::chrono::duration<double>;

corio::Task<> greet(corio::AsyncSocket client, Seconds idle_limit) {
    std::array<std::byte, 4096> request{};
    try {
        while (co_await corio::timeout_after(idle_limit, client.recv(request)) > 0) {
            co_await client.send_all(steps::hello);
        }
    } catch (const corio::TimeoutError&) { // silent too long: closing is all we do
    } catch (const std::system_error&) {   // reset by the client: nobody left to answer
    }
} // `client` closes here: AsyncSocket tells the kernel first

corio::Task<> serve(corio::AsyncSocket listener, Seconds idle_limit) {
    for (;;) {
        auto [client, peer] = co_await listener.accept();
        co_await corio::NewTask{greet(std::move(client), idle_limit)};
    }
}

Seconds idle_argument(int argc, char* argv[]) {
    if (argc < 3) {
        return Seconds(10);
    }
    char* end = nullptr;
    const double seconds = std::strtod(argv[2], &end);
    if (end == argv[2] || *end != '\0' || !(seconds > 0 && seconds < 1e6)) {
        std::cerr << "usage: " << argv[0] << " [PORT [IDLE_SECONDS]]   (IDLE_SECONDS > 0)\n";
        std::exit(2);
    }
    return Seconds(seconds);
}

} // namespace

int main(int argc, char* argv[]) {
    const std::uint16_t port = steps::port_argument(argc, argv);
    const Seconds idle_limit = idle_argument(argc, argv);
    corio::Scheduler kernel;
    auto listener = corio::AsyncSocket::listen("127.0.0.1", port);
    std::cout << "listening on " << listener.local_address().to_string() << std::endl;
    kernel.add_task(serve(std::move(listener), idle_limit));
    kernel.run();
}
