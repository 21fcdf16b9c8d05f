// Tests for corio/timeout.hpp (timeout_after/timeout_at, ignore_after/ignore_at) and the kernel's
// deadline scopes behind them. Every test but the last runs on a VirtualClock: the times are
// exact, and the tests take no wall-clock time.
//
// What a deadline that has already passed does (timeout_at with a past time point, or a zero or
// negative delay): the operation still starts and runs until its first wait, which ends at once
// with TimeoutError (no virtual time passes); an operation that completes without ever waiting
// gives its value. The deadline is only acted on by the loop, after the selector's look: a wait
// woken by I/O in the same loop iteration in which its deadline passes gets its I/O, even with a
// deadline in the past when the data is already there. A yield is a wait too (Yield, a zero
// Sleep, a SleepUntil of a past time): a deadline that has passed ends it, even one the loop has
// not looked at yet. Each of these is tested below.
#include <chrono>
#include <cstddef>
#include <exception>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <system_error>
#include <utility>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>
#include <corio/timeout_error.hpp>
#include <corio/virtual_clock.hpp>

#include "support/catch.hpp"
#include "support/counted.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::TimeoutError;
using Clock = Scheduler::Clock;

// ---- operations to bound ------------------------------------------------------------------------
// (and value_after, sleep_for and throw_after, from support/helpers.hpp)

// Holds a Counted as a parameter and one as a local while it sleeps.
Task<int> sleep_holding(Counted held, Clock::duration length) {
    Counted local(2);
    co_await corio::Sleep{length};
    co_return held.value() + local.value();
}

Task<int> immediate(int value) {
    co_return value;
}

// Reads one byte once the fd is readable.
Task<int> read_byte(int fd) {
    co_await corio::ReadWait{fd};
    char byte = 0;
    const ssize_t count = ::recv(fd, &byte, 1, 0);
    co_return count == 1 ? static_cast<int>(byte) : -1;
}

void write_byte(int fd, char byte) {
    corio::test::write_all(fd, &byte, 1);
}

} // namespace

// ---- the value path and the timeout path --------------------------------------------------------

namespace {
struct ValueRun {
    int value = 0;
    Clock::duration elapsed{};
    std::size_t timers_after = 99;
};

Task<ValueRun> bounded_sleep(Scheduler& kernel, Clock::duration timeout, Clock::duration length) {
    ValueRun run;
    const auto start = kernel.now();
    run.value = co_await corio::timeout_after(timeout, value_after(length, 42));
    run.elapsed = kernel.now() - start;
    run.timers_after = kernel.stats().timers;
    co_return run;
}
} // namespace

TEST_CASE("timeout_after gives the value of an operation that finishes first, its timer is gone",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    const ValueRun run = kernel.run_until_complete(bounded_sleep(kernel, 50ms, 20ms));
    CHECK(run.value == 42);
    CHECK(run.elapsed == 20ms);         // exactly the operation's time
    CHECK(run.timers_after == 0);       // the deadline was cancelled when the scope was left
    CHECK(clock.now() - start == 20ms); // and the loop never went on to the 50 ms deadline
    require_empty(kernel);
}

namespace {
struct TimeoutRun {
    bool timed_out = false;
    bool timed_out_code = false;
    bool scope_cleared = false;
    long alive_at_catch = -1;
    Clock::duration elapsed{};
    std::size_t timers_after = 99;
    int value = 0;
};

Task<TimeoutRun> bounded_long_sleep(Scheduler& kernel, Clock::duration timeout) {
    TimeoutRun run;
    const auto start = kernel.now();
    try {
        run.value = co_await corio::timeout_after(timeout, sleep_holding(Counted(1), 1h));
    } catch (const TimeoutError& e) {
        run.timed_out = true;
        run.timed_out_code = e.code() == std::errc::timed_out;
        run.scope_cleared = e.scope() == nullptr; // turned into timeout_after's own result
        run.alive_at_catch = Counted::alive();
    }
    run.elapsed = kernel.now() - start;
    run.timers_after = kernel.stats().timers;
    co_return run;
}
} // namespace

TEST_CASE("timeout_after throws TimeoutError (ETIMEDOUT) at the deadline, exactly, and destroys "
          "the operation's frames first",
          "[timeout]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    const TimeoutRun run = kernel.run_until_complete(bounded_long_sleep(kernel, 30ms));
    CHECK(run.timed_out);
    CHECK(run.timed_out_code);
    CHECK(run.scope_cleared);
    CHECK(run.alive_at_catch == 0); // the parameter and the local of the operation are gone
    CHECK(run.elapsed == 30ms);
    CHECK(run.timers_after == 0);       // neither the deadline nor the operation's Sleep is left
    CHECK(clock.now() - start == 30ms); // the 1 h sleep never made the clock jump
    CHECK(run.value == 0);
    CHECK(Counted::alive() == 0);
    require_empty(kernel);
}

namespace {
Task<> catch_as_system_error(bool& caught, std::error_code& code) {
    try {
        co_await corio::timeout_after(5ms, corio::Sleep{1h}); // a system call, bounded directly
    } catch (const std::system_error& e) { // a TimeoutError is a std::system_error
        caught = true;
        code = e.code();
    }
}
} // namespace

