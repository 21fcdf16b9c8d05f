// Tests for corio/scheduler.hpp: the task table, the ready queue, run()/stop()/run_until_complete,
// teardown of suspended tasks, kill, the report of unreceived exceptions, and the timers.
#include <algorithm>
#include <chrono>
#include <exception>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <utility>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>

#include <corio/sync/event.hpp>
#include <corio/sync/lock.hpp>
#include <corio/sync/queue.hpp>
#include <corio/sync/semaphore.hpp>

#include "support/catch.hpp"
#include "support/counted.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using Clock = std::chrono::steady_clock;

bool contains_text(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

/// Sleeps until a given time point (Sleep only takes durations): lets tests arm equal deadlines.
struct SleepUntil {
    explicit SleepUntil(Clock::time_point when) noexcept : deadline(when) {}
    Clock::time_point deadline;
    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        kernel.sleep_until(deadline);
        return true;
    }
    void result() const noexcept {}
};

Task<> record(std::vector<int>& log, int value) {
    log.push_back(value);
    co_return;
}

Task<> record_rounds(std::vector<int>& log, int value, int rounds) {
    for (int round = 0; round < rounds; ++round) {
        log.push_back(value);
        co_await corio::Yield{};
    }
}

template <class Duration>
Task<> hold_while_sleeping(Counted held, Duration length, bool& woke) {
    co_await corio::Sleep{length};
    woke = held.value() != Counted::destroyed;
}

Task<int> fail_with(std::string message) {
    throw TestError(message);
    co_return 0; // NOLINT: makes this a coroutine that throws from its body
}

} // namespace

// ---- the task table -----------------------------------------------------------------------------

TEST_CASE("Scheduler::add_task gives distinct ids in serial order and never reuses one",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    CHECK_FALSE(TaskId{});
    CHECK_FALSE(kernel.contains(TaskId{}));

    const TaskId a = kernel.add_task(nothing());
    const TaskId b = kernel.add_task(nothing());
    const TaskId c = kernel.add_task(nothing());
    CHECK(a);
    CHECK(b);
    CHECK(c);
    CHECK(a.serial() == 1); // serial numbers start at 1
    CHECK(a != b);
    CHECK(b != c);
    CHECK(a != c);
    CHECK(a < b);
    CHECK(b < c);
    CHECK(kernel.task_count() == 3);
    CHECK(kernel.contains(a));
    CHECK(kernel.contains(b));
    CHECK(kernel.contains(c));

    kernel.run();
    CHECK(kernel.task_count() == 0);
    CHECK_FALSE(kernel.contains(a));

    // The freed slots are reused, the ids are not: a stale id names no task.
    const TaskId d = kernel.add_task(nothing());
    CHECK(d.serial() == 4);
    CHECK(d != a);
    CHECK(d != b);
    CHECK(d != c);
    CHECK_FALSE(kernel.contains(a));
    CHECK_FALSE(kernel.contains(b));
    CHECK_FALSE(kernel.contains(c));
    CHECK_FALSE(kernel.kill(a));
    CHECK_FALSE(kernel.kill(b));
    CHECK_FALSE(kernel.kill(c));
    CHECK(kernel.contains(d)); // killing stale ids did not touch the task in their slot
    CHECK(kernel.task_count() == 1);
    kernel.run();
    require_empty(kernel);
}

namespace {
Task<> run_child_and_keep_it(Task<>& out) {
    Task<> child = nothing();
    co_await child;
    out = std::move(child);
}
} // namespace

TEST_CASE("Scheduler::add_task rejects an empty Task and one that has already run", "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    CHECK_THROWS_AS(kernel.add_task(Task<>{}), std::invalid_argument);

    Task<> finished;
    kernel.run_until_complete(run_child_and_keep_it(finished));
    REQUIRE(finished.done());
    CHECK_THROWS_AS(kernel.add_task(std::move(finished)), std::invalid_argument);
    CHECK(kernel.task_count() == 0);
    require_empty(kernel);
}

// ---- the ready queue ----------------------------------------------------------------------------

TEST_CASE("Ready tasks run in FIFO order, pass after pass", "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<int> log;
    for (int i = 1; i <= 5; ++i) {
        kernel.add_task(record(log, i));
    }
    kernel.run();
    CHECK(log == std::vector<int>{1, 2, 3, 4, 5});

    log.clear();
    kernel.add_task(record_rounds(log, 1, 3));
    kernel.add_task(record_rounds(log, 2, 3));
    kernel.add_task(record_rounds(log, 3, 3));
    kernel.run();
    CHECK(log == std::vector<int>{1, 2, 3, 1, 2, 3, 1, 2, 3});
    require_empty(kernel);
}

TEST_CASE("Scheduler::run returns when no task is left, at once if there was none", "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    kernel.run(); // nothing to do
    std::vector<int> log;
    bool woke = false;
    kernel.add_task(record_rounds(log, 1, 4));
    kernel.add_task(hold_while_sleeping(Counted(1), 5ms, woke));
    kernel.run();
    CHECK(log.size() == 4);
    CHECK(woke);
    CHECK(kernel.task_count() == 0);
    kernel.run(); // and again
    require_empty(kernel);
}

// ---- stop ---------------------------------------------------------------------------------------

