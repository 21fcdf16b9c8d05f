// Tests for corio/syscalls.hpp: NewTask, GetTid, KillTask, WaitTask, ReadWait, WriteWait, Sleep
// and Yield, as seen from the tasks that call them.
#include <array>
#include <cerrno>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>

#include "support/catch.hpp"
#include "support/counted.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::KillTask;
using corio::TaskExit;
using corio::WaitTask;
using Outcome = TaskExit::Outcome;

// A victim that would sleep for a while: long enough that a kill has certainly come first, short
// enough that a kill that does not happen fails the test instead of hanging it.
constexpr auto victim_sleep = 10s;

Task<> sleep_holding(Counted held, bool& woke) {
    co_await corio::Sleep{victim_sleep};
    woke = held.value() != Counted::destroyed;
}

Task<> park_holding(Counted held, bool& resumed) {
    co_await Park{};
    resumed = held.value() != Counted::destroyed;
}

Task<> read_wait_holding(Counted held, int fd, bool& woke) {
    co_await corio::ReadWait{fd};
    woke = held.value() != Counted::destroyed;
}

Task<> wait_and_store(TaskId target, TaskExit& out, Log& log, std::string name) {
    out = co_await WaitTask{target};
    log.push_back(name);
}

std::string read_string(int fd) {
    std::array<char, 256> buffer{};
    const ssize_t count = ::read(fd, buffer.data(), buffer.size());
    if (count < 0) {
        return "error " + std::to_string(errno);
    }
    return std::string(buffer.data(), static_cast<std::size_t>(count));
}

} // namespace

// ---- NewTask and GetTid -------------------------------------------------------------------------

namespace {
struct SpawnReport {
    TaskId parent_from_add_task;
    TaskId parent_from_get_tid;
    TaskId child_from_new_task;
    TaskId child_from_get_tid;
    bool contained_at_once = false;
    std::size_t count_at_once = 0;
};

Task<> spawned_child(Log& log, SpawnReport& report) {
    log.emplace_back("child");
    report.child_from_get_tid = co_await corio::GetTid{};
}

Task<> spawning_parent(Scheduler& kernel, Log& log, SpawnReport& report) {
    log.emplace_back("parent before");
    report.parent_from_get_tid = co_await corio::GetTid{};
    report.child_from_new_task = co_await corio::NewTask{spawned_child(log, report)};
    report.contained_at_once = kernel.contains(report.child_from_new_task);
    report.count_at_once = kernel.task_count();
    log.emplace_back("parent after");
    co_await corio::Yield{};
    log.emplace_back("parent after yield");
}
} // namespace

TEST_CASE("NewTask adds a task that runs later: the caller continues first", "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    SpawnReport report;
    report.parent_from_add_task = kernel.add_task(spawning_parent(kernel, log, report));
    kernel.run();
    CHECK(log == Log{"parent before", "parent after", "child", "parent after yield"});
    CHECK(report.contained_at_once);
    CHECK(report.count_at_once == 2);
    CHECK(report.child_from_new_task);
    CHECK(report.child_from_new_task != report.parent_from_add_task);
    require_empty(kernel);
}

TEST_CASE("GetTid gives the id that add_task and NewTask gave", "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    SpawnReport report;
    report.parent_from_add_task = kernel.add_task(spawning_parent(kernel, log, report));
    kernel.run();
    CHECK(report.parent_from_get_tid == report.parent_from_add_task);
    CHECK(report.child_from_get_tid == report.child_from_new_task);
    CHECK(report.child_from_get_tid != report.parent_from_get_tid);
    require_empty(kernel);
}

namespace {
Task<std::string> spawn_empty_task() {
    try {
        (void)co_await corio::NewTask{Task<>{}};
    } catch (const std::invalid_argument&) {
        co_return "invalid_argument";
    }
    co_return "no exception";
}
} // namespace

TEST_CASE("NewTask with an empty Task throws std::invalid_argument into the caller", "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    CHECK(kernel.run_until_complete(spawn_empty_task()) == "invalid_argument");
    require_empty(kernel);
}

// ---- KillTask -----------------------------------------------------------------------------------

namespace {
struct KillReport {
    std::vector<bool> results;
    long alive_after_kill = -1;
    std::size_t timers_before = 0;
    std::size_t timers_after = 99;
    std::size_t fd_waiters_before = 0;
    std::size_t fd_waiters_after = 99;
    bool contains_after = true;
};

Task<> kill_twice(Scheduler& kernel, const TaskId& victim, KillReport& report) {
    co_await corio::Yield{}; // the victim gets to its wait first
    report.timers_before = kernel.stats().timers;
    report.fd_waiters_before = kernel.stats().waiting_on_fds;
    report.results.push_back(co_await KillTask{victim});
    report.alive_after_kill = Counted::alive();
    report.timers_after = kernel.stats().timers;
    report.fd_waiters_after = kernel.stats().waiting_on_fds;
    report.contains_after = kernel.contains(victim);
    report.results.push_back(co_await KillTask{victim});
    report.results.push_back(co_await KillTask{TaskId{}});
}
} // namespace

