// Tests of corio/run_on_threads.hpp: N Schedulers on N threads, stopped together, failures passed
// to the caller, and SO_REUSEPORT listeners that the threads all accept on. Every case here runs
// threads: ctest labels them `threads`, and they run under ThreadSanitizer too.
#include <corio/run_on_threads.hpp>

#include <corio/net/async_socket.hpp>
#include <corio/scheduler.hpp>
#include <corio/sync/stop_event.hpp>
#include <corio/syscalls.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "support/catch.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"

using namespace corio::test;
using namespace std::chrono_literals;
using corio::StopEvent;

namespace {

// Counts, across threads, the locals of tasks that ran and were destroyed (a task's locals die
// with its frame). A task may never run at all if the stop comes first: compare the two counts.
struct Lives {
    std::atomic<int> begun{0};
    std::atomic<int> ended{0};
};
struct LifeCounter {
    explicit LifeCounter(Lives& counts) noexcept : lives(&counts) { ++lives->begun; }
    LifeCounter(const LifeCounter&) = delete;
    LifeCounter& operator=(const LifeCounter&) = delete;
    ~LifeCounter() { ++lives->ended; }
    Lives* lives;
};

Task<> sleep_forever(Lives& lives) {
    const LifeCounter counter(lives);
    co_await corio::Sleep{long_sleep};
}

// A root that spawns a child, then sleeps: the stop must end both.
Task<> root_with_child(Lives& lives) {
    co_await corio::NewTask{sleep_forever(lives)};
    co_await sleep_forever(lives);
}

Task<> set_after(StopEvent& stop, std::chrono::milliseconds delay) {
    co_await corio::Sleep{delay};
    stop.set();
}

Task<> record_thread(std::thread::id& where) {
    where = std::this_thread::get_id();
    co_return;
}

Task<> fail_after(std::chrono::milliseconds delay) {
    co_await corio::Sleep{delay};
    throw TestError("thread 1 failed");
}

// Accepts until stopped, counting the connections of this listener.
Task<> count_accepts(corio::AsyncSocket listener, std::atomic<int>& accepted) {
    for (;;) {
        auto connection = co_await listener.accept();
        ++accepted;
    }
}

// A plain blocking connection to 127.0.0.1:port, closed at once; false if it failed.
bool connect_once(std::uint16_t port) {
    const UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return socket && ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address),
                               sizeof address) == 0;
}

} // namespace

TEST_CASE("run_on_threads runs each root on a thread of its own, index 0 on the caller's",
          "[run_on_threads][threads]") {
    FrameLeakCheck frames;
    std::array<std::thread::id, 3> where{};
    corio::run_on_threads(3, [&where](unsigned index) { return record_thread(where[index]); });
    CHECK(where[0] == std::this_thread::get_id());
    CHECK(std::set<std::thread::id>(where.begin(), where.end()).size() == 3);
}

TEST_CASE("setting the StopEvent stops every thread and destroys their tasks there",
          "[run_on_threads][threads]") {
    FrameLeakCheck frames;
    StopEvent stop;
    Lives lives;
    const auto started = std::chrono::steady_clock::now();
    corio::run_on_threads(
        3,
        [&](unsigned index, Scheduler& kernel) {
            if (index == 2) {
                kernel.add_task(set_after(stop, 20ms)); // a task of one thread stops them all
            }
            return root_with_child(lives);
        },
        stop);
    CHECK(lives.begun >= 1);
    CHECK(lives.ended == lives.begun); // every root and child that ran was destroyed
    CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("a failure on one thread stops the others and reaches the caller after all joined",
          "[run_on_threads][threads]") {
    FrameLeakCheck frames;
    Lives lives;
    try {
        corio::run_on_threads(3, [&lives](unsigned index) {
            return index == 1 ? fail_after(10ms) : root_with_child(lives);
        });
        FAIL("no exception");
    } catch (const TestError& error) {
        CHECK(std::string(error.what()) == "thread 1 failed");
    }
    CHECK(lives.ended == lives.begun); // the other threads were stopped and joined first
}

TEST_CASE("a make_task that throws stops the others too", "[run_on_threads][threads]") {
    FrameLeakCheck frames;
    Lives lives;
    CHECK_THROWS_AS(corio::run_on_threads(2,
                                          [&lives](unsigned index) -> Task<> {
                                              if (index == 0) {
                                                  throw TestError("no root for 0");
                                              }
                                              return root_with_child(lives);
                                          }),
                    TestError);
    CHECK(lives.ended == lives.begun);
}

TEST_CASE("run_on_threads rejects 0 threads, listen_reuse_port 0 listeners",
          "[run_on_threads][threads]") {
    try {
        corio::run_on_threads(0, [](unsigned) { return nothing(); });
        FAIL("accepted");
    } catch (const std::system_error& error) {
        CHECK(error.code() == std::errc::invalid_argument);
    }
    CHECK_THROWS_AS(corio::listen_reuse_port("127.0.0.1", 0, 0), std::system_error);
}

TEST_CASE("SO_REUSEPORT: two Schedulers on two threads both accept connections to one port",
          "[run_on_threads][threads]") {
    FrameLeakCheck frames;
    std::vector<corio::AsyncSocket> listeners = corio::listen_reuse_port("127.0.0.1", 0, 2);
    REQUIRE(listeners.size() == 2);
    const std::uint16_t port = listeners[0].local_port();
    CHECK(listeners[1].local_port() == port);
    // Without SO_REUSEPORT on it, a third socket cannot bind there.
    CHECK_THROWS_AS(corio::AsyncSocket::listen("127.0.0.1", port), std::system_error);

    std::array<std::atomic<int>, 2> accepted{};
    StopEvent stop;
    int connections = 0;
    std::thread client([&] {
        // Linux picks the listener by a hash of each connection's addresses: a few connections
        // reach both. Bounded in count and time; the stop comes when both have accepted.
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (connections < 1000 && std::chrono::steady_clock::now() < deadline &&
               (accepted[0] == 0 || accepted[1] == 0)) {
            connections += connect_once(port) ? 1 : 0;
            std::this_thread::sleep_for(1ms);
        }
        std::this_thread::sleep_for(10ms); // the last ones accepted
        stop.set();
    });
    corio::run_on_threads(
        2,
        [&](unsigned index) { return count_accepts(std::move(listeners[index]), accepted[index]); },
        stop);
    client.join();
    INFO(connections << " connections: " << accepted[0] << " accepted by thread 0, " << accepted[1]
                     << " by thread 1");
    CHECK(accepted[0] >= 1);
    CHECK(accepted[1] >= 1);
}
