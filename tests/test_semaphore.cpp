// Tests for corio/sync/semaphore.hpp: value/try_acquire/release, a bound on concurrency, FIFO hand-off
// without barging, cancellation (kill, timeout_after, ignore_after) of waiters, a permit handed to
// a waiter that dies before it runs, exceptions, teardown.
#include <corio/sync/semaphore.hpp> // first: the header stands alone

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>
#include <corio/virtual_clock.hpp>

#include "support/catch.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::Semaphore;

// Waits for a permit (after `yields_first` yields), keeps it for `hold` yields, releases it.
Task<> worker(Semaphore& semaphore, Log& log, std::string name, int yields_first = 0,
              int hold = 1) {
    co_await yield_times(yields_first);
    co_await semaphore.acquire();
    log.push_back(name + " acquired");
    co_await yield_times(hold);
    log.push_back(name + " releases");
    semaphore.release();
}

} // namespace

TEST_CASE("Semaphore: value, try_acquire and release without tasks", "[semaphore]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(2);
    CHECK(semaphore.value() == 2);
    CHECK(semaphore.try_acquire());
    CHECK(semaphore.try_acquire());
    CHECK(semaphore.value() == 0);
    CHECK_FALSE(semaphore.try_acquire());
    semaphore.release();
    CHECK(semaphore.value() == 1);
    semaphore.release();
    semaphore.release(); // more than the initial value is allowed
    CHECK(semaphore.value() == 3);
    Semaphore empty(0);
    CHECK(empty.value() == 0);
    CHECK_FALSE(empty.try_acquire());
}

namespace {
struct Concurrency {
    int inside = 0;
    int most_inside = 0;
    int entries = 0;
};

Task<> bounded_work(Semaphore& semaphore, Concurrency& state, int rounds) {
    for (int i = 0; i < rounds; ++i) {
        co_await semaphore.acquire();
        ++state.inside;
        ++state.entries;
        state.most_inside = std::max(state.most_inside, state.inside);
        co_await yield_times(1 + i % 3);
        --state.inside;
        semaphore.release();
    }
}
} // namespace

TEST_CASE("Semaphore: at most `initial` tasks hold a permit at once", "[semaphore]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(2);
    Scheduler kernel;
    Concurrency state;
    for (int i = 0; i < 6; ++i) {
        kernel.add_task(bounded_work(semaphore, state, 10));
    }
    kernel.run();
    CHECK(state.most_inside == 2);
    CHECK(state.entries == 60);
    CHECK(semaphore.value() == 2);
    require_empty(kernel);
}

TEST_CASE("Semaphore: an acquire with a permit available does not suspend", "[semaphore]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(1);
    Scheduler kernel;
    Log log;
    kernel.add_task(worker(semaphore, log, "a", 0, 0));
    kernel.add_task(worker(semaphore, log, "b", 0, 0));
    kernel.run();
    CHECK(log == Log{"a acquired", "a releases", "b acquired", "b releases"});
    CHECK(semaphore.value() == 1);
    require_empty(kernel);
}

TEST_CASE("Semaphore: waiters get permits in the order they began to wait", "[semaphore]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(0);
    Scheduler kernel;
    Log log;
    // Created w0..w3, but w3 waits first and w0 last.
    for (int i = 0; i < 4; ++i) {
        kernel.add_task(worker(semaphore, log, "w" + std::to_string(i), 3 - i, 0));
    }
    kernel.run_until_complete(yield_times(5)); // all four wait now
    CHECK(log.empty());
    semaphore.release(); // from outside any task: the kernel learnt from the waiters
    kernel.run();
    CHECK(log == Log{"w3 acquired", "w3 releases", "w2 acquired", "w2 releases", "w1 acquired",
                     "w1 releases", "w0 acquired", "w0 releases"});
    CHECK(semaphore.value() == 1);
    require_empty(kernel);
}

namespace {
Task<> release_then_barge(Semaphore& semaphore, Log& log) {
    co_await yield_times(2); // the waiter queues
    semaphore.release();
    log.push_back("value " + std::to_string(semaphore.value()));
    log.push_back(semaphore.try_acquire() ? "barged in" : "try_acquire failed");
    co_await semaphore.acquire(); // queues behind the waiter
    log.emplace_back("barger acquired");
    semaphore.release();
}
} // namespace