TEST_CASE("TimeoutError is a std::system_error with std::errc::timed_out", "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    bool caught = false;
    std::error_code code;
    kernel.run_until_complete(catch_as_system_error(caught, code));
    CHECK(caught);
    CHECK(code == std::errc::timed_out);
    CHECK(code.value() == ETIMEDOUT);
    require_empty(kernel);
}

namespace {
Task<std::string> failure_inside(Scheduler& kernel, std::size_t& timers_after) {
    std::string what;
    try {
        (void)co_await corio::timeout_after(1h, throw_after(5ms, "own failure"));
    } catch (const TimeoutError&) {
        what = "timeout";
    } catch (const TestError& e) {
        what = e.what();
    }
    timers_after = kernel.stats().timers;
    co_return what;
}
} // namespace

TEST_CASE("timeout_after passes an operation's own exception through and cancels its timer",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    std::size_t timers_after = 99;
    CHECK(kernel.run_until_complete(failure_inside(kernel, timers_after)) == "own failure");
    CHECK(timers_after == 0);
    CHECK(clock.now() - start == 5ms);
    require_empty(kernel);
}

// ---- ignore_after, void operations --------------------------------------------------------------

namespace {
struct IgnoreRun {
    std::optional<int> in_time;
    std::optional<int> too_late;
    std::optional<int> at_in_time;
    std::optional<int> at_too_late;
    bool void_in_time = false;
    bool void_too_late = true;
    bool syscall_in_time = false;
    bool syscall_too_late = true;
    bool void_timeout_after_returned = false;
    std::vector<Clock::duration> times;
};

Task<IgnoreRun> ignore_variants(Scheduler& kernel) {
    IgnoreRun run;
    const auto start = kernel.now();
    auto mark = [&] { run.times.push_back(kernel.now() - start); };
    run.in_time = co_await corio::ignore_after(20ms, value_after(10ms, 7)); // +10
    mark();
    run.too_late = co_await corio::ignore_after(20ms, value_after(1h, 8)); // +20
    mark();
    run.at_in_time = co_await corio::ignore_at(kernel.now() + 5ms, value_after(1ms, 9)); // +1
    mark();
    run.at_too_late = co_await corio::ignore_at(kernel.now() + 5ms, value_after(1h, 10)); // +5
    mark();
    run.void_in_time = co_await corio::ignore_after(10ms, sleep_for(3ms)); // +3
    mark();
    run.void_too_late = co_await corio::ignore_after(10ms, sleep_for(1h)); // +10
    mark();
    run.syscall_in_time = co_await corio::ignore_after(10ms, corio::Sleep{2ms}); // +2
    mark();
    run.syscall_too_late = co_await corio::ignore_after(10ms, corio::Sleep{1h}); // +10
    mark();
    co_await corio::timeout_after(10ms, sleep_for(4ms)); // +4; gives nothing (void)
    run.void_timeout_after_returned = true;
    mark();
    CHECK(kernel.stats().timers == 0);
    co_return run;
}
} // namespace

TEST_CASE("ignore_after/ignore_at give an empty optional on timeout, the value otherwise, for "
          "void operations, true or false",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const IgnoreRun run = kernel.run_until_complete(ignore_variants(kernel));
    CHECK(run.in_time == std::optional<int>(7));
    CHECK_FALSE(run.too_late.has_value());
    CHECK(run.at_in_time == std::optional<int>(9));
    CHECK_FALSE(run.at_too_late.has_value());
    CHECK(run.void_in_time);
    CHECK_FALSE(run.void_too_late);
    CHECK(run.syscall_in_time);
    CHECK_FALSE(run.syscall_too_late);
    CHECK(run.void_timeout_after_returned);
    CHECK(run.times ==
          std::vector<Clock::duration>{10ms, 30ms, 31ms, 36ms, 39ms, 49ms, 51ms, 61ms, 65ms});
    require_empty(kernel);
}

// ---- timeout_at ---------------------------------------------------------------------------------

namespace {
struct AtRun {
    int in_time = 0;
    bool timed_out = false;
    Clock::duration timed_out_at{};
};

Task<AtRun> absolute_deadlines(Scheduler& kernel, Clock::time_point start) {
    AtRun run;
    run.in_time = co_await corio::timeout_at(start + 25ms, value_after(10ms, 3)); // ends at +10
    try {
        (void)co_await corio::timeout_at(start + 25ms, value_after(1h, 4)); // same deadline: +25
    } catch (const TimeoutError&) {
        run.timed_out = true;
        run.timed_out_at = kernel.now() - start;
    }
    CHECK(kernel.stats().timers == 0);
    co_return run;
}
} // namespace

TEST_CASE("timeout_at bounds an operation by an absolute deadline on the Scheduler's clock",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const AtRun run = kernel.run_until_complete(absolute_deadlines(kernel, clock.now()));
    CHECK(run.in_time == 3);
    CHECK(run.timed_out);
    CHECK(run.timed_out_at == 25ms); // the deadline, not 25 ms after the second await began
    require_empty(kernel);
}

