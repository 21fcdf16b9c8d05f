// Tests for corio/group/task_group.hpp: TaskGroup spawns children as tasks of their own, waits for all
// of them, propagates the first failure and kills the rest, and never lets a child outlive it.
#include <chrono>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/group/task_group.hpp>
#include <corio/timeout.hpp>
#include <corio/virtual_clock.hpp>

#include "support/catch.hpp"
#include "support/counted.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::KillTask;
using corio::Sleep;
using corio::TaskGroup;

Task<> sleep_then_throw(Scheduler::Clock::duration length, std::string message) {
    co_await Sleep{length};
    throw TestError(message);
}

// Holds a Counted in its frame; `resumed` says whether it ever woke from its sleep.
Task<> sleep_holding(Scheduler::Clock::duration length, Counted held, bool& resumed) {
    co_await Sleep{length};
    resumed = held.value() != Counted::destroyed;
}

Task<> set_flag_after(Scheduler::Clock::duration length, bool& flag) {
    co_await Sleep{length};
    flag = true;
}

// ---------------------------------------------------------------------------------------------

Task<> spawn_three_and_wait(TaskGroup& group, Log& log, std::vector<TaskId>& ids,
                            std::vector<std::size_t>& sizes, TaskId& parent) {
    parent = co_await corio::GetTid{};
    ids.push_back(co_await group.spawn(log_after(1s, log, "one")));
    ids.push_back(co_await group.spawn(log_after(3s, log, "three")));
    ids.push_back(co_await group.spawn(log_after(2s, log, "two")));
    sizes.push_back(group.size());
    co_await group.wait();
    sizes.push_back(group.size());
}

Task<> parent_of_three(Log& log, std::vector<TaskId>& ids, std::vector<std::size_t>& sizes,
                       TaskId& parent) {
    TaskGroup group;
    co_await spawn_three_and_wait(group, log, ids, sizes, parent);
}

