// Tests for corio/sync/event.hpp: set/clear/is_set, wait returning at once when set, FIFO wake-up of
// every waiter, waiters that are killed or time out leaving the wait list, misuse across
// Schedulers.
#include <corio/sync/event.hpp> // first: the header stands alone

#include <chrono>
#include <exception>
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
using corio::Event;

Task<> waiter(Event& event, Log& log, std::string name, int yields_first = 0) {
    co_await yield_times(yields_first);
    log.push_back(name + " waits");
    co_await event.wait();
    log.push_back(name + " woke");
}

Task<> set_after_yields(Event& event, Log& log, int yields) {
    co_await yield_times(yields);
    log.emplace_back("set");
    event.set();
}

} // namespace

TEST_CASE("Event: set, clear and is_set", "[event]") {
    FrameLeakCheck leaks;
    Event event;
    CHECK_FALSE(event.is_set());
    event.set();
    CHECK(event.is_set());
    event.set();
    CHECK(event.is_set());
    event.clear();
    CHECK_FALSE(event.is_set());
    event.clear();
    CHECK_FALSE(event.is_set());
}

TEST_CASE("Event: wait returns at once when the event is set", "[event]") {
    FrameLeakCheck leaks;
    Event event;
    Scheduler kernel;
    Log log;
    event.set();
    // The first task yields once; the waiter, run second in the same pass, must not suspend: it
    // logs before the first task's second step.
    kernel.add_task(waiter(event, log, "yielder", 1));
    kernel.add_task(waiter(event, log, "w"));
    kernel.run();
    CHECK(log == Log{"w waits", "w woke", "yielder waits", "yielder woke"});
    require_empty(kernel);
}

TEST_CASE("Event: set wakes every waiter, in the order they began to wait", "[event]") {
    FrameLeakCheck leaks;
    Event event;
    Scheduler kernel;
    Log log;
    // Created in the order w0..w3, but w3 waits first and w0 last.
    for (int i = 0; i < 4; ++i) {
        kernel.add_task(waiter(event, log, "w" + std::to_string(i), 3 - i));
    }
    kernel.add_task(set_after_yields(event, log, 6));
    kernel.run();
    CHECK(log == Log{"w3 waits", "w2 waits", "w1 waits", "w0 waits", "set", "w3 woke", "w2 woke",
                     "w1 woke", "w0 woke"});
    CHECK(event.is_set());
    require_empty(kernel);
}

namespace {
Task<> set_clear_then_set(Event& event, Log& log) {
    co_await corio::Yield{};
    event.set();
    event.clear(); // the waiters were woken: they still return
    log.emplace_back("set+clear");
    co_await corio::NewTask{waiter(event, log, "late")};
    co_await yield_times(3); // "late" waits: the flag is down
    log.emplace_back("set again");
    event.set();
}
} // namespace

TEST_CASE("Event: waiters woken by set return even if the flag is cleared before they run",
          "[event]") {
    FrameLeakCheck leaks;
    Event event;
    Scheduler kernel;
    Log log;
    kernel.add_task(waiter(event, log, "a"));
    kernel.add_task(waiter(event, log, "b"));
    kernel.add_task(set_clear_then_set(event, log));
    kernel.run();
    CHECK(log == Log{"a waits", "b waits", "set+clear", "a woke", "b woke", "late waits",
                     "set again", "late woke"});
    require_empty(kernel);
}

namespace {
Task<> kill_then_set(Event& event, Log& log, TaskId victim) {
    co_await corio::Yield{};
    log.push_back(co_await corio::KillTask{victim} ? "killed" : "no victim");
    event.set();
}
} // namespace

TEST_CASE("Event: a killed waiter leaves the wait list, and the others wake in order", "[event]") {
    FrameLeakCheck leaks;
    Event event;
    Scheduler kernel;
    Log log;
    kernel.add_task(waiter(event, log, "w0"));
    const TaskId victim = kernel.add_task(waiter(event, log, "w1"));
    kernel.add_task(waiter(event, log, "w2"));
    kernel.add_task(kill_then_set(event, log, victim));
    kernel.run();
    CHECK(log == Log{"w0 waits", "w1 waits", "w2 waits", "killed", "w0 woke", "w2 woke"});
    require_empty(kernel);
}

