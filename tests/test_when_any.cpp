// Tests for corio/group/when_any.hpp: the first task to finish wins, by returning or throwing; the rest
// are killed and gone - frames destroyed, nothing registered - before when_any gives its result.
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>
#include <corio/virtual_clock.hpp>
#include <corio/group/when_any.hpp>

#include "support/catch.hpp"
#include "support/counted.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::KillTask;
using corio::Sleep;
using corio::WhenAny;
using Duration = Scheduler::Clock::duration;

// Waits for `fd` to be readable. The deadline only bounds the test if when_any ever failed to kill
// a loser (virtual time would jump to it instead of the loop blocking on the fd forever).
Task<int> hold_and_read(int fd, Counted held, bool& resumed) {
    co_await corio::timeout_after(long_sleep, corio::ReadWait{fd});
    resumed = true;
    co_return held.value();
}

// What the kernel holds, seen from inside the task that awaited when_any, right after it returned.
struct Snapshot {
    Scheduler::Stats stats;
    long counted_alive = -1;
};

Snapshot look(const Scheduler& kernel) {
    return Snapshot{kernel.stats(), Counted::alive()};
}

// ---------------------------------------------------------------------------------------------

Task<> race_sleepers_and_readers(Scheduler& kernel, int fd, WhenAny<int>& out, Snapshot& after,
                                 bool& resumed) {
    std::vector<Task<int>> tasks;
    tasks.push_back(hold_and_sleep(3s, Counted(1), resumed));
    tasks.push_back(hold_and_read(fd, Counted(2), resumed));
    tasks.push_back(value_after(1s, 42));
    tasks.push_back(hold_and_sleep(2s, Counted(3), resumed));
    tasks.push_back(hold_and_read(fd, Counted(4), resumed));
    out = co_await corio::when_any(std::move(tasks));
    after = look(kernel);
}

TEST_CASE("when_any: the first to return wins, the losers are killed and unregistered before it "
          "returns",
          "[when_any]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    auto pair = corio::test::socket_pair(); // nothing is ever written: the readers wait forever
    WhenAny<int> result{};
    Snapshot after;
    bool resumed = false;
    const auto start = clock.now();
    kernel.run_until_complete(
        race_sleepers_and_readers(kernel, pair.first.get(), result, after, resumed));
    CHECK(result.index == 2);
    CHECK(result.value == 42);
    CHECK(elapsed(clock, start) == 1s);
    CHECK(after.stats.tasks == 1); // only the task that awaited when_any
    CHECK(after.stats.timers == 0);
    CHECK(after.stats.waiting_on_fds == 0);
    CHECK(after.stats.ready == 0);
    CHECK(after.counted_alive == 0); // the losers' frames are destroyed
    CHECK_FALSE(resumed);
    CHECK(reports.empty());
    kernel.forget_fd(pair.first.get()); // interest in an fd is dropped lazily: drop it now
    require_empty(kernel);
}

Task<> variadic_race(WhenAny<std::variant<int, std::string, std::monostate>>& out) {
    out = co_await corio::when_any(value_after(3s, 1), value_after(1s, std::string("fast")),
                                   sleep_for(2s));
}

Task<> variadic_void_wins(WhenAny<std::variant<int, std::monostate>>& out) {
    out = co_await corio::when_any(value_after(3s, 1), sleep_for(2s));
}

Task<> same_types(WhenAny<std::variant<int, int, int>>& out) {
    out = co_await corio::when_any(value_after(3s, 1), value_after(2s, 2), value_after(4s, 3));
}

TEST_CASE("when_any: the variadic form gives the winner's index and its value as that "
          "alternative",
          "[when_any]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);

    WhenAny<std::variant<int, std::string, std::monostate>> mixed{};
    kernel.run_until_complete(variadic_race(mixed));
    CHECK(mixed.index == 1);
    REQUIRE(mixed.value.index() == 1);
    CHECK(std::get<1>(mixed.value) == "fast");

    WhenAny<std::variant<int, std::monostate>> void_won{};
    kernel.run_until_complete(variadic_void_wins(void_won));
    CHECK(void_won.index == 1);
    CHECK(std::holds_alternative<std::monostate>(void_won.value));

    WhenAny<std::variant<int, int, int>> same{};
    kernel.run_until_complete(same_types(same));
    CHECK(same.index == 1);
    CHECK(same.value.index() == 1); // told apart by position, not by type
    CHECK(std::get<1>(same.value) == 2);
    require_empty(kernel);
}

Task<> void_race(WhenAny<void>& out) {
    std::vector<Task<>> tasks;
    tasks.push_back(sleep_for(2s));
    tasks.push_back(sleep_for(1s));
    tasks.push_back(sleep_for(3s));
    out = co_await corio::when_any(std::move(tasks));
}

