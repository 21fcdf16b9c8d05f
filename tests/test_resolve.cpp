// Tests for corio/net/resolve.hpp and AsyncSocket::connect by name: "localhost" resolves to a
// loopback address (on the thread pool), numeric addresses never touch the pool, connect tries the
// resolved addresses in turn, and bad names fail with a std::system_error that says why.
#include <corio/net/resolve.hpp> // first: the header stands alone

#include <netdb.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <exception>
#include <string>
#include <system_error>
#include <vector>

#include <corio/net/async_socket.hpp>
#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>

#include "support/catch.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace corio::test;
using corio::AsyncSocket;
using corio::SocketAddress;

bool is_loopback(const SocketAddress& address) {
    const std::string host = address.host();
    return host.starts_with("127.") || host == "::1";
}


// The code of the std::system_error in `error` (an empty code for anything else).
std::error_code code_of(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::system_error& e) {
        return e.code();
    } catch (...) {
        return {};
    }
}

void run_one(Scheduler& kernel, Task<> task) {
    const TaskId id = kernel.add_task(std::move(task));
    REQUIRE(run_until_ended(kernel, {id}));
    require_empty(kernel);
    CHECK(kernel.stats().thread_jobs == 0);
}

} // namespace

TEST_CASE("resolve: localhost gives loopback addresses with the port", "[resolve]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto body = []() -> Task<> {
        const std::vector<SocketAddress> found = co_await corio::resolve("localhost", 8123);
        REQUIRE_FALSE(found.empty());
        for (const SocketAddress& address : found) {
            CHECK(is_loopback(address));
            CHECK(address.port() == 8123);
            CHECK((address.family() == AF_INET || address.family() == AF_INET6));
        }
    };
    run_one(kernel, body());
    CHECK(kernel.thread_pool().thread_count() == 1); // getaddrinfo ran on the pool
}

TEST_CASE("resolve: a numeric address gives itself without the thread pool", "[resolve]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto body = []() -> Task<> {
        const auto v4 = co_await corio::resolve("127.0.0.1", 80);
        REQUIRE(v4.size() == 1);
        CHECK(v4[0].to_string() == "127.0.0.1:80");
        const auto v6 = co_await corio::resolve("[::1]", 81);
        REQUIRE(v6.size() == 1);
        CHECK(v6[0].to_string() == "[::1]:81");
    };
    run_one(kernel, body());
    CHECK(kernel.thread_pool().thread_count() == 0);
}

TEST_CASE("resolve: a name that does not exist fails with a system_error", "[resolve]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto body = []() -> Task<> {
        try {
            // .invalid never resolves (RFC 6761).
            co_await corio::resolve("no-such-host.invalid", 80);
            FAIL("resolved a name that cannot exist");
        } catch (const std::system_error& e) {
            const std::string what = e.what();
            CHECK(what.find("no-such-host.invalid") != std::string::npos);
            // No DNS server reachable (EAI_AGAIN) is a failure too, and says so.
            CHECK((e.code().category() == corio::resolve_category() ||
                   e.code().category() == std::system_category()));
        }
        const std::exception_ptr empty = co_await failure_of(corio::resolve("", 80));
        REQUIRE(empty);
        CHECK(code_of(empty) == std::errc::invalid_argument);
        const std::exception_ptr nul = co_await failure_of(corio::resolve(std::string("local\0host", 10), 80));
        REQUIRE(nul);
        CHECK(code_of(nul) == std::errc::invalid_argument);
    };
    run_one(kernel, body());
    CHECK(corio::resolve_category().message(EAI_NONAME) == ::gai_strerror(EAI_NONAME));
    CHECK(std::string(corio::resolve_category().name()) == "corio.resolve");
}

TEST_CASE("connect: by name, to a listener on 127.0.0.1", "[resolve]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto body = []() -> Task<> {
        AsyncSocket listener = AsyncSocket::listen("127.0.0.1", 0);
        const std::uint16_t port = listener.local_port();
        // localhost may also give ::1 first, where nothing listens: connect tries the next one.
        AsyncSocket client = co_await AsyncSocket::connect("localhost", port);
        auto [server, peer] = co_await listener.accept();
        CHECK(client.peer_address().to_string() == "127.0.0.1:" + std::to_string(port));
        co_await client.send_all(std::string_view("ping"));
        std::array<char, 8> buffer{};
        const std::size_t received = co_await server.recv(buffer);
        CHECK(std::string(buffer.data(), received) == "ping");
    };
    run_one(kernel, body());
}

TEST_CASE("connect: by number does not use the thread pool, every failure is thrown",
          "[resolve]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto body = [](Scheduler& loop) -> Task<> {
        AsyncSocket listener = AsyncSocket::listen("127.0.0.1", 0);
        const std::uint16_t port = listener.local_port();
        AsyncSocket client = co_await AsyncSocket::connect("127.0.0.1", port);
        CHECK(client.is_open());
        AsyncSocket by_address = co_await AsyncSocket::connect(SocketAddress::parse("127.0.0.1", port));
        CHECK(by_address.is_open());
        CHECK(loop.thread_pool().thread_count() == 0); // numeric: no thread was needed
        listener.close();
        // Nothing listens any more: refused on every address of localhost.
        try {
            co_await AsyncSocket::connect("localhost", port);
            FAIL("connected to a closed port");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::connection_refused);
        }
        const std::exception_ptr unknown = co_await failure_of(AsyncSocket::connect("no-such-host.invalid", port));
        REQUIRE(unknown);
        CHECK(code_of(unknown) != std::error_code());
    };
    run_one(kernel, body(kernel));
}
