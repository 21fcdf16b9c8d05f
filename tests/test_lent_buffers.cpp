// Lent reads (AsyncSocket::recv_lent): bytes read into buffers the Scheduler lends. On io_uring
// they are receives the kernel completes into the ring's provided buffers; on epoll and poll,
// reads into heap buffers the Scheduler keeps. Every case runs on each backend (ctest prefixes
// epoll:, uring:, poll:), and checks that every buffer comes back (stats().lent_buffers).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <system_error>
#include <thread>
#include <fcntl.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include <corio/net/async_socket.hpp>
#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/task.hpp>
#include <corio/timeout.hpp>

#include "support/catch.hpp"
#include "support/fd.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace std::chrono_literals;
using corio::AsyncSocket;
using corio::LentBytes;
using corio::Scheduler;
using corio::Task;

std::string text_of(const LentBytes& bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

void write_all(int fd, std::string_view text) {
    while (!text.empty()) {
        const ssize_t count = ::write(fd, text.data(), text.size());
        REQUIRE(count > 0);
        text.remove_prefix(static_cast<std::size_t>(count));
    }
}

// A connected pair: `ours` for the tasks, `peer` a plain fd the test writes to.
struct Pair {
    AsyncSocket ours;
    corio::test::UniqueFd peer;
};
Pair make_pair() {
    corio::test::FdPair fds = corio::test::socket_pair();
    return Pair{AsyncSocket(fds.first.release()), std::move(fds.second)};
}

void run(Scheduler& kernel, Task<> task) {
    REQUIRE(corio::test::run_until_ended(kernel, {kernel.add_task(std::move(task))}, 10s));
}

void require_all_back(const Scheduler& kernel) {
    CHECK(kernel.stats().lent_buffers == 0);
    corio::test::require_empty(kernel);
}

// Runs the task that `make_task(ours, peer_fd, log)` gives on a fresh socket pair, closes it, checks
// every lent buffer came back, and returns what the task logged.
template <typename MakeTask>
std::string run_logged_on_pair(MakeTask make_task) {
    Scheduler kernel;
    Pair pair = make_pair();
    std::string log;
    run(kernel, make_task(pair.ours, pair.peer.get(), log));
    pair.ours.close();
    require_all_back(kernel);
    return log;
}

// Lent reads until the end of the stream, handing each piece to `on_bytes`.
template <class OnBytes>
Task<> read_to_end(AsyncSocket& socket, OnBytes& on_bytes) {
    for (;;) {
        const LentBytes bytes = co_await socket.recv_lent();
        if (bytes.empty()) {
            co_return;
        }
        on_bytes(bytes);
    }
}

Task<> read_all_then_end(AsyncSocket& socket, std::string& first, std::string& rest, bool& ended) {
    {
        const LentBytes bytes = co_await socket.recv_lent();
        first = text_of(bytes);
    }
    auto append = [&rest](const LentBytes& bytes) { rest += text_of(bytes); };
    co_await read_to_end(socket, append);
    ended = true;
}

} // namespace

TEST_CASE("recv_lent: reads all that has arrived in one piece, then the end of the stream",
          "[lent]") {
    corio::test::FrameLeakCheck leaks;
    Scheduler kernel;
    Pair pair = make_pair();
    const std::string chunk(1000, 'x');
    write_all(pair.peer.get(), chunk + chunk + chunk); // three writes' worth, before any read
    std::string first;
    std::string rest;
    bool ended = false;
    const corio::TaskId reader = kernel.add_task(read_all_then_end(pair.ours, first, rest, ended));
    kernel.add_task([](corio::test::UniqueFd& peer) -> Task<> {
        co_await corio::Sleep{20ms};
        write_all(peer.get(), "tail");
        peer.reset(); // end of stream
    }(pair.peer));
    REQUIRE(corio::test::run_until_ended(kernel, {reader}, 10s));
    CHECK(first.size() == 3000);
    CHECK(rest == "tail");
    CHECK(ended);
    kernel.run();
    pair.ours.close();
    require_all_back(kernel);
}