namespace {
Task<> stop_then_continue(Scheduler& kernel, int& stage) {
    stage = 1;
    kernel.stop();
    co_await corio::Yield{};
    stage = 2;
}
} // namespace

TEST_CASE("Scheduler::stop from a task makes run return after the pass, run continues later",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    {
        Scheduler kernel;
        int stage = 0;
        bool woke = false;
        std::vector<int> log;
        kernel.add_task(stop_then_continue(kernel, stage));
        kernel.add_task(record(log, 1)); // same pass, after stop(): still runs
        const TaskId sleeper = kernel.add_task(hold_while_sleeping(Counted(1), 10s, woke));

        const auto start = Clock::now();
        kernel.run();
        CHECK(Clock::now() - start < 5s); // did not wait for the sleeper
        CHECK(stage == 1);
        CHECK(log == std::vector<int>{1});
        CHECK(kernel.task_count() == 2);
        CHECK(kernel.stats().timers == 1);
        CHECK(kernel.stats().ready == 1);

        CHECK(kernel.kill(sleeper));
        CHECK(Counted::alive() == 0);
        kernel.run(); // stop() does not carry over: this run goes to the end
        CHECK(stage == 2);
        CHECK_FALSE(woke);
        require_empty(kernel);
    }
}

// ---- run_until_complete and corio::run ----------------------------------------------------------

namespace {
Task<> kill_task(TaskId victim) {
    co_await corio::KillTask{victim};
}

Task<int> get_killed_while_sleeping(Counted held) {
    const TaskId me = co_await corio::GetTid{};
    co_await corio::NewTask{kill_task(me)};
    co_await corio::Sleep{10s};
    co_return held.value();
}

Task<int> stop_before_returning(Scheduler& kernel, Counted held) {
    kernel.stop();
    co_await corio::Yield{};
    co_return held.value();
}
} // namespace

TEST_CASE("Scheduler::run_until_complete gives the value or rethrows the exception",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    CHECK(kernel.run_until_complete(identity(17)) == 17);
    CHECK_THROWS_AS(kernel.run_until_complete(fail_with("from the task")), TestError);
    try {
        kernel.run_until_complete(fail_with("message kept"));
    } catch (const TestError& error) {
        CHECK(std::string(error.what()) == "message kept");
    }
    require_empty(kernel);
}

TEST_CASE("Scheduler::run_until_complete leaves other tasks in the Scheduler", "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    bool woke = false;
    const TaskId other = kernel.add_task(hold_while_sleeping(Counted(2), 20ms, woke));
    CHECK(kernel.run_until_complete(identity(5)) == 5);
    CHECK(kernel.contains(other));
    CHECK_FALSE(woke);
    kernel.run();
    CHECK(woke);
    require_empty(kernel);
}

TEST_CASE("Scheduler::run_until_complete throws std::runtime_error when the task is killed",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    {
        Scheduler kernel;
        const auto start = Clock::now();
        try {
            (void)kernel.run_until_complete(get_killed_while_sleeping(Counted(1)));
            FAIL("run_until_complete returned a value for a killed task");
        } catch (const std::runtime_error& error) {
            CHECK(contains_text(error.what(), "killed"));
        }
        CHECK(Clock::now() - start < 5s);
        CHECK(Counted::alive() == 0);
        require_empty(kernel);
    }
}

TEST_CASE("Scheduler::run_until_complete throws std::runtime_error and kills the task when the "
          "loop is stopped first",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    {
        Scheduler kernel;
        try {
            (void)kernel.run_until_complete(stop_before_returning(kernel, Counted(1)));
            FAIL("run_until_complete returned a value for a task that did not complete");
        } catch (const std::runtime_error& error) {
            CHECK(contains_text(error.what(), "stopped"));
        }
        CHECK(Counted::alive() == 0); // the task refers to run_until_complete's frame: it is gone
        CHECK(kernel.task_count() == 0);
        require_empty(kernel);
    }
}

namespace {
Task<int> park_then_return(Counted held) {
    co_await Park{};
    co_return held.value();
}
} // namespace

TEST_CASE("Scheduler::run_until_complete throws std::runtime_error, without hanging, when "
          "nothing can ever wake the task",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Scheduler kernel;
    const auto start = Clock::now();
    CHECK_THROWS_AS(kernel.run_until_complete(park_then_return(Counted(1))), std::runtime_error);
    CHECK(Clock::now() - start < 5s);
    CHECK(Counted::alive() == 0);
    require_empty(kernel);
}

namespace {
Task<int> spawn_sleeper_then_return(int value, bool& sleeper_woke) {
    co_await corio::NewTask{hold_while_sleeping(Counted(3), 10s, sleeper_woke)};
    co_await corio::Yield{}; // the sleeper starts sleeping
    co_return value;
}

Task<std::unique_ptr<int>> make_unique_later(int value) {
    co_await corio::Yield{};
    co_return std::make_unique<int>(value);
}
} // namespace

TEST_CASE("corio::run gives the value, rethrows, and destroys the tasks left behind",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    const long frames_before = live_frames();
    bool sleeper_woke = false;
    const auto start = Clock::now();
    CHECK(corio::run(spawn_sleeper_then_return(9, sleeper_woke)) == 9);
    CHECK(Clock::now() - start < 5s); // did not wait for the sleeper
    CHECK_FALSE(sleeper_woke);
    CHECK(Counted::alive() == 0);
    CHECK(live_frames() == frames_before);

    auto pointer = corio::run(make_unique_later(4));
    REQUIRE(pointer != nullptr);
    CHECK(*pointer == 4);
    CHECK_THROWS_AS(corio::run(fail_with("corio::run")), TestError);
}