namespace {
// Records that it started, then waits: how far does an operation get when its deadline has
// already passed?
Task<int> start_then_sleep(Log& log) {
    log.emplace_back("started");
    co_await corio::Sleep{1h};
    log.emplace_back("slept");
    co_return 1;
}

struct PastRun {
    bool past_timed_out = false;
    bool zero_timed_out = false;
    bool negative_timed_out = false;
    std::optional<int> immediate_value;
    Clock::duration elapsed{};
};

Task<PastRun> past_deadlines(Scheduler& kernel, Log& log) {
    PastRun run;
    const auto start = kernel.now();
    try {
        (void)co_await corio::timeout_at(start - 1ms, start_then_sleep(log));
    } catch (const TimeoutError&) {
        run.past_timed_out = true;
    }
    try {
        (void)co_await corio::timeout_after(0ms, start_then_sleep(log));
    } catch (const TimeoutError&) {
        run.zero_timed_out = true;
    }
    try {
        (void)co_await corio::timeout_after(-5s, start_then_sleep(log));
    } catch (const TimeoutError&) {
        run.negative_timed_out = true;
    }
    // An operation that never waits is never interrupted: it completes with its value.
    run.immediate_value = co_await corio::ignore_at(start - 1h, immediate(5));
    run.elapsed = kernel.now() - start;
    CHECK(kernel.stats().timers == 0);
    co_return run;
}
} // namespace

TEST_CASE("A deadline already in the past: the operation runs to its first wait, which ends at "
          "once with TimeoutError",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    const PastRun run = kernel.run_until_complete(past_deadlines(kernel, log));
    CHECK(run.past_timed_out);
    CHECK(run.zero_timed_out);
    CHECK(run.negative_timed_out);
    CHECK(run.immediate_value == std::optional<int>(5));
    CHECK(run.elapsed == 0ms); // no virtual time passed: each wait ended at once
    CHECK(log == Log{"started", "started", "started"}); // started each time, never slept
    require_empty(kernel);
}

// ---- nested timeouts ----------------------------------------------------------------------------

namespace {
// Inside an outer timeout: an inner, shorter one fires; we catch it and go on.
Task<int> survive_inner_timeout(Scheduler& kernel, Clock::time_point start, Log& log) {
    try {
        co_await corio::timeout_after(10ms, corio::Sleep{1h});
        log.emplace_back("inner completed");
    } catch (const TimeoutError& e) {
        log.emplace_back("inner timed out at " + std::to_string((kernel.now() - start) / 1ms) +
                         " ms" + (e.scope() == nullptr ? "" : " (not its own!)"));
    }
    co_await corio::Sleep{20ms}; // the outer deadline (100 ms) is not confused by the inner one
    log.emplace_back("outer body done at " + std::to_string((kernel.now() - start) / 1ms) + " ms");
    co_return 5;
}

Task<int> inner_fires_first(Scheduler& kernel, Log& log) {
    const auto start = kernel.now();
    const int value =
        co_await corio::timeout_after(100ms, survive_inner_timeout(kernel, start, log));
    CHECK(kernel.stats().timers == 0);
    co_return value;
}
} // namespace

TEST_CASE("Nested timeouts: a shorter inner one fires first, the outer goes on and completes",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    Log log;
    CHECK(kernel.run_until_complete(inner_fires_first(kernel, log)) == 5);
    CHECK(log == Log{"inner timed out at 10 ms", "outer body done at 30 ms"});
    CHECK(clock.now() - start == 30ms); // the outer's 100 ms deadline was cancelled
    require_empty(kernel);
}

namespace {
Task<> inner_uncaught(Scheduler& kernel, Clock::duration& caught_at, std::size_t& timers_after) {
    const auto start = kernel.now();
    try {
        co_await corio::timeout_after(100ms, corio::timeout_after(10ms, corio::Sleep{1h}));
    } catch (const TimeoutError& e) {
        caught_at = kernel.now() - start;
        CHECK(e.scope() == nullptr);
    }
    timers_after = kernel.stats().timers;
}
} // namespace

TEST_CASE("Nested timeouts: an inner timeout left uncaught leaves the outer one as a plain "
          "TimeoutError, and the outer's timer is cancelled",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    Clock::duration caught_at{};
    std::size_t timers_after = 99;
    kernel.run_until_complete(inner_uncaught(kernel, caught_at, timers_after));
    CHECK(caught_at == 10ms);
    CHECK(timers_after == 0);
    require_empty(kernel);
}

namespace {
// The inner scope around a long sleep; records what crosses it.
Task<int> inner_long(Log& log, Clock::duration inner_timeout) {
    Noted frame(log, "inner body");
    try {
        co_return co_await corio::timeout_after(inner_timeout, sleep_holding(Counted(1), 1h));
    } catch (const TimeoutError& e) {
        // An outer deadline travels through this scope with its scope() still set.
        log.emplace_back(e.scope() != nullptr ? "outer deadline passed through"
                                              : "inner timed out");
        throw;
    }
}

Task<> outer_fires_first(Scheduler& kernel, Log& log, Clock::duration outer_timeout,
                         Clock::duration inner_timeout) {
    const auto start = kernel.now();
    try {
        (void)co_await corio::timeout_after(outer_timeout, inner_long(log, inner_timeout));
        log.emplace_back("completed");
    } catch (const TimeoutError& e) {
        log.emplace_back("outer caught TimeoutError at " +
                         std::to_string((kernel.now() - start) / 1ms) + " ms");
        CHECK(e.scope() == nullptr);
    }
    CHECK(kernel.stats().timers == 0); // the inner scope's timer is gone too
    CHECK(Counted::alive() == 0);
    co_await corio::Sleep{1s}; // nothing of the inner scope fires later
    log.emplace_back("slept on");
}
} // namespace

