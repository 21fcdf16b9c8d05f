// Tests for the kernel's timers: the timer heap (corio/detail/timer_heap.hpp) on its own and
// against a model, and the order in which Sleep and SleepUntil wake tasks. Ordering tests run on a
// VirtualClock (exact, instant); the tests on the real clock assert only lower bounds, and that
// waiting for a timer does not burn CPU.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <corio/detail/timer_heap.hpp>
#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/virtual_clock.hpp>

#include "support/catch.hpp"
#include "support/counted.hpp"
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using corio::Scheduler;
using corio::Task;
using corio::TaskId;
using corio::VirtualClock;
using corio::detail::TimerHeap;
using corio::detail::TimerNode;
using corio::test::Counted;
using corio::test::FrameLeakCheck;
using corio::test::require_empty;
using Clock = Scheduler::Clock;

// One wake-up: who woke, and when (virtual time since the test began).
struct Wake {
    int who = 0;
    Clock::duration at{};
    friend bool operator==(const Wake&, const Wake&) = default;
};
using Wakes = std::vector<Wake>;

Task<> sleep_and_log(Scheduler& kernel, Clock::time_point start, Clock::duration length, int who,
                     Wakes& log) {
    co_await corio::Sleep{length};
    log.push_back({who, kernel.now() - start});
}

Task<> sleep_until_and_log(Scheduler& kernel, Clock::time_point start, Clock::time_point deadline,
                           int who, Wakes& log) {
    co_await corio::SleepUntil{deadline};
    log.push_back({who, kernel.now() - start});
}

std::vector<int> shuffled(int count, std::uint32_t seed) {
    std::vector<int> values(static_cast<std::size_t>(count));
    std::iota(values.begin(), values.end(), 1);
    std::mt19937 random(seed);
    std::shuffle(values.begin(), values.end(), random);
    return values;
}

} // namespace

// ---- the order of wake-ups ----------------------------------------------------------------------

TEST_CASE("Many sleepers with shuffled durations wake in deadline order, each exactly on time",
          "[timers]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    Wakes log;
    for (const int ms : shuffled(300, 1)) {
        kernel.add_task(sleep_and_log(kernel, start, std::chrono::milliseconds(ms), ms, log));
    }
    kernel.run();
    Wakes expected;
    for (int ms = 1; ms <= 300; ++ms) {
        expected.push_back({ms, std::chrono::milliseconds(ms)});
    }
    CHECK(log == expected);
    CHECK(clock.now() - start == 300ms);
    require_empty(kernel);
}

// All armed at once, each timer the first of its kind (the pool grows with them: see
// Timers::arm_sleep in kernel/timers.hpp); 1000 distinct deadlines, 100 sleepers each, armed in shuffled order.
// bench/sleepers measures the same with a million, on the real clock.
TEST_CASE("100k sleepers armed at once all wake, in deadline order (FIFO among equals)",
          "[timers]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    constexpr int count = 100'000;
    constexpr int distinct = 1000;
    Wakes log;
    log.reserve(count);
    std::vector<Clock::duration> armed_as; // the length of each sleeper, by its number
    for (const int who : shuffled(count, 7)) {
        const auto length = std::chrono::microseconds(who % distinct);
        armed_as.push_back(length);
        kernel.add_task(
            sleep_and_log(kernel, start, length, static_cast<int>(armed_as.size()) - 1, log));
    }
    kernel.run();
    REQUIRE(log.size() == static_cast<std::size_t>(count));
    bool in_order = true;
    bool on_time = true;
    for (std::size_t i = 0; i < log.size(); ++i) {
        const Wake& wake = log[i];
        on_time = on_time && wake.at == armed_as[static_cast<std::size_t>(wake.who)];
        if (i > 0) {
            const Wake& before = log[i - 1];
            const auto before_length = armed_as[static_cast<std::size_t>(before.who)];
            const auto length = armed_as[static_cast<std::size_t>(wake.who)];
            // Deadline order; among equal deadlines, the order of arming (= of the numbers).
            in_order = in_order && (before_length < length ||
                                    (before_length == length && before.who < wake.who));
        }
    }
    CHECK(in_order);
    CHECK(on_time);
    require_empty(kernel);
}

namespace {
// Yields `delay` times before it arms its timer: the order of arming is not the order of creation.
Task<> yield_then_sleep_until(Scheduler& kernel, Clock::time_point start, int delay,
                              Clock::time_point deadline, int who, Wakes& log) {
    for (int i = 0; i < delay; ++i) {
        co_await corio::Yield{};
    }
    co_await corio::SleepUntil{deadline};
    log.push_back({who, kernel.now() - start});
}
} // namespace