// ---- fairness -----------------------------------------------------------------------------------

namespace {
Task<> yield_until(const bool& flag, int& yields, int limit) {
    while (!flag && yields < limit) {
        ++yields;
        co_await corio::Yield{};
    }
}

Task<> read_one_byte(int fd, bool& got, char& byte) {
    co_await corio::ReadWait{fd};
    got = ::read(fd, &byte, 1) == 1;
}

Task<> write_after_yields(int fd, int yields) {
    for (int i = 0; i < yields; ++i) {
        co_await corio::Yield{};
    }
    corio::test::write_all(fd, "x", 1);
}
} // namespace

TEST_CASE("A task that yields in a loop does not starve a task waiting on an fd", "[scheduler]") {
    FrameLeakCheck leaks;
    auto pair = corio::test::socket_pair();
    Scheduler kernel;
    bool got = false;
    char byte = 0;
    int yields = 0;
    constexpr int limit = 100000;
    const TaskId yielder = kernel.add_task(yield_until(got, yields, limit));
    const TaskId reader = kernel.add_task(read_one_byte(pair.first.get(), got, byte));
    const TaskId writer = kernel.add_task(write_after_yields(pair.second.get(), 3));
    REQUIRE(corio::test::run_until_ended(kernel, {yielder, reader, writer}));
    CHECK(got);
    CHECK(byte == 'x');
    // While tasks stay ready, readiness is looked at every poll_interval resumptions: the reader
    // ran within about that many yields of the write (two tasks share the passes).
    CHECK(yields <= 2 * static_cast<int>(Scheduler::poll_interval) + 10);
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

// ---- teardown -----------------------------------------------------------------------------------

namespace {
Task<> wait_readable(Counted held, int fd) {
    co_await corio::ReadWait{fd};
    CHECK(held.value() == 1); // not reached: nobody writes
}

Task<> wait_for_task(Counted held, const TaskId& target, corio::TaskExit& exit) {
    exit = co_await corio::WaitTask{target};
    (void)held;
}

Task<> park_forever(Counted held, bool& resumed) {
    co_await Park{};
    resumed = held.value() != Counted::destroyed;
}

Task<int> sleeping_child(Counted held) {
    co_await corio::Sleep{1h};
    co_return held.value();
}

Task<> await_sleeping_child(Counted held, bool& resumed) {
    const int value = co_await sleeping_child(Counted(6));
    resumed = value + held.value() > 0;
}

Task<> yield_forever(Counted held, int& rounds) {
    while (rounds < 1000000) {
        ++rounds;
        co_await corio::Yield{};
    }
    (void)held;
}
} // namespace

TEST_CASE("Destroying a Scheduler destroys the frames of tasks suspended on anything",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    const long frames_before = live_frames();
    auto pair = corio::test::socket_pair(); // outlives the Scheduler
    bool woke = false;
    bool parked_resumed = false;
    bool child_resumed = false;
    int rounds = 0;
    TaskId sleeper;
    corio::TaskExit exit;
    exit.outcome = corio::TaskExit::Outcome::completed; // to see that nobody writes it
    {
        Scheduler kernel;
        kernel.add_task(wait_readable(Counted(1), pair.first.get()));
        sleeper = kernel.add_task(hold_while_sleeping(Counted(2), 1h, woke));
        kernel.add_task(wait_for_task(Counted(3), sleeper, exit));
        kernel.add_task(park_forever(Counted(4), parked_resumed));
        kernel.add_task(await_sleeping_child(Counted(5), child_resumed));
        kernel.add_task(yield_forever(Counted(7), rounds));
        kernel.add_task(stop_now(kernel));
        kernel.run();

        const auto stats = kernel.stats();
        CHECK(stats.tasks == 6);
        CHECK(stats.waiting_on_fds == 1);
        CHECK(stats.timers == 2);
        CHECK(stats.ready == 1);
        CHECK(stats.watched_fds == 1);
        // Six tasks; one awaits a child, and the temporary argument of that child's call lives
        // in the parent's frame until the co_await ends.
        CHECK(Counted::alive() == 8);
        // Six root frames at least (Clang may allocate the child's frame inside its parent's).
        CHECK(live_frames() >= frames_before + 6);
    }
    CHECK(Counted::alive() == 0);
    CHECK(live_frames() == frames_before);
    CHECK_FALSE(woke);
    CHECK_FALSE(parked_resumed);
    CHECK_FALSE(child_resumed);
    CHECK(rounds == 1);
    CHECK(exit.outcome == corio::TaskExit::Outcome::completed); // the waiter never resumed
}

namespace {
// Kills a task and spawns another when destroyed, as a task's RAII member might.
class OnDestroy {
public:
    OnDestroy(Scheduler& kernel, const TaskId& victim, bool& kill_result, bool& spawned_woke)
        : kernel_(&kernel), victim_(&victim), kill_result_(&kill_result),
          spawned_woke_(&spawned_woke) {}
    OnDestroy(const OnDestroy&) = delete;
    OnDestroy& operator=(const OnDestroy&) = delete;
    ~OnDestroy() {
        *kill_result_ = kernel_->kill(*victim_);
        kernel_->add_task(hold_while_sleeping(Counted(3), 1h, *spawned_woke_));
    }

private:
    Scheduler* kernel_;
    const TaskId* victim_;
    bool* kill_result_;
    bool* spawned_woke_;
};

Task<> with_on_destroy(Scheduler& kernel, const TaskId& victim, bool& kill_result,
                       bool& spawned_woke) {
    OnDestroy guard(kernel, victim, kill_result, spawned_woke);
    co_await Park{};
}
} // namespace

TEST_CASE("Destroying a Scheduler copes with destructors that kill and spawn tasks",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    bool victim_woke = false;
    bool spawned_woke = false;
    bool kill_result = false;
    TaskId victim;
    {
        Scheduler kernel;
        // The victim is the older task: the newer one (whose destructor kills it) dies first.
        victim = kernel.add_task(hold_while_sleeping(Counted(1), 1h, victim_woke));
        kernel.add_task(with_on_destroy(kernel, victim, kill_result, spawned_woke));
        kernel.add_task(stop_now(kernel));
        kernel.run();
        CHECK(kernel.task_count() == 2);
        CHECK(Counted::alive() == 1);
    }
    CHECK(kill_result);                       // the victim was still alive when the destructor ran
    CHECK(Counted::value_constructions == 2); // the spawned task was created ...
    CHECK(Counted::alive() == 0);             // ... and destroyed with the rest
    CHECK_FALSE(victim_woke);
    CHECK_FALSE(spawned_woke);
}

namespace {
struct TwoIds {
    TaskId first;
    TaskId second;
};

Task<> wait_for_each_other(Counted held, const TaskId& other, corio::TaskExit& exit) {
    exit = co_await corio::WaitTask{other};
    (void)held;
}
} // namespace

TEST_CASE("Scheduler::run returns when the tasks left wait for each other", "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    {
        Scheduler kernel;
        TwoIds ids;
        corio::TaskExit first_exit;
        corio::TaskExit second_exit;
        first_exit.outcome = second_exit.outcome = corio::TaskExit::Outcome::completed;
        ids.first = kernel.add_task(wait_for_each_other(Counted(1), ids.second, first_exit));
        ids.second = kernel.add_task(wait_for_each_other(Counted(2), ids.first, second_exit));
        const auto start = Clock::now();
        kernel.run();
        CHECK(Clock::now() - start < 5s);
        CHECK(kernel.task_count() == 2);
        CHECK(kernel.contains(ids.first));
        CHECK(kernel.contains(ids.second));
        CHECK(kernel.stats().ready == 0);
        CHECK(kernel.stats().timers == 0);
        CHECK(kernel.stats().waiting_on_fds == 0);
        kernel.run(); // and again, at once
        CHECK(kernel.task_count() == 2);
    } // both destroyed with the Scheduler
    CHECK(Counted::alive() == 0);
}

