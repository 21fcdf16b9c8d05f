// Tests for corio/run_in_thread.hpp: results of every kind and exceptions come back to the task;
// the loop serves other tasks meanwhile; the pool's bound queues extra jobs; kills and deadlines
// during a job (the job's result is dropped, the frame is never touched: run these under ASan);
// destroying the Scheduler with jobs in flight. Assertions stay on the loop's thread: jobs only
// return values or record into atomics.
#include <corio/run_in_thread.hpp> // first: the header stands alone

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <exception>
#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>

#include "support/catch.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::run_in_thread;

using Clock = std::chrono::steady_clock;

int add(int a, int b) {
    return a + b;
}

std::string repeat(std::string text, int times) {
    std::string out;
    for (int i = 0; i < times; ++i) {
        out += text;
    }
    return out;
}

int& global_counter() {
    static int counter = 41;
    return counter;
}

// The kernel holds nothing, and no task waits for the pool.
void require_idle(const Scheduler& kernel) {
    require_empty(kernel);
    CHECK(kernel.stats().thread_jobs == 0);
}

// Blocks the worker for `length`, then gives `value`.
int slow_value(Clock::duration length, int value) {
    std::this_thread::sleep_for(length);
    return value;
}

// Counts the live objects across threads (Counted's counters are not atomic: jobs build results
// on the workers while the loop destroys others).
class Tracked {
public:
    static inline std::atomic<long> alive{0};

    explicit Tracked(int value) noexcept : value_(value) { ++alive; }
    Tracked(const Tracked& other) noexcept : value_(other.value_) { ++alive; }
    Tracked(Tracked&& other) noexcept : value_(other.value_) { ++alive; }
    Tracked& operator=(const Tracked&) = delete;
    Tracked& operator=(Tracked&&) = delete;
    ~Tracked() { --alive; }

    [[nodiscard]] int value() const noexcept { return value_; }

private:
    int value_;
};


Task<> ticker(int& ticks, const bool& stop) {
    while (!stop) {
        co_await corio::Sleep{2ms};
        ++ticks;
    }
}

} // namespace

TEST_CASE("run_in_thread: gives values of every kind back to the task", "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto body = [](Scheduler&) -> Task<> {
        const int sum = co_await run_in_thread(add, 2, 3);
        CHECK(sum == 5);
        const std::string text = co_await run_in_thread(repeat, std::string("ab"), 3);
        CHECK(text == "ababab");
        // A lambda, a move-only result and a move-only argument.
        auto owned = co_await run_in_thread(
            [](std::unique_ptr<int> given) { return std::make_unique<int>(*given + 1); },
            std::make_unique<int>(6));
        CHECK(*owned == 7);
        // A type without a default constructor, and one that counts its copies.
        const NoDefault made = co_await run_in_thread([] { return NoDefault(9); });
        CHECK(made.value == 9);
        const Tracked counted = co_await run_in_thread([] { return Tracked(3); });
        CHECK(counted.value() == 3);
        // A function returning a reference gives a copy.
        int copy = co_await run_in_thread(global_counter);
        ++copy;
        CHECK(global_counter() == 41);
        // void, with a reference through std::ref.
        int written = 0;
        co_await run_in_thread([](int& out) { out = 12; }, std::ref(written));
        CHECK(written == 12);
        // It ran on another thread.
        const auto worker = co_await run_in_thread([] { return std::this_thread::get_id(); });
        CHECK(worker != std::this_thread::get_id());
    };
    const TaskId id = kernel.add_task(body(kernel));
    REQUIRE(run_until_ended(kernel, {id}));
    require_idle(kernel);
    CHECK(Tracked::alive.load() == 0);
}

TEST_CASE("run_in_thread: an exception thrown by the function is rethrown in the task",
          "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto body = []() -> Task<> {
        const std::exception_ptr failed =
            co_await failure_of(run_in_thread([]() -> int { throw TestError("job failed"); }));
        REQUIRE(failed);
        CHECK_THROWS_MATCHES(std::rethrow_exception(failed), TestError, Catch::Matchers::Message("job failed"));
        try {
            co_await run_in_thread([] { throw std::system_error(EIO, std::generic_category(), "disk"); });
            FAIL("no exception");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::io_error);
        }
        const int after = co_await run_in_thread(add, 1, 1);
        CHECK(after == 2); // the pool is fine afterwards
    };
    const TaskId id = kernel.add_task(body());
    REQUIRE(run_until_ended(kernel, {id}));
    require_idle(kernel);
}