TEST_CASE("Timers with equal deadlines fire in the order they were armed (FIFO)", "[timers]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    Wakes log;
    constexpr int count = 40;
    // Task i arms its timer in pass count - i: the last one created arms first. Two deadlines,
    // interleaved, so that each deadline's group also has ties with the other group's order.
    for (int i = 0; i < count; ++i) {
        const auto deadline = start + (i % 2 == 0 ? 10ms : 20ms);
        kernel.add_task(yield_then_sleep_until(kernel, start, count - 1 - i, deadline, i, log));
    }
    kernel.run();
    Wakes expected;
    for (const auto group : {10ms, 20ms}) {
        for (int i = count - 1; i >= 0; --i) { // arming order
            if ((i % 2 == 0) == (group == 10ms)) {
                expected.push_back({i, group});
            }
        }
    }
    CHECK(log == expected);
    require_empty(kernel);
}

namespace {
struct Observation {
    int who = 0;
    std::size_t ready_when_resumed = 0;
    friend bool operator==(const Observation&, const Observation&) = default;
};

Task<> sleep_until_and_observe(Scheduler& kernel, Clock::time_point deadline, int who,
                               std::vector<Observation>& log) {
    co_await corio::SleepUntil{deadline};
    log.push_back({who, kernel.stats().ready});
}

// CPU work that outlasts several deadlines: the clock moves past them while this task runs.
Task<> busy_for(VirtualClock& clock, Clock::duration length) {
    clock.advance(length);
    co_return;
}
} // namespace

TEST_CASE("All due timers are collected before any task is resumed", "[timers]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    std::vector<Observation> log;
    SECTION("equal deadlines") {
        kernel.add_task(sleep_until_and_observe(kernel, start + 10ms, 1, log));
        kernel.add_task(sleep_until_and_observe(kernel, start + 10ms, 2, log));
        kernel.add_task(sleep_until_and_observe(kernel, start + 10ms, 3, log));
        kernel.run();
        // The first to run sees the two others ready already.
        CHECK(log == std::vector<Observation>{{1, 2}, {2, 1}, {3, 0}});
    }
    SECTION("different deadlines that passed during CPU work") {
        kernel.add_task(sleep_until_and_observe(kernel, start + 30ms, 3, log));
        kernel.add_task(sleep_until_and_observe(kernel, start + 10ms, 1, log));
        kernel.add_task(sleep_until_and_observe(kernel, start + 20ms, 2, log));
        kernel.add_task(sleep_until_and_observe(kernel, start + 40ms, 4, log)); // not due yet
        kernel.add_task(busy_for(clock, 35ms));
        kernel.run();
        CHECK(log == std::vector<Observation>{{1, 2}, {2, 1}, {3, 0}, {4, 0}}); // deadline order
        CHECK(clock.now() - start == 40ms);
    }
    require_empty(kernel);
}

namespace {
Task<> kill_all(Scheduler& kernel, std::vector<TaskId> victims, std::size_t& timers_left) {
    for (const TaskId victim : victims) {
        const bool existed = co_await corio::KillTask{victim};
        CHECK(existed);
    }
    timers_left = kernel.stats().timers;
}

Task<> sleep_then_kill_all(Scheduler& kernel, Clock::duration length, std::vector<TaskId> victims,
                           std::size_t& timers_left) {
    co_await corio::Sleep{length};
    co_await kill_all(kernel, std::move(victims), timers_left);
}

// A sleeper that also holds a Counted: a killed one must have its frame destroyed.
Task<> hold_and_sleep(Scheduler& kernel, Clock::time_point start, Counted held,
                      Clock::duration length, int who, Wakes& log) {
    co_await corio::Sleep{length};
    log.push_back({who + held.value() * 0, kernel.now() - start});
}
} // namespace

TEST_CASE("Killing sleepers among 1000 others keeps the rest in deadline order", "[timers]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    Wakes log;
    constexpr int count = 1000;
    std::vector<TaskId> by_ms(count + 1);
    for (const int ms : shuffled(count, 2)) {
        by_ms[static_cast<std::size_t>(ms)] = kernel.add_task(
            hold_and_sleep(kernel, start, Counted(ms), std::chrono::milliseconds(ms), ms, log));
    }
    // Killed at once: the earliest, the latest, and every 7th; killed at 500.5 ms: every 11th
    // after that (not already killed).
    std::set<int> killed;
    std::vector<TaskId> early_victims;
    std::vector<TaskId> late_victims;
    for (int ms = 1; ms <= count; ++ms) {
        if (ms == 1 || ms == count || ms % 7 == 0) {
            early_victims.push_back(by_ms[static_cast<std::size_t>(ms)]);
            killed.insert(ms);
        } else if (ms > 500 && ms % 11 == 0) {
            late_victims.push_back(by_ms[static_cast<std::size_t>(ms)]);
            killed.insert(ms);
        }
    }
    std::size_t timers_after_early = 0;
    std::size_t timers_after_late = 0;
    kernel.add_task(kill_all(kernel, early_victims, timers_after_early));
    kernel.add_task(sleep_then_kill_all(kernel, 500500us, late_victims, timers_after_late));
    kernel.run();

    CHECK(timers_after_early == count - early_victims.size()); // the late killer has not slept yet
    Wakes expected;
    for (int ms = 1; ms <= count; ++ms) {
        if (killed.count(ms) == 0) {
            expected.push_back({ms, std::chrono::milliseconds(ms)});
        }
    }
    CHECK(log == expected);
    const auto woken_before_late = static_cast<std::size_t>(std::count_if(
        expected.begin(), expected.end(), [](const Wake& wake) { return wake.who <= 500; }));
    CHECK(timers_after_late == count - killed.size() - woken_before_late);
    CHECK(Counted::alive() == 0);
    require_empty(kernel);
}