TEST_CASE("Scheduler::run returns when the only task left is parked", "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    bool resumed = false;
    {
        Scheduler kernel;
        std::vector<int> log;
        const TaskId parked = kernel.add_task(park_forever(Counted(1), resumed));
        kernel.add_task(record_rounds(log, 1, 3));
        kernel.run();
        CHECK(log.size() == 3);
        CHECK(kernel.task_count() == 1);
        CHECK(kernel.contains(parked));
        CHECK(kernel.stats().ready == 0);
        CHECK(Counted::alive() == 1);
    }
    CHECK_FALSE(resumed);
    CHECK(Counted::alive() == 0);
}

// ---- introspection ------------------------------------------------------------------------------

namespace {
struct Observed {
    std::vector<TaskId> current;
    std::vector<TaskId> from_get_tid;
    std::vector<std::size_t> counts;
    std::vector<bool> contains_self;
};

Task<TaskId> current_from_child(Scheduler& kernel) {
    co_await corio::Yield{};
    co_return kernel.current_task();
}

Task<> observe(Scheduler& kernel, Observed& out, int rounds) {
    for (int round = 0; round < rounds; ++round) {
        out.current.push_back(kernel.current_task());
        out.from_get_tid.push_back(co_await corio::GetTid{});
        out.counts.push_back(kernel.task_count());
        out.contains_self.push_back(kernel.contains(kernel.current_task()));
        out.current.push_back(co_await current_from_child(kernel));
    }
}
} // namespace

TEST_CASE("Scheduler::task_count, contains and current_task describe the running tasks",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    CHECK_FALSE(kernel.current_task());
    Observed a;
    Observed b;
    const TaskId id_a = kernel.add_task(observe(kernel, a, 1));
    const TaskId id_b = kernel.add_task(observe(kernel, b, 3));
    kernel.run();
    CHECK_FALSE(kernel.current_task());

    CHECK(a.current == std::vector<TaskId>{id_a, id_a});
    CHECK(a.from_get_tid == std::vector<TaskId>{id_a});
    CHECK(b.current == std::vector<TaskId>(6, id_b));
    CHECK(b.from_get_tid == std::vector<TaskId>(3, id_b));
    // a ends in the second pass, b goes on alone.
    CHECK(a.counts == std::vector<std::size_t>{2});
    CHECK(b.counts == std::vector<std::size_t>{2, 1, 1});
    CHECK(std::all_of(a.contains_self.begin(), a.contains_self.end(), [](bool x) { return x; }));
    CHECK(b.contains_self == std::vector<bool>{true, true, true});
    require_empty(kernel);
}

