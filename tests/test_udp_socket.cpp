// UdpSocket over loopback, IPv4 and IPv6, inside a Scheduler: datagram round trips, waiting and
// waking, truncation, timeouts, kills, errors, fd hygiene, and no allocation per datagram.
// Every socket binds port 0 on 127.0.0.1 or ::1.
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fcntl.h>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>
#include <corio/net/udp_socket.hpp>

#include "support/catch.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

// ---- counting allocations (only while a test asks) -----------------------------------------
// Not under AddressSanitizer, which brings an allocator of its own: there, blocks that its
// operator new handed out reached this operator delete (alloc-dealloc-mismatch).

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
// Not inlined: GCC would see free() given what operator new returned (-Wmismatched-new-delete).
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
using corio::Datagram;
using corio::KillTask;
using corio::Sleep;
using corio::SocketAddress;
using corio::UdpSocket;
using corio::Yield;

// A Scheduler and two sockets bound to port 0 on `host`. When the test is done, it closes them
// and checks that the kernel holds nothing and that no frame leaked.
struct Loopback {
    explicit Loopback(std::string_view host = "127.0.0.1")
        : receiver(UdpSocket::bind(host, 0)), sender(UdpSocket::bind(host, 0)) {}
    Loopback(const Loopback&) = delete;
    Loopback& operator=(const Loopback&) = delete;
    ~Loopback() {
        receiver.close();
        sender.close();
        require_empty(kernel);
    }

    /// Runs the kernel until the tasks `ids` have ended; fails the test after 10 s.
    void run(std::vector<TaskId> ids) { REQUIRE(run_until_ended(kernel, std::move(ids))); }

    FrameLeakCheck leaks; // first: it checks last
    Scheduler kernel;
    UdpSocket receiver;
    UdpSocket sender;
};

// The text of datagram `index`: its number, so a lost, repeated or reordered one shows.
std::string message(int index) {
    return "datagram " + std::to_string(index);
}

std::string text_of(std::span<const char> buffer, const Datagram& datagram) {
    return {buffer.data(), datagram.size};
}

// Sends back every datagram it receives, to whoever sent it, `count` times.
Task<> echo(UdpSocket& socket, int count) {
    std::array<char, 2048> buffer{};
    for (int i = 0; i < count; ++i) {
        const Datagram got = co_await socket.recv_from(buffer);
        co_await socket.send_to(std::span(buffer).first(got.size), got.peer);
    }
}

// Sends `count` datagrams to `server` one at a time and checks each echo and who sent it.
Task<> ping(UdpSocket& socket, SocketAddress server, int count, std::vector<std::string>& replies) {
    std::array<char, 2048> buffer{};
    for (int i = 0; i < count; ++i) {
        const std::string text = message(i);
        const std::size_t sent = co_await socket.send_to(text, server);
        CHECK(sent == text.size());
        const Datagram got = co_await socket.recv_from(buffer);
        CHECK(got.peer.to_string() == server.to_string());
        CHECK_FALSE(got.truncated);
        replies.push_back(text_of(buffer, got));
    }
}

void round_trip(std::string_view host, int count) {
    std::vector<std::string> replies;
    {
        Loopback net(host);
        UdpSocket& server = net.receiver;
        const TaskId serving = net.kernel.add_task(echo(server, count));
        const TaskId pinging =
            net.kernel.add_task(ping(net.sender, server.local_address(), count, replies));
        net.run({serving, pinging});
    }
    REQUIRE(replies.size() == static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        CHECK(replies[static_cast<std::size_t>(i)] == message(i));
    }
}

TEST_CASE("UdpSocket: 500 datagrams round trip over IPv4", "[udp_socket]") {
    round_trip("127.0.0.1", 500);
}

TEST_CASE("UdpSocket: 500 datagrams round trip over IPv6", "[udp_socket]") {
    round_trip("::1", 500);
}

