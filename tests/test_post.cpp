// Tests for Scheduler::post, the one thread-safe door, and Scheduler::hold: callables posted from
// several threads at once all run once, on the loop's thread, in each poster's order; a post wakes
// a loop blocked in the selector; posts before run(), posts that spawn tasks, failing posts, posts
// never run when the Scheduler goes away. Other threads only post: every check is on the loop's
// thread or after the threads are joined.
#include <corio/scheduler.hpp> // first: the header stands alone

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <corio/sync/event.hpp>
#include <corio/syscalls.hpp>

#include "support/catch.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;

using Clock = std::chrono::steady_clock;

// Fails the test and stops the loop if it is still running after `limit`.
Task<> watchdog(Scheduler& kernel, Clock::duration limit, bool& fired) {
    co_await corio::Sleep{limit};
    fired = true;
    kernel.stop();
}

} // namespace

TEST_CASE("post: callables from 4 threads all run once, in each thread's order, waking the loop",
          "[post]") {
    FrameLeakCheck leaks;
    constexpr int threads = 4;
    constexpr int posts_per_thread = 5000;
    Scheduler kernel;
    const std::thread::id loop_thread = std::this_thread::get_id();
    std::vector<std::vector<int>> seen(threads); // touched on the loop's thread only
    int total = 0;
    int off_loop = 0;
    Scheduler::Hold hold = kernel.hold();
    bool fired = false;
    const TaskId dog = kernel.add_task(watchdog(kernel, 20s, fired));

    std::atomic<bool> go{false};
    std::vector<std::thread> posters;
    for (int t = 0; t < threads; ++t) {
        posters.emplace_back([&, t] {
            while (!go.load()) {
                std::this_thread::yield();
            }
            for (int i = 0; i < posts_per_thread; ++i) {
                kernel.post([&, t, i] {
                    seen[static_cast<std::size_t>(t)].push_back(i);
                    off_loop += std::this_thread::get_id() != loop_thread ? 1 : 0;
                    if (++total == threads * posts_per_thread) {
                        hold.release();
                        kernel.kill(dog);
                    }
                });
            }
        });
    }
    // The posters start once the loop sleeps in the selector (the watchdog's timer is 20 s away).
    std::thread starter([&go] {
        std::this_thread::sleep_for(50ms);
        go = true;
    });
    const auto start = Clock::now();
    kernel.run();
    const auto took = Clock::now() - start;
    starter.join();
    for (std::thread& poster : posters) {
        poster.join();
    }
    CHECK_FALSE(fired);
    CHECK(took < 10s);
    CHECK(total == threads * posts_per_thread);
    CHECK(off_loop == 0);
    for (const std::vector<int>& one_thread : seen) {
        REQUIRE(one_thread.size() == static_cast<std::size_t>(posts_per_thread));
        for (int i = 0; i < posts_per_thread; ++i) {
            CHECK(one_thread[static_cast<std::size_t>(i)] == i);
        }
    }
    require_empty(kernel);
}

TEST_CASE("post: a post wakes a loop blocked in the selector at once", "[post]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    bool fired = false;
    const TaskId dog = kernel.add_task(watchdog(kernel, 20s, fired));
    Clock::time_point ran_at;
    Clock::time_point posted_at;
    std::thread poster([&] {
        std::this_thread::sleep_for(50ms); // the loop is asleep by now
        posted_at = Clock::now();
        kernel.post([&] {
            ran_at = Clock::now();
            kernel.kill(dog);
        });
    });
    kernel.run();
    poster.join();
    CHECK_FALSE(fired);
    CHECK(ran_at - posted_at < 2s); // immediate in practice; never the watchdog's 20 s
    require_empty(kernel);
}

TEST_CASE("post: callables posted before run() run, in order, when it runs", "[post]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    std::thread poster([&] {
        kernel.post([&log] { log.emplace_back("one"); });
        kernel.post([&log] { log.emplace_back("two"); });
    });
    poster.join();
    kernel.post([&log] { log.emplace_back("three"); }); // from the loop's own thread too
    CHECK(log.empty());
    kernel.run(); // no task: it runs the posts and returns
    CHECK(log == Log{"one", "two", "three"});
    kernel.run();
    CHECK(log.size() == 3); // each ran once
    require_empty(kernel);
}

TEST_CASE("post: a posted callable may add tasks, which the loop then runs", "[post]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    Scheduler::Hold hold = kernel.hold();
    auto spawned = [](Log& events, std::string name) -> Task<> {
        co_await corio::Yield{};
        events.push_back(name + " ran");
    };
    std::thread poster([&] {
        std::this_thread::sleep_for(20ms);
        for (int i = 0; i < 3; ++i) {
            kernel.post([&, i] { kernel.add_task(spawned(log, "task " + std::to_string(i))); });
        }
        kernel.post([&] { hold.release(); });
    });
    kernel.run(); // no task at first: the Hold keeps it waiting for posts
    poster.join();
    CHECK(log == Log{"task 0 ran", "task 1 ran", "task 2 ran"});
    require_empty(kernel);
}

TEST_CASE("post: a Hold keeps run() going for a task only a post can wake", "[post]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    corio::Event event;
    bool woke = false;
    auto wait_for = [](corio::Event& ready, bool& done) -> Task<> {
        co_await ready.wait();
        done = true;
    };
    // Without a Hold: nothing in the loop can set the Event, so run() returns, task left parked.
    const TaskId id = kernel.add_task(wait_for(event, woke));
    kernel.run();
    CHECK(kernel.contains(id));
    CHECK_FALSE(woke);

    Scheduler::Hold hold = kernel.hold();
    std::thread poster([&] {
        std::this_thread::sleep_for(30ms);
        kernel.post([&] {
            event.set();
            hold.release();
        });
    });
    kernel.run();
    poster.join();
    CHECK(woke);
    require_empty(kernel);
}

TEST_CASE("post: a failing callable is reported and the loop goes on", "[post]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log reports;
    record_reports(kernel, reports);
    Log log;
    kernel.post([] { throw TestError("posted failure"); });
    kernel.post([&log] { log.emplace_back("after"); });
    kernel.run();
    CHECK(reports == Log{"posted failure"});
    CHECK(log == Log{"after"});
    require_empty(kernel);
}

TEST_CASE("post: callables never run are destroyed with the Scheduler", "[post]") {
    FrameLeakCheck leaks;
    auto token = std::make_shared<int>(1);
    bool ran = false;
    {
        Scheduler kernel;
        std::thread poster([&] { kernel.post([token, &ran] { ran = true; }); });
        poster.join();
        CHECK(token.use_count() == 2);
    }
    CHECK_FALSE(ran);
    CHECK(token.use_count() == 1);
}