// ---- kill ---------------------------------------------------------------------------------------

namespace {
Task<> kill_from_inside(Scheduler& kernel, const TaskId& victim, std::vector<std::size_t>& ready,
                        bool& killed) {
    ready.push_back(kernel.stats().ready);
    killed = kernel.kill(victim);
    ready.push_back(kernel.stats().ready);
    co_return;
}

Task<> must_not_run(Counted held, bool& ran) {
    ran = held.value() != Counted::destroyed;
    co_return;
}
} // namespace

TEST_CASE("Scheduler::kill of a ready task removes it from the ready queue unrun", "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Scheduler kernel;
    std::vector<std::size_t> ready;
    bool killed = false;
    bool ran = false;
    TaskId victim;
    kernel.add_task(kill_from_inside(kernel, victim, ready, killed));
    victim = kernel.add_task(must_not_run(Counted(1), ran));
    kernel.run();
    CHECK(killed);
    CHECK_FALSE(ran);
    CHECK(ready == std::vector<std::size_t>{1, 0});
    CHECK(Counted::alive() == 0);
    CHECK_FALSE(kernel.kill(victim));
    require_empty(kernel);
}

TEST_CASE("Scheduler::kill from outside the loop ends ready, sleeping and fd-waiting tasks",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    auto pair = corio::test::socket_pair();
    Scheduler kernel;
    bool ran = false;
    bool woke = false;
    const TaskId never_run = kernel.add_task(must_not_run(Counted(1), ran));
    CHECK(kernel.kill(never_run));
    CHECK_FALSE(kernel.kill(never_run));
    CHECK_FALSE(ran);
    CHECK(Counted::alive() == 0);
    CHECK(kernel.task_count() == 0);
    CHECK(kernel.stats().ready == 0);

    const TaskId sleeper = kernel.add_task(hold_while_sleeping(Counted(2), 1h, woke));
    const TaskId reader = kernel.add_task(wait_readable(Counted(3), pair.first.get()));
    kernel.add_task(stop_now(kernel));
    kernel.run();
    CHECK(kernel.stats().timers == 1);
    CHECK(kernel.stats().waiting_on_fds == 1);

    CHECK(kernel.kill(sleeper));
    CHECK(kernel.stats().timers == 0);
    CHECK(kernel.kill(reader));
    CHECK(kernel.stats().waiting_on_fds == 0);
    CHECK(Counted::alive() == 0);
    CHECK(kernel.task_count() == 0);
    kernel.run(); // nothing left: returns at once
    CHECK_FALSE(woke);
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

// ---- unreceived exceptions ----------------------------------------------------------------------

namespace {
struct Report {
    TaskId id;
    std::string what;
};

// Every failure the kernel reports lands in `reports`, with the failed task's id.
void collect_reports(Scheduler& kernel, std::vector<Report>& reports) {
    kernel.set_exception_handler([&reports](TaskId id, std::exception_ptr error) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            reports.push_back({id, e.what()});
        } catch (const int& value) {
            reports.push_back({id, "int " + std::to_string(value)});
        }
    });
}

Task<> throw_after_yield(std::string message) {
    co_await corio::Yield{};
    throw TestError(message);
}

Task<> throw_after_yields(std::string message, int yields) {
    for (int i = 0; i < yields; ++i) {
        co_await corio::Yield{};
    }
    throw TestError(message);
}

Task<> throw_non_standard() {
    throw 42;
    co_return; // NOLINT
}
} // namespace

TEST_CASE("An exception nobody waited for reaches the exception handler, the loop goes on",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<Report> reports;
    collect_reports(kernel, reports);
    std::vector<int> log;
    const TaskId thrower = kernel.add_task(throw_after_yield("unawaited failure"));
    kernel.add_task(record_rounds(log, 1, 5));
    const TaskId odd = kernel.add_task(throw_non_standard());
    kernel.run();
    REQUIRE(reports.size() == 2);
    CHECK(reports[0].id == odd); // failed in the first pass
    CHECK(reports[0].what == "int 42");
    CHECK(reports[1].id == thrower);
    CHECK(reports[1].what == "unawaited failure");
    CHECK(log.size() == 5); // the other task ran to its end
    require_empty(kernel);
}

TEST_CASE("An exception handler that throws does not stop the loop", "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    int calls = 0;
    kernel.set_exception_handler([&calls](TaskId, std::exception_ptr) {
        ++calls;
        throw std::runtime_error("the handler failed too");
    });
    std::vector<int> log;
    kernel.add_task(throw_after_yield("first"));
    kernel.add_task(record_rounds(log, 1, 4));
    kernel.add_task(throw_after_yield("second"));
    CHECK_NOTHROW(kernel.run());
    CHECK(calls == 2);
    CHECK(log.size() == 4);
    require_empty(kernel);
}

namespace {
class CaptureCerr {
public:
    CaptureCerr() : saved_(std::cerr.rdbuf(captured_.rdbuf())) {}
    CaptureCerr(const CaptureCerr&) = delete;
    CaptureCerr& operator=(const CaptureCerr&) = delete;
    ~CaptureCerr() { std::cerr.rdbuf(saved_); }
    [[nodiscard]] std::string text() const { return captured_.str(); }

private:
    std::ostringstream captured_;
    std::streambuf* saved_;
};
} // namespace