TEST_CASE("UdpSocket: a burst of datagrams arrives whole and in order", "[udp_socket]") {
    Loopback net;
    net.sender.connect(net.receiver.local_address());
    constexpr int burst = 64; // well within a loopback receive buffer
    std::vector<std::string> got;
    auto send_burst = [](UdpSocket& socket) -> Task<> {
        for (int i = 0; i < burst; ++i) {
            co_await socket.send(message(i));
        }
    };
    auto receive = [](UdpSocket& socket, std::vector<std::string>& out) -> Task<> {
        std::array<char, 64> buffer{};
        while (out.size() < burst) {
            const Datagram datagram = co_await socket.recv(buffer);
            out.push_back(text_of(buffer, datagram));
        }
    };
    const TaskId receiving = net.kernel.add_task(receive(net.receiver, got));
    const TaskId sending = net.kernel.add_task(send_burst(net.sender));
    net.run({receiving, sending});
    REQUIRE(got.size() == burst);
    for (int i = 0; i < burst; ++i) {
        CHECK(got[static_cast<std::size_t>(i)] == message(i));
    }
}

Task<> receive_one(UdpSocket& socket, std::string& text, SocketAddress& from) {
    std::array<char, 128> buffer{};
    const Datagram got = co_await socket.recv_from(buffer);
    text = text_of(buffer, got);
    from = got.peer;
}

TEST_CASE("UdpSocket: recv_from waits for a datagram, then wakes with it", "[udp_socket]") {
    Loopback net;
    std::string text;
    SocketAddress from;
    const TaskId receiving = net.kernel.add_task(receive_one(net.receiver, text, from));
    auto send_later = [](Scheduler& k, UdpSocket& socket, SocketAddress to,
                         const std::string& seen) -> Task<> {
        co_await Yield{};
        co_await Sleep{20ms};
        CHECK(seen.empty());                  // nothing came yet: the receiver must still wait...
        CHECK(k.stats().waiting_on_fds == 1); // ...on its fd
        co_await socket.send_to(std::string_view("wake up"), to);
    };
    const TaskId sending =
        net.kernel.add_task(send_later(net.kernel, net.sender, net.receiver.local_address(), text));
    net.run({receiving, sending});
    CHECK(text == "wake up");
    CHECK(from.to_string() == net.sender.local_address().to_string());
}

TEST_CASE("UdpSocket: send_to an IPv6 peer from an unconnected socket", "[udp_socket]") {
    Loopback net("::1");
    const SocketAddress to = SocketAddress::parse("::1", net.receiver.local_port());
    CHECK(to.to_string() == "[::1]:" + std::to_string(net.receiver.local_port()));
    std::string text;
    SocketAddress from;
    const TaskId receiving = net.kernel.add_task(receive_one(net.receiver, text, from));
    auto send = [](UdpSocket& socket, const SocketAddress& peer) -> Task<> {
        const std::size_t sent = co_await socket.send_to(std::string_view("over six"), peer);
        CHECK(sent == 8);
    };
    const TaskId sending = net.kernel.add_task(send(net.sender, to));
    net.run({receiving, sending});
    CHECK(text == "over six");
    CHECK(from.family() == AF_INET6);
    CHECK(from.to_string() == "[::1]:" + std::to_string(net.sender.local_port()));
}

TEST_CASE("UdpSocket: a datagram longer than the buffer is reported truncated", "[udp_socket]") {
    Loopback net;
    net.sender.connect(net.receiver.local_address());
    std::vector<Datagram> got;
    std::string first;
    std::string second;
    auto run = [](UdpSocket& out, UdpSocket& in, std::vector<Datagram>& datagrams, std::string& a,
                  std::string& b) -> Task<> {
        co_await out.send(std::string_view("0123456789abcdef")); // 16 bytes
        co_await out.send(std::string_view("next"));
        std::array<char, 10> small{};
        datagrams.push_back(co_await in.recv_from(small));
        a.assign(small.data(), datagrams.back().size);
        std::array<char, 64> large{};
        datagrams.push_back(co_await in.recv_from(large));
        b.assign(large.data(), datagrams.back().size);
    };
    net.run({net.kernel.add_task(run(net.sender, net.receiver, got, first, second))});
    REQUIRE(got.size() == 2);
    CHECK(got[0].truncated);
    CHECK(got[0].size == 10); // what the buffer holds; the other 6 bytes are gone
    CHECK(first == "0123456789");
    CHECK_FALSE(got[1].truncated); // the next datagram is whole: nothing of the first is left
    CHECK(second == "next");
}