TEST_CASE("Nested timeouts: a shorter outer one fires through the inner one, whose timer is "
          "removed too",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    Log log;
    kernel.run_until_complete(outer_fires_first(kernel, log, 10ms, 100ms));
    CHECK(log == Log{"outer deadline passed through", "inner body destroyed",
                     "outer caught TimeoutError at 10 ms", "slept on"});
    CHECK(clock.now() - start == 1010ms);
    require_empty(kernel);
}

TEST_CASE("Nested timeouts with equal deadlines: the outer one wins", "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.run_until_complete(outer_fires_first(kernel, log, 10ms, 10ms));
    CHECK(log == Log{"outer deadline passed through", "inner body destroyed",
                     "outer caught TimeoutError at 10 ms", "slept on"});
    require_empty(kernel);
}

namespace {
// Three scopes; the middle one has the earliest deadline.
Task<> three_scopes(Scheduler& kernel, Log& log) {
    const auto start = kernel.now();
    try {
        co_await corio::timeout_after(
            30ms, corio::timeout_after(10ms, corio::timeout_after(20ms, corio::Sleep{1h})));
    } catch (const TimeoutError& e) {
        log.emplace_back("caught at " + std::to_string((kernel.now() - start) / 1ms) + " ms");
        CHECK(e.scope() == nullptr);
    }
    CHECK(kernel.stats().timers == 0);
}
} // namespace

TEST_CASE("Nested timeouts: three deep, the middle one earliest", "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    Log log;
    kernel.run_until_complete(three_scopes(kernel, log));
    CHECK(log == Log{"caught at 10 ms"});
    CHECK(clock.now() - start == 10ms);
    require_empty(kernel);
}

// ---- what a timeout leaves behind, for each kind of wait ----------------------------------------

namespace {
struct FdRun {
    bool timed_out = false;
    std::size_t waiting_on_fds_after = 99;
    std::size_t timers_after = 99;
    int byte_later = 0;
};

Task<> read_wait_bounded(Scheduler& kernel, int fd, int peer, FdRun& run) {
    co_await corio::Yield{}; // let run_until_ended's watchdog arm its timer first
    const auto timers_before = kernel.stats().timers; // the watchdog's
    try {
        co_await corio::timeout_after(10ms, corio::ReadWait{fd});
    } catch (const TimeoutError&) {
        run.timed_out = true;
    }
    run.waiting_on_fds_after = kernel.stats().waiting_on_fds;
    run.timers_after = kernel.stats().timers - timers_before;
    // The fd is still usable: a later read sees a byte written later.
    write_byte(peer, 'x');
    run.byte_later = co_await read_byte(fd);
}
} // namespace

