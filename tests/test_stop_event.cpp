// Tests of corio/sync/stop_event.hpp: a one-shot flag that wakes tasks of any Scheduler, on any thread.
#include <corio/sync/stop_event.hpp>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "support/catch.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

using namespace corio::test;
using namespace std::chrono_literals;
using corio::StopEvent;

namespace {


Task<> wait_and_log(const StopEvent& stop, Log& log, std::string name) {
    co_await stop.wait();
    log.push_back(std::move(name));
}

Task<> set_after_yields(StopEvent& stop, int yields) {
    for (int i = 0; i < yields; ++i) {
        co_await corio::Yield{};
    }
    stop.set();
}

} // namespace

TEST_CASE("StopEvent wakes every task waiting for it, and later ones at once", "[stop_event]") {
    FrameLeakCheck frames;
    StopEvent stop;
    Scheduler kernel;
    Log log;
    const TaskId a = kernel.add_task(wait_and_log(stop, log, "a"));
    const TaskId b = kernel.add_task(wait_and_log(stop, log, "b"));
    kernel.add_task(set_after_yields(stop, 3));
    REQUIRE(run_until_ended(kernel, {a, b}, 5s));
    std::sort(log.begin(), log.end()); // each waits on an fd of its own: any order
    CHECK(log == Log{"a", "b"});
    CHECK(stop.is_set());
    stop.set(); // idempotent
    kernel.run_until_complete(wait_and_log(stop, log, "late")); // returns at once: it stays set
    CHECK(log == Log{"a", "b", "late"});
    require_empty(kernel);
}

TEST_CASE("killing a task that waits for a StopEvent leaves the other waiters waiting",
          "[stop_event]") {
    FrameLeakCheck frames;
    StopEvent stop;
    Scheduler kernel;
    kernel.run_until_complete(corio::test::yield_times(1)); // it has opened its wake-up fd
    const std::size_t fds = open_fd_count();
    Log log;
    const TaskId a = kernel.add_task(wait_and_log(stop, log, "a"));
    const TaskId b = kernel.add_task(wait_and_log(stop, log, "b"));
    kernel.run_until_complete(yield_times(2));
    CHECK(open_fd_count() == fds + 2); // one dup each
    REQUIRE(kernel.kill(a));
    CHECK(open_fd_count() == fds + 1); // its dup is unregistered and closed
    kernel.run_until_complete(yield_times(2));
    CHECK(log.empty()); // b was not woken by a's leaving
    CHECK(kernel.contains(b));
    stop.set();
    REQUIRE(run_until_ended(kernel, {b}, 5s));
    CHECK(log == Log{"b"});
    CHECK(open_fd_count() == fds);
    require_empty(kernel);
}

TEST_CASE("a StopEvent wait can be bounded with ignore_after", "[stop_event]") {
    FrameLeakCheck frames;
    StopEvent stop;
    Scheduler kernel;
    CHECK_FALSE(kernel.run_until_complete(corio::ignore_after(10ms, stop.wait())));
    require_empty(kernel);
}

TEST_CASE("StopEvent set from other threads wakes Schedulers on other threads",
          "[stop_event][threads]") {
    FrameLeakCheck frames;
    StopEvent stop;
    constexpr int loops = 3;
    std::atomic<int> woken{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < loops; ++i) {
        threads.emplace_back([&stop, &woken] {
            Scheduler kernel;
            Log log;
            (void)kernel.run_until_complete(corio::ignore_after(5s, wait_and_log(stop, log, "woken")));
            woken += static_cast<int>(log.size());
            const auto stats = kernel.stats();
            woken += stats.tasks == 0 && stats.watched_fds == 0 && stats.waiting_on_fds == 0 ? 0 : 100;
        });
    }
    std::thread setter([&stop] {
        std::this_thread::sleep_for(20ms);
        stop.set();
    });
    setter.join();
    for (std::thread& thread : threads) {
        thread.join();
    }
    CHECK(woken == loops);
}
