// Tests of corio/signal_wait.hpp with real signals (SIGUSR1, SIGUSR2), raised in the loop's
// thread, sent to it from another thread, or sent to the process. Built once per selector, and
// once more per selector with CORIO_SIGNAL_SELF_PIPE (test_signal_wait_self_pipe.cpp), so that
// both the signalfd and the self-pipe path run on Linux; the case names say which path.
//
// Signals are claimed at the start of each case, before any thread starts (see the threads note in
// signal_wait.hpp), and each case begins by taking whatever an earlier one may have left pending.
#include <corio/signal_wait.hpp>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include "support/catch.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

#if CORIO_SIGNAL_USES_SIGNALFD
#define SIGNAL_PATH "signalfd: "
constexpr std::size_t fds_per_wait = 1; // its signalfd
#else
#define SIGNAL_PATH "self-pipe: "
constexpr std::size_t fds_per_wait = 2; // the two ends of its pipe
#endif

using namespace corio::test;
using namespace std::chrono_literals;
using corio::SignalWait;

namespace {

// Takes the signals an earlier case may have left pending, so that each case starts clean.
Task<> take_leftovers() {
    for (int i = 0; i < 100; ++i) {
        const std::optional<int> taken = co_await corio::ignore_after(1ms, SignalWait{SIGUSR1, SIGUSR2});
        if (!taken) {
            break;
        }
    }
}

void start_clean() {
    corio::claim_signals({SIGUSR1, SIGUSR2});
    corio::run(take_leftovers());
}


Task<> wait_for(std::vector<int>& got, int first) {
    got.push_back(co_await SignalWait{first});
}

Task<> wait_for_either(std::vector<int>& got) {
    got.push_back(co_await SignalWait{SIGUSR1, SIGUSR2});
}

Task<> raise_after_yields(int number, int yields) {
    for (int i = 0; i < yields; ++i) {
        co_await corio::Yield{};
    }
    REQUIRE(::raise(number) == 0);
}

// Waits (bounded) until `got` holds `count` signals, yielding to the loop meanwhile.
Task<> until_count(const std::vector<int>& got, std::size_t count) {
    for (int i = 0; i < 1000 && got.size() < count; ++i) {
        co_await corio::Sleep{1ms};
    }
}

} // namespace

TEST_CASE(SIGNAL_PATH "SignalWait gives a signal raised in the loop's thread while it waits",
          "[signal_wait]") {
    start_clean();
    FrameLeakCheck frames;
    Scheduler kernel;
    std::vector<int> got;
    const TaskId waiter = kernel.add_task(wait_for(got, SIGUSR1));
    kernel.add_task(raise_after_yields(SIGUSR1, 3)); // the waiter waits by then
    REQUIRE(run_until_ended(kernel, {waiter}, 5s));
    CHECK(got == std::vector<int>{SIGUSR1});
    require_empty(kernel);
}

TEST_CASE(SIGNAL_PATH "SignalWait gives a signal another thread sends to the loop's thread",
          "[signal_wait][threads]") {
    start_clean();
    FrameLeakCheck frames;
    Scheduler kernel;
    std::vector<int> got;
    const TaskId waiter = kernel.add_task(wait_for_either(got));
    const pthread_t loop_thread = ::pthread_self();
    std::thread sender([loop_thread] {
        std::this_thread::sleep_for(20ms); // the loop waits in the selector by then (or not:
        ::pthread_kill(loop_thread, SIGUSR2); // either way the signal must arrive)
    });
    const bool ended = run_until_ended(kernel, {waiter}, 5s);
    sender.join();
    REQUIRE(ended);
    CHECK(got == std::vector<int>{SIGUSR2});
    require_empty(kernel);
}

TEST_CASE(SIGNAL_PATH "SignalWait gives a signal sent to the process", "[signal_wait]") {
    start_clean();
    FrameLeakCheck frames;
    Scheduler kernel;
    std::vector<int> got;
    const TaskId waiter = kernel.add_task(wait_for(got, SIGUSR1));
    kernel.add_task([]() -> Task<> {
        co_await corio::Yield{};
        REQUIRE(::kill(::getpid(), SIGUSR1) == 0);
    }());
    REQUIRE(run_until_ended(kernel, {waiter}, 5s));
    CHECK(got == std::vector<int>{SIGUSR1});
    require_empty(kernel);
}

TEST_CASE(SIGNAL_PATH "a signal that comes while nobody waits is kept for the next SignalWait",
          "[signal_wait]") {
    start_clean();
    FrameLeakCheck frames;
    Scheduler kernel;
    REQUIRE(::raise(SIGUSR1) == 0); // before any wait: claimed, so kept rather than acted on
    std::vector<int> got;
    kernel.run_until_complete(wait_for(got, SIGUSR1)); // returns at once
    CHECK(got == std::vector<int>{SIGUSR1});

    REQUIRE(::raise(SIGUSR1) == 0); // between two waits
    kernel.run_until_complete(wait_for(got, SIGUSR1));
    CHECK(got == std::vector<int>{SIGUSR1, SIGUSR1});
    require_empty(kernel);
}