TEST_CASE("The default exception report is a line on std::cerr with the task id and what()",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    // Some tasks first, so that the failing task's id has two digits.
    for (int i = 0; i < 11; ++i) {
        kernel.add_task(nothing());
    }
    const TaskId thrower = kernel.add_task(throw_after_yield("distinctive-message-17"));
    const TaskId odd = kernel.add_task(throw_non_standard());
    REQUIRE(thrower.serial() == 12);
    std::string text;
    {
        CaptureCerr capture;
        kernel.run();
        text = capture.text();
    }
    CAPTURE(text);
    CHECK(contains_text(text, "distinctive-message-17"));
    CHECK(contains_text(text, "task 12 "));
    CHECK(contains_text(text, "task " + std::to_string(odd.serial()) + " "));
    CHECK(std::count(text.begin(), text.end(), '\n') == 2); // one line per failure
    require_empty(kernel);
}

namespace {
Task<> wait_for_exit(TaskId target, Log& log) {
    const corio::TaskExit exit = co_await corio::WaitTask{target};
    log.push_back(exit.failed() ? "waiter received the failure" : "waiter saw another end");
}

Task<> kill_soon(TaskId victim) {
    co_await corio::Yield{};
    co_await corio::KillTask{victim};
}
} // namespace

TEST_CASE("A failure whose only waiter was killed first is reported, not dropped", "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<Report> reports;
    collect_reports(kernel, reports);
    Log log;
    SECTION("the waiter is killed before the failure: reported") {
        const TaskId thrower = kernel.add_task(throw_after_yields("late failure", 3));
        const TaskId waiter = kernel.add_task(wait_for_exit(thrower, log));
        kernel.add_task(kill_soon(waiter));
        kernel.run();
        CHECK(log.empty());
        REQUIRE(reports.size() == 1);
        CHECK(reports[0].id == thrower);
        CHECK(reports[0].what == "late failure");
    }
    SECTION("the waiter is alive when it fails: received, not reported") {
        const TaskId thrower = kernel.add_task(throw_after_yields("late failure", 3));
        kernel.add_task(wait_for_exit(thrower, log));
        kernel.run();
        CHECK(log == Log{"waiter received the failure"});
        CHECK(reports.empty());
    }
    require_empty(kernel);
}

// ---- re-entrance --------------------------------------------------------------------------------

namespace {
Task<> try_to_reenter(Scheduler& kernel, std::vector<std::string>& log) {
    try {
        kernel.run();
        log.emplace_back("run returned");
    } catch (const std::logic_error&) {
        log.emplace_back("run threw");
    }
    try {
        (void)kernel.run_until_complete(identity(1));
        log.emplace_back("run_until_complete returned");
    } catch (const std::logic_error&) {
        log.emplace_back("run_until_complete threw");
    }
    co_await corio::Yield{};
    log.emplace_back("still running");
}
} // namespace

TEST_CASE("Scheduler::run is not re-entrant: calling it from a task throws std::logic_error",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<std::string> log;
    std::vector<int> others;
    kernel.add_task(try_to_reenter(kernel, log));
    kernel.add_task(record_rounds(others, 1, 3));
    kernel.run();
    CHECK(log ==
          std::vector<std::string>{"run threw", "run_until_complete threw", "still running"});
    CHECK(others.size() == 3);
    CHECK(kernel.run_until_complete(identity(3)) == 3); // usable again afterwards
    require_empty(kernel);
}

// ---- timers -------------------------------------------------------------------------------------

namespace {
Task<> sleep_and_record(std::chrono::milliseconds length, std::vector<int>& log) {
    co_await corio::Sleep{length};
    log.push_back(static_cast<int>(length.count()));
}

Task<> sleep_until_and_record(Clock::time_point deadline, int marker, std::vector<int>& log) {
    co_await SleepUntil{deadline};
    log.push_back(marker);
}
} // namespace

TEST_CASE("Sleeping tasks wake in deadline order", "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<int> log;
    kernel.add_task(sleep_and_record(30ms, log));
    kernel.add_task(sleep_and_record(10ms, log));
    kernel.add_task(sleep_and_record(20ms, log));
    kernel.run();
    CHECK(log == std::vector<int>{10, 20, 30});
    require_empty(kernel);
}

TEST_CASE("Timers with equal deadlines fire in the order they were armed", "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<int> log;
    const auto base = Clock::now() + 5ms;
    std::vector<int> expected;
    for (int group = 0; group < 3; ++group) {
        for (int i = 0; i < 12; ++i) {
            if (i % 3 == group) {
                expected.push_back(i);
            }
        }
    }
    for (int i = 0; i < 12; ++i) {
        kernel.add_task(sleep_until_and_record(base + (i % 3) * 1ms, i, log));
    }
    kernel.run();
    CHECK(log == expected);
    CHECK(Clock::now() >= base + 2ms);
    require_empty(kernel);
}

namespace {
Task<> measure_sleeps(std::vector<Clock::duration>& elapsed, std::vector<Clock::duration> lengths) {
    for (const auto length : lengths) {
        const auto start = Clock::now();
        co_await corio::Sleep{length};
        elapsed.push_back(Clock::now() - start);
    }
}
} // namespace

