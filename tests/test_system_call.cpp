// Tests for corio/syscall_concept.hpp: the SystemCall shape, and system calls written by users on top
// of the kernel's public services (task_count, unpark, sleep_until, wait_for_read, ...).
#include <chrono>
#include <coroutine>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/syscall_concept.hpp>

#include "support/catch.hpp"
#include "support/counted.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::SystemCall;

// A registration that must never stay: long enough that staying would show, short enough that it
// cannot hang a test for long.
constexpr auto long_wait = std::chrono::seconds(10);

/// Reports the number of tasks without suspending the caller.
struct TaskCount {
    std::size_t count = 0;
    bool handle(Scheduler& kernel, TaskId /*caller*/) noexcept {
        count = kernel.task_count();
        return false;
    }
    [[nodiscard]] std::size_t result() const noexcept { return count; }
};

struct ParkForValue;

/// Where a parked task can be found by the task that will wake it.
struct Mailbox {
    TaskId parked;
    ParkForValue* call = nullptr;
};

/// Parks the caller (suspends it without registering it anywhere) until another task stores a
/// value in the call and unparks it. Owns a std::string: it has a constructor (GCC 12, see
/// syscalls.hpp).
struct ParkForValue {
    ParkForValue(Mailbox& box, std::string prefix) : mailbox(&box), label(std::move(prefix)) {}

    Mailbox* mailbox;
    std::string label;
    std::string value; // written by the waker while the caller is parked

    bool handle(Scheduler& /*kernel*/, TaskId caller) {
        mailbox->parked = caller;
        mailbox->call = this; // the call object stays put in the awaiting frame until result()
        return true;
    }
    std::string result() {
        mailbox->call = nullptr;
        return label + ":" + value;
    }
};

/// handle() throws, optionally after registering the caller for something.
struct Failing {
    enum class Before { nothing, timer, fd_read };
    Failing(std::string text, Before what, int watched = -1)
        : message(std::move(text)), before(what), fd(watched) {}

    std::string message;
    Before before;
    int fd;

    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        if (before == Before::timer) {
            kernel.sleep_until(kernel.now() + long_wait);
        } else if (before == Before::fd_read) {
            kernel.wait_for_read(fd);
        }
        throw TestError(message);
    }
    void result() const noexcept {}
};

/// Registers a timer but returns false: the kernel must undo the registration.
struct RegisterThenContinue {
    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        kernel.sleep_until(kernel.now() + long_wait);
        return false;
    }
    [[nodiscard]] int result() const noexcept { return 7; }
};

/// A result that can only be moved.
struct GiveUnique {
    explicit GiveUnique(int value) : pointer(std::make_unique<int>(value)) {}
    std::unique_ptr<int> pointer;
    bool handle(Scheduler& /*kernel*/, TaskId /*caller*/) noexcept { return false; }
    std::unique_ptr<int> result() noexcept { return std::move(pointer); }
};

Task<> noop() {
    co_return;
}

Task<std::unique_ptr<int>> unique_from_call(int value) {
    co_return co_await GiveUnique{value};
}

// Shapes that are not system calls.
struct NoResult {
    bool handle(Scheduler& /*kernel*/, TaskId /*caller*/) { return false; }
};
struct NoHandle {
    void result() {}
};
struct HandleReturnsVoid {
    void handle(Scheduler& /*kernel*/, TaskId /*caller*/) {}
    void result() {}
};
struct HandleTakesOtherArguments {
    bool handle(int /*unused*/) { return false; }
    void result() {}
};

} // namespace

// ---- the concept --------------------------------------------------------------------------------

static_assert(SystemCall<TaskCount>);
static_assert(SystemCall<ParkForValue>);
static_assert(SystemCall<Failing>);
static_assert(SystemCall<RegisterThenContinue>);
static_assert(SystemCall<GiveUnique>);
static_assert(SystemCall<corio::NewTask>);
static_assert(SystemCall<corio::GetTid>);
static_assert(SystemCall<corio::KillTask>);
static_assert(SystemCall<corio::WaitTask>);
static_assert(SystemCall<corio::ReadWait>);
static_assert(SystemCall<corio::WriteWait>);
static_assert(SystemCall<corio::Sleep>);
static_assert(SystemCall<corio::Yield>);
static_assert(!SystemCall<NoResult>);
static_assert(!SystemCall<NoHandle>);
static_assert(!SystemCall<HandleReturnsVoid>);
static_assert(!SystemCall<HandleTakesOtherArguments>);
static_assert(!SystemCall<int>);
static_assert(!SystemCall<std::suspend_always>);
static_assert(!SystemCall<Task<>>);

namespace {
Task<int> await_plain_awaitables() {
    co_await std::suspend_never{}; // not a system call: passes through to the coroutine machinery
    corio::GetTid lvalue_call;
    const TaskId id = co_await lvalue_call; // an lvalue system call works too
    co_return static_cast<int>(id.serial());
}
} // namespace