TEST_CASE("Semaphore: a release hands the permit to the oldest waiter, and nobody barges in",
          "[semaphore]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(0);
    Scheduler kernel;
    Log log;
    kernel.add_task(release_then_barge(semaphore, log));
    kernel.add_task(worker(semaphore, log, "waiter"));
    kernel.run();
    CHECK(log == Log{"value 0", "try_acquire failed", "waiter acquired", "waiter releases",
                     "barger acquired"});
    CHECK(semaphore.value() == 1);
    require_empty(kernel);
}

// ---- Cancellation -------------------------------------------------------------------------------

namespace {
Task<> kill_then_release(Semaphore& semaphore, Log& log, const TaskId& victim, int permits) {
    co_await corio::Yield{}; // the waiters queue
    log.push_back(co_await corio::KillTask{victim} ? "killed" : "no victim");
    for (int i = 0; i < permits; ++i) {
        semaphore.release();
    }
}
} // namespace

TEST_CASE("Semaphore: a killed waiter leaves the wait list, and the others get permits in order",
          "[semaphore][kill]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(0);
    Scheduler kernel;
    Log log;
    TaskId victim;
    kernel.add_task(kill_then_release(semaphore, log, victim, 3));
    kernel.add_task(worker(semaphore, log, "w0", 0, 0));
    victim = kernel.add_task(worker(semaphore, log, "w1", 0, 0));
    kernel.add_task(worker(semaphore, log, "w2", 0, 0));
    kernel.run();
    // Three permits: two to w0 and w2, the third to the count; then each gives its own back.
    CHECK(log == Log{"killed", "w0 acquired", "w0 releases", "w2 acquired", "w2 releases"});
    CHECK(semaphore.value() == 3);
    require_empty(kernel);
}

namespace {
Task<> acquire_with_timeout(Semaphore& semaphore, Log& log, std::string name, VirtualClock& clock,
                            std::chrono::milliseconds limit) {
    try {
        co_await corio::timeout_after(limit, semaphore.acquire());
        log.push_back(name + " acquired@" + at(clock));
    } catch (const corio::TimeoutError&) {
        log.push_back(name + " TimeoutError@" + at(clock));
    }
}

Task<> acquire_or_ignore(Semaphore& semaphore, Log& log, std::string name, VirtualClock& clock,
                         std::chrono::milliseconds limit) {
    const bool acquired = co_await corio::ignore_after(limit, semaphore.acquire());
    log.push_back(name + (acquired ? " acquired@" : " gave up@") + at(clock));
}

Task<> release_at(Semaphore& semaphore, Log& log, VirtualClock& clock,
                  std::chrono::milliseconds when, int permits) {
    co_await corio::Sleep{when};
    log.push_back("release@" + at(clock));
    for (int i = 0; i < permits; ++i) {
        semaphore.release();
    }
}
} // namespace

TEST_CASE("Semaphore: a waiter whose deadline passes leaves the wait list (timeout_after, "
          "ignore_after)",
          "[semaphore][timeout]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(0);
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.add_task(acquire_with_timeout(semaphore, log, "a", clock, 1000ms));
    kernel.add_task(acquire_or_ignore(semaphore, log, "b", clock, 500ms));
    kernel.add_task(acquire_or_ignore(semaphore, log, "c", clock, 5000ms));
    kernel.add_task(acquire_with_timeout(semaphore, log, "d", clock, 3000ms));
    kernel.add_task(release_at(semaphore, log, clock, 2000ms, 3));
    kernel.run();
    CHECK(log == Log{"b gave up@500", "a TimeoutError@1000", "release@2000", "c acquired@2000",
                     "d acquired@2000"});
    CHECK(semaphore.value() == 1); // the third permit: nobody was left to take it
    require_empty(kernel);
}

namespace {
// Releases a permit to the oldest waiter, then kills that waiter before it runs.
Task<> hand_off_then_kill(Semaphore& semaphore, Log& log, const TaskId& victim) {
    co_await corio::Yield{}; // the waiters queue
    semaphore.release();
    log.push_back(co_await corio::KillTask{victim} ? "killed" : "no victim");
    log.push_back("value " + std::to_string(semaphore.value()));
}
} // namespace

TEST_CASE("Semaphore: a waiter killed after a permit was handed to it passes it to the next "
          "waiter",
          "[semaphore][kill]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(0);
    Scheduler kernel;
    Log log;
    TaskId victim;
    kernel.add_task(hand_off_then_kill(semaphore, log, victim));
    victim = kernel.add_task(worker(semaphore, log, "w0"));
    kernel.add_task(worker(semaphore, log, "w1"));
    kernel.run();
    CHECK(log == Log{"killed", "value 0", "w1 acquired", "w1 releases"});
    CHECK(semaphore.value() == 1);
    require_empty(kernel);
}

