// Tests for corio/sync/lock.hpp: Guard (RAII, move, unlock), try_acquire, mutual exclusion across
// suspensions, FIFO hand-off without barging, cancellation (kill, timeout_after, ignore_after) of
// waiters, a lock handed to a waiter that dies before it runs, exceptions, teardown.
#include <corio/sync/lock.hpp> // first: the header stands alone

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
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
using corio::Lock;

// Waits for the lock (after `yields_first` yields), holds it for `hold` yields, releases it.
Task<> locker(Lock& lock, Log& log, std::string name, int yields_first = 0, int hold = 1) {
    co_await yield_times(yields_first);
    const Lock::Guard guard = co_await lock.acquire();
    log.push_back(name + " acquired");
    co_await yield_times(hold);
    log.push_back(name + " releases");
}

} // namespace

TEST_CASE("Lock: try_acquire, locked, and the Guard that releases it", "[lock]") {
    FrameLeakCheck leaks;
    Lock lock;
    CHECK_FALSE(lock.locked());
    {
        std::optional<Lock::Guard> guard = lock.try_acquire();
        REQUIRE(guard.has_value());
        CHECK(guard->owns_lock());
        CHECK(lock.locked());
        CHECK_FALSE(lock.try_acquire().has_value());
        Lock::Guard moved = std::move(*guard);
        CHECK_FALSE(guard->owns_lock());
        CHECK(moved.owns_lock());
        CHECK(static_cast<bool>(moved));
        CHECK(lock.locked());
        moved.unlock();
        CHECK_FALSE(moved.owns_lock());
        CHECK_FALSE(lock.locked());
        moved.unlock(); // twice: nothing
        CHECK_FALSE(lock.locked());
    }
    CHECK_FALSE(lock.locked());
    {
        auto guard = lock.try_acquire();
        CHECK(lock.locked());
        Lock::Guard other;
        CHECK_FALSE(other.owns_lock());
        other = std::move(*guard);
        CHECK(lock.locked());
        other = Lock::Guard(); // move-assigning releases what it held
        CHECK_FALSE(lock.locked());
    }
    CHECK_FALSE(lock.locked());
}

namespace {
struct Exclusion {
    int inside = 0;
    int most_inside = 0;
    int entries = 0;
};

Task<> critical(Lock& lock, Exclusion& state, int rounds) {
    for (int i = 0; i < rounds; ++i) {
        const Lock::Guard guard = co_await lock.acquire();
        ++state.inside;
        ++state.entries;
        state.most_inside = std::max(state.most_inside, state.inside);
        co_await yield_times(1 + i % 3); // others run while it is held
        --state.inside;
    }
}
} // namespace

TEST_CASE("Lock: one task at a time holds it, across suspensions", "[lock]") {
    FrameLeakCheck leaks;
    Lock lock;
    Scheduler kernel;
    Exclusion state;
    for (int i = 0; i < 5; ++i) {
        kernel.add_task(critical(lock, state, 10));
    }
    kernel.run();
    CHECK(state.most_inside == 1);
    CHECK(state.entries == 50);
    CHECK_FALSE(lock.locked());
    require_empty(kernel);
}

TEST_CASE("Lock: an acquire of a free lock does not suspend", "[lock]") {
    FrameLeakCheck leaks;
    Lock lock;
    Scheduler kernel;
    Log log;
    kernel.add_task(locker(lock, log, "a", 0, 0));
    kernel.add_task(locker(lock, log, "b", 0, 0));
    kernel.run();
    // a takes and releases it within its first step, so b finds it free in the same pass.
    CHECK(log == Log{"a acquired", "a releases", "b acquired", "b releases"});
    require_empty(kernel);
}

TEST_CASE("Lock: waiters get it in the order they began to wait", "[lock]") {
    FrameLeakCheck leaks;
    Lock lock;
    Scheduler kernel;
    Log log;
    kernel.add_task(locker(lock, log, "holder", 0, 5));
    // Created w0..w3, but w3 waits first and w0 last.
    for (int i = 0; i < 4; ++i) {
        kernel.add_task(locker(lock, log, "w" + std::to_string(i), 3 - i));
    }
    kernel.run();
    CHECK(log == Log{"holder acquired", "holder releases", "w3 acquired", "w3 releases",
                     "w2 acquired", "w2 releases", "w1 acquired", "w1 releases", "w0 acquired",
                     "w0 releases"});
    require_empty(kernel);
}

namespace {
// Releases the lock while `waiter` waits, then tries to barge in before the waiter runs.
Task<> release_then_barge(Lock& lock, Log& log) {
    auto guard = lock.try_acquire();
    REQUIRE(guard.has_value());
    co_await yield_times(2); // the waiter queues
    guard->unlock();
    log.push_back(lock.locked() ? "still locked" : "unlocked");
    log.push_back(lock.try_acquire().has_value() ? "barged in" : "try_acquire failed");
    const Lock::Guard mine = co_await lock.acquire(); // queues behind the waiter
    log.emplace_back("barger acquired");
}
} // namespace

