// Tests for corio/group/when_all.hpp: the tasks run concurrently as tasks of their own, their values come
// back in argument order, and the first failure kills the rest and propagates.
#include <chrono>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>
#include <corio/virtual_clock.hpp>
#include <corio/group/when_all.hpp>
#include <corio/group/when_any.hpp>

#include "support/catch.hpp"
#include "support/counted.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::KillTask;
using corio::Sleep;

Task<TaskId> my_id() {
    co_return co_await corio::GetTid{};
}

// ---------------------------------------------------------------------------------------------

Task<> variadic_values(std::tuple<int, std::string, std::monostate>& out, Log& log) {
    out = co_await corio::when_all(value_after(3s, 1), value_after(1s, std::string("two")),
                                   log_after(2s, log, "void task"));
}

TEST_CASE("when_all: values come back as a tuple in argument order, void gives std::monostate",
          "[when_all]") {
    FrameLeakCheck leaks;
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    std::tuple<int, std::string, std::monostate> values;
    Log log;
    const auto start = clock.now();
    kernel.run_until_complete(variadic_values(values, log));
    CHECK(std::get<0>(values) == 1);
    CHECK(std::get<1>(values) == "two");
    CHECK(log == Log{"void task"});
    CHECK(elapsed(clock, start) == 3s); // concurrent: the longest, not the sum (6 s)
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> vector_values(std::vector<int>& out) {
    std::vector<Task<int>> tasks;
    tasks.reserve(5);
    for (int i = 0; i < 5; ++i) {
        tasks.push_back(value_after(std::chrono::seconds(5 - i), i * 10)); // the last ends first
    }
    out = co_await corio::when_all(std::move(tasks));
}

TEST_CASE("when_all: a vector of tasks gives a vector of values in the vector's order",
          "[when_all]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    std::vector<int> values;
    const auto start = clock.now();
    kernel.run_until_complete(vector_values(values));
    CHECK(values == std::vector<int>{0, 10, 20, 30, 40});
    CHECK(elapsed(clock, start) == 5s);
    require_empty(kernel);
}

Task<> void_vector(Log& log) {
    std::vector<Task<>> tasks;
    tasks.push_back(log_after(2s, log, "a"));
    tasks.push_back(log_after(1s, log, "b"));
    tasks.push_back(log_after(3s, log, "c"));
    co_await corio::when_all(std::move(tasks));
    log.push_back("done");
}

TEST_CASE("when_all: a vector of void tasks gives Task<> and waits for all", "[when_all]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    const auto start = clock.now();
    kernel.run_until_complete(void_vector(log));
    CHECK(log == Log{"b", "a", "c", "done"});
    CHECK(elapsed(clock, start) == 3s);
    require_empty(kernel);
}

Task<> empty_vectors(const bool& sibling_ran, bool& ran_before, std::size_t& size,
                     Scheduler& kernel, std::size_t& tasks_during) {
    std::vector<int> values = co_await corio::when_all(std::vector<Task<int>>{});
    size = values.size();
    co_await corio::when_all(std::vector<Task<>>{});
    auto nothing = co_await corio::when_all();
    static_assert(std::is_same_v<decltype(nothing), std::tuple<>>);
    tasks_during = kernel.task_count();
    ran_before = sibling_ran; // none of the awaits suspended, or the sibling would have run
}

TEST_CASE("when_all: an empty vector gives an empty vector at once, without suspending",
          "[when_all]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    bool sibling_ran = false;
    bool ran_before = true;
    std::size_t size = 99;
    std::size_t tasks_during = 0;
    const auto start = clock.now();
    const TaskId first =
        kernel.add_task(empty_vectors(sibling_ran, ran_before, size, kernel, tasks_during));
    kernel.add_task(set_flag(sibling_ran));
    kernel.run();
    CHECK(first);
    CHECK(size == 0);
    CHECK_FALSE(ran_before);
    CHECK(tasks_during == 2); // itself and the sibling: when_all spawned nothing
    CHECK(elapsed(clock, start) == 0s);
    require_empty(kernel);
}

Task<> ids_of_children(TaskId& parent, std::vector<TaskId>& children) {
    parent = co_await corio::GetTid{};
    std::vector<Task<TaskId>> tasks;
    tasks.push_back(my_id());
    tasks.push_back(my_id());
    children = co_await corio::when_all(std::move(tasks));
}

TEST_CASE("when_all: each task runs as a task of its own", "[when_all]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    TaskId parent;
    std::vector<TaskId> children;
    kernel.run_until_complete(ids_of_children(parent, children));
    REQUIRE(children.size() == 2);
    CHECK(children[0] != parent);
    CHECK(children[1] != parent);
    CHECK(children[0] != children[1]);
    require_empty(kernel);
}

Task<> move_only_values(std::unique_ptr<int>& first, std::vector<Counted>& counted) {
    auto [pointer, number] =
        co_await corio::when_all(value_after(1s, std::make_unique<int>(42)), value_after(1s, 7));
    first = std::move(pointer);
    CHECK(number == 7);
    std::vector<Task<Counted>> tasks;
    tasks.push_back(value_after(1s, Counted(1)));
    tasks.push_back(value_after(2s, Counted(2)));
    counted = co_await corio::when_all(std::move(tasks));
}

TEST_CASE("when_all: values are moved, never copied, move-only values work", "[when_all]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    std::unique_ptr<int> first;
    std::vector<Counted> counted;
    kernel.run_until_complete(move_only_values(first, counted));
    REQUIRE(first != nullptr);
    CHECK(*first == 42);
    REQUIRE(counted.size() == 2);
    CHECK(counted[0].value() == 1);
    CHECK(counted[1].value() == 2);
    CHECK(Counted::copy_constructions == 0);
    require_empty(kernel);
}

// ---------------------------------------------------------------------------------------------
// Failures

Task<> first_failure(bool& first_resumed, bool& second_resumed) {
    std::vector<Task<int>> tasks;
    tasks.push_back(hold_and_sleep(2s, Counted(1), first_resumed));
    tasks.push_back(throw_after(1s, "first"));
    tasks.push_back(throw_after(3s, "second"));
    tasks.push_back(hold_and_sleep(long_sleep, Counted(2), second_resumed));
    co_await corio::when_all(std::move(tasks));
}

TEST_CASE("when_all: the first exception propagates, the others are killed and never resume",
          "[when_all]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    bool first_resumed = false;
    bool second_resumed = false;
    const auto start = clock.now();
    CHECK_THROWS_WITH(kernel.run_until_complete(first_failure(first_resumed, second_resumed)),
                      "first");
    CHECK(elapsed(clock, start) == 1s);
    CHECK_FALSE(first_resumed);
    CHECK_FALSE(second_resumed);
    CHECK(Counted::alive() == 0);
    CHECK(reports.empty()); // a child's failure is when_all's, never "unhandled"
    require_empty(kernel);
}

Task<> variadic_failure(bool& resumed, long& alive_in_catch, std::string& error) {
    try {
        co_await corio::when_all(hold_and_sleep(long_sleep, Counted(1), resumed),
                                 throw_after(1s, "variadic"), value_after(5s, std::string("x")));
    } catch (const TestError& e) {
        error = e.what();
        alive_in_catch = Counted::alive();
    }
}

TEST_CASE("when_all: a failure in the variadic form kills the others before it is caught",
          "[when_all]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    bool resumed = false;
    long alive_in_catch = -1;
    std::string error;
    kernel.run_until_complete(variadic_failure(resumed, alive_in_catch, error));
    CHECK(error == "variadic");
    CHECK(alive_in_catch == 0);
    CHECK_FALSE(resumed);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<int> publish_id_then_sleep(TaskId& out, Counted held) {
    out = co_await corio::GetTid{};
    co_await Sleep{5s};
    co_return held.value();
}

Task<> all_with_victim(TaskId& victim, bool& other_resumed, std::string& error) {
    try {
        co_await corio::when_all(publish_id_then_sleep(victim, Counted(1)),
                                 hold_and_sleep(3s, Counted(2), other_resumed));
    } catch (const std::runtime_error& e) {
        error = e.what();
    }
}

TEST_CASE("when_all: a task killed from outside fails when_all with std::runtime_error, the others "
          "are killed",
          "[when_all]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    TaskId victim;
    bool other_resumed = false;
    std::string error;
    const auto start = clock.now();
    kernel.add_task(all_with_victim(victim, other_resumed, error));
    kernel.add_task(kill_after(1s, victim));
    kernel.run();
    CHECK(error.find("killed") != std::string::npos);
    CHECK_FALSE(other_resumed);
    CHECK(elapsed(clock, start) == 1s);
    CHECK(Counted::alive() == 0);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> parent_in_when_all(TaskId& me, std::vector<TaskId>& children, bool& resumed) {
    me = co_await corio::GetTid{};
    std::vector<Task<int>> tasks;
    tasks.push_back(publish_id_then_sleep(children.emplace_back(), Counted(1)));
    tasks.push_back(publish_id_then_sleep(children.emplace_back(), Counted(2)));
    co_await corio::when_all(std::move(tasks));
    resumed = true;
}

Task<> kill_and_look(Scheduler& kernel, const TaskId& victim, const std::vector<TaskId>& children,
                     bool& children_gone, long& alive_after) {
    co_await Sleep{1s};
    co_await KillTask{victim};
    children_gone = children.size() == 2;
    for (const TaskId child : children) {
        children_gone = children_gone && child && !kernel.contains(child);
    }
    alive_after = Counted::alive();
}

TEST_CASE("when_all: killing the awaiting task kills every child before KillTask returns",
          "[when_all]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    TaskId parent;
    std::vector<TaskId> children;
    children.reserve(2); // the children write their ids into it: it must not reallocate
    bool resumed = false;
    bool children_gone = false;
    long alive_after = -1;
    kernel.add_task(parent_in_when_all(parent, children, resumed));
    kernel.add_task(kill_and_look(kernel, parent, children, children_gone, alive_after));
    kernel.run();
    CHECK(children_gone);
    CHECK(alive_after == 0);
    CHECK_FALSE(resumed);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> when_all_with_deadline(Scheduler& kernel, bool& timed_out, long& alive_in_catch,
                              std::size_t& tasks_in_catch, std::size_t& timers_in_catch,
                              bool& resumed) {
    try {
        co_await corio::timeout_after(1s, corio::when_all(hold_and_sleep(2s, Counted(1), resumed),
                                                          hold_and_sleep(3s, Counted(2), resumed)));
    } catch (const corio::TimeoutError&) {
        timed_out = true;
        alive_in_catch = Counted::alive();
        tasks_in_catch = kernel.task_count();
        timers_in_catch = kernel.stats().timers;
    }
}

TEST_CASE("when_all: a deadline around it throws TimeoutError, the children are gone by then",
          "[when_all]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    Log reports;
    VirtualClock clock;
    Scheduler kernel(clock);
    record_reports(kernel, reports);
    bool timed_out = false;
    long alive_in_catch = -1;
    std::size_t tasks_in_catch = 99;
    std::size_t timers_in_catch = 99;
    bool resumed = false;
    const auto start = clock.now();
    kernel.run_until_complete(when_all_with_deadline(kernel, timed_out, alive_in_catch,
                                                     tasks_in_catch, timers_in_catch, resumed));
    CHECK(timed_out);
    CHECK(alive_in_catch == 0);
    CHECK(tasks_in_catch == 1);
    CHECK(timers_in_catch == 0);
    CHECK_FALSE(resumed);
    CHECK(elapsed(clock, start) == 1s);
    CHECK(reports.empty());
    require_empty(kernel);
}

Task<> nested(std::tuple<std::vector<int>, corio::WhenAny<int>, int>& out) {
    std::vector<Task<int>> inner;
    inner.push_back(value_after(1s, 1));
    inner.push_back(value_after(2s, 2));
    std::vector<Task<int>> race;
    race.push_back(value_after(3s, 30));
    race.push_back(value_after(1s, 10));
    out = co_await corio::when_all(corio::when_all(std::move(inner)),
                                   corio::when_any(std::move(race)), value_after(2s, 5));
}

TEST_CASE("when_all: nests with when_all and when_any", "[when_all]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    std::tuple<std::vector<int>, corio::WhenAny<int>, int> out;
    const auto start = clock.now();
    kernel.run_until_complete(nested(out));
    CHECK(std::get<0>(out) == std::vector<int>{1, 2});
    CHECK(std::get<1>(out).index == 1);
    CHECK(std::get<1>(out).value == 10);
    CHECK(std::get<2>(out) == 5);
    CHECK(elapsed(clock, start) == 2s);
    require_empty(kernel);
}

Task<> all_no_default(int& sum) {
    std::vector<Task<NoDefault>> tasks;
    tasks.push_back(make_no_default(2s, 1));
    tasks.push_back(make_no_default(1s, 2));
    const std::vector<NoDefault> values = co_await corio::when_all(std::move(tasks));
    auto [third, fourth] =
        co_await corio::when_all(make_no_default(1s, 30), make_no_default(2s, 400));
    sum = values.at(0).value + 10 * values.at(1).value + third.value + fourth.value;
}

TEST_CASE("when_all: values need not be default-constructible", "[when_all]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    int sum = 0;
    kernel.run_until_complete(all_no_default(sum));
    CHECK(sum == 451);
    require_empty(kernel);
}

TEST_CASE("when_all: an empty Task, or one that has run, is rejected when when_all is called",
          "[when_all]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    std::vector<Task<int>> tasks;
    tasks.push_back(value_after(1s, 1));
    tasks.emplace_back();
    CHECK_THROWS_AS(corio::when_all(std::move(tasks)), std::invalid_argument);
    CHECK_THROWS_AS(corio::when_all(value_after(1s, 1), Task<int>{}), std::invalid_argument);
    std::vector<Task<>> voids(1);
    CHECK_THROWS_AS(corio::when_all(std::move(voids)), std::invalid_argument);
}

} // namespace