TEST_CASE("A timeout around ReadWait leaves nothing registered, the fd can be waited on again",
          "[timeout]") {
    FrameLeakCheck leaks;
    const corio::test::FdPair pair = corio::test::socket_pair();
    VirtualClock clock;
    Scheduler kernel(clock);
    FdRun run;
    const TaskId reader =
        kernel.add_task(read_wait_bounded(kernel, pair.first.get(), pair.second.get(), run));
    REQUIRE(corio::test::run_until_ended(kernel, {reader}));
    CHECK(run.timed_out);
    CHECK(run.waiting_on_fds_after == 0);
    CHECK(run.timers_after == 0);
    CHECK(run.byte_later == 'x');
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

namespace {
Task<> fail_later(Clock::duration length) {
    co_await corio::Sleep{length};
    throw TestError("target failed");
}

Task<> wait_task_bounded(Scheduler& kernel, TaskId target, Log& log) {
    try {
        const corio::TaskExit exit = co_await corio::timeout_after(10ms, corio::WaitTask{target});
        log.emplace_back(exit.failed() ? "waiter saw the failure" : "waiter saw an end");
    } catch (const TimeoutError&) {
        log.emplace_back("waiter timed out");
    }
    CHECK(kernel.stats().timers == 1); // the target's Sleep only
    co_await corio::Sleep{100ms};      // still alive, but no longer waiting, when the target ends
    log.emplace_back("waiter done");
}
} // namespace

TEST_CASE("A timeout around WaitTask takes the waiter off the target's waiters", "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    std::vector<TaskId> reported;
    kernel.set_exception_handler(
        [&reported](TaskId id, const std::exception_ptr&) { reported.push_back(id); });
    Log log;
    const TaskId target = kernel.add_task(fail_later(50ms));
    kernel.add_task(wait_task_bounded(kernel, target, log));
    kernel.run();
    CHECK(log == Log{"waiter timed out", "waiter done"});
    // Nobody waited for the target any more when it failed: its failure was reported (with the
    // waiter still in its list, the kernel would have written to the waiter's dead TaskExit).
    CHECK(reported == std::vector<TaskId>{target});
    require_empty(kernel);
}

namespace {
Task<int> level3(Log& log, Counted held) {
    Noted frame(log, "level 3");
    co_await corio::Sleep{1h};
    co_return held.value();
}
Task<int> level2(Log& log, Counted held) {
    Noted frame(log, "level 2");
    co_return co_await level3(log, Counted(3)) + held.value();
}
Task<int> level1(Log& log, Counted held) {
    Noted frame(log, "level 1");
    co_return co_await level2(log, Counted(2)) + held.value();
}

Task<> chain_bounded(Scheduler& kernel, Log& log) {
    const auto start = kernel.now();
    try {
        (void)co_await corio::timeout_after(15ms, level1(log, Counted(1)));
        log.emplace_back("completed");
    } catch (const TimeoutError&) {
        log.emplace_back("caught at " + std::to_string((kernel.now() - start) / 1ms) + " ms, " +
                         std::to_string(Counted::alive()) + " Counted alive");
    }
    CHECK(kernel.stats().timers == 0);
}
} // namespace

TEST_CASE("A timeout around a Task chain 3 deep unwinds every frame, innermost first",
          "[timeout]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.run_until_complete(chain_bounded(kernel, log));
    CHECK(log == Log{"level 3 destroyed", "level 2 destroyed", "level 1 destroyed",
                     "caught at 15 ms, 0 Counted alive"});
    require_empty(kernel);
}

// ---- deadlines that pass while the task is not waiting ------------------------------------------

namespace {
struct BusyRun {
    Log log;
    Clock::duration caught_at{};
};

// The deadline passes during "CPU work" (the clock moves while the task runs, without an await).
Task<> work_then_sleep(VirtualClock& clock, Log& log) {
    clock.advance(25ms); // CPU work that takes longer than the deadline
    log.emplace_back("work done");
    co_await corio::Sleep{1h}; // the next wait ends at once
    log.emplace_back("slept");
}

// The deadline has passed when the task yields (the loop has not looked at its timer yet): a
// yield waits for nothing, so the deadline ends it like any wait.
Task<> work_then_yield_then_sleep(VirtualClock& clock, Log& log) {
    clock.advance(25ms);
    co_await corio::Yield{}; // the deadline expires while this task is in the ready queue
    log.emplace_back("yield returned");
    co_await corio::Sleep{1h};
    log.emplace_back("slept");
}

// Runs `work` (which logs to run.log) under a 10 ms deadline, logs "timed out" when the deadline
// ends it, and notes when that was.
Task<> with_10ms_deadline(VirtualClock& clock, BusyRun& run, Task<> work) {
    const auto start = clock.now();
    try {
        co_await corio::timeout_after(10ms, std::move(work));
    } catch (const TimeoutError&) {
        run.log.emplace_back("timed out");
    }
    run.caught_at = clock.now() - start;
}
} // namespace

TEST_CASE("A deadline that passes during CPU work ends the next wait at once", "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    BusyRun run;
    SECTION("the next wait is a Sleep") {
        kernel.run_until_complete(with_10ms_deadline(clock, run, work_then_sleep(clock, run.log)));
        CHECK(run.log == Log{"work done", "timed out"});
    }
    SECTION("the task yields first: the Yield times out") {
        kernel.run_until_complete(
            with_10ms_deadline(clock, run, work_then_yield_then_sleep(clock, run.log)));
        CHECK(run.log == Log{"timed out"});
    }
    CHECK(run.caught_at == 25ms); // no more virtual time passed after the work
    require_empty(kernel);
}

namespace {
struct RaceRun {
    std::optional<int> got;
    Clock::duration elapsed{};
    bool next_wait_timed_out = false;
};

Task<> read_with_deadline(Scheduler& kernel, int fd, RaceRun& run) {
    const auto start = kernel.now();
    run.got = co_await corio::ignore_after(10ms, read_byte(fd));
    run.elapsed = kernel.now() - start;
}

Task<int> read_then_sleep(int fd) {
    const int byte = co_await read_byte(fd);
    co_await corio::Sleep{1ms}; // the deadline has passed by now: this wait ends at once
    co_return byte;
}

Task<> read_then_wait_with_deadline(Scheduler& kernel, int fd, RaceRun& run) {
    const auto start = kernel.now();
    try {
        run.got = co_await corio::timeout_after(10ms, read_then_sleep(fd));
    } catch (const TimeoutError&) {
        run.next_wait_timed_out = true;
    }
    run.elapsed = kernel.now() - start;
}

Task<> read_with_past_deadline(Scheduler& kernel, int fd, RaceRun& run) {
    run.got = co_await corio::ignore_at(kernel.now() - 1ms, read_byte(fd));
}

// Runs in the same pass as the reader, after it began to wait: moves the clock past the reader's
// deadline and makes its fd readable. The next look of the loop sees both at once.
Task<> data_and_deadline_together(VirtualClock& clock, int peer) {
    clock.advance(15ms);
    write_byte(peer, 'y');
    co_return;
}
} // namespace

TEST_CASE("A task woken by I/O in the loop iteration in which its deadline passes gets its I/O",
          "[timeout]") {
    FrameLeakCheck leaks;
    const corio::test::FdPair pair = corio::test::socket_pair();
    VirtualClock clock;
    Scheduler kernel(clock);
    RaceRun run;
    std::vector<TaskId> ids;
    SECTION("the wait gets its byte") {
        ids.push_back(kernel.add_task(read_with_deadline(kernel, pair.first.get(), run)));
        ids.push_back(kernel.add_task(data_and_deadline_together(clock, pair.second.get())));
        REQUIRE(corio::test::run_until_ended(kernel, ids));
        CHECK(run.got == std::optional<int>('y'));
        CHECK(run.elapsed == 15ms);
    }
    SECTION("and the next wait in the same scope times out at once") {
        ids.push_back(kernel.add_task(read_then_wait_with_deadline(kernel, pair.first.get(), run)));
        ids.push_back(kernel.add_task(data_and_deadline_together(clock, pair.second.get())));
        REQUIRE(corio::test::run_until_ended(kernel, ids));
        CHECK_FALSE(run.got.has_value());
        CHECK(run.next_wait_timed_out);
        CHECK(run.elapsed == 15ms);
    }
    SECTION("a deadline already past does not take data that is already there") {
        write_byte(pair.second.get(), 'z');
        ids.push_back(kernel.add_task(read_with_past_deadline(kernel, pair.first.get(), run)));
        REQUIRE(corio::test::run_until_ended(kernel, ids));
        CHECK(run.got == std::optional<int>('z'));
    }
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

// ---- cancellation and cleanup -------------------------------------------------------------------

namespace {
Task<> victim_in_timeouts(Log& log) {
    Noted frame(log, "victim");
    try {
        (void)co_await corio::timeout_after(
            1h, corio::timeout_after(2h, sleep_holding(Counted(1), 3h)));
        log.emplace_back("victim completed");
    } catch (...) {
        log.emplace_back("victim caught something");
    }
}

Task<> kill_and_check(Scheduler& kernel, TaskId victim, Log& log) {
    CHECK(kernel.stats().timers == 3); // two deadlines and the sleep
    const bool existed = co_await corio::KillTask{victim};
    CHECK(existed);
    log.emplace_back("killed");
    CHECK(kernel.stats().timers == 0);
    CHECK(Counted::alive() == 0);
}

Task<> kill_later(Scheduler& kernel, TaskId victim, Log& log) {
    co_await corio::Sleep{5ms};
    co_await kill_and_check(kernel, victim, log);
}

Task<> wait_for(TaskId target, corio::TaskExit& exit) {
    exit = co_await corio::WaitTask{target};
}
} // namespace

TEST_CASE("KillTask of a task inside timeouts removes their timers and destroys its frames",
          "[timeout]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    Log log;
    corio::TaskExit exit;
    const TaskId victim = kernel.add_task(victim_in_timeouts(log));
    kernel.add_task(wait_for(victim, exit));
    kernel.add_task(kill_later(kernel, victim, log));
    kernel.run();
    CHECK(log == Log{"victim destroyed", "killed"}); // killing is not an exception: no catch ran
    CHECK(exit.killed());
    CHECK(clock.now() - start == 5ms);
    require_empty(kernel);
}

namespace {
// Moves the clock past the victim's deadline and yields: the loop then expires the deadline and
// readies the victim with its TimeoutError pending, after this task (FIFO), which kills it first.
Task<> kill_with_timeout_pending(VirtualClock& clock, Scheduler& kernel, TaskId victim, Log& log) {
    clock.advance(90min); // past the victim's 1 h deadline, before its 2 h one
    co_await corio::Yield{};
    CHECK(kernel.stats().ready == 1); // the victim, woken by its deadline
    const bool existed = co_await corio::KillTask{victim};
    CHECK(existed);
    log.emplace_back("killed");
    CHECK(kernel.stats().timers == 0);
    CHECK(kernel.stats().ready == 0);
}
} // namespace

TEST_CASE("KillTask of a task whose TimeoutError is pending: it dies without seeing it",
          "[timeout]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    int reports = 0;
    kernel.set_exception_handler([&reports](TaskId, const std::exception_ptr&) { ++reports; });
    Log log;
    const TaskId victim = kernel.add_task(victim_in_timeouts(log));
    kernel.add_task(kill_with_timeout_pending(clock, kernel, victim, log));
    kernel.run();
    CHECK(log == Log{"victim destroyed", "killed"});
    CHECK(reports == 0);
    CHECK(Counted::alive() == 0);
    require_empty(kernel);
}

namespace {
// Catches the timeout inside the scope, then tries to go on: calls that need no wait still work,
// but every wait ends at once while the scope's deadline has passed.
Task<int> wait_after_timeout(Scheduler& kernel, Clock::time_point start, Log& log) {
    const auto at = [&] { return std::to_string((kernel.now() - start) / 1ms) + " ms"; };
    try {
        co_await corio::Sleep{1h};
    } catch (const TimeoutError&) {
        log.emplace_back("caught inside at " + at());
    }
    (void)co_await corio::GetTid{}; // no wait: not interrupted
    log.emplace_back("a call that does not wait works at " + at());
    try {
        co_await corio::Sleep{5ms};
        log.emplace_back("the second wait was not interrupted");
    } catch (const TimeoutError&) {
        log.emplace_back("the second wait ends at once at " + at());
    }
    co_await corio::Yield{}; // throws again, out of the scope
    log.emplace_back("unreachable");
    co_return 1;
}

Task<> expired_scope(Scheduler& kernel, Log& log) {
    const auto start = kernel.now();
    try {
        (void)co_await corio::timeout_after(10ms, wait_after_timeout(kernel, start, log));
    } catch (const TimeoutError& e) {
        log.emplace_back("caught at " + std::to_string((kernel.now() - start) / 1ms) + " ms");
        CHECK(e.scope() == nullptr);
    }
    // After the scope, waits are ordinary again: cleanup that must wait goes here.
    co_await corio::Sleep{5ms};
    log.emplace_back("waited after the scope until " +
                     std::to_string((kernel.now() - start) / 1ms) + " ms");
    CHECK(kernel.stats().timers == 0);
}
} // namespace

TEST_CASE("Inside a timed-out scope every wait ends at once, after it waits are ordinary",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.run_until_complete(expired_scope(kernel, log));
    CHECK(log == Log{"caught inside at 10 ms", "a call that does not wait works at 10 ms",
                     "the second wait ends at once at 10 ms", "caught at 10 ms",
                     "waited after the scope until 15 ms"});
    require_empty(kernel);
}

namespace {
Task<> many_scopes_in_a_row(Scheduler& kernel, int& timeouts, int& values) {
    for (int i = 0; i < 200; ++i) {
        const std::optional<int> got = co_await corio::ignore_after(
            std::chrono::milliseconds(i % 7), value_after(std::chrono::milliseconds(i % 5), i));
        (got ? values : timeouts) += 1;
        CHECK(kernel.stats().timers == 0);
    }
}
} // namespace

TEST_CASE("Many timeouts in a row leave no timer and no frame behind", "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    int timeouts = 0;
    int values = 0;
    kernel.run_until_complete(many_scopes_in_a_row(kernel, timeouts, values));
    // A timeout when the deadline comes first, or at the same time as the Sleep's (the scope's
    // deadline was armed first). A zero Sleep is a Yield, which a zero deadline ends too.
    int expected_timeouts = 0;
    for (int i = 0; i < 200; ++i) {
        const int deadline = i % 7;
        const int sleep = i % 5;
        expected_timeouts += deadline <= sleep ? 1 : 0;
    }
    CHECK(timeouts == expected_timeouts);
    CHECK(values == 200 - expected_timeouts);
    require_empty(kernel);
}

// ---- the real clock -----------------------------------------------------------------------------

namespace {
Task<> real_timeouts(Clock::duration& sleep_elapsed, Clock::duration& read_elapsed, int fd,
                     bool& read_empty) {
    auto start = Clock::now();
    try {
        co_await corio::timeout_after(20ms, corio::Sleep{1h});
    } catch (const TimeoutError&) {
        sleep_elapsed = Clock::now() - start;
    }
    start = Clock::now();
    read_empty = !(co_await corio::ignore_after(15ms, read_byte(fd))).has_value();
    read_elapsed = Clock::now() - start;
}
} // namespace

TEST_CASE("On the real clock, a timeout never fires early", "[timeout]") {
    FrameLeakCheck leaks;
    const corio::test::FdPair pair = corio::test::socket_pair();
    Scheduler kernel;
    Clock::duration sleep_elapsed{};
    Clock::duration read_elapsed{};
    bool read_empty = false;
    const TaskId id =
        kernel.add_task(real_timeouts(sleep_elapsed, read_elapsed, pair.first.get(), read_empty));
    REQUIRE(corio::test::run_until_ended(kernel, {id}, 20s));
    CHECK(sleep_elapsed >= 20ms);
    CHECK(sleep_elapsed < 10s);
    CHECK(read_empty);
    CHECK(read_elapsed >= 15ms);
    CHECK(read_elapsed < 10s);
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

// ---- teardown -----------------------------------------------------------------------------------

namespace {
Task<> sit_in_timeouts(Log& log) {
    Noted frame(log, "sitter");
    (void)co_await corio::timeout_after(1h, corio::ignore_after(2h, sleep_holding(Counted(1), 3h)));
}
} // namespace

TEST_CASE("Destroying the Scheduler with tasks inside timeouts destroys their frames and scopes",
          "[timeout]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log log;
    {
        VirtualClock clock;
        Scheduler kernel(clock);
        kernel.add_task(sit_in_timeouts(log));
        kernel.add_task(sit_in_timeouts(log));
        kernel.add_task(stop_now(kernel)); // run() returns after the first pass
        kernel.run();
        CHECK(kernel.stats().timers == 6); // two deadlines and a Sleep each
    }
    CHECK(log == Log{"sitter destroyed", "sitter destroyed"});
    CHECK(Counted::alive() == 0);
}

// ---- known issue --------------------------------------------------------------------------------

namespace {
// The natural "fallback on timeout" code around an inner timeout_after...
Task<int> fallback_on_inner_timeout(Log& log) {
    try {
        co_await corio::timeout_after(100ms, corio::Sleep{1h});
    } catch (const TimeoutError&) {
        log.emplace_back("fallback"); // ...also catches the outer deadline passing through
    }
    co_await corio::Sleep{50ms};
    co_return 1;
}

Task<> outer_deadline_defeated(Scheduler& kernel, Log& log) {
    const auto start = kernel.now();
    try {
        const int value = co_await corio::timeout_after(10ms, fallback_on_inner_timeout(log));
        log.emplace_back("outer gave " + std::to_string(value) + " at " +
                         std::to_string((kernel.now() - start) / 1ms) + " ms");
    } catch (const TimeoutError&) {
        log.emplace_back("outer timed out at " + std::to_string((kernel.now() - start) / 1ms) +
                         " ms");
    }
}
} // namespace

// An outer deadline crosses inner scopes as a TimeoutError, the very type an inner handler
// catches. The handler may swallow it, but the outer deadline stays passed: the next wait ends at
// once again, and the outer timeout_after times out at its deadline (10 ms), not when the body
// finally returns (60 ms). Caught first with the deadline "delivered" once, as in asyncio.
TEST_CASE("An inner handler for TimeoutError cannot defeat an outer deadline", "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.run_until_complete(outer_deadline_defeated(kernel, log));
    CHECK(log.back() == "outer timed out at 10 ms");
    require_empty(kernel);
}

// ---- a yield is a wait (issue 10) ---------------------------------------------------------------

namespace {
// Awaits `operation` under a deadline that has already passed; gives whether it timed out, and
// logs "went on" if the operation returned.
template <class Awaitable>
Task<bool> under_past_deadline(Scheduler& kernel, Awaitable operation, Log& log) {
    try {
        co_await corio::timeout_at(kernel.now() - 1ms, std::move(operation));
        log.emplace_back("went on");
        co_return false;
    } catch (const TimeoutError&) {
        co_return true;
    }
}

// Yields in a loop (bounded) while the clock moves on; gives how many yields returned.
Task<int> yield_loop(VirtualClock& clock, int& returned) {
    for (int i = 0; i < 100; ++i) {
        clock.advance(1ms);
        co_await corio::Yield{};
        ++returned;
    }
    co_return returned;
}
} // namespace

TEST_CASE("A deadline that has passed ends a yield: Yield, a zero or negative Sleep, a SleepUntil "
          "of a past time",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    const auto start = kernel.now();
    CHECK(kernel.run_until_complete(under_past_deadline(kernel, corio::Yield{}, log)));
    CHECK(kernel.run_until_complete(under_past_deadline(kernel, corio::Sleep{0ms}, log)));
    CHECK(kernel.run_until_complete(under_past_deadline(kernel, corio::Sleep{-5ms}, log)));
    CHECK(kernel.run_until_complete(
        under_past_deadline(kernel, corio::SleepUntil{kernel.now() - 1h}, log)));
    CHECK(kernel.run_until_complete(under_past_deadline(kernel, sleep_for(0ms), log)));
    // A call that need not wait still completes under a passed deadline.
    CHECK_FALSE(kernel.run_until_complete(under_past_deadline(kernel, corio::GetTid{}, log)));
    CHECK(log == Log{"went on"});
    CHECK(kernel.now() == start); // each ended at once
    require_empty(kernel);
}

TEST_CASE("A zero timeout_after ends a Yield, and a yield loop ends at the first yield past the "
          "deadline",
          "[timeout]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    const std::optional<int> zero = kernel.run_until_complete([]() -> Task<std::optional<int>> {
        const bool done = co_await corio::ignore_after(0ms, corio::Yield{});
        co_return done ? std::optional<int>(1) : std::nullopt;
    }());
    CHECK_FALSE(zero.has_value());
    int returned = 0;
    const std::optional<int> looped =
        kernel.run_until_complete(corio::ignore_after(10ms, yield_loop(clock, returned)));
    CHECK_FALSE(looped.has_value());
    CHECK(returned == 9); // the yield made 10 ms after the start is the one that ends
    require_empty(kernel);
}

TEST_CASE("timeout_after and ignore_after reject a NaN or infinite delay with "
          "std::invalid_argument",
          "[timeout]") {
    FrameLeakCheck leaks;
    const std::chrono::duration<double> nan(std::numeric_limits<double>::quiet_NaN());
    const std::chrono::duration<double> inf(std::numeric_limits<double>::infinity());
    CHECK_THROWS_AS(corio::timeout_after(nan, corio::Yield{}), std::invalid_argument);
    CHECK_THROWS_AS(corio::timeout_after(-inf, corio::Yield{}), std::invalid_argument);
    CHECK_THROWS_AS(corio::ignore_after(inf, corio::Yield{}), std::invalid_argument);
    CHECK_THROWS_AS(corio::ignore_after(std::chrono::duration<float, std::milli>(
                                            std::numeric_limits<float>::quiet_NaN()),
                                        corio::Yield{}),
                    std::invalid_argument);
    // Finite floating delays are fine.
    CHECK_NOTHROW(corio::ignore_after(std::chrono::duration<double>(0.5), corio::Yield{}));
}
