// TlsStream and TlsContext (corio/tls.hpp) over loopback TCP, server and client in one Scheduler:
// round trips, large payloads both ways, close_notify, truncation, hostile and vanishing peers,
// certificate and host-name verification, SNI, ALPN, timeouts, and no allocation per message.
// The certificates (a CA and a server certificate for localhost and 127.0.0.1 that it signed) are
// made at test time with the `openssl` tool, in a temporary directory. Every listener binds port 0
// on 127.0.0.1; every run is bounded in time.
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <corio/net/async_socket.hpp>
#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>
#include <corio/tls.hpp>

#include <openssl/ssl.h>

#include "support/catch.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"
#include "support/temporary_directory.hpp"
#include "support/tls_certificates.hpp"

// ---- counting allocations (only while a test asks; not under AddressSanitizer, whose allocator
// would meet this operator delete: see test_udp_socket.cpp) ------------------------------------
#if defined(__SANITIZE_ADDRESS__)
#define CORIO_TEST_COUNTS_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORIO_TEST_COUNTS_ALLOCATIONS 0
#endif
#endif
#ifndef CORIO_TEST_COUNTS_ALLOCATIONS
#define CORIO_TEST_COUNTS_ALLOCATIONS 1
#endif

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
} // namespace

#if CORIO_TEST_COUNTS_ALLOCATIONS
void* operator new(std::size_t size) {
    if (counting.load(std::memory_order_relaxed)) {
        allocations.fetch_add(1, std::memory_order_relaxed);
    }
    if (void* block = std::malloc(size == 0 ? 1 : size)) {
        return block;
    }
    throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* block) noexcept {
    std::free(block);
}
[[gnu::noinline]] void operator delete(void* block, std::size_t /*size*/) noexcept {
    std::free(block);
}
#endif

namespace {

using namespace corio::test;
using namespace std::chrono_literals;
using corio::AsyncSocket;
using corio::TlsContext;
using corio::TlsErrc;
using corio::TlsStream;

constexpr std::size_t MiB = 1024 * 1024;

const TestCertificates& certificates() {
    static const TestCertificates made;
    return made;
}

// Called first in each test case, before any task runs: where the openssl tool is missing the
// case stops there with the skip message, instead of failing inside a task.
void require_certificates() { (void)certificates(); }

TlsContext server_context() {
    return TlsContext::server(certificates().certificate, certificates().private_key);
}

TlsContext trusting_client() {
    return TlsContext::client().trust_file(certificates().ca);
}

// A Scheduler and a listener on 127.0.0.1:0; the test's tasks run with a time limit, and the
// kernel must hold nothing at the end.
struct Loopback {
    Loopback() : listener(AsyncSocket::listen("127.0.0.1", 0)), port(listener.local_port()) {}
    Loopback(const Loopback&) = delete;
    Loopback& operator=(const Loopback&) = delete;
    ~Loopback() {
        listener.close();
        require_empty(kernel);
    }

    void run(std::vector<TaskId> ids, std::chrono::seconds limit = 10s) {
        REQUIRE(run_until_ended(kernel, std::move(ids), limit));
    }