TEST_CASE("KillTask gives true for a live task and runs its destructors, false afterwards",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Scheduler kernel;
    KillReport report;
    bool resumed = false;
    TaskId victim;
    kernel.add_task(kill_twice(kernel, victim, report));
    victim = kernel.add_task(park_holding(Counted(1), resumed));
    kernel.run();
    CHECK(report.results == std::vector<bool>{true, false, false});
    CHECK(report.alive_after_kill == 0); // destroyed by the time KillTask returned
    CHECK_FALSE(report.contains_after);
    CHECK_FALSE(resumed);
    require_empty(kernel);
}

TEST_CASE("KillTask of a sleeping task cancels its timer", "[syscalls]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Scheduler kernel;
    KillReport report;
    bool woke = false;
    TaskId victim;
    kernel.add_task(kill_twice(kernel, victim, report));
    victim = kernel.add_task(sleep_holding(Counted(1), woke));
    const auto start = std::chrono::steady_clock::now();
    kernel.run();
    CHECK(std::chrono::steady_clock::now() - start < victim_sleep);
    CHECK(report.results == std::vector<bool>{true, false, false});
    CHECK(report.timers_before == 1);
    CHECK(report.timers_after == 0);
    CHECK(report.alive_after_kill == 0);
    CHECK_FALSE(woke);
    require_empty(kernel);
}