TEST_CASE("Semaphore: a waiter killed after a permit was handed to it, with nobody else waiting, "
          "gives it back to the count",
          "[semaphore][kill]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(0);
    Scheduler kernel;
    Log log;
    TaskId victim;
    kernel.add_task(hand_off_then_kill(semaphore, log, victim));
    victim = kernel.add_task(worker(semaphore, log, "w0"));
    kernel.run();
    CHECK(log == Log{"killed", "value 1"});
    CHECK(semaphore.value() == 1);
    require_empty(kernel);
}

namespace {
Task<> release_then_jump_time(Semaphore& semaphore, VirtualClock& clock) {
    co_await corio::Yield{}; // the waiters queue
    semaphore.release();
    clock.advance(10s); // deadlines pass: a's after it was handed the permit, b's while it waits
}
} // namespace

TEST_CASE("Semaphore: a waiter handed a permit is not interrupted by a deadline that passes "
          "before it runs, but one still waiting is",
          "[semaphore][timeout]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(0);
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.add_task(release_then_jump_time(semaphore, clock));
    kernel.add_task(acquire_with_timeout(semaphore, log, "a", clock, 1000ms));
    kernel.add_task(acquire_or_ignore(semaphore, log, "b", clock, 1000ms));
    kernel.run();
    CHECK(log == Log{"a acquired@10000", "b gave up@10000"});
    CHECK(semaphore.value() == 0); // a kept its permit
    require_empty(kernel);
}

// ---- Exceptions and teardown --------------------------------------------------------------------

namespace {
// Releases its permit with RAII, so that an exception gives it back too.
class Permit {
public:
    explicit Permit(Semaphore& semaphore) noexcept : semaphore_(semaphore) {}
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit() { semaphore_.release(); }

private:
    Semaphore& semaphore_;
};

Task<> throw_while_holding(Semaphore& semaphore, Log& log) {
    co_await semaphore.acquire();
    const Permit permit(semaphore);
    log.emplace_back("thrower acquired");
    co_await corio::Yield{};
    throw TestError("while holding a permit");
}
} // namespace

TEST_CASE("Semaphore: a permit released by RAII during an exception goes to the next waiter",
          "[semaphore]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(1);
    Scheduler kernel;
    Log log;
    const TaskId thrower = kernel.add_task(throw_while_holding(semaphore, log));
    kernel.add_task(expect_failure(thrower, log));
    kernel.add_task(worker(semaphore, log, "w"));
    kernel.run();
    CHECK(log == Log{"thrower acquired", "w acquired", "while holding a permit", "w releases"});
    CHECK(semaphore.value() == 1);
    require_empty(kernel);
}

namespace {
Task<std::string> acquire_expecting_logic_error(Semaphore& semaphore) {
    try {
        co_await semaphore.acquire();
    } catch (const std::logic_error&) {
        co_return "logic_error";
    }
    co_return "acquired";
}
} // namespace

TEST_CASE("Semaphore: waiting from a second Scheduler while tasks of the first wait throws "
          "std::logic_error",
          "[semaphore]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(0);
    Scheduler first;
    Log log;
    first.add_task(worker(semaphore, log, "w", 0, 0));
    first.run(); // returns: the waiter is parked, nothing can wake it
    REQUIRE(first.task_count() == 1);
    {
        Scheduler second;
        CHECK(second.run_until_complete(acquire_expecting_logic_error(semaphore)) == "logic_error");
        require_empty(second);
    }
    semaphore.release();
    first.run();
    CHECK(log == Log{"w acquired", "w releases"});
    CHECK(semaphore.value() == 1);
    require_empty(first);
}

namespace {
Task<> release_then_stop(Scheduler& kernel, Semaphore& semaphore) {
    co_await corio::Yield{}; // the waiters queue
    semaphore.release();     // handed to w0, which never runs
    kernel.stop();
}
} // namespace

TEST_CASE("Semaphore: a permit handed to a waiter comes back when the Scheduler is destroyed "
          "before the waiter runs",
          "[semaphore][kill]") {
    FrameLeakCheck leaks;
    Semaphore semaphore(0); // declared before the Scheduler: it outlives the tasks
    Log log;
    {
        Scheduler kernel;
        kernel.add_task(release_then_stop(kernel, semaphore));
        kernel.add_task(worker(semaphore, log, "w0"));
        kernel.add_task(worker(semaphore, log, "w1"));
        kernel.run();
        CHECK(kernel.task_count() == 2);
        CHECK(semaphore.value() == 0);
    }
    CHECK(log.empty());
    CHECK(semaphore.value() == 1);
}