TEST_CASE("when_any: a vector of void tasks gives the winner's index", "[when_any]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    WhenAny<void> result{};
    const auto start = clock.now();
    kernel.run_until_complete(void_race(result));
    CHECK(result.index == 1);
    CHECK(elapsed(clock, start) == 1s);
    require_empty(kernel);
}

Task<int> mark_ran(int value, int& ran) {
    ++ran;
    co_return value;
}

Task<> immediate_race(WhenAny<int>& out, int& ran) {
    std::vector<Task<int>> tasks;
    tasks.reserve(4);
    for (int i = 0; i < 4; ++i) {
        tasks.push_back(mark_ran(i, ran));
    }
    out = co_await corio::when_any(std::move(tasks));
}

TEST_CASE("when_any: among tasks that finish without suspending, the first to run wins and the "
          "others never run",
          "[when_any]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    WhenAny<int> result{};
    int ran = 0;
    kernel.run_until_complete(immediate_race(result, ran));
    CHECK(ran == 1); // the others were killed before their first turn
    CHECK(result.index == 0);
    CHECK(result.value == 0);
    require_empty(kernel);
}

// ---------------------------------------------------------------------------------------------
// Failures and cancellation

Task<> winner_throws(Scheduler& kernel, std::string& error, Snapshot& after, bool& resumed) {
    std::vector<Task<int>> tasks;
    tasks.push_back(hold_and_sleep(2s, Counted(1), resumed));
    tasks.push_back(throw_after(1s, "winner threw"));
    tasks.push_back(throw_after(3s, "a loser would throw later"));
    try {
        co_await corio::when_any(std::move(tasks));
    } catch (const TestError& e) {
        error = e.what();
        after = look(kernel);
    }
}

TEST_CASE("when_any: a winner that throws makes when_any rethrow, the losers are killed",
          "[when_any]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    std::string error;
    Snapshot after;
    bool resumed = false;
    const auto start = clock.now();
    kernel.run_until_complete(winner_throws(kernel, error, after, resumed));
    CHECK(error == "winner threw");
    CHECK(after.stats.tasks == 1);
    CHECK(after.stats.timers == 0);
    CHECK(after.counted_alive == 0);
    CHECK_FALSE(resumed);
    CHECK(elapsed(clock, start) == 1s);
    CHECK(reports.empty()); // neither the winner's exception nor a loser's is "unhandled"
    require_empty(kernel);
}

Task<int> publish_id_then_sleep(TaskId& out, Duration length, int value) {
    out = co_await corio::GetTid{};
    co_await Sleep{length};
    co_return value;
}

Task<> race_with_victim(TaskId& victim, WhenAny<int>& out) {
    std::vector<Task<int>> tasks;
    tasks.push_back(publish_id_then_sleep(victim, 2s, 1)); // would win, but is killed at 1 s
    tasks.push_back(value_after(3s, 2));
    out = co_await corio::when_any(std::move(tasks));
}

