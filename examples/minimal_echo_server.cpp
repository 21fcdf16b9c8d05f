// The README's echo server: the smallest complete corio server (see echo_server for the real one).
#include <corio/corio.hpp>

#include <array>
#include <iostream>

corio::Task<> handle_client(corio::AsyncSocket client) {
    std::array<std::byte, 16384> buffer{};
    while (const std::size_t received = co_await client.recv(buffer)) {
        co_await client.send_all(std::span(buffer).first(received)); // waits while the peer is slow
    }
} // end of stream: the socket closes here

corio::Task<> serve(corio::AsyncSocket listener) {
    for (;;) {
        auto [client, peer] = co_await listener.accept();
        co_await corio::NewTask{handle_client(std::move(client))}; // one task per connection
    }
}

int main() {
    corio::Scheduler kernel;
    auto listener = corio::AsyncSocket::listen("127.0.0.1", 5001);
    std::cout << "listening on " << listener.local_address().to_string() << std::endl;
    kernel.add_task(serve(std::move(listener)));
    kernel.run();
}