namespace {
Task<> wait_with_timeout(Event& event, Log& log, std::string name, VirtualClock& clock,
                         std::chrono::milliseconds limit) {
    try {
        co_await corio::timeout_after(limit, event.wait());
        log.push_back(name + " woke@" + at(clock));
    } catch (const corio::TimeoutError&) {
        log.push_back(name + " TimeoutError@" + at(clock));
    }
}

Task<> wait_or_ignore(Event& event, Log& log, std::string name, VirtualClock& clock,
                      std::chrono::milliseconds limit) {
    const bool woke = co_await corio::ignore_after(limit, event.wait());
    log.push_back(name + (woke ? " woke@" : " gave up@") + at(clock));
}

Task<> wait_stamped(Event& event, Log& log, std::string name, VirtualClock& clock) {
    co_await event.wait();
    log.push_back(name + " woke@" + at(clock));
}

Task<> set_at(Event& event, Log& log, VirtualClock& clock, std::chrono::milliseconds when) {
    co_await corio::Sleep{when};
    log.push_back("set@" + at(clock));
    event.set();
}
} // namespace

TEST_CASE("Event: a waiter whose deadline passes leaves the wait list (timeout_after, "
          "ignore_after)",
          "[event][timeout]") {
    FrameLeakCheck leaks;
    Event event;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.add_task(wait_stamped(event, log, "a", clock));
    kernel.add_task(wait_with_timeout(event, log, "b", clock, 1000ms));
    kernel.add_task(wait_or_ignore(event, log, "c", clock, 500ms));
    kernel.add_task(wait_or_ignore(event, log, "d", clock, 5000ms));
    kernel.add_task(wait_with_timeout(event, log, "e", clock, 3000ms));
    kernel.add_task(wait_stamped(event, log, "f", clock));
    kernel.add_task(set_at(event, log, clock, 2000ms));
    kernel.run();
    CHECK(log == Log{"c gave up@500", "b TimeoutError@1000", "set@2000", "a woke@2000",
                     "d woke@2000", "e woke@2000", "f woke@2000"});
    require_empty(kernel);
}

namespace {
Task<> set_then_jump_time(Event& event, VirtualClock& clock) {
    co_await corio::Yield{};
    event.set();
    clock.advance(10s); // the waiter's deadline passes after it was woken, before it runs
}
} // namespace

TEST_CASE("Event: a waiter woken by set is not interrupted by a deadline that passes before it "
          "runs",
          "[event][timeout]") {
    FrameLeakCheck leaks;
    Event event;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.add_task(wait_with_timeout(event, log, "a", clock, 1000ms));
    kernel.add_task(wait_or_ignore(event, log, "b", clock, 1000ms));
    kernel.add_task(set_then_jump_time(event, clock));
    kernel.run();
    CHECK(log == Log{"a woke@10000", "b woke@10000"});
    require_empty(kernel);
}

namespace {
Task<> wait_then_throw(Event& event) {
    co_await event.wait();
    throw TestError("after the wait");
}
} // namespace

TEST_CASE("Event: a woken waiter that throws does not keep the others from waking", "[event]") {
    FrameLeakCheck leaks;
    Event event;
    Scheduler kernel;
    Log log;
    std::vector<std::string> reported;
    kernel.set_exception_handler([&reported](TaskId, std::exception_ptr error) {
        try {
            std::rethrow_exception(error);
        } catch (const TestError& e) {
            reported.emplace_back(e.what());
        }
    });
    kernel.add_task(wait_then_throw(event));
    kernel.add_task(waiter(event, log, "w"));
    kernel.add_task(set_after_yields(event, log, 1));
    kernel.run();
    CHECK(reported == std::vector<std::string>{"after the wait"});
    CHECK(log == Log{"w waits", "set", "w woke"});
    require_empty(kernel);
}

namespace {
Task<std::string> wait_expecting_logic_error(Event& event) {
    try {
        co_await event.wait();
    } catch (const std::logic_error&) {
        co_return "logic_error";
    }
    co_return "waited";
}
} // namespace

TEST_CASE("Event: waiting from a second Scheduler while tasks of the first wait throws "
          "std::logic_error",
          "[event]") {
    FrameLeakCheck leaks;
    Event event;
    Scheduler first;
    Log log;
    first.add_task(waiter(event, log, "w"));
    first.run(); // returns: the waiter is parked, nothing can wake it
    REQUIRE(first.task_count() == 1);
    {
        Scheduler second;
        CHECK(second.run_until_complete(wait_expecting_logic_error(event)) == "logic_error");
        require_empty(second);
    }
    event.set();
    first.run();
    CHECK(log == Log{"w waits", "w woke"});
    require_empty(first);
}