TEST_CASE("Awaitables that are not system calls pass through, lvalue system calls work",
          "[system_call]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    const TaskId first = kernel.add_task(noop());
    CHECK(first.serial() == 1);
    CHECK(kernel.run_until_complete(await_plain_awaitables()) == 2); // the second task's id
    require_empty(kernel);
}

// ---- a call that does not suspend ---------------------------------------------------------------

namespace {
Task<> count_tasks(Log& log, std::vector<std::size_t>& counts) {
    log.emplace_back("counter before");
    counts.push_back(co_await TaskCount{});
    log.emplace_back("counter after");
    co_await corio::Yield{};
    counts.push_back(co_await TaskCount{});
}

Task<> log_once(Log& log, std::string text) {
    log.push_back(std::move(text));
    co_return;
}
} // namespace

TEST_CASE("A user system call can give a value without suspending (the kernel's task count)",
          "[system_call]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    std::vector<std::size_t> counts;
    kernel.add_task(count_tasks(log, counts));
    kernel.add_task(log_once(log, "other 1"));
    kernel.add_task(log_once(log, "other 2"));
    kernel.run();
    CHECK(counts == std::vector<std::size_t>{3, 1}); // the others had ended by the second call
    CHECK(log == Log{"counter before", "counter after", "other 1", "other 2"});
    require_empty(kernel);
}

TEST_CASE("A user system call can give a move-only result", "[system_call]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto pointer = kernel.run_until_complete(unique_from_call(31));
    REQUIRE(pointer != nullptr);
    CHECK(*pointer == 31);
    require_empty(kernel);
}

// ---- parking ------------------------------------------------------------------------------------

namespace {
Task<std::string> park_for_value(Mailbox& box, std::string label) {
    co_return co_await ParkForValue{box, std::move(label)};
}

Task<> park_in_child(Mailbox& box, std::string& received) {
    received = co_await park_for_value(box, "child");
}

struct WakeReport {
    std::vector<bool> unpark_results;
    int yields_until_parked = 0;
    Scheduler::Stats stats_while_parked;
};

Task<> wake_with_value(Scheduler& kernel, Mailbox& box, std::string value, WakeReport& report) {
    while (box.call == nullptr && report.yields_until_parked < 100) {
        ++report.yields_until_parked;
        co_await corio::Yield{};
    }
    if (box.call == nullptr) {
        co_return; // the parked task never parked: the test fails on the results
    }
    report.stats_while_parked = kernel.stats();
    box.call->value = std::move(value);
    report.unpark_results.push_back(kernel.unpark(box.parked));
    report.unpark_results.push_back(kernel.unpark(box.parked)); // ready now, no longer parked
}
} // namespace

TEST_CASE("A system call can park its caller, another task stores a value and unparks it",
          "[system_call]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Mailbox box;
    WakeReport report;
    const TaskId waker = kernel.add_task(wake_with_value(kernel, box, "delivered", report));
    const std::string received = kernel.run_until_complete(park_for_value(box, "label"));
    CHECK(received == "label:delivered");
    CHECK(report.unpark_results == std::vector<bool>{true, false});
    CHECK(report.yields_until_parked == 1);
    CHECK(report.stats_while_parked.tasks == 2);
    CHECK(report.stats_while_parked.ready == 0);          // parked is not ready ...
    CHECK(report.stats_while_parked.timers == 0);         // ... nor sleeping ...
    CHECK(report.stats_while_parked.waiting_on_fds == 0); // ... nor waiting on an fd
    CHECK(box.call == nullptr);
    CHECK_FALSE(kernel.contains(waker));
    require_empty(kernel);
}

TEST_CASE("Unparking resumes the innermost frame: a child parked inside co_await",
          "[system_call]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Mailbox box;
    WakeReport report;
    std::string received;
    kernel.add_task(park_in_child(box, received));
    kernel.add_task(wake_with_value(kernel, box, "to the child", report));
    kernel.run();
    CHECK(received == "child:to the child");
    CHECK(report.unpark_results == std::vector<bool>{true, false});
    require_empty(kernel);
}

namespace {
Task<> sleep_for(std::chrono::milliseconds length, std::chrono::steady_clock::duration& slept) {
    const auto start = std::chrono::steady_clock::now();
    co_await corio::Sleep{length};
    slept = std::chrono::steady_clock::now() - start;
}

Task<> unpark_others(Scheduler& kernel, const TaskId& sleeper, const TaskId& ready,
                     const TaskId& ended, std::vector<bool>& results) {
    co_await corio::Yield{}; // the sleeper is asleep now
    results.push_back(kernel.unpark(sleeper));
    results.push_back(kernel.unpark(ready));
    results.push_back(kernel.unpark(ended));
    results.push_back(kernel.unpark(kernel.current_task())); // itself, running
    results.push_back(kernel.unpark(TaskId{}));
}
} // namespace