TEST_CASE("Lock: a release hands the lock to the oldest waiter, and nobody barges in", "[lock]") {
    FrameLeakCheck leaks;
    Lock lock;
    Scheduler kernel;
    Log log;
    kernel.add_task(release_then_barge(lock, log));
    kernel.add_task(locker(lock, log, "waiter"));
    kernel.run();
    CHECK(log == Log{"still locked", "try_acquire failed", "waiter acquired", "waiter releases",
                     "barger acquired"});
    CHECK_FALSE(lock.locked());
    require_empty(kernel);
}

// ---- Cancellation -------------------------------------------------------------------------------

namespace {
Task<> hold_then_kill(Lock& lock, Log& log, const TaskId& victim) {
    const Lock::Guard guard = co_await lock.acquire();
    log.emplace_back("holder acquired");
    co_await corio::Yield{}; // the waiters queue
    log.push_back(co_await corio::KillTask{victim} ? "killed" : "no victim");
    log.emplace_back("holder releases");
}
} // namespace

TEST_CASE("Lock: a killed waiter leaves the wait list, and the others get the lock in order",
          "[lock][kill]") {
    FrameLeakCheck leaks;
    Lock lock;
    Scheduler kernel;
    Log log;
    TaskId victim;
    kernel.add_task(hold_then_kill(lock, log, victim)); // reads victim when it runs: set below
    kernel.add_task(locker(lock, log, "w0"));
    victim = kernel.add_task(locker(lock, log, "w1"));
    kernel.add_task(locker(lock, log, "w2"));
    kernel.run();
    CHECK(log == Log{"holder acquired", "killed", "holder releases", "w0 acquired", "w0 releases",
                     "w2 acquired", "w2 releases"});
    CHECK_FALSE(lock.locked());
    require_empty(kernel);
}

namespace {
Task<> lock_with_timeout(Lock& lock, Log& log, std::string name, VirtualClock& clock,
                         std::chrono::milliseconds limit) {
    try {
        const Lock::Guard guard = co_await corio::timeout_after(limit, lock.acquire());
        log.push_back(name + " acquired@" + at(clock));
    } catch (const corio::TimeoutError&) {
        log.push_back(name + " TimeoutError@" + at(clock));
    }
}

Task<> lock_or_ignore(Lock& lock, Log& log, std::string name, VirtualClock& clock,
                      std::chrono::milliseconds limit) {
    const std::optional<Lock::Guard> guard = co_await corio::ignore_after(limit, lock.acquire());
    log.push_back(name + (guard ? " acquired@" : " gave up@") + at(clock));
}

Task<> hold_for(Lock& lock, Log& log, VirtualClock& clock, std::chrono::milliseconds length) {
    const Lock::Guard guard = co_await lock.acquire();
    co_await corio::Sleep{length};
    log.push_back("release@" + at(clock));
}
} // namespace

TEST_CASE("Lock: a waiter whose deadline passes leaves the wait list (timeout_after, "
          "ignore_after)",
          "[lock][timeout]") {
    FrameLeakCheck leaks;
    Lock lock;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.add_task(hold_for(lock, log, clock, 2000ms));
    kernel.add_task(lock_with_timeout(lock, log, "a", clock, 1000ms));
    kernel.add_task(lock_or_ignore(lock, log, "b", clock, 500ms));
    kernel.add_task(lock_or_ignore(lock, log, "c", clock, 5000ms));
    kernel.add_task(lock_with_timeout(lock, log, "d", clock, 3000ms));
    kernel.run();
    CHECK(log == Log{"b gave up@500", "a TimeoutError@1000", "release@2000", "c acquired@2000",
                     "d acquired@2000"});
    CHECK_FALSE(lock.locked());
    require_empty(kernel);
}

namespace {
// Releases the lock to the oldest waiter, then kills that waiter before it runs.
Task<> hand_off_then_kill(Lock& lock, Log& log, const TaskId& victim) {
    auto guard = lock.try_acquire();
    REQUIRE(guard.has_value());
    co_await corio::Yield{}; // the waiters queue
    guard->unlock();
    log.push_back(co_await corio::KillTask{victim} ? "killed" : "no victim");
    log.push_back(lock.locked() ? "locked" : "unlocked");
}
} // namespace