TEST_CASE("when_any: a task killed from outside leaves the race, another wins", "[when_any]") {
    FrameLeakCheck leaks;
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    TaskId victim;
    WhenAny<int> result{};
    const auto start = clock.now();
    kernel.add_task(race_with_victim(victim, result));
    kernel.add_task(kill_after(1s, victim));
    kernel.run();
    CHECK(result.index == 1);
    CHECK(result.value == 2);
    CHECK(elapsed(clock, start) == 3s);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> race_of_victims(TaskId& first, TaskId& second, std::string& error) {
    try {
        co_await corio::when_any(publish_id_then_sleep(first, 5s, 1),
                                 publish_id_then_sleep(second, 5s, 2));
    } catch (const std::runtime_error& e) {
        error = e.what();
    }
}

TEST_CASE("when_any: if every task is killed from outside, when_any throws std::runtime_error",
          "[when_any]") {
    FrameLeakCheck leaks;
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    TaskId first;
    TaskId second;
    std::string error;
    kernel.add_task(race_of_victims(first, second, error));
    kernel.add_task(kill_after(1s, first));
    kernel.add_task(kill_after(2s, second));
    kernel.run();
    CHECK(error.find("killed") != std::string::npos);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> parent_in_when_any(TaskId& me, int fd, bool& resumed) {
    me = co_await corio::GetTid{};
    std::vector<Task<int>> tasks;
    tasks.push_back(hold_and_sleep(long_sleep, Counted(1), resumed));
    tasks.push_back(hold_and_read(fd, Counted(2), resumed));
    co_await corio::when_any(std::move(tasks));
    resumed = true;
}

Task<> kill_and_look(Scheduler& kernel, const TaskId& victim, Snapshot& after) {
    co_await Sleep{1s};
    co_await KillTask{victim};
    after = look(kernel);
}

TEST_CASE("when_any: killing the awaiting task kills and unregisters every task before KillTask "
          "returns",
          "[when_any]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    auto pair = corio::test::socket_pair();
    TaskId parent;
    bool resumed = false;
    Snapshot after;
    kernel.add_task(parent_in_when_any(parent, pair.first.get(), resumed));
    kernel.add_task(kill_and_look(kernel, parent, after));
    kernel.run();
    CHECK(after.stats.tasks == 1); // the killer itself
    CHECK(after.stats.timers == 0);
    CHECK(after.stats.waiting_on_fds == 0);
    CHECK(after.counted_alive == 0);
    CHECK_FALSE(resumed);
    CHECK(reports.empty());
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

Task<> when_any_with_deadline(Scheduler& kernel, int fd, bool& timed_out, Snapshot& after,
                              bool& resumed) {
    try {
        co_await corio::timeout_after(1s, corio::when_any(hold_and_sleep(2s, Counted(1), resumed),
                                                          hold_and_read(fd, Counted(2), resumed)));
    } catch (const corio::TimeoutError&) {
        timed_out = true;
        after = look(kernel);
    }
}

TEST_CASE("when_any: a deadline around it throws TimeoutError, every task is gone by then",
          "[when_any]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    auto pair = corio::test::socket_pair();
    bool timed_out = false;
    Snapshot after;
    bool resumed = false;
    const auto start = clock.now();
    kernel.run_until_complete(
        when_any_with_deadline(kernel, pair.first.get(), timed_out, after, resumed));
    CHECK(timed_out);
    CHECK(after.stats.tasks == 1);
    CHECK(after.stats.timers == 0);
    CHECK(after.stats.waiting_on_fds == 0);
    CHECK(after.counted_alive == 0);
    CHECK_FALSE(resumed);
    CHECK(elapsed(clock, start) == 1s);
    CHECK(reports.empty());
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

Task<> reader_wins(int fd, WhenAny<int>& out, bool& sleeper_resumed, bool& reader_resumed) {
    std::vector<Task<int>> tasks;
    tasks.push_back(hold_and_sleep(long_sleep, Counted(1), sleeper_resumed));
    tasks.push_back(hold_and_read(fd, Counted(2), reader_resumed));
    out = co_await corio::when_any(std::move(tasks));
}

Task<> write_after(Duration delay, int fd) {
    co_await Sleep{delay};
    const char byte = 'x';
    corio::test::write_all(fd, &byte, 1);
}

TEST_CASE("when_any: a task woken by an fd wins over sleepers, which are killed", "[when_any]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    auto pair = corio::test::socket_pair();
    WhenAny<int> result{};
    bool sleeper_resumed = false;
    bool reader_resumed = false;
    const auto start = clock.now();
    kernel.add_task(reader_wins(pair.first.get(), result, sleeper_resumed, reader_resumed));
    kernel.add_task(write_after(1s, pair.second.get()));
    kernel.run();
    CHECK(result.index == 1);
    CHECK(result.value == 2);
    CHECK(reader_resumed);
    CHECK_FALSE(sleeper_resumed);
    CHECK(elapsed(clock, start) == 1s);
    CHECK(Counted::alive() == 0);
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

Task<> race_no_default(int& from_vector, int& from_variadic) {
    std::vector<Task<NoDefault>> tasks;
    tasks.push_back(make_no_default(2s, 1));
    tasks.push_back(make_no_default(1s, 2));
    from_vector = (co_await corio::when_any(std::move(tasks))).value.value;
    auto any = co_await corio::when_any(make_no_default(1s, 3), make_no_default(2s, 4));
    from_variadic = std::get<0>(any.value).value;
}

TEST_CASE("when_any: values need not be default-constructible", "[when_any]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    int from_vector = 0;
    int from_variadic = 0;
    kernel.run_until_complete(race_no_default(from_vector, from_variadic));
    CHECK(from_vector == 2);
    CHECK(from_variadic == 3);
    require_empty(kernel);
}

TEST_CASE("when_any: an empty vector throws std::invalid_argument when called", "[when_any]") {
    FrameLeakCheck leaks;
    CHECK_THROWS_AS(corio::when_any(std::vector<Task<int>>{}), std::invalid_argument);
    CHECK_THROWS_AS(corio::when_any(std::vector<Task<>>{}), std::invalid_argument);
    std::vector<Task<int>> tasks;
    tasks.push_back(value_after(1s, 1));
    tasks.emplace_back();
    CHECK_THROWS_AS(corio::when_any(std::move(tasks)), std::invalid_argument);
    CHECK_THROWS_AS(corio::when_any(value_after(1s, 1), Task<>{}), std::invalid_argument);
}

} // namespace