TEST_CASE(SIGNAL_PATH "pending signals are taken lowest number first, each once",
          "[signal_wait]") {
    start_clean();
    FrameLeakCheck frames;
    Scheduler kernel;
    REQUIRE(::raise(SIGUSR2) == 0);
    REQUIRE(::raise(SIGUSR1) == 0);
    std::vector<int> got;
    kernel.run_until_complete(wait_for_either(got));
    kernel.run_until_complete(wait_for_either(got));
    CHECK(got == std::vector<int>{SIGUSR1, SIGUSR2});
    const auto nothing_left =
        kernel.run_until_complete(corio::ignore_after(20ms, SignalWait{SIGUSR1, SIGUSR2}));
    CHECK_FALSE(nothing_left.has_value());
    require_empty(kernel);
}

TEST_CASE(SIGNAL_PATH "two tasks wait for different signals at once", "[signal_wait]") {
    start_clean();
    FrameLeakCheck frames;
    Scheduler kernel;
    std::vector<int> first;
    std::vector<int> second;
    const TaskId one = kernel.add_task(wait_for(first, SIGUSR1));
    const TaskId two = kernel.add_task(wait_for(second, SIGUSR2));
    kernel.add_task([]() -> Task<> {
        co_await corio::Yield{};
        REQUIRE(::raise(SIGUSR2) == 0);
        REQUIRE(::raise(SIGUSR1) == 0);
    }());
    REQUIRE(run_until_ended(kernel, {one, two}, 5s));
    CHECK(first == std::vector<int>{SIGUSR1});
    CHECK(second == std::vector<int>{SIGUSR2});
    require_empty(kernel);
}

TEST_CASE(SIGNAL_PATH "two tasks wait for the same signal: each one that comes wakes one of them",
          "[signal_wait]") {
    start_clean();
    FrameLeakCheck frames;
    Scheduler kernel;
    std::vector<int> got; // both append here
    const TaskId one = kernel.add_task(wait_for(got, SIGUSR1));
    const TaskId two = kernel.add_task(wait_for(got, SIGUSR1));
    kernel.run_until_complete([](std::vector<int>& taken) -> Task<> {
        co_await corio::Yield{}; // both wait now
        REQUIRE(::raise(SIGUSR1) == 0);
        co_await until_count(taken, 1);
        co_await corio::Sleep{20ms}; // time for a second (wrong) wake-up to show
        CHECK(taken.size() == 1);
        REQUIRE(::raise(SIGUSR1) == 0);
        co_await until_count(taken, 2);
    }(got));
    CHECK(got == std::vector<int>{SIGUSR1, SIGUSR1});
    CHECK_FALSE(kernel.contains(one));
    CHECK_FALSE(kernel.contains(two));
    require_empty(kernel);
}

TEST_CASE(SIGNAL_PATH "killing a waiting task unregisters and closes its fd, and the signal is kept",
          "[signal_wait]") {
    start_clean();
    FrameLeakCheck frames;
    Scheduler kernel;
    kernel.run_until_complete(corio::test::yield_times(1)); // it has opened its wake-up fd
    const std::size_t fds_with_kernel = open_fd_count();
    std::vector<int> got;
    const TaskId waiter = kernel.add_task(wait_for(got, SIGUSR1));
    kernel.run_until_complete(corio::test::yield_times(2)); // the waiter waits now
    CHECK(kernel.stats().waiting_on_fds == 1);
    CHECK(open_fd_count() == fds_with_kernel + fds_per_wait);
    REQUIRE(kernel.kill(waiter));
    require_empty(kernel); // its fd is no longer watched...
    CHECK(open_fd_count() == fds_with_kernel); // ...and closed

    REQUIRE(::raise(SIGUSR1) == 0); // nobody waits: kept for the next wait
    kernel.run_until_complete(wait_for(got, SIGUSR1));
    CHECK(got == std::vector<int>{SIGUSR1});
    require_empty(kernel);
    CHECK(open_fd_count() == fds_with_kernel);
}

TEST_CASE(SIGNAL_PATH "a SignalWait can be bounded with ignore_after and timeout_after",
          "[signal_wait]") {
    start_clean();
    FrameLeakCheck frames;
    Scheduler kernel;
    kernel.run_until_complete(corio::test::yield_times(1)); // it has opened its wake-up fd
    const std::size_t fds = open_fd_count();
    const auto started = std::chrono::steady_clock::now();
    const std::optional<int> none =
        kernel.run_until_complete(corio::ignore_after(30ms, SignalWait{SIGUSR1}));
    CHECK_FALSE(none.has_value());
    CHECK(std::chrono::steady_clock::now() - started >= 30ms);
    CHECK_THROWS_AS(kernel.run_until_complete(corio::timeout_after(10ms, SignalWait{SIGUSR2})),
                    corio::TimeoutError);
    CHECK(open_fd_count() == fds);
    require_empty(kernel);

    REQUIRE(::raise(SIGUSR1) == 0); // a timed-out wait took nothing
    const std::optional<int> one =
        kernel.run_until_complete(corio::ignore_after(5s, SignalWait{SIGUSR1}));
    CHECK(one == SIGUSR1);
    require_empty(kernel);
}

TEST_CASE(SIGNAL_PATH "SignalWait rejects what is no signal it could wait for", "[signal_wait]") {
    for (const int number : {0, -1, NSIG, SIGKILL, SIGSTOP}) {
        INFO("signal " << number);
        try {
            SignalWait wait{number};
            FAIL("accepted");
        } catch (const std::system_error& error) {
            CHECK(error.code() == std::errc::invalid_argument);
        }
        CHECK_THROWS_AS(corio::claim_signals({SIGUSR1, number}), std::system_error);
    }
}