TEST_CASE("task_group: wait returns once every child has ended, the children run concurrently",
          "[task_group]") {
    FrameLeakCheck leaks;
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    Log log;
    std::vector<TaskId> ids;
    std::vector<std::size_t> sizes;
    TaskId parent;
    const auto start = clock.now();
    kernel.run_until_complete(parent_of_three(log, ids, sizes, parent));

    CHECK(elapsed(clock, start) == 3s); // the longest child, not the sum (6 s)
    CHECK(log == Log{"one", "two", "three"});
    REQUIRE(ids.size() == 3);
    CHECK(ids[0] != ids[1]);
    CHECK(ids[1] != ids[2]);
    CHECK(ids[0] != ids[2]);
    for (const TaskId id : ids) {
        CHECK(id);
        CHECK(id != parent); // each child is a task of its own
    }
    CHECK(sizes == std::vector<std::size_t>{3, 0});
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> spawn_and_look(bool& ran, bool& ran_before_wait, TaskId& child, Scheduler& kernel,
                      bool& alive_before_wait) {
    TaskGroup group;
    child = co_await group.spawn(set_flag(ran));
    ran_before_wait = ran;
    alive_before_wait = kernel.contains(child);
    co_await group.wait();
}

TEST_CASE("task_group: spawn starts the child later, as a task of the Scheduler, like NewTask",
          "[task_group]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    bool ran = false;
    bool ran_before_wait = true;
    bool alive_before_wait = false;
    TaskId child;
    kernel.run_until_complete(
        spawn_and_look(ran, ran_before_wait, child, kernel, alive_before_wait));
    CHECK_FALSE(ran_before_wait);
    CHECK(alive_before_wait);
    CHECK(ran);
    CHECK_FALSE(kernel.contains(child));
    require_empty(kernel);
}

Task<> wait_without_children(bool& done) {
    TaskGroup group;
    co_await group.wait();
    co_await group.wait();
    done = true;
}

TEST_CASE("task_group: wait on a group without children returns at once", "[task_group]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    bool done = false;
    const auto start = clock.now();
    kernel.run_until_complete(wait_without_children(done));
    CHECK(done);
    CHECK(elapsed(clock, start) == 0s);
    require_empty(kernel);
}

Task<int> give_value(int value) {
    co_return value;
}

Task<> spawn_value_tasks(int& spawned) {
    TaskGroup group;
    for (int i = 0; i < 3; ++i) {
        co_await group.spawn(give_value(i)); // a value-returning child: the value is dropped
        ++spawned;
    }
    co_await group.spawn(value_after(1s, 7));
    co_await group.wait();
}

TEST_CASE("task_group: children of any value type can be spawned, their values are dropped",
          "[task_group]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    int spawned = 0;
    kernel.run_until_complete(spawn_value_tasks(spawned));
    CHECK(spawned == 3);
    require_empty(kernel);
}

// ---------------------------------------------------------------------------------------------
// Failures

Task<> first_failure_wins(bool& b_resumed, bool& c_resumed, std::size_t& size_after) {
    TaskGroup group;
    co_await group.spawn(sleep_holding(2s, Counted(1), b_resumed));
    co_await group.spawn(sleep_then_throw(1s, "first"));
    co_await group.spawn(sleep_then_throw(3s, "second"));
    co_await group.spawn(sleep_holding(long_sleep, Counted(2), c_resumed));
    try {
        co_await group.wait();
    } catch (...) {
        size_after = group.size();
        throw;
    }
}

TEST_CASE("task_group: the first exception propagates from wait, the other children are killed at "
          "once and never resume",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    bool b_resumed = false;
    bool c_resumed = false;
    std::size_t size_after = 99;
    const auto start = clock.now();
    CHECK_THROWS_WITH(
        kernel.run_until_complete(first_failure_wins(b_resumed, c_resumed, size_after)), "first");
    CHECK(elapsed(clock, start) == 1s); // the failure ended it: nobody waited for the 2 s sleeper
    CHECK(size_after == 0);
    CHECK_FALSE(b_resumed);
    CHECK_FALSE(c_resumed);
    CHECK(Counted::alive() == 0); // the killed children's frames (and what they held) are gone
    CHECK(reports.empty());       // "second" never happened; "first" was received by the parent
    require_empty(kernel);
}

Task<> two_failures_in_one_pass(bool& third_ran) {
    TaskGroup group;
    co_await group.spawn(sleep_then_throw(1s, "due first"));
    co_await group.spawn(sleep_then_throw(1s, "due second"));
    co_await group.spawn(set_flag_after(1s, third_ran));
    co_await group.wait();
}

TEST_CASE("task_group: of two children that fail in the same pass, the first one's exception wins",
          "[task_group]") {
    FrameLeakCheck leaks;
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    bool third_ran = false;
    CHECK_THROWS_WITH(kernel.run_until_complete(two_failures_in_one_pass(third_ran)), "due first");
    CHECK_FALSE(third_ran); // woken in the same pass, but killed before its turn came
    CHECK(reports.empty()); // the second failure never happened: that child never ran again
    require_empty(kernel);
}

Task<> spawn_into_failed_group(bool& late_ran, long& alive_after_spawn, std::string& spawn_error,
                               std::string& wait_error) {
    TaskGroup group;
    co_await group.spawn(sleep_then_throw(1s, "first"));
    co_await Sleep{2s}; // the child fails meanwhile
    try {
        co_await group.spawn(sleep_holding(0s, Counted(5), late_ran));
    } catch (const TestError& e) {
        spawn_error = e.what();
        alive_after_spawn = Counted::alive(); // the task handed to spawn is gone already
    }
    try {
        co_await group.wait();
    } catch (const TestError& e) {
        wait_error = e.what();
    }
}

TEST_CASE("task_group: spawning into a failed group rethrows the first failure and never runs the "
          "task",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    bool late_ran = false;
    long alive_after_spawn = -1;
    std::string spawn_error;
    std::string wait_error;
    kernel.run_until_complete(
        spawn_into_failed_group(late_ran, alive_after_spawn, spawn_error, wait_error));
    CHECK(spawn_error == "first");
    CHECK(wait_error == "first"); // a failed group stays failed
    CHECK(alive_after_spawn == 0);
    CHECK_FALSE(late_ran);
    CHECK(reports.empty()); // the parent received the failure
    require_empty(kernel);
}

Task<> fail_and_never_wait(TaskId& me, bool return_early) {
    me = co_await corio::GetTid{};
    TaskGroup group;
    co_await group.spawn(sleep_then_throw(1s, "unreceived"));
    co_await Sleep{return_early ? 2s : long_sleep};
}

TEST_CASE("task_group: a child failure the parent never receives is reported once, never dropped",
          "[task_group]") {
    FrameLeakCheck leaks;
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    TaskId parent;

    SECTION("the parent is killed after the failure, before it waits") {
        kernel.add_task(fail_and_never_wait(parent, false));
        kernel.add_task(kill_after(3s, parent));
    }
    SECTION("the parent leaves the group's scope without waiting") {
        kernel.add_task(fail_and_never_wait(parent, true));
    }
    kernel.run();
    CHECK(reports == Log{"unreceived"});
    require_empty(kernel);
}

Task<> sleep_for(Scheduler::Clock::duration length) { co_await Sleep{length}; }

TEST_CASE("task_group: a child failure the parent never receives is reported when the Scheduler "
          "is destroyed under the parent",
          "[task_group]") {
    FrameLeakCheck leaks;
    Log reports;
    {
        VirtualClock clock;
        Scheduler kernel(clock);
        record_reports(kernel, reports);
        TaskId parent;
        kernel.add_task(fail_and_never_wait(parent, false));
        kernel.run_until_complete(sleep_for(3s)); // the child failed at 1 s; the parent sleeps on
        CHECK(reports.empty());
    } // the Scheduler kills the parent, whose group holds the failure nobody received
    CHECK(reports == Log{"unreceived"});
}

Task<> leave_scope_by_exception(bool& first_resumed, bool& second_resumed) {
    TaskGroup group;
    co_await group.spawn(sleep_holding(long_sleep, Counted(1), first_resumed));
    co_await group.spawn(sleep_holding(long_sleep, Counted(2), second_resumed));
    co_await Sleep{1s};
    throw TestError("parent failed between spawn and wait");
}

Task<> catch_parent_failure(Scheduler& kernel, bool& first_resumed, bool& second_resumed,
                            long& alive_in_catch, std::size_t& tasks_in_catch) {
    try {
        co_await leave_scope_by_exception(first_resumed, second_resumed);
    } catch (const TestError&) {
        alive_in_catch = Counted::alive();
        tasks_in_catch = kernel.task_count();
    }
}

TEST_CASE("task_group: an exception in the parent between spawn and wait kills the children as it "
          "leaves the group's scope",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    bool first_resumed = false;
    bool second_resumed = false;
    long alive_in_catch = -1;
    std::size_t tasks_in_catch = 99;
    const auto start = clock.now();
    kernel.run_until_complete(catch_parent_failure(kernel, first_resumed, second_resumed,
                                                   alive_in_catch, tasks_in_catch));
    CHECK(alive_in_catch == 0); // gone by the time the exception reached the catch
    CHECK(tasks_in_catch == 1); // only the parent is left
    CHECK(elapsed(clock, start) == 1s);
    CHECK_FALSE(first_resumed);
    CHECK_FALSE(second_resumed);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> return_without_waiting(bool& resumed) {
    TaskGroup group;
    co_await group.spawn(sleep_holding(long_sleep, Counted(1), resumed));
    co_await Sleep{1s};
}

TEST_CASE("task_group: a parent that returns without waiting takes its children with it",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    bool resumed = false;
    const auto start = clock.now();
    kernel.run_until_complete(return_without_waiting(resumed));
    CHECK(Counted::alive() == 0);
    CHECK_FALSE(resumed);
    CHECK(elapsed(clock, start) == 1s);
    require_empty(kernel);
}

Task<> wait_for_sleepers(TaskId& me, std::vector<TaskId>& children, bool& first_resumed,
                         bool& second_resumed) {
    me = co_await corio::GetTid{};
    TaskGroup group;
    children.push_back(co_await group.spawn(sleep_holding(long_sleep, Counted(1), first_resumed)));
    children.push_back(co_await group.spawn(sleep_holding(long_sleep, Counted(2), second_resumed)));
    co_await group.wait();
}

Task<> kill_and_look(Scheduler& kernel, const TaskId& victim, const std::vector<TaskId>& children,
                     bool& existed, bool& children_gone, long& alive_after) {
    co_await Sleep{1s};
    existed = co_await KillTask{victim};
    children_gone = !children.empty();
    for (const TaskId child : children) {
        children_gone = children_gone && !kernel.contains(child);
    }
    alive_after = Counted::alive();
}

Task<> watch_first_child(const std::vector<TaskId>& children, corio::TaskExit& exit) {
    co_await corio::Yield{}; // the parent has spawned by now
    exit = co_await corio::WaitTask{children.at(0)};
}

TEST_CASE("task_group: killing the parent while it waits kills every child before KillTask returns",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    TaskId parent;
    std::vector<TaskId> children;
    bool first_resumed = false;
    bool second_resumed = false;
    bool existed = false;
    bool children_gone = false;
    long alive_after = -1;
    corio::TaskExit child_exit;
    kernel.add_task(wait_for_sleepers(parent, children, first_resumed, second_resumed));
    kernel.add_task(watch_first_child(children, child_exit));
    kernel.add_task(kill_and_look(kernel, parent, children, existed, children_gone, alive_after));
    kernel.run();
    CHECK(existed);
    CHECK(children_gone);
    CHECK(alive_after == 0);
    CHECK(child_exit.killed()); // a child's own waiters learn it was killed
    CHECK_FALSE(first_resumed);
    CHECK_FALSE(second_resumed);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> group_with_victim(TaskId& victim, Log& log, bool& victim_resumed) {
    TaskGroup group;
    victim = co_await group.spawn(sleep_holding(5s, Counted(1), victim_resumed));
    co_await group.spawn(log_after(2s, log, "other child"));
    co_await group.wait();
    log.push_back("waited");
}

TEST_CASE("task_group: a child killed from outside has ended, it is not a failure",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    TaskId victim;
    Log log;
    bool victim_resumed = false;
    const auto start = clock.now();
    const TaskId parent = kernel.add_task(group_with_victim(victim, log, victim_resumed));
    kernel.add_task(kill_after(1s, victim));
    REQUIRE(corio::test::run_until_ended(kernel, {parent}));
    CHECK(log == Log{"other child", "waited"});
    CHECK(elapsed(clock, start) == 2s);
    CHECK_FALSE(victim_resumed);
    CHECK(Counted::alive() == 0);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> cancel_then_reuse(std::size_t& size_after_cancel, long& alive_after_cancel,
                         bool& first_resumed, bool& second_resumed, Log& log) {
    TaskGroup group;
    co_await group.spawn(sleep_holding(long_sleep, Counted(1), first_resumed));
    co_await group.spawn(sleep_holding(long_sleep, Counted(2), second_resumed));
    co_await Sleep{1s};
    group.cancel();
    size_after_cancel = group.size();
    alive_after_cancel = Counted::alive();
    co_await group.spawn(log_after(1s, log, "spawned after cancel"));
    co_await group.wait(); // the cancelled children are not failures
    log.push_back("waited");
}

TEST_CASE("task_group: cancel kills every child now, the group stays usable", "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    std::size_t size_after_cancel = 99;
    long alive_after_cancel = -1;
    bool first_resumed = false;
    bool second_resumed = false;
    Log log;
    const auto start = clock.now();
    kernel.run_until_complete(cancel_then_reuse(size_after_cancel, alive_after_cancel,
                                                first_resumed, second_resumed, log));
    CHECK(size_after_cancel == 0);
    CHECK(alive_after_cancel == 0);
    CHECK_FALSE(first_resumed);
    CHECK_FALSE(second_resumed);
    CHECK(log == Log{"spawned after cancel", "waited"});
    CHECK(elapsed(clock, start) == 2s);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> wait_from_child(TaskGroup& group, std::string& error) {
    try {
        co_await group.wait();
    } catch (const std::logic_error& e) {
        error = e.what();
    }
}

Task<> parent_with_waiting_child(std::string& error) {
    TaskGroup group;
    co_await group.spawn(wait_from_child(group, error));
    co_await group.wait();
}

TEST_CASE("task_group: only the parent may wait, a child that tries gets std::logic_error",
          "[task_group]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::string error;
    kernel.run_until_complete(parent_with_waiting_child(error));
    CHECK_FALSE(error.empty());
    require_empty(kernel);
}

Task<> spawn_sibling(TaskGroup& group, Log& log) {
    co_await Sleep{1s};
    co_await group.spawn(log_after(2s, log, "sibling"));
    log.push_back("spawner");
}

Task<> parent_of_spawner(Log& log) {
    TaskGroup group;
    co_await group.spawn(spawn_sibling(group, log));
    co_await group.wait();
    log.push_back("waited");
}

TEST_CASE("task_group: children may spawn siblings, wait waits for those too", "[task_group]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    const auto start = clock.now();
    kernel.run_until_complete(parent_of_spawner(log));
    CHECK(log == Log{"spawner", "sibling", "waited"});
    CHECK(elapsed(clock, start) == 3s);
    require_empty(kernel);
}

Task<> parent_publishing_group(TaskGroup*& published, Log& log) {
    TaskGroup group;
    published = &group;
    co_await group.spawn(log_after(1s, log, "child"));
    co_await group.wait();
    published = nullptr;
    log.push_back("waited");
}

Task<> late_spawner(TaskGroup*& published, Log& log) {
    co_await corio::Yield{}; // arm the timer after the child's: it fires just after the child ends
    co_await Sleep{1s};
    CHECK(published != nullptr);
    if (published == nullptr) {
        co_return;
    }
    co_await published->spawn(log_after(1s, log, "late child"));
}

TEST_CASE(
    "task_group: wait does not return while a child spawned after the last one ended is alive",
    "[task_group]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    TaskGroup* published = nullptr;
    Log log;
    const auto start = clock.now();
    kernel.add_task(parent_publishing_group(published, log));
    kernel.add_task(late_spawner(published, log));
    kernel.run();
    CHECK(log == Log{"child", "late child", "waited"});
    CHECK(elapsed(clock, start) == 2s);
    require_empty(kernel);
}

Task<> kill_my_parent(const TaskId& parent, bool& after_kill, bool& after_sleep) {
    co_await KillTask{parent};
    after_kill = true; // the group is gone, but this task is running: it dies when it suspends
    co_await Sleep{1s};
    after_sleep = true;
}

Task<> parent_killed_by_its_child(TaskId& me, bool& after_kill, bool& after_sleep,
                                  bool& sibling_resumed) {
    me = co_await corio::GetTid{};
    TaskGroup group;
    co_await group.spawn(sleep_holding(long_sleep, Counted(1), sibling_resumed));
    co_await group.spawn(kill_my_parent(me, after_kill, after_sleep));
    co_await group.wait();
}

TEST_CASE("task_group: a child that kills its parent dies at its next suspension, and its siblings "
          "at once",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    TaskId parent;
    bool after_kill = false;
    bool after_sleep = false;
    bool sibling_resumed = false;
    kernel.add_task(parent_killed_by_its_child(parent, after_kill, after_sleep, sibling_resumed));
    kernel.run();
    CHECK(after_kill);
    CHECK_FALSE(after_sleep);
    CHECK_FALSE(sibling_resumed);
    CHECK(Counted::alive() == 0);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> stop_after(Scheduler& kernel, Scheduler::Clock::duration delay) {
    co_await Sleep{delay};
    kernel.stop();
}

TEST_CASE("task_group: destroying the Scheduler destroys the parent, the group and every child",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    bool first_resumed = false;
    bool second_resumed = false;
    {
        Scheduler kernel(clock);
        TaskId parent;
        std::vector<TaskId> children;
        kernel.add_task(wait_for_sleepers(parent, children, first_resumed, second_resumed));
        kernel.add_task(stop_after(kernel, 1s));
        kernel.run();
        CHECK(kernel.task_count() == 3);
    }
    CHECK(Counted::alive() == 0);
    CHECK_FALSE(first_resumed);
    CHECK_FALSE(second_resumed);
}

Task<> wait_with_deadline(bool& timed_out, std::size_t& size_after_timeout, Log& log) {
    TaskGroup group;
    co_await group.spawn(log_after(3s, log, "child"));
    try {
        co_await corio::timeout_after(1s, group.wait());
    } catch (const corio::TimeoutError&) {
        timed_out = true;
        size_after_timeout = group.size();
    }
    co_await group.wait(); // the child kept running: wait again
    log.push_back("waited");
}

TEST_CASE("task_group: a deadline on wait throws TimeoutError and leaves the children running",
          "[task_group]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    bool timed_out = false;
    std::size_t size_after_timeout = 0;
    Log log;
    const auto start = clock.now();
    kernel.run_until_complete(wait_with_deadline(timed_out, size_after_timeout, log));
    CHECK(timed_out);
    CHECK(size_after_timeout == 1);
    CHECK(log == Log{"child", "waited"});
    CHECK(elapsed(clock, start) == 3s);
    require_empty(kernel);
}

Task<> deadline_then_leave(bool& timed_out, bool& resumed, long& alive_after_scope) {
    {
        TaskGroup group;
        co_await group.spawn(sleep_holding(long_sleep, Counted(1), resumed));
        try {
            co_await corio::timeout_after(1s, group.wait());
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
    }
    alive_after_scope = Counted::alive();
}

TEST_CASE("task_group: leaving the scope after a timed-out wait kills the children",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    bool timed_out = false;
    bool resumed = false;
    long alive_after_scope = -1;
    kernel.run_until_complete(deadline_then_leave(timed_out, resumed, alive_after_scope));
    CHECK(timed_out);
    CHECK_FALSE(resumed);
    CHECK(alive_after_scope == 0);
    require_empty(kernel);
}

Task<> yield_and_count(int& finished) {
    co_await corio::Yield{};
    co_await corio::Yield{};
    ++finished;
}

Task<> spawn_many(int count, long& frames_added, int& finished, std::size_t& size_after_spawn) {
    TaskGroup group;
    const long before = live_frames();
    for (int i = 0; i < count; ++i) {
        co_await group.spawn(yield_and_count(finished));
    }
    frames_added = live_frames() - before;
    size_after_spawn = group.size();
    co_await group.wait();
}

TEST_CASE("task_group: many children, each costs its own frame and one supervisor frame",
          "[task_group]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    constexpr int count = 10000;
    long frames_added = 0;
    int finished = 0;
    std::size_t size_after_spawn = 0;
    kernel.run_until_complete(spawn_many(count, frames_added, finished, size_after_spawn));
    CHECK(frames_added == 2L * count);
    CHECK(size_after_spawn == static_cast<std::size_t>(count));
    CHECK(finished == count);
    require_empty(kernel);
}

Task<> spawn_sleepers_and_leave(int count, bool& resumed) {
    TaskGroup group;
    for (int i = 0; i < count; ++i) {
        co_await group.spawn(sleep_holding(long_sleep, Counted(i), resumed));
    }
    co_await Sleep{1s};
}

TEST_CASE("task_group: ten thousand children are killed when the scope is left", "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    bool resumed = false;
    kernel.run_until_complete(spawn_sleepers_and_leave(10000, resumed));
    CHECK(Counted::alive() == 0);
    CHECK_FALSE(resumed);
    require_empty(kernel);
}

Task<> spawn_into(TaskGroup& group, Task<> task) {
    co_await group.spawn(std::move(task));
}

TEST_CASE("task_group: spawn rejects an empty Task, and a task of another Scheduler",
          "[task_group]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock first_clock;
    VirtualClock second_clock;
    Scheduler first(first_clock);
    Scheduler second(second_clock);
    TaskGroup group; // destroyed before the Schedulers: it kills its child in `first`
    CHECK_THROWS_AS(first.run_until_complete(spawn_into(group, Task<>{})), std::invalid_argument);
    bool resumed = false;
    first.run_until_complete(spawn_into(group, sleep_holding(long_sleep, Counted(1), resumed)));
    CHECK(group.size() == 1);
    CHECK_THROWS_AS(
        second.run_until_complete(spawn_into(group, sleep_holding(1s, Counted(2), resumed))),
        std::logic_error);
    CHECK(group.size() == 1);
    CHECK(Counted::alive() == 1); // the refused task was destroyed unrun
    group.cancel();
    CHECK(group.size() == 0);
    CHECK(Counted::alive() == 0);
    CHECK_FALSE(resumed);
    require_empty(first);
    require_empty(second);
}

} // namespace