// ---- SleepUntil ---------------------------------------------------------------------------------

TEST_CASE("SleepUntil wakes exactly at its deadline on the Scheduler's clock", "[timers]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    Wakes log;
    kernel.add_task(sleep_until_and_log(kernel, start, start + 250ms, 2, log));
    kernel.add_task(sleep_until_and_log(kernel, start, start + 1us, 1, log));
    kernel.add_task(sleep_and_log(kernel, start, 250ms, 3, log)); // same deadline, armed later
    kernel.run();
    CHECK(log == Wakes{{1, 1us}, {2, 250ms}, {3, 250ms}});
    require_empty(kernel);
}

namespace {
using Steps = std::vector<std::string>;

Task<> sleep_until_past(Scheduler& kernel, Clock::time_point deadline, Steps& steps) {
    steps.emplace_back("sleeper before");
    co_await corio::SleepUntil{deadline};
    steps.emplace_back("sleeper after");
    CHECK(kernel.stats().timers == 0); // never armed a timer
}

Task<> note(Steps& steps, std::string text) {
    steps.push_back(std::move(text));
    co_return;
}
} // namespace

TEST_CASE("SleepUntil a deadline that has passed (or is now) yields", "[timers]") {
    FrameLeakCheck leaks;
    VirtualClock clock;
    Scheduler kernel(clock);
    const auto start = clock.now();
    const auto deadline = GENERATE_COPY(start - 1h, start - 1ns, start);
    Steps steps;
    kernel.add_task(sleep_until_past(kernel, deadline, steps));
    kernel.add_task(note(steps, "other task"));
    kernel.run();
    // The other task ran in between: the sleeper went to the back of the ready queue.
    CHECK(steps == Steps{"sleeper before", "other task", "sleeper after"});
    CHECK(clock.now() == start);
    require_empty(kernel);
}

namespace {
Task<> real_sleep_until(Clock::time_point deadline, Clock::time_point& woke) {
    co_await corio::SleepUntil{deadline};
    woke = Clock::now();
}
} // namespace

TEST_CASE("SleepUntil on the real clock never wakes before its deadline", "[timers]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    const auto deadline = Clock::now() + 15ms;
    Clock::time_point woke{};
    kernel.add_task(real_sleep_until(deadline, woke));
    kernel.run();
    CHECK(woke >= deadline);
    CHECK(woke - deadline < 10s);
    require_empty(kernel);
}

// ---- the selector timeout: rounded up, and no busy loop ---------------------------------------

namespace {
Task<> sleep_many(int rounds, Clock::duration length, std::vector<Clock::duration>& elapsed) {
    for (int i = 0; i < rounds; ++i) {
        const auto before = Clock::now();
        co_await corio::Sleep{length};
        elapsed.push_back(Clock::now() - before);
    }
}

Clock::duration process_cpu_time() {
    timespec now{};
    REQUIRE(::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now) == 0);
    return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
}
} // namespace

TEST_CASE("A Sleep of 1.5 ms never wakes early (the selector timeout is rounded up)", "[timers]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<Clock::duration> elapsed;
    kernel.add_task(sleep_many(30, 1500us, elapsed));
    kernel.run();
    REQUIRE(elapsed.size() == 30);
    for (std::size_t i = 0; i < elapsed.size(); ++i) {
        CAPTURE(i, std::chrono::duration_cast<std::chrono::microseconds>(elapsed[i]).count());
        CHECK(elapsed[i] >= 1500us);
        CHECK(elapsed[i] < 5s);
    }
    require_empty(kernel);
}