    FrameLeakCheck leaks; // first: it checks last
    Scheduler kernel;
    AsyncSocket listener;
    std::uint16_t port;
};

std::string text(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Reads until the peer's close_notify; gives everything.
Task<std::string> read_to_end(TlsStream& stream) {
    std::string all;
    std::array<std::byte, 16384> buffer{};
    while (const std::size_t received = co_await stream.recv(buffer)) {
        all += text(std::span(buffer).first(received));
    }
    co_return all;
}

// Echo server for one connection: echoes until the client's close_notify, then sends its own.
Task<> echo_one(AsyncSocket& listener, TlsContext context) {
    auto [socket, peer] = co_await listener.accept();
    TlsStream stream = co_await corio::timeout_after(5s, TlsStream::accept(context, std::move(socket)));
    std::array<std::byte, 16384> buffer{};
    while (const std::size_t received = co_await stream.recv(buffer)) {
        co_await stream.send_all(std::span(buffer).first(received));
    }
    co_await stream.shutdown();
}

// The system_error awaiting `operation` throws (its code and what()), or nothing.
struct Failure {
    std::error_code code;
    std::string what;
    bool timeout = false;
};
template <class Awaitable>
Task<std::optional<Failure>> failure_of_tls(Awaitable operation) {
    try {
        (void)co_await std::move(operation);
    } catch (const corio::TimeoutError& error) {
        co_return Failure{error.code(), error.what(), true};
    } catch (const std::system_error& error) {
        co_return Failure{error.code(), error.what(), false};
    }
    co_return std::nullopt;
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("TLS: a client and a server exchange data, with SNI, ALPN and TLS 1.3", "[tls]") {
    require_certificates();
    Loopback net;
    std::string server_saw_name;
    std::string server_alpn;
    std::string client_alpn;
    std::string reply;
    auto server = [&]() -> Task<> {
        auto [socket, peer] = co_await net.listener.accept();
        // (Contexts are made outside the co_await: GCC 12 cannot put an initializer_list's array
        // in a coroutine frame, "array used as initializer".)
        const TlsContext context = server_context().alpn_protocols({"h2", "http/1.1"});
        TlsStream stream = co_await TlsStream::accept(context, std::move(socket));
        server_saw_name = stream.server_name();
        server_alpn = stream.alpn_protocol();
        std::array<char, 64> buffer{};
        const std::size_t received = co_await stream.recv(buffer);
        co_await stream.send_all("you said: " + std::string(buffer.data(), received));
        co_await stream.shutdown();
        const std::size_t after = co_await stream.recv(buffer);
        CHECK(after == 0); // the client's close_notify
    };
    auto client = [&]() -> Task<> {
        const TlsContext context = trusting_client().alpn_protocols({"http/1.1"});
        TlsStream stream = co_await TlsStream::connect(context, "localhost", net.port);
        client_alpn = stream.alpn_protocol();
        CHECK(stream.protocol_version() == "TLSv1.3");
        co_await stream.send_all(std::string_view("hello"));
        reply = co_await read_to_end(stream);
        co_await stream.shutdown();
    };
    net.run({net.kernel.add_task(server()), net.kernel.add_task(client())});
    CHECK(server_saw_name == "localhost");
    CHECK(server_alpn == "http/1.1");
    CHECK(client_alpn == "http/1.1");
    CHECK(reply == "you said: hello");
}

TEST_CASE("TLS: send_all of 4 MiB each way at once, every byte checked", "[tls]") {
    require_certificates();
    Loopback net;
    std::string payload(4 * MiB, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) {
        payload[i] = static_cast<char>((i * 2654435761U) >> 13);
    }
    std::string echoed;
    auto sender = [&](TlsStream& stream) -> Task<> {
        co_await stream.send_all(payload);
        co_await stream.shutdown(); // the server's recv gives 0 after the last byte
    };
    auto client = [&]() -> Task<> {
        TlsStream stream = co_await TlsStream::connect(trusting_client(), "localhost", net.port);
        // One task writes while this one reads: a full-duplex stream, and an echo server that
        // would block if nobody read its echo.
        const TaskId writing = co_await corio::NewTask{sender(stream)};
        echoed = co_await read_to_end(stream);
        const corio::TaskExit exit = co_await corio::WaitTask{writing};
        exit.rethrow_if_failed();
    };
    net.run({net.kernel.add_task(echo_one(net.listener, server_context())), net.kernel.add_task(client())}, 30s);
    CHECK(echoed.size() == payload.size());
    CHECK(echoed == payload);
}

TEST_CASE("TLS: a connection closed without close_notify is a truncation error, not an end", "[tls]") {
    require_certificates();
    Loopback net;
    std::string received;
    std::optional<Failure> failure;
    auto server = [&]() -> Task<> {
        auto [socket, peer] = co_await net.listener.accept();
        TlsStream stream = co_await TlsStream::accept(server_context(), std::move(socket));
        co_await stream.send_all(std::string_view("partial"));
        stream.close(); // the attacker's cut: FIN, no close_notify
    };
    auto client = [&]() -> Task<> {
        TlsStream stream = co_await TlsStream::connect(trusting_client(), "localhost", net.port);
        std::array<char, 64> buffer{};
        const std::size_t count = co_await stream.recv(buffer);
        received.assign(buffer.data(), count);
        failure = co_await failure_of_tls(stream.recv(buffer));
    };
    net.run({net.kernel.add_task(server()), net.kernel.add_task(client())});
    CHECK(received == "partial");
    REQUIRE(failure.has_value());
    CHECK(failure->code == TlsErrc::unexpected_eof);
    CHECK(&failure->code.category() == &corio::tls_category());
    CHECK(failure->what.find("unexpected eof while reading") != std::string::npos);
}

TEST_CASE("TLS: garbage during the handshake is an error with OpenSSL's text, and the server "
          "goes on serving",
          "[tls]") {
    require_certificates();
    Loopback net;
    std::optional<Failure> failure;
    std::string reply;
    auto server = [&]() -> Task<> {
        auto [garbage, peer] = co_await net.listener.accept();
        failure = co_await failure_of_tls(TlsStream::accept(server_context(), std::move(garbage)));
        co_await echo_one(net.listener, server_context());
    };
    auto garbage_client = [&]() -> Task<> {
        AsyncSocket socket = co_await AsyncSocket::connect("127.0.0.1", net.port);
        co_await socket.send_all(std::string_view("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        std::array<char, 256> buffer{};
        (void)co_await corio::ignore_after(2s, socket.recv(buffer)); // the alert, or the close
    };
    auto good_client = [&]() -> Task<> {
        co_await corio::Sleep{50ms}; // after the garbage
        TlsStream stream = co_await TlsStream::connect(trusting_client(), "localhost", net.port);
        co_await stream.send_all(std::string_view("still there?"));
        co_await stream.shutdown();
        reply = co_await read_to_end(stream);
    };
    net.run({net.kernel.add_task(server()), net.kernel.add_task(garbage_client()),
             net.kernel.add_task(good_client())});
    REQUIRE(failure.has_value());
    CHECK_FALSE(failure->timeout);
    CHECK(&failure->code.category() == &corio::tls_category());
    INFO(failure->what);
    CHECK(failure->what.find("corio: TLS handshake") != std::string::npos);
    CHECK(failure->what.find("SSL routines") != std::string::npos);
    CHECK(reply == "still there?");
}

TEST_CASE("TLS: a peer that stalls mid-handshake times out, one that vanishes is an error", "[tls]") {
    require_certificates();
    Loopback net;
    std::optional<Failure> stalled;
    std::optional<Failure> vanished;
    std::string reply;
    auto server = [&]() -> Task<> {
        auto [first, first_peer] = co_await net.listener.accept();
        stalled = co_await failure_of_tls(
            corio::timeout_after(200ms, TlsStream::accept(server_context(), std::move(first))));
        auto [second, second_peer] = co_await net.listener.accept();
        vanished = co_await failure_of_tls(
            corio::timeout_after(5s, TlsStream::accept(server_context(), std::move(second))));
        co_await echo_one(net.listener, server_context());
    };
    // Sends the first bytes of a ClientHello (a record header and a little), then stops or leaves.
    auto half_hello = [&](bool leave) -> Task<> {
        AsyncSocket socket = co_await AsyncSocket::connect("127.0.0.1", net.port);
        const std::array<unsigned char, 9> start{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc};
        co_await socket.send_all(std::as_bytes(std::span(start)));
        if (!leave) {
            co_await corio::Sleep{1s}; // longer than the server waits
        }
    };
    auto clients = [&]() -> Task<> {
        const TaskId staller = co_await corio::NewTask{half_hello(false)};
        co_await corio::Sleep{400ms};
        co_await half_hello(true);
        co_await corio::Sleep{50ms};
        TlsStream stream = co_await TlsStream::connect(trusting_client(), "localhost", net.port);
        co_await stream.send_all(std::string_view("ok"));
        co_await stream.shutdown();
        reply = co_await read_to_end(stream);
        (void)co_await corio::WaitTask{staller};
    };
    net.run({net.kernel.add_task(server()), net.kernel.add_task(clients())});
    REQUIRE(stalled.has_value());
    CHECK(stalled->timeout);
    REQUIRE(vanished.has_value());
    CHECK_FALSE(vanished->timeout);
    INFO(vanished->what);
    CHECK(vanished->code == TlsErrc::unexpected_eof);
    CHECK(reply == "ok");
}

TEST_CASE("TLS: a recv that timed out leaves the stream usable", "[tls]") {
    require_certificates();
    Loopback net;
    bool timed_out = false;
    std::string later;
    auto server = [&]() -> Task<> {
        auto [socket, peer] = co_await net.listener.accept();
        TlsStream stream = co_await TlsStream::accept(server_context(), std::move(socket));
        co_await corio::Sleep{200ms}; // longer than the client's first recv waits
        co_await stream.send_all(std::string_view("late but whole"));
        co_await stream.shutdown();
        (void)co_await read_to_end(stream);
    };
    auto client = [&]() -> Task<> {
        TlsStream stream = co_await TlsStream::connect(trusting_client(), "localhost", net.port);
        std::array<char, 64> buffer{};
        const std::optional<std::size_t> first = co_await corio::ignore_after(50ms, stream.recv(buffer));
        timed_out = !first.has_value();
        later = co_await read_to_end(stream);
        co_await stream.shutdown();
    };
    net.run({net.kernel.add_task(server()), net.kernel.add_task(client())});
    CHECK(timed_out);
    CHECK(later == "late but whole");
}

TEST_CASE("TLS: a second recv while one runs is a logic error, and the first goes on", "[tls]") {
    require_certificates();
    Loopback net;
    bool second_refused = false;
    std::string first;
    auto server = [&]() -> Task<> {
        auto [socket, peer] = co_await net.listener.accept();
        TlsStream stream = co_await TlsStream::accept(server_context(), std::move(socket));
        co_await corio::Sleep{100ms};
        co_await stream.send_all(std::string_view("for the first"));
        co_await stream.shutdown();
        (void)co_await read_to_end(stream);
    };
    auto second_reader = [&](TlsStream& stream) -> Task<> {
        std::array<char, 16> buffer{};
        try {
            (void)co_await stream.recv(buffer);
        } catch (const std::logic_error&) {
            second_refused = true;
        }
    };
    auto client = [&]() -> Task<> {
        TlsStream stream = co_await TlsStream::connect(trusting_client(), "localhost", net.port);
        const TaskId second = co_await corio::NewTask{second_reader(stream)}; // runs while we wait below
        first = co_await read_to_end(stream);
        (void)co_await corio::WaitTask{second};
        co_await stream.shutdown();
    };
    net.run({net.kernel.add_task(server()), net.kernel.add_task(client())});
    CHECK(second_refused);
    CHECK(first == "for the first");
}

TEST_CASE("TLS: a client verifies the server's certificate and host name by default", "[tls]") {
    require_certificates();
    struct Attempt {
        std::string name;
        TlsContext context;
        std::string host;
        std::optional<Failure> failure;
    };
    std::vector<Attempt> attempts;
    attempts.push_back({"untrusted CA", TlsContext::client(), "localhost", {}});
    attempts.push_back({"trusted CA", trusting_client(), "localhost", {}});
    attempts.push_back({"IP address", trusting_client(), "127.0.0.1", {}});
    attempts.push_back({"wrong host", trusting_client(), "example.com", {}});
    attempts.push_back({"no verification", TlsContext::client().insecure_skip_verification(), "example.com", {}});
    for (Attempt& attempt : attempts) {
        Loopback net;
        auto server = [&]() -> Task<> {
            auto [socket, peer] = co_await net.listener.accept();
            (void)co_await failure_of_tls(TlsStream::accept(server_context(), std::move(socket)));
        };
        auto client = [&]() -> Task<> {
            AsyncSocket socket = co_await AsyncSocket::connect("127.0.0.1", net.port);
            TlsStream stream = TlsStream::client(attempt.context, std::move(socket), attempt.host);
            attempt.failure = co_await failure_of_tls(stream.handshake());
        };
        net.run({net.kernel.add_task(server()), net.kernel.add_task(client())});
    }
    const auto verify_failed = [](const Attempt& attempt, std::string_view reason) {
        INFO(attempt.name);
        REQUIRE(attempt.failure.has_value());
        INFO(attempt.failure->what);
        CHECK(attempt.failure->code == TlsErrc::certificate_verify_failed);
        CHECK(attempt.failure->what.find(reason) != std::string::npos);
    };
    verify_failed(attempts[0], "unable to get local issuer certificate");
    CHECK_FALSE(attempts[1].failure.has_value());
    CHECK_FALSE(attempts[2].failure.has_value());
    verify_failed(attempts[3], "hostname mismatch");
    CHECK_FALSE(attempts[4].failure.has_value());
}

TEST_CASE("TLS: TLS 1.2 is the minimum, so a server that offers only TLS 1.1 is refused", "[tls]") {
    require_certificates();
    // Both contexts start at TLS 1.2.
    CHECK(SSL_CTX_get_min_proto_version(TlsContext::client().native_handle()) == TLS1_2_VERSION);
    CHECK(SSL_CTX_get_min_proto_version(server_context().native_handle()) == TLS1_2_VERSION);

    // A server that speaks TLS 1.0-1.1 only (security level 0 lets OpenSSL 3 speak them at all);
    // the client is lowered to security level 0 too, so its TLS 1.2 minimum is what refuses.
    TlsContext old_server = server_context();
    SSL_CTX_set_security_level(old_server.native_handle(), 0);
    SSL_CTX_set_min_proto_version(old_server.native_handle(), TLS1_VERSION);
    SSL_CTX_set_max_proto_version(old_server.native_handle(), TLS1_1_VERSION);
    TlsContext default_client = trusting_client();
    SSL_CTX_set_security_level(default_client.native_handle(), 0);
    // The control: the same client with its minimum lowered by hand gets TLS 1.1 from that
    // server, so the refusal comes from the minimum and not from this machine's OpenSSL.
    TlsContext lowered_client = trusting_client();
    SSL_CTX_set_security_level(lowered_client.native_handle(), 0);
    SSL_CTX_set_min_proto_version(lowered_client.native_handle(), TLS1_VERSION);

    std::optional<Failure> refused;
    std::optional<Failure> lowered;
    std::string lowered_version;
    for (TlsContext* client_context : {&default_client, &lowered_client}) {
        Loopback net;
        auto server = [&]() -> Task<> {
            auto [socket, peer] = co_await net.listener.accept();
            (void)co_await failure_of_tls(TlsStream::accept(old_server, std::move(socket)));
        };
        auto client = [&]() -> Task<> {
            AsyncSocket socket = co_await AsyncSocket::connect("127.0.0.1", net.port);
            TlsStream stream = TlsStream::client(*client_context, std::move(socket), "localhost");
            std::optional<Failure> failure = co_await failure_of_tls(stream.handshake());
            if (client_context == &default_client) {
                refused = std::move(failure);
            } else {
                lowered = std::move(failure);
                lowered_version = std::string(stream.protocol_version());
            }
        };
        net.run({net.kernel.add_task(server()), net.kernel.add_task(client())});
    }
    REQUIRE(refused.has_value());
    INFO(refused->what);
    CHECK(refused->code.category() == corio::tls_category());
    CHECK_FALSE(refused->timeout);
    CHECK_FALSE(lowered.has_value());
    CHECK(lowered_version == "TLSv1.1");
}

TEST_CASE("TLS: a server refuses a client whose ALPN protocols it does not speak", "[tls]") {
    require_certificates();
    Loopback net;
    std::optional<Failure> server_failure;
    std::optional<Failure> client_failure;
    auto server = [&]() -> Task<> {
        auto [socket, peer] = co_await net.listener.accept();
        const TlsContext context = server_context().alpn_protocols({"h2"});
        server_failure = co_await failure_of_tls(TlsStream::accept(context, std::move(socket)));
    };
    auto client = [&]() -> Task<> {
        const TlsContext context = trusting_client().alpn_protocols({"http/1.1"});
        client_failure = co_await failure_of_tls(TlsStream::connect(context, "localhost", net.port));
    };
    net.run({net.kernel.add_task(server()), net.kernel.add_task(client())});
    REQUIRE(server_failure.has_value());
    REQUIRE(client_failure.has_value());
    INFO(client_failure->what);
    CHECK(client_failure->what.find("no application protocol") != std::string::npos);
}

TEST_CASE("TLS: bad certificate and key files are errors that name the file", "[tls]") {
    require_certificates();
    const auto error_of_server = [](const std::string& certificate, const std::string& key) -> std::string {
        try {
            (void)TlsContext::server(certificate, key);
        } catch (const std::system_error& error) {
            return error.what();
        }
        return "no error";
    };
    CHECK(error_of_server("/nonexistent/cert.pem", certificates().private_key).find("/nonexistent/cert.pem") !=
          std::string::npos);
    CHECK(error_of_server(certificates().private_key, certificates().private_key).find("certificate file") !=
          std::string::npos);
    const std::string mismatch = error_of_server(certificates().certificate, certificates().ca_key);
    INFO(mismatch);
    CHECK(mismatch.find(certificates().ca_key) != std::string::npos);
    CHECK(mismatch.find("values mismatch") != std::string::npos); // OpenSSL's words
    CHECK_THROWS_AS(TlsContext::server(certificates().certificate, certificates().private_key).trust_file("x"),
                    std::logic_error);
}

TEST_CASE("TLS: no heap allocation per message in steady state", "[tls][alloc]") {
    require_certificates();
#if !CORIO_TEST_COUNTS_ALLOCATIONS
    WARN("not counted under AddressSanitizer (its allocator, and no frame pool)");
#else
    Loopback net;
    long counted = -1;
    int wrong_echoes = 0; // counted here: a CHECK per message would allocate in the window
    constexpr int warmup = 200;
    constexpr int messages = 2000;
    auto client = [&]() -> Task<> {
        TlsStream stream = co_await TlsStream::connect(trusting_client(), "localhost", net.port);
        std::array<std::byte, 512> message{};
        std::array<std::byte, 512> echo{};
        for (int i = 0; i < warmup + messages; ++i) {
            if (i == warmup) {
                allocations = 0;
                counting = true;
            }
            message[0] = static_cast<std::byte>(i);
            co_await stream.send_all(std::span(message));
            std::size_t got = 0;
            while (got < echo.size()) {
                got += co_await stream.recv(std::span(echo).subspan(got));
            }
            wrong_echoes += echo == message ? 0 : 1;
        }
        counting = false;
        counted = allocations;
        co_await stream.shutdown();
        (void)co_await read_to_end(stream);
    };
    net.run({net.kernel.add_task(echo_one(net.listener, server_context())), net.kernel.add_task(client())});
    INFO("operator new calls in " << messages << " echoed messages: " << counted);
    CHECK(counted == 0);
    CHECK(wrong_echoes == 0);
#endif
}

} // namespace