TEST_CASE("KillTask of a task waiting on an fd takes it off the fd", "[syscalls]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    auto pair = corio::test::socket_pair();
    Scheduler kernel;
    KillReport report;
    bool woke = false;
    TaskId victim;
    const TaskId killer = kernel.add_task(kill_twice(kernel, victim, report));
    victim = kernel.add_task(read_wait_holding(Counted(1), pair.first.get(), woke));
    REQUIRE(run_until_ended(kernel, {killer}));
    CHECK(report.results == std::vector<bool>{true, false, false});
    CHECK(report.fd_waiters_before == 1);
    CHECK(report.fd_waiters_after == 0);
    CHECK(kernel.stats().waiting_on_fds == 0);
    CHECK(report.alive_after_kill == 0);

    // Data arriving later wakes nobody (and is not an error): the interest is dropped.
    corio::test::write_all(pair.second.get(), "late", 4);
    kernel.add_task(yield_times(2 * static_cast<int>(Scheduler::poll_interval))); // the loop looks
    kernel.run();
    CHECK_FALSE(woke);
    CHECK(kernel.stats().watched_fds == 0);
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

namespace {
Task<> kill_after_yield(TaskId& victim, bool& result) {
    co_await corio::Yield{};
    result = co_await KillTask{victim};
}

Task<> finish_after_yields_for_kill_test(Log& log, int yields) {
    for (int i = 0; i < yields; ++i) {
        co_await corio::Yield{};
    }
    log.emplace_back("target done");
}
} // namespace

TEST_CASE("KillTask wakes the tasks waiting for the victim with the outcome killed", "[syscalls]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Scheduler kernel;
    bool resumed = false;
    bool killed = false;
    Log log;
    TaskExit first;
    TaskExit second;
    first.outcome = second.outcome = Outcome::completed;
    TaskId victim = kernel.add_task(park_holding(Counted(1), resumed));
    kernel.add_task(wait_and_store(victim, first, log, "first"));
    kernel.add_task(wait_and_store(victim, second, log, "second"));
    kernel.add_task(kill_after_yield(victim, killed));
    kernel.run();
    CHECK(killed);
    CHECK_FALSE(resumed);
    CHECK(first.outcome == Outcome::killed);
    CHECK(first.killed());
    CHECK(first.error == nullptr);
    CHECK(second.outcome == Outcome::killed);
    CHECK(log == Log{"first", "second"});
    CHECK(Counted::alive() == 0);
    require_empty(kernel);
}

TEST_CASE("KillTask of a task inside WaitTask takes it off the target's waiters", "[syscalls]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Scheduler kernel;
    Log log;
    bool killed = false;
    TaskExit killed_waiter_exit;
    TaskExit other_exit;
    killed_waiter_exit.outcome = Outcome::killed; // to see that nothing writes it
    const TaskId target = kernel.add_task(finish_after_yields_for_kill_test(log, 3));
    TaskId doomed = kernel.add_task(wait_and_store(target, killed_waiter_exit, log, "doomed"));
    kernel.add_task(wait_and_store(target, other_exit, log, "other"));
    kernel.add_task(kill_after_yield(doomed, killed));
    kernel.run();
    CHECK(killed);
    CHECK(log == Log{"target done", "other"});
    CHECK(killed_waiter_exit.outcome == Outcome::killed); // untouched
    CHECK(other_exit.outcome == Outcome::completed);
    require_empty(kernel);
}

namespace {
Task<> kill_self(Counted held, bool& returned, bool& result) {
    co_await corio::Yield{}; // the waiters begin waiting
    const TaskId me = co_await corio::GetTid{};
    result = co_await KillTask{me};
    returned = held.value() != Counted::destroyed;
}

Task<int> child_killing_its_task(Counted held, bool& returned) {
    co_await corio::Yield{}; // the waiters begin waiting
    const TaskId me = co_await corio::GetTid{};
    (void)co_await KillTask{me};
    returned = true;
    co_return held.value();
}

Task<> parent_of_self_killer(Counted held, bool& child_returned, bool& parent_resumed) {
    const int value = co_await child_killing_its_task(Counted(2), child_returned);
    parent_resumed = value + held.value() > 0;
}
} // namespace

TEST_CASE("A task that kills itself does not come back from KillTask, its waiters see killed",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Scheduler kernel;
    bool returned = false;
    bool result = false;
    bool child_returned = false;
    bool parent_resumed = false;
    Log log;
    TaskExit exit;
    exit.outcome = Outcome::completed;
    TaskExit nested_exit;
    const TaskId self_killer = kernel.add_task(kill_self(Counted(1), returned, result));
    kernel.add_task(wait_and_store(self_killer, exit, log, "waiter"));
    const TaskId nested =
        kernel.add_task(parent_of_self_killer(Counted(3), child_returned, parent_resumed));
    kernel.add_task(wait_and_store(nested, nested_exit, log, "nested waiter"));
    kernel.run();
    CHECK_FALSE(returned);
    CHECK_FALSE(result);
    CHECK(exit.outcome == Outcome::killed);
    CHECK_FALSE(child_returned);
    CHECK_FALSE(parent_resumed);
    CHECK(nested_exit.outcome == Outcome::killed);
    CHECK(log == Log{"waiter", "nested waiter"});
    CHECK(Counted::alive() == 0);
    require_empty(kernel);
}

namespace {
Task<int> child_reading(Counted held, int fd) {
    co_await corio::ReadWait{fd};
    co_return held.value();
}

Task<> parent_awaiting_reader(Counted held, int fd, bool& resumed) {
    const int value = co_await child_reading(Counted(2), fd);
    resumed = value + held.value() > 0;
}

Task<> kill_when_blocked(Scheduler& kernel, const TaskId& victim, KillReport& report) {
    co_await corio::Yield{};
    report.fd_waiters_before = kernel.stats().waiting_on_fds;
    report.results.push_back(co_await KillTask{victim});
    report.fd_waiters_after = kernel.stats().waiting_on_fds;
    report.alive_after_kill = Counted::alive();
}
} // namespace

TEST_CASE("KillTask of a task inside co_await of a child blocked on ReadWait destroys both frames",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    auto pair = corio::test::socket_pair();
    Scheduler kernel;
    const long frames_before = live_frames();
    bool resumed = false;
    KillReport report;
    TaskId victim;
    const TaskId killer = kernel.add_task(kill_when_blocked(kernel, victim, report));
    victim = kernel.add_task(parent_awaiting_reader(Counted(1), pair.first.get(), resumed));
    REQUIRE(run_until_ended(kernel, {killer}));
    CHECK(report.results == std::vector<bool>{true});
    CHECK(report.fd_waiters_before == 1);
    CHECK(report.fd_waiters_after == 0);
    CHECK(report.alive_after_kill == 0); // parent's, child's and the argument temporary
    CHECK(live_frames() == frames_before);
    CHECK_FALSE(resumed);
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

// ---- WaitTask -----------------------------------------------------------------------------------

namespace {
Task<> finish_after_yields(Log& log, int yields) {
    for (int i = 0; i < yields; ++i) {
        co_await corio::Yield{};
    }
    log.emplace_back("target done");
}

Task<> fail_after_yield(std::string message) {
    co_await corio::Yield{};
    throw TestError(message);
}
} // namespace

TEST_CASE("WaitTask on a task that completes gives completed once it has ended", "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    TaskExit exit;
    const TaskId target = kernel.add_task(finish_after_yields(log, 3));
    kernel.add_task(wait_and_store(target, exit, log, "waiter"));
    kernel.run();
    CHECK(log == Log{"target done", "waiter"});
    CHECK(exit.outcome == Outcome::completed);
    CHECK(exit.completed());
    CHECK_FALSE(exit.failed());
    CHECK_FALSE(exit.killed());
    CHECK(exit.error == nullptr);
    CHECK_NOTHROW(exit.rethrow_if_failed());
    require_empty(kernel);
}

TEST_CASE("WaitTask on a task that throws gives failed with the exception, and no report",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    int reports = 0;
    kernel.set_exception_handler([&reports](TaskId, std::exception_ptr) { ++reports; });
    Log log;
    TaskExit exit;
    const TaskId target = kernel.add_task(fail_after_yield("waited-for failure"));
    kernel.add_task(wait_and_store(target, exit, log, "waiter"));
    kernel.run();
    CHECK(exit.outcome == Outcome::failed);
    CHECK(exit.failed());
    REQUIRE(exit.error != nullptr);
    try {
        exit.rethrow_if_failed();
        FAIL("rethrow_if_failed did not throw");
    } catch (const TestError& error) {
        CHECK(std::string(error.what()) == "waited-for failure");
    }
    CHECK(reports == 0); // somebody received it
    require_empty(kernel);
}

Task<> fail_at_once(std::string message) {
    if (!message.empty()) {
        throw TestError(message);
    }
    co_return;
}

Task<> wait_then_flag(const TaskId& target, bool& resumed) {
    co_await WaitTask{target};
    resumed = true;
}

Task<> kill_at_once(const TaskId& victim) {
    co_await KillTask{victim};
}

// Found by the model test (tests/test_model.cpp, seeds 1987 and 62846 at the time): the failure
// was handed to the waiter's frame, which the kill destroyed before the waiter ever ran.
TEST_CASE("WaitTask: a failure handed to a waiter that is killed before it runs is reported",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Log reports;
    Scheduler kernel;
    record_reports(kernel, reports);
    TaskId target;
    bool resumed = false;
    const TaskId waiter = kernel.add_task(wait_then_flag(target, resumed)); // waits first
    target = kernel.add_task(fail_at_once("unreceived failure")); // fails in the same pass
    kernel.add_task(kill_at_once(waiter));                        // the waiter is ready, not run
    kernel.run();
    CHECK_FALSE(resumed);
    CHECK(reports == Log{"unreceived failure"});
    require_empty(kernel);
}

TEST_CASE("WaitTask: a failure one waiter receives is not reported when another is killed first",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Log reports;
    Scheduler kernel;
    record_reports(kernel, reports);
    TaskId target;
    bool first_resumed = false;
    bool second_resumed = false;
    kernel.add_task(wait_then_flag(target, first_resumed));
    const TaskId second = kernel.add_task(wait_then_flag(target, second_resumed));
    target = kernel.add_task(fail_at_once("received once"));
    kernel.add_task(kill_at_once(second));
    kernel.run();
    CHECK(first_resumed);
    CHECK_FALSE(second_resumed);
    CHECK(reports.empty()); // the first waiter received it
    require_empty(kernel);
}

TEST_CASE("WaitTask: a failure handed to two waiters that are both killed is reported once",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Log reports;
    Scheduler kernel;
    record_reports(kernel, reports);
    TaskId target;
    bool first_resumed = false;
    bool second_resumed = false;
    const TaskId first = kernel.add_task(wait_then_flag(target, first_resumed));
    const TaskId second = kernel.add_task(wait_then_flag(target, second_resumed));
    target = kernel.add_task(fail_at_once("received by nobody"));
    kernel.add_task(kill_at_once(first));
    kernel.add_task(kill_at_once(second));
    kernel.run();
    CHECK_FALSE(first_resumed);
    CHECK_FALSE(second_resumed);
    CHECK(reports == Log{"received by nobody"});
    require_empty(kernel);
}

TEST_CASE("WaitTask: a failure handed to a waiter that dies with its Scheduler is reported",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Log reports;
    bool resumed = false;
    {
        Scheduler kernel;
        record_reports(kernel, reports);
        TaskId target;
        kernel.add_task(wait_then_flag(target, resumed));
        target = kernel.add_task(fail_at_once("failure at teardown"));
        kernel.add_task(stop_now(kernel)); // run() returns with the waiter ready
        kernel.run();
        CHECK(reports.empty());
    }
    CHECK_FALSE(resumed);
    CHECK(reports == Log{"failure at teardown"});
}

TEST_CASE("WaitTask on a killed task gives killed", "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    bool woke = false;
    bool killed = false;
    Log log;
    TaskExit exit;
    TaskId target = kernel.add_task(sleep_holding(Counted(1), woke));
    kernel.add_task(wait_and_store(target, exit, log, "waiter"));
    kernel.add_task(kill_after_yield(target, killed));
    kernel.run();
    CHECK(killed);
    CHECK(exit.outcome == Outcome::killed);
    CHECK(exit.error == nullptr);
    CHECK_NOTHROW(exit.rethrow_if_failed());
    require_empty(kernel);
}

namespace {
Task<> wait_for_nothing(const TaskId& target, TaskExit& exit, Log& log) {
    exit.outcome = Outcome::completed;
    exit = co_await WaitTask{target};
    log.emplace_back("waiter");
}
} // namespace

TEST_CASE("WaitTask on no task gives no_such_task at once, without suspending", "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    TaskExit exit;
    const TaskId none;
    kernel.add_task(wait_for_nothing(none, exit, log));
    kernel.add_task(finish_after_yields(log, 0));
    kernel.run();
    CHECK(exit.outcome == Outcome::no_such_task);
    CHECK(log == Log{"waiter", "target done"}); // the waiter went on before the next task ran
    require_empty(kernel);
}

TEST_CASE("WaitTask on a task that has already ended gives no_such_task", "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    TaskExit exit;
    const TaskId ended = kernel.add_task(finish_after_yields(log, 0));
    kernel.run();
    REQUIRE_FALSE(kernel.contains(ended));
    kernel.add_task(wait_for_nothing(ended, exit, log));
    kernel.add_task(finish_after_yields(log, 0));
    kernel.run();
    CHECK(exit.outcome == Outcome::no_such_task);
    CHECK(log == Log{"target done", "waiter", "target done"});
    require_empty(kernel);
}

namespace {
Task<std::string> wait_for_myself() {
    const TaskId me = co_await corio::GetTid{};
    std::string outcome = "no exception";
    try {
        (void)co_await WaitTask{me};
    } catch (const std::invalid_argument&) {
        outcome = "invalid_argument";
    }
    co_await corio::Yield{}; // still a healthy task afterwards
    co_return outcome;
}
} // namespace

TEST_CASE("WaitTask on the calling task itself throws std::invalid_argument", "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    CHECK(kernel.run_until_complete(wait_for_myself()) == "invalid_argument");
    require_empty(kernel);
}

TEST_CASE("WaitTask: several waiters of one task all wake, in the order they began waiting",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    std::array<TaskExit, 4> exits{};
    const TaskId target = kernel.add_task(finish_after_yields(log, 2));
    for (std::size_t i = 0; i < exits.size(); ++i) {
        kernel.add_task(wait_and_store(target, exits[i], log, "waiter " + std::to_string(i)));
    }
    kernel.run();
    CHECK(log == Log{"target done", "waiter 0", "waiter 1", "waiter 2", "waiter 3"});
    for (const TaskExit& exit : exits) {
        CHECK(exit.outcome == Outcome::completed);
    }
    require_empty(kernel);
}

// ---- ReadWait and WriteWait ---------------------------------------------------------------------

namespace {
Task<> read_when_readable(int fd, Log& log, std::string& received) {
    log.emplace_back("reader waits");
    co_await corio::ReadWait{fd};
    log.emplace_back("readable");
    received = read_string(fd);
}

Task<> write_after_yields(int fd, Log& log, std::string message) {
    for (int i = 0; i < 3; ++i) {
        log.emplace_back("writer yields");
        co_await corio::Yield{};
    }
    co_await corio::WriteWait{fd};
    log.emplace_back("writable");
    corio::test::write_all(fd, message.data(), message.size());
    log.emplace_back("written");
}

void check_read_and_write_wait(corio::test::FdPair pair) {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    std::string received;
    const TaskId reader = kernel.add_task(read_when_readable(pair.first.get(), log, received));
    const TaskId writer = kernel.add_task(write_after_yields(pair.second.get(), log, "hello"));
    REQUIRE(run_until_ended(kernel, {reader, writer}));
    CHECK(log == Log{"reader waits", "writer yields", "writer yields", "writer yields", "writable",
                     "written", "readable"});
    CHECK(received == "hello");
    kernel.forget_fd(pair.first.get());
    kernel.forget_fd(pair.second.get());
    require_empty(kernel);
}
} // namespace

TEST_CASE("ReadWait on a socketpair wakes only after another task wrote", "[syscalls]") {
    check_read_and_write_wait(corio::test::socket_pair());
}

TEST_CASE("ReadWait on a pipe wakes only after another task wrote", "[syscalls]") {
    check_read_and_write_wait(corio::test::make_pipe());
}

namespace {
struct DrainReport {
    std::vector<bool> writer_woke_while_full;
    bool drained_when_woken = false;
    bool woke = false;
    ssize_t write_after_wake = -1;
    std::size_t drained = 0;
};

Task<> wait_writable(int fd, const bool& drained, DrainReport& report) {
    co_await corio::WriteWait{fd};
    report.woke = true;
    report.drained_when_woken = drained;
    report.write_after_wake = corio::test::write_some(fd, "x", 1);
}

Task<> drain_later(int fd, bool& drained, DrainReport& report) {
    for (int i = 0; i < 5; ++i) {
        co_await corio::Yield{};
        report.writer_woke_while_full.push_back(report.woke);
    }
    report.drained = corio::test::drain(fd);
    drained = true;
}
} // namespace

namespace {
// Waits on `fd` for a while and gives up (the selector keeps watching the fd), makes the fd ready
// and unready again without letting the loop run, then waits again: nothing is ready now, so the
// second wait must time out. On io_uring the poll armed for the first wait fires for the readiness
// that came and went, and its completion reaches the loop only after the second wait began.
template <class Wait, class Flip>
Task<> wait_after_readiness_came_and_went(int fd, Flip flip, bool& first_timed_out, bool& woke) {
    try {
        co_await corio::timeout_after(20ms, Wait{fd});
    } catch (const corio::TimeoutError&) {
        first_timed_out = true;
    }
    flip();
    try {
        co_await corio::timeout_after(100ms, Wait{fd});
        woke = true;
    } catch (const corio::TimeoutError&) {
        woke = false;
    }
}

template <class Wait, class Flip>
void check_no_stale_readiness(int fd, Flip flip) {
    FrameLeakCheck leaks;
    Scheduler kernel;
    bool first_timed_out = false;
    bool woke = true;
    const TaskId waiter = kernel.add_task(
        wait_after_readiness_came_and_went<Wait>(fd, flip, first_timed_out, woke));
    REQUIRE(run_until_ended(kernel, {waiter}));
    CHECK(first_timed_out);
    CHECK_FALSE(woke);
    kernel.forget_fd(fd);
    require_empty(kernel);
}
} // namespace

TEST_CASE("ReadWait is not woken by bytes that came and were read before it began", "[syscalls]") {
    auto pair = corio::test::socket_pair();
    const int reader = pair.first.get();
    const int writer = pair.second.get();
    check_no_stale_readiness<corio::ReadWait>(reader, [reader, writer] {
        corio::test::write_all(writer, "x", 1);
        REQUIRE(corio::test::drain(reader) == 1);
    });
}

TEST_CASE("WriteWait is not woken by room that came and was filled before it began", "[syscalls]") {
    auto pair = corio::test::socket_pair();
    const int writer = pair.first.get();
    const int peer = pair.second.get();
    REQUIRE(corio::test::fill_send_buffer(writer) > 0);
    check_no_stale_readiness<corio::WriteWait>(writer, [writer, peer] {
        REQUIRE(corio::test::drain(peer) > 0);
        REQUIRE(corio::test::fill_send_buffer(writer) > 0);
    });
}

TEST_CASE("WriteWait on a full socketpair wakes only after the peer drains it", "[syscalls]") {
    FrameLeakCheck leaks;
    auto pair = corio::test::socket_pair();
    const std::size_t filled = corio::test::fill_send_buffer(pair.first.get());
    REQUIRE(filled > 0);
    Scheduler kernel;
    DrainReport report;
    bool drained = false;
    const TaskId writer = kernel.add_task(wait_writable(pair.first.get(), drained, report));
    const TaskId drainer = kernel.add_task(drain_later(pair.second.get(), drained, report));
    REQUIRE(run_until_ended(kernel, {writer, drainer}));
    CHECK(report.writer_woke_while_full == std::vector<bool>(5, false));
    CHECK(report.drained == filled);
    CHECK(report.woke);
    CHECK(report.drained_when_woken);
    CHECK(report.write_after_wake == 1);
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

namespace {
Task<> read_until_hang_up(int fd, Log& log, ssize_t& read_result) {
    co_await corio::ReadWait{fd};
    log.emplace_back("woke");
    char byte = 0;
    read_result = ::read(fd, &byte, 1);
}

Task<> close_after_yields(corio::test::UniqueFd& peer, Log& log) {
    co_await corio::Yield{};
    co_await corio::Yield{};
    log.emplace_back("closing");
    peer.reset();
}

void check_hang_up_wakes_reader(corio::test::FdPair pair) {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    ssize_t read_result = -2;
    const TaskId reader = kernel.add_task(read_until_hang_up(pair.first.get(), log, read_result));
    const TaskId closer = kernel.add_task(close_after_yields(pair.second, log));
    REQUIRE(run_until_ended(kernel, {reader, closer}));
    CHECK(log == Log{"closing", "woke"});
    CHECK(read_result == 0); // end of file
    CHECK_FALSE(pair.second);
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}
} // namespace

TEST_CASE("Closing the peer of a socketpair wakes a ReadWait (hang-up)", "[syscalls]") {
    check_hang_up_wakes_reader(corio::test::socket_pair());
}

TEST_CASE("Closing the write end of a pipe wakes a ReadWait on the read end (hang-up)",
          "[syscalls]") {
    check_hang_up_wakes_reader(corio::test::make_pipe());
}

namespace {
Task<> reader_of(int fd, std::string& received) {
    co_await corio::ReadWait{fd};
    received = read_string(fd);
}

Task<> writer_of(int fd, std::string message) {
    co_await corio::WriteWait{fd};
    corio::test::write_all(fd, message.data(), message.size());
}

Task<> echo_once(int fd, std::string reply, std::string& received) {
    co_await corio::ReadWait{fd};
    received = read_string(fd);
    corio::test::write_all(fd, reply.data(), reply.size());
}
} // namespace

TEST_CASE("A reader and a writer can wait on the same socket at the same time", "[syscalls]") {
    FrameLeakCheck leaks;
    auto pair = corio::test::socket_pair();
    Scheduler kernel;
    std::string at_first;
    std::string at_second;
    const TaskId reader = kernel.add_task(reader_of(pair.first.get(), at_first));
    const TaskId writer = kernel.add_task(writer_of(pair.first.get(), "ping"));
    const TaskId echo = kernel.add_task(echo_once(pair.second.get(), "pong", at_second));
    REQUIRE(run_until_ended(kernel, {reader, writer, echo}));
    CHECK(at_second == "ping");
    CHECK(at_first == "pong");
    kernel.forget_fd(pair.first.get());
    kernel.forget_fd(pair.second.get());
    require_empty(kernel);
}

namespace {
Task<> forget_after_yield(Scheduler& kernel, int fd, std::size_t& watched_after) {
    co_await corio::Yield{};
    kernel.forget_fd(fd);
    watched_after = kernel.stats().watched_fds;
}

Task<> read_wait_then_try(int fd, ssize_t& result, int& error) {
    co_await corio::ReadWait{fd};
    char byte = 0;
    result = ::read(fd, &byte, 1);
    error = errno;
}
} // namespace

TEST_CASE("Scheduler::forget_fd wakes the tasks waiting on the fd and stops watching it",
          "[syscalls]") {
    FrameLeakCheck leaks;
    auto pair = corio::test::socket_pair();
    Scheduler kernel;
    ssize_t result = 0;
    int error = 0;
    std::size_t watched_after = 99;
    const TaskId reader = kernel.add_task(read_wait_then_try(pair.first.get(), result, error));
    const TaskId forgetter =
        kernel.add_task(forget_after_yield(kernel, pair.first.get(), watched_after));
    REQUIRE(run_until_ended(kernel, {reader, forgetter}));
    CHECK(watched_after == 0);
    CHECK(result == -1); // woken although nothing was written: its next system call tells
    CHECK((error == EAGAIN || error == EWOULDBLOCK));
    require_empty(kernel);
}

namespace {
Task<std::string> wait_on_negative_fd() {
    try {
        co_await corio::ReadWait{-1};
    } catch (const std::system_error& error) {
        co_return error.code() == std::errc::bad_file_descriptor ? "EBADF" : "other error";
    }
    co_return "no exception";
}
} // namespace

TEST_CASE("ReadWait on a negative fd throws std::system_error (EBADF) into the task",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    CHECK(kernel.run_until_complete(wait_on_negative_fd()) == "EBADF");
    require_empty(kernel);
}

// ---- Sleep and Yield ----------------------------------------------------------------------------

namespace {
template <class Duration>
Task<> sleep_between(Log& log, std::string name, Duration length) {
    log.push_back(name + "1");
    co_await corio::Sleep{length};
    log.push_back(name + "2");
}

Task<> observe_timers(Scheduler& kernel, Log& log, std::vector<std::size_t>& timers) {
    log.emplace_back("B1");
    timers.push_back(kernel.stats().timers);
    co_return;
}
} // namespace

TEST_CASE("Sleep of zero or negative duration yields: others run, and no timer is armed",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    std::vector<std::size_t> timers;
    kernel.add_task(sleep_between(log, "A", 0ms));
    kernel.add_task(observe_timers(kernel, log, timers));
    kernel.run();
    CHECK(log == Log{"A1", "B1", "A2"});
    CHECK(timers == std::vector<std::size_t>{0});

    log.clear();
    timers.clear();
    kernel.add_task(sleep_between(log, "A", -5ms));
    kernel.add_task(observe_timers(kernel, log, timers));
    kernel.run();
    CHECK(log == Log{"A1", "B1", "A2"});
    CHECK(timers == std::vector<std::size_t>{0});
    require_empty(kernel);
}

TEST_CASE("Sleep with a positive duration arms one timer and waits at least that long",
          "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    std::vector<std::size_t> timers;
    const auto start = std::chrono::steady_clock::now();
    kernel.add_task(sleep_between(log, "A", 15ms));
    kernel.add_task(observe_timers(kernel, log, timers));
    kernel.run();
    CHECK(std::chrono::steady_clock::now() - start >= 15ms);
    CHECK(log == Log{"A1", "B1", "A2"});
    CHECK(timers == std::vector<std::size_t>{1});
    require_empty(kernel);
}

namespace {
template <class Duration>
Task<> sleep_enormously(Duration length, bool& woke) {
    co_await corio::Sleep{length};
    woke = true;
}

Task<> stop_after_yields(Scheduler& kernel, int yields) {
    for (int i = 0; i < yields; ++i) {
        co_await corio::Yield{};
    }
    kernel.stop();
}

template <class Duration>
void check_enormous_sleep_does_not_wake(Duration length) {
    FrameLeakCheck leaks;
    Scheduler kernel;
    bool woke = false;
    const TaskId sleeper = kernel.add_task(sleep_enormously(length, woke));
    kernel.add_task(stop_after_yields(kernel, 3));
    kernel.run();
    CHECK_FALSE(woke);
    CHECK(kernel.stats().timers == 1);
    CHECK(kernel.kill(sleeper));
    require_empty(kernel);
}
} // namespace

// Library bug (see the report): the conversion to the clock's nanoseconds, and now() + duration,
// overflow; the sleeper wakes at once instead of (practically) never.
TEST_CASE("Sleep of an enormous duration does not wake at once", "[syscalls]") {
    SECTION("std::chrono::seconds::max()") {
        check_enormous_sleep_does_not_wake(std::chrono::seconds::max());
    }
    SECTION("std::chrono::nanoseconds::max()") {
        check_enormous_sleep_does_not_wake(std::chrono::nanoseconds::max());
    }
    SECTION("1000 years") {
        check_enormous_sleep_does_not_wake(std::chrono::hours(24 * 365 * 1000));
    }
    SECTION("100 years (fits: the control case)") {
        check_enormous_sleep_does_not_wake(std::chrono::hours(24 * 365 * 100));
    }
}

namespace {
// Sleeps for a duration given as a double count of seconds, and says whether it threw
// std::invalid_argument.
Task<bool> sleep_rejected(double seconds) {
    try {
        co_await corio::Sleep{std::chrono::duration<double>(seconds)};
    } catch (const std::invalid_argument&) {
        co_return true;
    }
    co_return false;
}
} // namespace

// Converting NaN or infinity to the clock's integer count is undefined behaviour (UBSan saw it).
TEST_CASE("Sleep rejects a NaN or infinite duration with std::invalid_argument", "[syscalls]") {
    FrameLeakCheck leaks;
    CHECK_THROWS_AS(corio::Sleep{std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())},
                    std::invalid_argument);
    CHECK_THROWS_AS(corio::Sleep{std::chrono::duration<double>(std::numeric_limits<double>::infinity())},
                    std::invalid_argument);
    using FloatMilliseconds = std::chrono::duration<float, std::milli>;
    using LongDoubleMicroseconds = std::chrono::duration<long double, std::micro>;
    CHECK_THROWS_AS(corio::Sleep{FloatMilliseconds(-std::numeric_limits<float>::infinity())},
                    std::invalid_argument);
    CHECK_THROWS_AS(
        corio::Sleep{LongDoubleMicroseconds(std::numeric_limits<long double>::quiet_NaN())},
        std::invalid_argument);
    // Inside a task, the exception comes out of the co_await's expression; the loop goes on.
    Scheduler kernel;
    CHECK(kernel.run_until_complete(sleep_rejected(std::numeric_limits<double>::quiet_NaN())));
    CHECK_FALSE(kernel.run_until_complete(sleep_rejected(0.001))); // a finite one sleeps
    CHECK_FALSE(kernel.run_until_complete(sleep_rejected(-1.5)));  // a negative one yields
    require_empty(kernel);
}

namespace {
Task<> yield_and_log(Log& log, std::string name, int rounds) {
    for (int i = 0; i < rounds; ++i) {
        log.push_back(name);
        co_await corio::Yield{};
    }
}
} // namespace

TEST_CASE("Two yielding tasks interleave: A B A B", "[syscalls]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log log;
    kernel.add_task(yield_and_log(log, "A", 3));
    kernel.add_task(yield_and_log(log, "B", 3));
    kernel.run();
    CHECK(log == Log{"A", "B", "A", "B", "A", "B"});
    require_empty(kernel);
}