TEST_CASE("Waiting for a timer sleeps in the selector instead of spinning", "[timers]") {
    // A selector timeout rounded down would wait 1 ms, then spin through the last 0.5 ms (a
    // third of the time); for sleeps under 1 ms it would spin all the time.
    const auto length = GENERATE(1500us, 900us);
    CAPTURE(length.count());
    FrameLeakCheck leaks;
    Scheduler kernel;
    std::vector<Clock::duration> elapsed;
    kernel.add_task(sleep_many(50, length, elapsed));
    const auto wall_before = Clock::now();
    const auto cpu_before = process_cpu_time();
    kernel.run();
    const auto cpu = process_cpu_time() - cpu_before;
    const auto wall = Clock::now() - wall_before;
    const auto as_us = [](Clock::duration d) {
        return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    };
    INFO("50 sleeps: " << as_us(wall) << " us of wall-clock time, " << as_us(cpu)
                       << " us of CPU time");
    CHECK(wall >= 50 * length);
    CHECK(cpu * 5 < wall); // under 20%: sleeping in the selector costs next to nothing
    require_empty(kernel);
}

// ---- TimerHeap on its own, against a model ----------------------------------------------------

namespace {
using TimePoint = std::chrono::steady_clock::time_point;

struct HeapModel {
    // (deadline, arming order, node): the order in which the heap must give its nodes.
    std::multiset<std::tuple<TimePoint, std::uint64_t, TimerNode*>> entries;
    std::uint64_t armed_so_far = 0;

    void push(TimerNode& node, TimePoint deadline) {
        entries.emplace(deadline, armed_so_far++, &node);
    }
    void remove(TimerNode& node) {
        for (auto it = entries.begin(); it != entries.end(); ++it) {
            if (std::get<2>(*it) == &node) {
                entries.erase(it);
                return;
            }
        }
    }
    bool contains(const TimerNode& node) const {
        return std::any_of(entries.begin(), entries.end(),
                           [&](const auto& entry) { return std::get<2>(entry) == &node; });
    }
    TimerNode* top() const { return entries.empty() ? nullptr : std::get<2>(*entries.begin()); }
};
} // namespace

TEST_CASE("TimerHeap: push, remove and pop agree with a model, with many ties", "[timers][heap]") {
    const auto seed = GENERATE(1u, 2u, 3u, 20240601u);
    CAPTURE(seed);
    std::mt19937 random(seed);
    const auto pick = [&random](std::size_t below) {
        return std::uniform_int_distribution<std::size_t>(0, below - 1)(random);
    };
    const TimePoint base(std::chrono::hours(1));

    std::vector<TimerNode> nodes(64, TimerNode(TimerNode::Kind::wake));
    TimerHeap heap;
    HeapModel model;
    std::size_t pops = 0;
    for (int step = 0; step < 20000; ++step) {
        CAPTURE(step);
        const std::size_t choice = pick(100);
        TimerNode& node = nodes[pick(nodes.size())];
        if (choice < 45) {
            if (!node.armed()) {
                const TimePoint deadline = base + std::chrono::milliseconds(pick(16)); // many ties
                heap.push(node, deadline);
                model.push(node, deadline);
            }
        } else if (choice < 70) {
            heap.remove(node); // a node that is not armed: nothing happens
            model.remove(node);
        } else if (choice < 90) {
            TimerNode* expected = model.top();
            TimerNode* popped = heap.pop();
            REQUIRE(popped == expected);
            if (popped != nullptr) {
                model.remove(*popped);
                CHECK_FALSE(popped->armed());
                ++pops;
            }
        }
        REQUIRE(heap.size() == model.entries.size());
        REQUIRE(heap.empty() == model.entries.empty());
        REQUIRE(heap.top() == model.top());
        if (step % 97 == 0) {
            for (const TimerNode& each : nodes) {
                REQUIRE(each.armed() == model.contains(each));
            }
        }
    }
    CHECK(pops > 1000);
    // Drain: the rest come out in (deadline, arming) order.
    while (TimerNode* expected = model.top()) {
        REQUIRE(heap.pop() == expected);
        model.remove(*expected);
    }
    CHECK(heap.empty());
    CHECK(heap.pop() == nullptr);
    CHECK(heap.top() == nullptr);
}

TEST_CASE("TimerHeap: a node removed and armed again goes behind its equals", "[timers][heap]") {
    std::vector<TimerNode> nodes(5, TimerNode(TimerNode::Kind::wake));
    TimerHeap heap;
    const TimePoint when(std::chrono::seconds(5));
    for (std::size_t i = 0; i < 4; ++i) {
        heap.push(nodes[i], when);
    }
    heap.remove(nodes[0]);
    heap.remove(nodes[0]); // twice: harmless
    CHECK_FALSE(nodes[0].armed());
    heap.push(nodes[0], when);
    heap.push(nodes[4], when - 1ns); // armed last, due first
    CHECK(heap.size() == 5);
    std::vector<TimerNode*> order;
    while (TimerNode* node = heap.pop()) {
        order.push_back(node);
    }
    CHECK(order == std::vector<TimerNode*>{&nodes[4], &nodes[1], &nodes[2], &nodes[3], &nodes[0]});
    for (const TimerNode& node : nodes) {
        CHECK_FALSE(node.armed());
    }
}