TEST_CASE("run_in_thread: the loop keeps serving other tasks while a job blocks",
          "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    int ticks = 0;
    bool stop = false;
    auto body = [](int& ticks_seen, bool& stop_ticker) -> Task<> {
        const auto start = Clock::now();
        const int value = co_await run_in_thread(slow_value, Clock::duration(200ms), 7);
        CHECK(value == 7);
        CHECK(Clock::now() - start >= 200ms);
        ticks_seen = -ticks_seen; // what the ticker had done while the job ran
        stop_ticker = true;
    };
    const TaskId ticking = kernel.add_task(ticker(ticks, stop));
    const TaskId id = kernel.add_task(body(ticks, stop));
    REQUIRE(run_until_ended(kernel, {id, ticking}));
    // 200 ms of 2 ms sleeps: about 100 ticks; at least 20 even on a loaded machine.
    CHECK(ticks <= -20);
    require_idle(kernel);
}

TEST_CASE("run_in_thread: a bounded pool queues the jobs beyond its size", "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    kernel.set_thread_pool_size(2);
    std::atomic<int> running{0};
    std::atomic<int> most_at_once{0};
    auto job = [&running, &most_at_once](int value) {
        const int now = ++running;
        int seen = most_at_once.load();
        while (now > seen && !most_at_once.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(30ms);
        --running;
        return value * 10;
    };
    auto one = [](decltype(job) work, int value) -> Task<> {
        const int result = co_await run_in_thread(work, value);
        CHECK(result == value * 10);
    };
    std::vector<TaskId> ids;
    for (int i = 0; i < 6; ++i) {
        ids.push_back(kernel.add_task(one(job, i)));
    }
    const auto start = Clock::now();
    REQUIRE(run_until_ended(kernel, ids));
    CHECK(Clock::now() - start >= 90ms); // 6 jobs of 30 ms, 2 at a time
    CHECK(most_at_once.load() == 2);
    CHECK(kernel.thread_pool().thread_count() == 2);
    CHECK_THROWS_AS(kernel.set_thread_pool_size(4), std::logic_error);
    require_idle(kernel);
}

TEST_CASE("run_in_thread: many concurrent jobs all come back", "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<int> results(500, -1);
    auto one = [](int index, int& out) -> Task<> {
        out = co_await run_in_thread([](int i) { return i * 3; }, index);
    };
    std::vector<TaskId> ids;
    for (int i = 0; i < 500; ++i) {
        ids.push_back(kernel.add_task(one(i, results[static_cast<std::size_t>(i)])));
    }
    auto counting = [](Scheduler& k, std::size_t& most) -> Task<> {
        for (int i = 0; i < 3; ++i) {
            most = std::max(most, k.stats().thread_jobs);
            co_await corio::Yield{};
        }
    };
    std::size_t most_waiting = 0;
    ids.push_back(kernel.add_task(counting(kernel, most_waiting)));
    REQUIRE(run_until_ended(kernel, ids));
    for (int i = 0; i < 500; ++i) {
        CHECK(results[static_cast<std::size_t>(i)] == i * 3);
    }
    CHECK(most_waiting > 0);
    CHECK(kernel.thread_pool().thread_count() <= corio::ThreadPool::default_thread_count());
    require_idle(kernel);
}

TEST_CASE("run_in_thread: a task killed during its job is gone at once, the result is dropped",
          "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::atomic<bool> job_finished{false};
    Log log;
    auto victim = [](std::atomic<bool>& finished, Log& events) -> Task<> {
        const Tracked held(1); // destroyed with the frame
        const Tracked result = co_await run_in_thread([&finished] {
            std::this_thread::sleep_for(100ms);
            finished = true;
            return Tracked(2);
        });
        events.emplace_back("victim resumed");
        CHECK(result.value() == 2 * held.value());
    };
    const TaskId id = kernel.add_task(victim(job_finished, log));
    TaskId victim_id = id;
    const TaskId killer = kernel.add_task(kill_after(10ms, victim_id));
    // Keeps the loop running until after the job has come back, so that its result reaches the
    // loop with nobody waiting for it.
    auto outlast = [](std::atomic<bool>& finished) -> Task<> {
        while (!finished) {
            co_await corio::Sleep{5ms};
        }
        co_await corio::Sleep{20ms};
    };
    const TaskId outlasting = kernel.add_task(outlast(job_finished));
    REQUIRE(run_until_ended(kernel, {killer, outlasting}));
    CHECK_FALSE(kernel.contains(id));
    CHECK(job_finished.load());
    CHECK(log.empty());
    require_idle(kernel);
    CHECK(Tracked::alive.load() == 0); // the frame's Tracked and the job's result, both destroyed
}

TEST_CASE("run_in_thread: a job whose task was killed before it started never runs",
          "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    kernel.set_thread_pool_size(1);
    std::atomic<int> ran{0};
    auto blocker = [](std::atomic<int>& count) -> Task<> {
        co_await run_in_thread([&count] {
            std::this_thread::sleep_for(60ms);
            ++count;
        });
    };
    auto queued = [](std::atomic<int>& count) -> Task<> {
        co_await run_in_thread([&count] { count += 100; }); // behind the blocker: queued
    };
    const TaskId first = kernel.add_task(blocker(ran));
    TaskId second = kernel.add_task(queued(ran));
    const TaskId killer = kernel.add_task(kill_after(10ms, second));
    REQUIRE(run_until_ended(kernel, {first, killer}));
    CHECK(ran.load() == 1);
    require_idle(kernel);
}

TEST_CASE("run_in_thread: a deadline ends the wait, the job's late result is dropped",
          "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::atomic<bool> job_finished{false};
    auto body = [](std::atomic<bool>& finished) -> Task<> {
        const auto start = Clock::now();
        auto job = [&finished] {
            std::this_thread::sleep_for(150ms);
            finished = true;
            return Tracked(5);
        };
        const std::exception_ptr timed_out = co_await failure_of(corio::timeout_after(20ms, run_in_thread(job)));
        REQUIRE(timed_out);
        CHECK_THROWS_AS(std::rethrow_exception(timed_out), corio::TimeoutError);
        const auto waited = Clock::now() - start;
        CHECK(waited >= 20ms);
        CHECK(waited < 140ms); // did not wait for the job
        CHECK_FALSE(finished.load());
        // ignore_after, and a job that beats its deadline.
        const auto ignored = co_await corio::ignore_after(10ms, run_in_thread(slow_value, Clock::duration(100ms), 1));
        CHECK_FALSE(ignored);
        const int in_time = co_await corio::timeout_after(5s, run_in_thread(add, 4, 4));
        CHECK(in_time == 8);
        while (!finished) {
            co_await corio::Sleep{5ms}; // let the late results come back to the loop
        }
        co_await corio::Sleep{120ms};
    };
    const TaskId id = kernel.add_task(body(job_finished));
    REQUIRE(run_until_ended(kernel, {id}));
    require_idle(kernel);
    CHECK(Tracked::alive.load() == 0);
}

TEST_CASE("run_in_thread: destroying the Scheduler with jobs running and queued is safe",
          "[run_in_thread]") {
    FrameLeakCheck leaks;
    std::atomic<int> started{0};
    std::atomic<int> finished{0};
    Clock::time_point destroyed_at;
    {
        Scheduler kernel;
        kernel.set_thread_pool_size(2);
        auto waiter = [](std::atomic<int>& began, std::atomic<int>& ended) -> Task<> {
            const Tracked result = co_await run_in_thread([&began, &ended] {
                ++began;
                std::this_thread::sleep_for(50ms);
                ++ended;
                return Tracked(1);
            });
            FAIL("the task resumed although its Scheduler was destroyed");
        };
        for (int i = 0; i < 5; ++i) {
            kernel.add_task(waiter(started, finished));
        }
        auto stop_soon = [](Scheduler& k) -> Task<> {
            co_await corio::Sleep{10ms};
            k.stop();
        };
        kernel.add_task(stop_soon(kernel));
        kernel.run();
        CHECK(kernel.stats().thread_jobs == 5);
        destroyed_at = Clock::now();
    } // joins the 2 running jobs; the 3 queued ones never run
    CHECK(Clock::now() - destroyed_at >= 30ms);
    CHECK(started.load() == 2);
    CHECK(finished.load() == 2);
    CHECK(Tracked::alive.load() == 0);
}

TEST_CASE("run_in_thread: shutting the pool down fails the jobs still queued with ECANCELED",
          "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    kernel.set_thread_pool_size(1);
    auto running = []() -> Task<> {
        const int value = co_await run_in_thread(slow_value, Clock::duration(50ms), 3);
        CHECK(value == 3);
    };
    auto queued = []() -> Task<> {
        try {
            co_await run_in_thread(add, 1, 2);
            FAIL("the queued job ran");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::operation_canceled);
        }
    };
    auto shut_down = [](Scheduler& k) -> Task<> {
        co_await corio::Sleep{10ms};
        k.thread_pool().shutdown(); // waits for the running job
        const std::exception_ptr refused = co_await failure_of(run_in_thread(add, 1, 1));
        REQUIRE(refused);
        CHECK_THROWS_AS(std::rethrow_exception(refused), std::logic_error);
    };
    const TaskId a = kernel.add_task(running());
    const TaskId b = kernel.add_task(queued());
    const TaskId c = kernel.add_task(shut_down(kernel));
    REQUIRE(run_until_ended(kernel, {a, b, c}));
    require_idle(kernel);
}

TEST_CASE("run_in_thread: the job's thread blocks every signal", "[run_in_thread]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto body = []() -> Task<> {
        const bool blocked = co_await run_in_thread([] {
            sigset_t mask;
            ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
            return ::sigismember(&mask, SIGINT) == 1 && ::sigismember(&mask, SIGTERM) == 1 &&
                   ::sigismember(&mask, SIGCHLD) == 1;
        });
        CHECK(blocked);
    };
    const TaskId id = kernel.add_task(body());
    REQUIRE(run_until_ended(kernel, {id}));
    require_idle(kernel);
}
