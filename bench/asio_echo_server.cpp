// asio_echo_server - the same echo server written with standalone Asio and C++20 coroutines, for
// comparison (built only when Debian's libasio-dev, or another standalone Asio, is found).
//
//     asio_echo_server [--host H] [--port P] [--backlog N]
//
// Same command line and first line of output as examples/echo_server (`listening on HOST:PORT`).
// One thread, one io_context with concurrency hint 1; a listener coroutine co_spawns one session
// coroutine per connection, which reads into a 16 KiB buffer in its frame and writes it all back
// (async_write) before it reads again, exactly like corio's echo_server. SIGINT/SIGTERM stop it
// with status 0.
#include <asio.hpp>

#include <array>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace {

using asio::ip::tcp;

asio::awaitable<void> session(tcp::socket socket) {
    std::array<char, 16 * 1024> buffer;
    std::error_code error;
    for (;;) {
        const std::size_t received = co_await socket.async_read_some(
            asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, error));
        if (error) {
            co_return; // end of stream, reset, ...: this connection only
        }
        co_await asio::async_write(socket, asio::buffer(buffer.data(), received),
                                   asio::redirect_error(asio::use_awaitable, error));
        if (error) {
            co_return;
        }
    }
}

asio::awaitable<void> listener(tcp::acceptor acceptor) {
    std::error_code error;
    for (;;) {
        tcp::socket socket =
            co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, error));
        if (error) {
            if (error == asio::error::operation_aborted) {
                co_return;
            }
            continue; // e.g. out of fds: try again (a benchmark server, not a hardened one)
        }
        asio::co_spawn(acceptor.get_executor(), session(std::move(socket)), asio::detached);
    }
}

long parse_number(const char* name, std::string_view text, long min, long max) {
    long value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < min || value > max) {
        std::cerr << "asio_echo_server: invalid value '" << text << "' for " << name << '\n';
        std::exit(2);
    }
    return value;
}

} // namespace

int main(int argc, char* argv[]) {
    std::string host = "127.0.0.1";
    long port = 5001;
    long backlog = asio::socket_base::max_listen_connections;
    for (int i = 1; i < argc; ++i) {
        const std::string_view argument = argv[i];
        if (argument == "--help") {
            std::cout << "usage: asio_echo_server [--host H] [--port P] [--backlog N]\n";
            return 0;
        }
        if (i + 1 >= argc) {
            std::cerr << "asio_echo_server: '" << argument << "' needs a value or is unknown\n";
            return 2;
        }
        const std::string_view value = argv[++i];
        if (argument == "--host") {
            host = value;
        } else if (argument == "--port") {
            port = parse_number("--port", value, 0, 65535);
        } else if (argument == "--backlog") {
            backlog = parse_number("--backlog", value, 1, 1L << 30);
        } else {
            std::cerr << "asio_echo_server: unknown option '" << argument << "'\n";
            return 2;
        }
    }
    try {
        asio::io_context context(1);
        const tcp::endpoint endpoint(asio::ip::make_address(host), static_cast<unsigned short>(port));
        tcp::acceptor acceptor(context);
        acceptor.open(endpoint.protocol());
        acceptor.set_option(asio::socket_base::reuse_address(true));
        acceptor.bind(endpoint);
        acceptor.listen(static_cast<int>(backlog));
        const tcp::endpoint bound = acceptor.local_endpoint();
        if (bound.address().is_v6()) {
            std::cout << "listening on [" << bound.address().to_string() << "]:" << bound.port()
                      << std::endl;
        } else {
            std::cout << "listening on " << bound.address().to_string() << ':' << bound.port()
                      << std::endl;
        }
        asio::signal_set signals(context, SIGINT, SIGTERM);
        signals.async_wait([&context](const std::error_code&, int) { context.stop(); });
        asio::co_spawn(context, listener(std::move(acceptor)), asio::detached);
        context.run();
        return 0;
    } catch (const std::exception& error) {
        std::cerr << "asio_echo_server: " << error.what() << '\n';
        return 1;
    }
}