namespace {

// Reads one byte at a time and keeps every LentBytes: more buffers than io_uring's ring holds.
Task<> hold_many(AsyncSocket& socket, int peer, std::size_t count, std::string& seen) {
    std::vector<LentBytes> held;
    for (std::size_t i = 0; i < count; ++i) {
        const char byte = static_cast<char>('a' + i % 26);
        write_all(peer, std::string_view(&byte, 1));
        held.push_back(co_await socket.recv_lent());
        REQUIRE(held.back().size() == 1);
    }
    for (const LentBytes& bytes : held) {
        seen += text_of(bytes);
    }
}

} // namespace

TEST_CASE("recv_lent: more reads held at once than the ring has buffers still read every byte",
          "[lent]") {
    corio::test::FrameLeakCheck leaks;
    Scheduler kernel;
    Pair pair = make_pair();
    constexpr std::size_t count = 4200; // io_uring's ring lends 4096 at most
    std::string seen;
    run(kernel, hold_many(pair.ours, pair.peer.get(), count, seen));
    REQUIRE(seen.size() == count);
    for (std::size_t i = 0; i < count; ++i) {
        CHECK(seen[i] == static_cast<char>('a' + i % 26));
    }
    CHECK(kernel.stats().lent_buffers == 0); // all given back when `held` went
    // And the ring lends again.
    std::string again;
    run(kernel, hold_many(pair.ours, pair.peer.get(), 3, again));
    CHECK(again == "abc");
    pair.ours.close();
    require_all_back(kernel);
}

namespace {

Task<> time_out_then_read(AsyncSocket& socket, int peer, std::string& log) {
    try {
        (void)co_await corio::timeout_after(20ms, socket.recv_lent());
        log += "read;";
    } catch (const corio::TimeoutError&) {
        log += "timeout;";
    }
    write_all(peer, "abcdef"); // arrives while no read waits (on io_uring the receive is in flight)
    co_await corio::Sleep{20ms};
    co_await socket.wait_readable(); // the bytes count as readable wherever they wait
    std::array<char, 2> two{};
    const std::size_t copied = co_await socket.recv(two);
    log += std::string(two.data(), copied) + ";";
    const LentBytes rest = co_await socket.recv_lent();
    log += text_of(rest) + ";";
}

} // namespace

TEST_CASE("recv_lent: a read that timed out loses nothing, and the next reads keep the order",
          "[lent]") {
    corio::test::FrameLeakCheck leaks;
    CHECK(run_logged_on_pair(time_out_then_read) == "timeout;ab;cdef;");
}

namespace {

Task<> read_forever(AsyncSocket& socket) {
    for (;;) {
        const LentBytes bytes = co_await socket.recv_lent();
        if (bytes.empty()) {
            co_return;
        }
    }
}

Task<> kill_all_then_write(std::vector<corio::TaskId>& readers, std::vector<Pair>& pairs) {
    co_await corio::Sleep{10ms}; // every reader waits now
    for (const corio::TaskId id : readers) {
        co_await corio::KillTask{id};
    }
    for (Pair& pair : pairs) {
        write_all(pair.peer.get(), "late bytes"); // the receives still in flight complete now
    }
    co_await corio::Sleep{20ms};
}

} // namespace

TEST_CASE("recv_lent: readers killed while their reads are in flight leave every buffer to come back",
          "[lent]") {
    corio::test::FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<Pair> pairs;
    for (int i = 0; i < 300; ++i) { // more than the ring's first chunk of buffers
        pairs.push_back(make_pair());
    }
    for (int round = 0; round < 2; ++round) {
        std::vector<corio::TaskId> readers;
        for (Pair& pair : pairs) {
            readers.push_back(kernel.add_task(read_forever(pair.ours)));
        }
        run(kernel, kill_all_then_write(readers, pairs));
        // The bytes wait for the next read of each socket (nothing is lost)...
        std::string first;
        run(kernel, [](AsyncSocket& socket, std::string& text) -> Task<> {
            text = text_of(co_await socket.recv_lent());
        }(pairs.front().ours, first));
        CHECK(first == "late bytes");
    }
    // ...until the socket is closed, which gives its buffer back.
    for (Pair& pair : pairs) {
        pair.ours.close();
    }
    require_all_back(kernel);
}