TEST_CASE("Scheduler::unpark of a task that is not parked returns false and leaves it alone",
          "[system_call]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<bool> results;
    std::chrono::steady_clock::duration slept{};
    Log log;
    const TaskId ended = kernel.add_task(log_once(log, "ended"));
    kernel.run();
    TaskId ready;
    const TaskId sleeper = kernel.add_task(sleep_for(20ms, slept));
    kernel.add_task(unpark_others(kernel, sleeper, ready, ended, results));
    std::vector<std::size_t> counts;
    ready = kernel.add_task(count_tasks(log, counts));
    CHECK_FALSE(kernel.unpark(ready)); // ready, from outside the loop
    kernel.run();
    CHECK(results == std::vector<bool>{false, false, false, false, false});
    CHECK(slept >= 20ms); // not woken early
    require_empty(kernel);
}

// ---- a call whose handle() throws ---------------------------------------------------------------

namespace {
struct FailureReport {
    std::string caught;
    Scheduler::Stats stats_after_catch;
    bool finished = false;
};

Task<> await_failing(Scheduler& kernel, Failing::Before before, int fd, int peer,
                     FailureReport& report) {
    try {
        co_await Failing{"handle failed", before, fd};
        report.caught = "nothing";
    } catch (const TestError& error) {
        report.caught = error.what();
    }
    report.stats_after_catch = kernel.stats();
    if (peer >= 0) {
        corio::test::write_all(peer, "x", 1); // a stale registration would wake us now
    }
    co_await corio::Sleep{2ms}; // the task is healthy: it can trap into the kernel again
    co_await corio::Yield{};
    report.finished = true;
}

Task<int> fail_uncaught() {
    co_await Failing{"not caught", Failing::Before::nothing};
    co_return 1;
}
} // namespace

TEST_CASE("An exception from handle() reaches the task as if thrown by co_await, and nothing "
          "stays registered",
          "[system_call]") {
    for (const auto before :
         {Failing::Before::nothing, Failing::Before::timer, Failing::Before::fd_read}) {
        CAPTURE(static_cast<int>(before));
        FrameLeakCheck leaks;
        auto pair = corio::test::socket_pair();
        Scheduler kernel;
        FailureReport report;
        const bool uses_fd = before == Failing::Before::fd_read;
        kernel.add_task(await_failing(kernel, before, pair.first.get(),
                                      uses_fd ? pair.second.get() : -1, report));
        const auto start = std::chrono::steady_clock::now();
        kernel.run();
        CHECK(std::chrono::steady_clock::now() - start < long_wait);
        CHECK(report.caught == "handle failed");
        CHECK(report.stats_after_catch.tasks == 1);
        CHECK(report.stats_after_catch.ready == 0);
        CHECK(report.stats_after_catch.timers == 0);
        CHECK(report.stats_after_catch.waiting_on_fds == 0);
        CHECK(report.finished);
        kernel.forget_fd(pair.first.get());
        require_empty(kernel);
    }
}

TEST_CASE("An uncaught exception from handle() fails the task like any other exception",
          "[system_call]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    CHECK_THROWS_AS(kernel.run_until_complete(fail_uncaught()), TestError);
    require_empty(kernel);
}

namespace {
Task<int> register_then_continue(Scheduler& kernel, std::size_t& timers_after) {
    const int value = co_await RegisterThenContinue{};
    timers_after = kernel.stats().timers;
    co_return value;
}
} // namespace

TEST_CASE("A system call that registers the caller but returns false is undone by the kernel",
          "[system_call]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::size_t timers_after = 99;
    const auto start = std::chrono::steady_clock::now();
    CHECK(kernel.run_until_complete(register_then_continue(kernel, timers_after)) == 7);
    CHECK(timers_after == 0);
    kernel.run();
    CHECK(std::chrono::steady_clock::now() - start < long_wait);
    require_empty(kernel);
}

// ---- kernel services outside a task -------------------------------------------------------------

TEST_CASE("Kernel services called outside a running task throw std::logic_error", "[system_call]") {
    FrameLeakCheck leaks;
    auto pair = corio::test::socket_pair();
    Scheduler kernel;
    corio::TaskExit exit;
    CHECK_THROWS_AS(kernel.yield_now(), std::logic_error);
    CHECK_THROWS_AS(kernel.sleep_until(kernel.now()), std::logic_error);
    CHECK_THROWS_AS(kernel.wait_for_read(pair.first.get()), std::logic_error);
    CHECK_THROWS_AS(kernel.wait_for_write(pair.first.get()), std::logic_error);
    CHECK_THROWS_AS(kernel.wait_for_exit(TaskId{}, exit), std::logic_error);
    require_empty(kernel);
}