TEST_CASE("Lock: a waiter killed after the lock was handed to it passes it to the next waiter",
          "[lock][kill]") {
    FrameLeakCheck leaks;
    Lock lock;
    Scheduler kernel;
    Log log;
    TaskId victim;
    kernel.add_task(hand_off_then_kill(lock, log, victim));
    victim = kernel.add_task(locker(lock, log, "w0"));
    kernel.add_task(locker(lock, log, "w1"));
    kernel.run();
    CHECK(log == Log{"killed", "locked", "w1 acquired", "w1 releases"});
    CHECK_FALSE(lock.locked());
    require_empty(kernel);
}

TEST_CASE("Lock: a waiter killed after the lock was handed to it, with nobody else waiting, "
          "unlocks it",
          "[lock][kill]") {
    FrameLeakCheck leaks;
    Lock lock;
    Scheduler kernel;
    Log log;
    TaskId victim;
    kernel.add_task(hand_off_then_kill(lock, log, victim));
    victim = kernel.add_task(locker(lock, log, "w0"));
    kernel.run();
    CHECK(log == Log{"killed", "unlocked"});
    CHECK_FALSE(lock.locked());
    require_empty(kernel);
}

namespace {
Task<> hand_off_then_jump_time(Lock& lock, VirtualClock& clock) {
    auto guard = lock.try_acquire();
    REQUIRE(guard.has_value());
    co_await corio::Yield{}; // the waiters queue
    guard->unlock();
    clock.advance(10s); // the woken waiter's deadline passes before it runs
}
} // namespace

TEST_CASE("Lock: a waiter handed the lock is not interrupted by a deadline that passes before it "
          "runs, but one still waiting is",
          "[lock][timeout]") {
    FrameLeakCheck leaks;
    Lock lock;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.add_task(hand_off_then_jump_time(lock, clock));
    kernel.add_task(lock_with_timeout(lock, log, "a", clock, 1000ms));
    kernel.add_task(lock_or_ignore(lock, log, "b", clock, 1000ms));
    kernel.run();
    // a was handed the lock: its deadline no longer counts. b was still waiting when time jumped:
    // its deadline ended the wait, so a's release found nobody waiting.
    CHECK(log == Log{"a acquired@10000", "b gave up@10000"});
    CHECK_FALSE(lock.locked());
    require_empty(kernel);
}

// ---- Exceptions and teardown --------------------------------------------------------------------

namespace {
Task<> throw_while_holding(Lock& lock, Log& log) {
    const Lock::Guard guard = co_await lock.acquire();
    log.emplace_back("thrower acquired");
    co_await corio::Yield{};
    throw TestError("in the critical section");
}
} // namespace

TEST_CASE("Lock: an exception in the critical section releases the lock to the next waiter",
          "[lock]") {
    FrameLeakCheck leaks;
    Lock lock;
    Scheduler kernel;
    Log log;
    const TaskId thrower = kernel.add_task(throw_while_holding(lock, log));
    kernel.add_task(expect_failure(thrower, log));
    kernel.add_task(locker(lock, log, "w"));
    kernel.run();
    CHECK(log == Log{"thrower acquired", "w acquired", "in the critical section", "w releases"});
    CHECK_FALSE(lock.locked());
    require_empty(kernel);
}

namespace {
Task<std::string> acquire_expecting_logic_error(Lock& lock) {
    try {
        const Lock::Guard guard = co_await lock.acquire();
    } catch (const std::logic_error&) {
        co_return "logic_error";
    }
    co_return "acquired";
}
} // namespace

TEST_CASE("Lock: waiting from a second Scheduler while tasks of the first wait throws "
          "std::logic_error",
          "[lock]") {
    FrameLeakCheck leaks;
    Lock lock;
    Scheduler first;
    Log log;
    std::optional<Lock::Guard> held = lock.try_acquire();
    first.add_task(locker(lock, log, "w", 0, 0));
    first.run(); // returns: the waiter is parked, nothing can wake it
    REQUIRE(first.task_count() == 1);
    {
        Scheduler second;
        CHECK(second.run_until_complete(acquire_expecting_logic_error(lock)) == "logic_error");
        require_empty(second);
    }
    held.reset(); // hands the lock to the first Scheduler's waiter
    first.run();
    CHECK(log == Log{"w acquired", "w releases"});
    CHECK_FALSE(lock.locked());
    require_empty(first);
}

TEST_CASE("Lock: destroying the Scheduler with a holder and waiters leaves the lock free",
          "[lock][kill]") {
    FrameLeakCheck leaks;
    Lock lock; // declared before the Scheduler: it outlives the tasks
    Log log;
    {
        Scheduler kernel;
        kernel.add_task(locker(lock, log, "holder", 0, 1000));
        kernel.add_task(locker(lock, log, "w0"));
        kernel.add_task(locker(lock, log, "w1"));
        kernel.run_until_complete(yield_times(3));
        CHECK(lock.locked());
    }
    CHECK(log == Log{"holder acquired"});
    CHECK_FALSE(lock.locked());
}