namespace {

Task<> read_expecting_reset(AsyncSocket& socket, int& error) {
    try {
        (void)co_await socket.recv_lent();
    } catch (const std::system_error& failure) {
        error = failure.code().value();
    }
}

Task<> reset_after(std::chrono::milliseconds delay, AsyncSocket& socket) {
    co_await corio::Sleep{delay};
    const linger abort_on_close{1, 0};
    REQUIRE(::setsockopt(socket.fd(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close) == 0);
    socket.close(); // RST
}

Task<> reset_while_reading(int& error) {
    AsyncSocket listener = AsyncSocket::listen("127.0.0.1", 0);
    const std::uint16_t port = listener.local_port();
    AsyncSocket client = co_await AsyncSocket::connect("127.0.0.1", port);
    AsyncSocket served = (co_await listener.accept()).socket;
    const corio::TaskId resetter = co_await corio::NewTask{reset_after(20ms, client)};
    co_await read_expecting_reset(served, error);
    (void)co_await corio::WaitTask{resetter};
}

} // namespace

TEST_CASE("recv_lent: a peer that resets makes the read throw", "[lent]") {
    corio::test::FrameLeakCheck leaks;
    Scheduler kernel;
    int error = 0;
    run(kernel, reset_while_reading(error));
    CHECK(error == ECONNRESET);
    require_all_back(kernel);
}

namespace {

// Reads once and notes how many buffers the Scheduler had lent while it held its bytes.
Task<> read_and_count_lent(AsyncSocket& socket, Scheduler& kernel, std::size_t& most_lent,
                           std::size_t& bytes_read) {
    const LentBytes bytes = co_await socket.recv_lent();
    most_lent = std::max(most_lent, kernel.stats().lent_buffers);
    bytes_read += bytes.size();
}

Task<> readers_then_writes(Scheduler& kernel, std::vector<Pair>& pairs, std::size_t& most_lent,
                           std::size_t& bytes_read) {
    std::vector<corio::TaskId> readers;
    for (Pair& pair : pairs) {
        readers.push_back(co_await corio::NewTask(read_and_count_lent(pair.ours, kernel, most_lent, bytes_read)));
    }
    co_await corio::Sleep{10ms}; // every reader finds nothing and waits
    for (Pair& pair : pairs) {
        write_all(pair.peer.get(), "ping");
    }
    for (const corio::TaskId reader : readers) {
        (void)co_await corio::WaitTask{reader};
    }
}

} // namespace

// On epoll and poll one readiness report makes every reader ready at once; were their reads done
// then, each would hold a buffer until its task ran (64 buffers here, allocated and freed on every
// wait). They read as they resume instead, so one buffer goes round. (On io_uring each socket's
// receive holds a ring buffer until its reader takes it, as a C io_uring loop's would.)
TEST_CASE("recv_lent: readers made ready together read one at a time into one buffer", "[lent]") {
    corio::test::FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<Pair> pairs;
    for (int i = 0; i < 64; ++i) {
        pairs.push_back(make_pair());
    }
    std::size_t most_lent = 0;
    std::size_t bytes_read = 0;
    run(kernel, readers_then_writes(kernel, pairs, most_lent, bytes_read));
    CHECK(bytes_read == 4 * pairs.size());
    if (kernel.backend() != corio::Backend::io_uring) {
        CHECK(most_lent == 1);
    }
    for (Pair& pair : pairs) {
        pair.ours.close();
    }
    require_all_back(kernel);
}

namespace {

Task<> read_one_into(AsyncSocket& socket, std::string& log, char who) {
    const LentBytes bytes = co_await socket.recv_lent();
    log += std::string(1, who) + ":" + text_of(bytes) + ";";
}

Task<> two_readers_one_write(AsyncSocket& socket, int peer, std::string& log) {
    const corio::TaskId first = co_await corio::NewTask(read_one_into(socket, log, 'a'));
    const corio::TaskId second = co_await corio::NewTask(read_one_into(socket, log, 'b'));
    co_await corio::Sleep{10ms}; // both wait
    write_all(peer, "one");
    (void)co_await corio::WaitTask{first};
    co_await corio::Sleep{10ms};
    log += "second waits;";
    write_all(peer, "two");
    (void)co_await corio::WaitTask{second};
}

Task<> read_expecting_error(AsyncSocket& socket, int& error) {
    try {
        (void)co_await socket.recv_lent();
    } catch (const std::system_error& failure) {
        error = failure.code().value();
    }
}

Task<> close_under_lent_reader(AsyncSocket& socket, int& error) {
    const corio::TaskId reader = co_await corio::NewTask(read_expecting_error(socket, error));
    co_await corio::Sleep{10ms}; // it waits
    socket.close();
    (void)co_await corio::WaitTask{reader};
}

} // namespace

// Both readers of one socket are woken by the same readiness; the first takes the bytes, and the
// second, whose read would now block, waits again instead of failing, and reads the next bytes.
TEST_CASE("recv_lent: a reader whose bytes another reader took waits again", "[lent]") {
    corio::test::FrameLeakCheck leaks;
    CHECK(run_logged_on_pair(two_readers_one_write) == "a:one;second waits;b:two;");
}

TEST_CASE("recv_lent: closing the socket under a waiting reader makes its read fail with EBADF",
          "[lent]") {
    corio::test::FrameLeakCheck leaks;
    Scheduler kernel;
    Pair pair = make_pair();
    int error = 0;
    run(kernel, close_under_lent_reader(pair.ours, error));
    CHECK(error == EBADF);
    require_all_back(kernel);
}

namespace {

constexpr std::size_t flood_size = 4 * 1024 * 1024;

// The peer's side: flood_size bytes of a pattern (byte i is i % 251), blocking, then the end.
void flood(int peer) {
    (void)::fcntl(peer, F_SETFL, ::fcntl(peer, F_GETFL) & ~O_NONBLOCK);
    std::vector<unsigned char> chunk(64 * 1024);
    for (std::size_t sent = 0; sent < flood_size;) {
        for (std::size_t i = 0; i < chunk.size(); ++i) {
            chunk[i] = static_cast<unsigned char>((sent + i) % 251);
        }
        const ssize_t count = ::send(peer, chunk.data(), std::min(chunk.size(), flood_size - sent), MSG_NOSIGNAL);
        if (count <= 0) {
            return; // our side closed: the test failed already
        }
        sent += static_cast<std::size_t>(count);
    }
    ::shutdown(peer, SHUT_WR);
}

// Reads once, stops reading for a while (noting how many buffers are lent meanwhile), then reads
// to the end, checking every byte's place in the pattern.
Task<> read_pause_read(AsyncSocket& socket, Scheduler& kernel, std::size_t& lent_while_paused,
                       std::size_t& total, bool& in_order) {
    std::size_t position = 0;
    auto check = [&](const LentBytes& bytes) {
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            in_order = in_order && static_cast<unsigned char>(bytes.data()[i]) == (position + i) % 251;
        }
        position += bytes.size();
    };
    {
        const LentBytes first = co_await socket.recv_lent();
        check(first);
    }
    co_await corio::Sleep{200ms}; // nobody reads: the bytes pile up (or wait in the socket)
    lent_while_paused = kernel.stats().lent_buffers;
    co_await read_to_end(socket, check);
    total = position;
}

} // namespace

// On io_uring the receive stays armed between reads; were it left armed while nobody reads, it
// would take the peer's bytes out of the socket as fast as they came, a ring buffer each, and the
// peer would never feel the reader's pace. It is paused after FdWatches::max_unclaimed pieces
// instead, and armed again by the next read; nothing is lost or reordered.
TEST_CASE("recv_lent: a peer nobody reads fills a few buffers, not the ring, and loses nothing",
          "[lent]") {
    corio::test::FrameLeakCheck leaks;
    Scheduler kernel;
    Pair pair = make_pair();
    std::thread peer(flood, pair.peer.get());
    std::size_t lent_while_paused = 0;
    std::size_t total = 0;
    bool in_order = true;
    const bool ended = corio::test::run_until_ended(
        kernel, {kernel.add_task(read_pause_read(pair.ours, kernel, lent_while_paused, total, in_order))}, 20s);
    pair.ours.close(); // a peer still sending (the test failed) gets EPIPE
    peer.join();
    REQUIRE(ended);
    CHECK(total == flood_size);
    CHECK(in_order);
    // FdWatches::max_unclaimed (4), and a few that came before the pause took effect; without
    // the pause, ~60 here.
    CHECK(lent_while_paused <= 8);
    require_all_back(kernel);
}