TEST_CASE("Sleep lasts at least its duration, including sub-millisecond parts", "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    const std::vector<Clock::duration> lengths{25ms, 1500us, 999us, 1ms, 2500us, 3ms, 1us};
    std::vector<Clock::duration> elapsed;
    const auto start = Clock::now();
    kernel.add_task(measure_sleeps(elapsed, lengths));
    kernel.run();
    REQUIRE(elapsed.size() == lengths.size());
    Clock::duration total{};
    for (std::size_t i = 0; i < lengths.size(); ++i) {
        CAPTURE(i);
        CHECK(elapsed[i] >= lengths[i]);
        total += lengths[i];
    }
    CHECK(Clock::now() - start >= total);
    CHECK(Clock::now() - start < 30s);
    require_empty(kernel);
}

// ---- teardown order, primitives destroyed with waiters, destructors that throw (issue 10) --------

namespace {
// Each child waits on a primitive in its parent's frame; it logs how the wait ended, and logs its
// own destruction.
Task<> wait_on_event(corio::Event& event, Log& log) {
    Noted noted(log, "event waiter");
    try {
        co_await event.wait();
        log.emplace_back("event waiter woke");
    } catch (const std::logic_error&) {
        log.emplace_back("event waiter: logic_error");
    }
}

Task<> get_from(corio::Queue<int>& queue, Log& log) {
    Noted noted(log, "getter");
    try {
        log.push_back("getter got " + std::to_string(co_await queue.get()));
    } catch (const std::logic_error&) {
        log.emplace_back("getter: logic_error");
    }
}

Task<> put_into(corio::Queue<int>& queue, Log& log) {
    Noted noted(log, "putter");
    try {
        co_await queue.put(2);
        log.emplace_back("putter put");
    } catch (const std::logic_error&) {
        log.emplace_back("putter: logic_error");
    }
}

Task<> acquire_lock(corio::Lock& lock, Log& log) {
    Noted noted(log, "lock waiter");
    try {
        const corio::Lock::Guard guard = co_await lock.acquire();
        log.emplace_back("lock waiter got the lock");
    } catch (const std::logic_error&) {
        log.emplace_back("lock waiter: logic_error");
    }
}

Task<> acquire_permit(corio::Semaphore& semaphore, Log& log) {
    Noted noted(log, "permit waiter");
    try {
        co_await semaphore.acquire();
        log.emplace_back("permit waiter got a permit");
    } catch (const std::logic_error&) {
        log.emplace_back("permit waiter: logic_error");
    }
}

// Owns an Event, two Queues, a Lock (held) and a Semaphore in its frame, spawns a child that waits
// on each, and sleeps.
Task<> parent_of_waiters(Log& log) {
    Noted noted(log, "parent");
    corio::Event event;
    corio::Queue<int> empty_queue;
    corio::Queue<int> full_queue(1);
    full_queue.try_put(1);
    corio::Lock lock;
    corio::Semaphore semaphore(0);
    const corio::Lock::Guard held = co_await lock.acquire();
    co_await corio::NewTask{wait_on_event(event, log)};
    co_await corio::NewTask{get_from(empty_queue, log)};
    co_await corio::NewTask{put_into(full_queue, log)};
    co_await corio::NewTask{acquire_lock(lock, log)};
    co_await corio::NewTask{acquire_permit(semaphore, log)};
    co_await corio::Sleep{1h};
}

Task<> kill_after_yields(Scheduler& kernel, const TaskId& victim, int yields) {
    co_await yield_times(yields);
    kernel.kill(victim);
}

Log sorted(Log log) {
    std::sort(log.begin(), log.end());
    return log;
}
} // namespace

TEST_CASE("Destroying a Scheduler kills children before parents: waiters on a parent's Event, "
          "Queue, Lock and Semaphore die first",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Log log;
    {
        Scheduler kernel;
        kernel.add_task(parent_of_waiters(log));
        kernel.run_until_complete(yield_times(3)); // every child waits now
        CHECK(kernel.task_count() == 6);
        CHECK(log.empty());
    }
    REQUIRE(log.size() == 6);
    CHECK(log.back() == "parent destroyed"); // after its five children, without waking them
    CHECK(sorted(Log(log.begin(), log.end() - 1)) ==
          Log{"event waiter destroyed", "getter destroyed", "lock waiter destroyed",
              "permit waiter destroyed", "putter destroyed"});
}

TEST_CASE("Destroying a Scheduler kills newest first, slots reused or not", "[scheduler]") {
    FrameLeakCheck leaks;
    Log log;
    {
        Scheduler kernel;
        // Slot 0 is used and freed first: the newest task takes it, the oldest sits in slot 1.
        kernel.run_until_complete(yield_times(0));
        kernel.add_task([](Log& into) -> Task<> {
            Noted noted(into, "second newest");
            co_await corio::Sleep{1h};
        }(log));
        kernel.add_task([](Log& into) -> Task<> {
            Noted noted(into, "newest");
            co_await corio::Sleep{1h};
        }(log));
        kernel.run_until_complete(yield_times(1));
    }
    CHECK(log == Log{"newest destroyed", "second newest destroyed"});
}