TEST_CASE("UdpSocket: an empty datagram is received as size 0", "[udp_socket]") {
    Loopback net;
    std::vector<Datagram> got;
    auto run = [](UdpSocket& out, UdpSocket& in, std::vector<Datagram>& datagrams) -> Task<> {
        const SocketAddress to = in.local_address();
        const std::size_t empty = co_await out.send_to(std::string_view(), to);
        const std::size_t one = co_await out.send_to(std::string_view("x"), to);
        CHECK(empty == 0);
        CHECK(one == 1);
        std::array<char, 8> buffer{};
        datagrams.push_back(co_await in.recv_from(buffer));
        datagrams.push_back(co_await in.recv_from(std::span(buffer).first(0))); // discards "x"
    };
    net.run({net.kernel.add_task(run(net.sender, net.receiver, got))});
    REQUIRE(got.size() == 2);
    CHECK(got[0].size == 0);
    CHECK_FALSE(got[0].truncated);
    CHECK(got[1].size == 0);
    CHECK(got[1].truncated);
}

TEST_CASE("UdpSocket: recv under timeout_after times out and leaves the socket usable",
          "[udp_socket]") {
    Loopback net;
    net.receiver.connect(net.sender.local_address());
    net.sender.connect(net.receiver.local_address());
    bool timed_out = false;
    std::string after;
    auto run = [](Scheduler& k, UdpSocket& x, UdpSocket& y, bool& expired,
                  std::string& text) -> Task<> {
        std::array<char, 32> buffer{};
        const auto start = Scheduler::Clock::now();
        try {
            (void)co_await corio::timeout_after(30ms, x.recv(buffer));
        } catch (const corio::TimeoutError& e) {
            expired = e.code() == std::errc::timed_out;
        }
        CHECK(Scheduler::Clock::now() - start >= 30ms);
        CHECK(k.stats().waiting_on_fds == 0); // the timed-out wait is gone
        co_await y.send(std::string_view("later"));
        const Datagram got = co_await corio::timeout_after(5s, x.recv(buffer));
        text = text_of(buffer, got);
    };
    net.run({net.kernel.add_task(run(net.kernel, net.receiver, net.sender, timed_out, after))});
    CHECK(timed_out);
    CHECK(after == "later");
}

TEST_CASE("UdpSocket: killing a task waiting in recv_from leaves nothing registered",
          "[udp_socket]") {
    Loopback net;
    std::string text;
    SocketAddress from;
    const TaskId victim = net.kernel.add_task(receive_one(net.receiver, text, from));
    auto kill_then_check = [](Scheduler& k, TaskId id) -> Task<> {
        co_await Yield{};
        CHECK(k.stats().waiting_on_fds == 1);
        const bool existed = co_await KillTask{id};
        CHECK(existed);
        CHECK(k.stats().waiting_on_fds == 0);
    };
    net.run({victim, net.kernel.add_task(kill_then_check(net.kernel, victim))});
    // The datagram sent after the kill is no one's: the next net.receiver gets it.
    auto send = [](UdpSocket& socket, SocketAddress to) -> Task<> {
        co_await socket.send_to(std::string_view("after the kill"), to);
    };
    const TaskId receiving = net.kernel.add_task(receive_one(net.receiver, text, from));
    const TaskId sending = net.kernel.add_task(send(net.sender, net.receiver.local_address()));
    net.run({receiving, sending});
    CHECK(text == "after the kill");
}

TEST_CASE("UdpSocket: a connected peer that is gone gives ECONNREFUSED", "[udp_socket]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    UdpSocket client = UdpSocket::bind("127.0.0.1", 0);
    {
        UdpSocket gone = UdpSocket::bind("127.0.0.1", 0);
        client.connect(gone.local_address());
    } // closed: the port is unreachable now, and the ICMP error comes back to the client
    int error = 0;
    auto run = [](UdpSocket& socket, int& out) -> Task<> {
        co_await socket.send(std::string_view("anyone?"));
        std::array<char, 16> buffer{};
        out = co_await error_of(corio::timeout_after(5s, socket.recv(buffer)));
    };
    REQUIRE(run_until_ended(kernel, {kernel.add_task(run(client, error))}));
    CHECK(error == ECONNREFUSED);
    client.close();
    require_empty(kernel);
}