namespace {
Task<> sleep_noted(Log& log, std::string name) {
    Noted noted(log, std::move(name));
    co_await corio::Sleep{1h};
}

// Logs "<name> destroyed" when the last copy is destroyed: a parameter that notes the end of a
// frame even if its task never ran.
std::shared_ptr<void> note_on_destroy(Log& log, std::string name) {
    return {nullptr, [&log, name = std::move(name)](void*) { log.push_back(name + " destroyed"); }};
}

Task<> sleep_holding(std::shared_ptr<void> note) {
    co_await corio::Sleep{1h};
    note.reset();
}

// Spawns a task when destroyed (as a task's RAII member might, say to log its end).
class SpawnOnDestroy {
public:
    SpawnOnDestroy(Scheduler& kernel, Log& log) : kernel_(&kernel), log_(&log) {}
    SpawnOnDestroy(const SpawnOnDestroy&) = delete;
    SpawnOnDestroy& operator=(const SpawnOnDestroy&) = delete;
    ~SpawnOnDestroy() {
        kernel_->add_task(sleep_holding(note_on_destroy(*log_, "spawned by a destructor")));
    }

private:
    Scheduler* kernel_;
    Log* log_;
};

Task<> spawn_when_destroyed(Scheduler& kernel, Log& log) {
    Noted noted(log, "spawner");
    SpawnOnDestroy spawner(kernel, log);
    co_await corio::Sleep{1h};
}
} // namespace

TEST_CASE("Destroying a Scheduler kills a task that a destructor spawned before the older tasks",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Log log;
    {
        Scheduler kernel;
        kernel.add_task(sleep_noted(log, "oldest"));
        kernel.add_task(spawn_when_destroyed(kernel, log));
        kernel.run_until_complete(yield_times(1));
    }
    CHECK(log == Log{"spawner destroyed", "spawned by a destructor destroyed", "oldest destroyed"});
}

TEST_CASE("An Event, Queue, Lock or Semaphore destroyed while tasks wait on it wakes them with "
          "std::logic_error",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    Log reports;
    record_reports(kernel, reports);
    Log log;
    const TaskId parent = kernel.add_task(parent_of_waiters(log));
    kernel.add_task(kill_after_yields(kernel, parent, 3)); // once every child waits
    kernel.run();
    REQUIRE(log.size() == 11);
    CHECK(log.front() == "parent destroyed"); // killed first; its children then woke
    CHECK(sorted(Log(log.begin() + 1, log.end())) ==
          Log{"event waiter destroyed", "event waiter: logic_error", "getter destroyed",
              "getter: logic_error", "lock waiter destroyed", "lock waiter: logic_error",
              "permit waiter destroyed", "permit waiter: logic_error", "putter destroyed",
              "putter: logic_error"});
    CHECK(reports.empty());
    require_empty(kernel);
}

namespace {
// Throws from its destructor, as a noexcept(false) destructor may.
class ThrowOnDestroy {
public:
    explicit ThrowOnDestroy(std::string message) : message_(std::move(message)) {}
    ThrowOnDestroy(const ThrowOnDestroy&) = delete;
    ThrowOnDestroy& operator=(const ThrowOnDestroy&) = delete;
    ~ThrowOnDestroy() noexcept(false) { throw TestError(message_); }

private:
    std::string message_;
};

Task<> sleep_with_throwing_local(Counted held) {
    ThrowOnDestroy thrower("destructor of a killed task");
    co_await corio::Sleep{1h};
    (void)held;
}

Task<int> child_with_throwing_local() {
    Counted inner(2);
    ThrowOnDestroy thrower("destructor of an awaited child");
    co_await corio::Sleep{1h};
    co_return 1;
}

Task<> await_child_with_throwing_local(Counted held, bool& resumed) {
    ThrowOnDestroy thrower("destructor of its parent");
    (void)co_await child_with_throwing_local();
    resumed = held.value() != 0;
}
} // namespace

TEST_CASE("An exception thrown by a destructor while a task is killed is reported, the loop goes "
          "on",
          "[scheduler]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    std::vector<Report> reports;
    {
        Scheduler kernel;
        collect_reports(kernel, reports);
        std::vector<int> log;
        const TaskId sleeper = kernel.add_task(sleep_with_throwing_local(Counted(1)));
        bool resumed = false;
        const TaskId parent = kernel.add_task(await_child_with_throwing_local(Counted(3), resumed));
        kernel.add_task(kill_after_yields(kernel, sleeper, 1));
        kernel.add_task(kill_after_yields(kernel, parent, 2));
        kernel.add_task(record_rounds(log, 1, 5));
        kernel.run();
        CHECK(log.size() == 5); // the loop went on
        CHECK_FALSE(resumed);   // the parent was destroyed, never resumed by its dying child
        REQUIRE(reports.size() == 3);
        CHECK(reports[0].id == sleeper);
        CHECK(reports[0].what == "destructor of a killed task");
        CHECK(reports[1].id == parent); // innermost frame first
        CHECK(reports[1].what == "destructor of an awaited child");
        CHECK(reports[2].id == parent);
        CHECK(reports[2].what == "destructor of its parent");
        CHECK(Counted::alive() == 0);
        require_empty(kernel);

        reports.clear();
        kernel.add_task(sleep_with_throwing_local(Counted(4)));
        kernel.run_until_complete(yield_times(1));
    } // and when the Scheduler's destructor kills it
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].what == "destructor of a killed task");
    CHECK(Counted::alive() == 0);
}