TEST_CASE("UdpSocket: bind errors are std::system_error with errno", "[udp_socket]") {
    UdpSocket first = UdpSocket::bind("127.0.0.1", 0);
    try {
        (void)UdpSocket::bind("127.0.0.1", first.local_port());
        FAIL("a second bind to the same port succeeded");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == EADDRINUSE);
        CHECK(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.local_port())) !=
              std::string::npos);
    }
    CHECK_THROWS_AS(UdpSocket::bind("localhost", 0), std::system_error); // numeric only
}

TEST_CASE("UdpSocket: send without a peer fails, disconnect forgets the peer", "[udp_socket]") {
    Loopback net("::1");
    int unconnected = 0;
    int no_address = 0;
    net.receiver.connect(net.sender.local_address());
    CHECK(net.receiver.peer_address().to_string() == net.sender.local_address().to_string());
    net.receiver.disconnect();
    CHECK_THROWS_AS(net.receiver.peer_address(), std::system_error);
    auto run = [](UdpSocket& s, int& a, int& b) -> Task<> {
        a = co_await error_of(s.send(std::string_view("to whom?")));
        b = co_await error_of(s.send_to(std::string_view("x"), SocketAddress()));
    };
    net.run({net.kernel.add_task(run(net.receiver, unconnected, no_address))});
    CHECK((unconnected == EDESTADDRREQ || unconnected == ENOTCONN));
    CHECK(no_address == EINVAL); // an empty SocketAddress is no destination
}

TEST_CASE("UdpSocket: the fd is non-blocking and close-on-exec, and close is idempotent",
          "[udp_socket]") {
    UdpSocket socket = UdpSocket::bind("127.0.0.1", 0);
    REQUIRE(socket.is_open());
    CHECK((::fcntl(socket.fd(), F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(socket.fd(), F_GETFD) & FD_CLOEXEC) != 0);
    int type = 0;
    socklen_t size = sizeof type;
    REQUIRE(::getsockopt(socket.fd(), SOL_SOCKET, SO_TYPE, &type, &size) == 0);
    CHECK(type == SOCK_DGRAM);
    UdpSocket moved = std::move(socket);
    CHECK_FALSE(socket.is_open()); // NOLINT(bugprone-use-after-move): moved-from is closed
    moved.close();
    moved.close();
    CHECK_FALSE(moved.is_open());
}

TEST_CASE("UdpSocket: a datagram round trip allocates nothing in steady state", "[udp_socket]") {
    if (!CORIO_TEST_COUNTS_ALLOCATIONS) {
        WARN("not counted under AddressSanitizer: its allocator replaces the counting one");
        return;
    }
    Loopback net;
    net.sender.connect(net.receiver.local_address());
    constexpr int warmup = 20;
    constexpr int measured = 200;
    auto serve = [](UdpSocket& socket) -> Task<> {
        std::array<std::byte, 256> buffer{};
        for (int i = 0; i < warmup + measured; ++i) {
            const Datagram got = co_await socket.recv_from(buffer);
            co_await socket.send_to(std::span(buffer).first(got.size), got.peer);
        }
    };
    auto pings = [](UdpSocket& socket, long& counted) -> Task<> {
        std::array<std::byte, 256> buffer{};
        for (int i = 0; i < warmup + measured; ++i) {
            if (i == warmup) {
                allocations = 0;
                counting = true;
            }
            co_await socket.send(std::span(buffer).first(100));
            (void)co_await socket.recv(buffer);
        }
        counting = false;
        counted = allocations.load();
    };
    long counted = -1;
    const TaskId serving = net.kernel.add_task(serve(net.receiver));
    const TaskId pinging = net.kernel.add_task(pings(net.sender, counted));
    net.run({serving, pinging});
    CHECK(counted == 0);
}

} // namespace
