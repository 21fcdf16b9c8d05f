// Tests for corio/sync/queue.hpp: try_put/try_get, waiting get and put, direct hand-off to the oldest
// getter, FIFO order of getters and of putters, backpressure, cancellation (kill, timeout_after,
// ignore_after) of each kind of waiter, values given back by getters killed after a hand-off,
// move-only and counted values, exceptions, and many producers and consumers.
#include <corio/sync/queue.hpp> // first: the header stands alone

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <numeric>
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
#include "support/counted.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::Queue;

Task<> getter(Queue<int>& queue, Log& log, std::string name, int yields_first = 0) {
    co_await yield_times(yields_first);
    const int value = co_await queue.get();
    log.push_back(name + " got " + std::to_string(value));
}

Task<> putter(Queue<int>& queue, Log& log, std::string name, int value, int yields_first = 0) {
    co_await yield_times(yields_first);
    co_await queue.put(value);
    log.push_back(name + " put " + std::to_string(value));
}

std::vector<int> drain(Queue<int>& queue) {
    std::vector<int> values;
    for (std::size_t i = 0, n = queue.size(); i < n; ++i) {
        values.push_back(*queue.try_get());
    }
    return values;
}

// 0, 1, ..., count - 1.
std::vector<int> integers_below(int count) {
    std::vector<int> values(static_cast<std::size_t>(count));
    std::iota(values.begin(), values.end(), 0);
    return values;
}

} // namespace

// ---- Without waiting ----------------------------------------------------------------------------

TEST_CASE("Queue: try_put and try_get, size, empty, full and max_size", "[queue]") {
    FrameLeakCheck leaks;
    Queue<int> queue(2);
    CHECK(queue.max_size() == 2);
    CHECK(queue.empty());
    CHECK_FALSE(queue.full());
    CHECK(queue.try_get() == std::nullopt);
    CHECK(queue.try_put(1));
    CHECK(queue.size() == 1);
    const int two = 2;
    CHECK(queue.try_put(two)); // the copying overload
    CHECK(queue.full());
    CHECK_FALSE(queue.try_put(3));
    CHECK(queue.size() == 2);
    CHECK(queue.try_get() == 1);
    CHECK_FALSE(queue.full());
    CHECK(queue.try_put(4));
    CHECK(queue.try_get() == 2);
    CHECK(queue.try_get() == 4);
    CHECK(queue.try_get() == std::nullopt);
    CHECK(queue.empty());
}

TEST_CASE("Queue: max_size 0 is unbounded", "[queue]") {
    FrameLeakCheck leaks;
    Queue<int> queue(0);
    for (int i = 0; i < 1000; ++i) {
        REQUIRE(queue.try_put(i));
        REQUIRE_FALSE(queue.full());
    }
    CHECK(queue.size() == 1000);
    for (int i = 0; i < 1000; ++i) {
        REQUIRE(queue.try_get() == i);
    }
    CHECK(queue.empty());
}

TEST_CASE("Queue: a try_put that fails leaves a move-only value where it was", "[queue]") {
    FrameLeakCheck leaks;
    Queue<std::unique_ptr<int>> queue(1);
    CHECK(queue.try_put(std::make_unique<int>(1)));
    auto second = std::make_unique<int>(2);
    CHECK_FALSE(queue.try_put(std::move(second)));
    REQUIRE(second != nullptr);
    CHECK(*second == 2);
    auto first = queue.try_get();
    REQUIRE(first.has_value());
    CHECK(**first == 1);
}

// ---- Waiting get and put, FIFO ------------------------------------------------------------------

namespace {
Task<> put_and_look(Queue<int>& queue, Log& log, int yields_first, std::vector<int> values) {
    co_await yield_times(yields_first);
    for (const int value : values) {
        co_await queue.put(value);
        log.push_back("put " + std::to_string(value) + ", size " + std::to_string(queue.size()));
    }
}
} // namespace

TEST_CASE("Queue: get waits while the queue is empty, and put hands the value straight to it",
          "[queue]") {
    FrameLeakCheck leaks;
    Queue<int> queue(1);
    Scheduler kernel;
    Log log;
    kernel.add_task(getter(queue, log, "g"));
    kernel.add_task(put_and_look(queue, log, 2, {7, 8}));
    kernel.run();
    // 7 never entered the queue (size 0 after the put), so 8 found room and did not wait.
    CHECK(log == Log{"put 7, size 0", "put 8, size 1", "g got 7"});
    CHECK(drain(queue) == std::vector<int>{8});
    require_empty(kernel);
}

TEST_CASE("Queue: waiting getters are served in the order they began to wait", "[queue]") {
    FrameLeakCheck leaks;
    Queue<int> queue(0);
    Scheduler kernel;
    Log log;
    // Created g0..g3, but g3 waits first and g0 last.
    for (int i = 0; i < 4; ++i) {
        kernel.add_task(getter(queue, log, "g" + std::to_string(i), 3 - i));
    }
    kernel.add_task(put_and_look(queue, log, 5, {10, 11, 12, 13, 14}));
    kernel.run();
    CHECK(log == Log{"put 10, size 0", "put 11, size 0", "put 12, size 0", "put 13, size 0",
                     "put 14, size 1", "g3 got 10", "g2 got 11", "g1 got 12", "g0 got 13"});
    CHECK(drain(queue) == std::vector<int>{14});
    require_empty(kernel);
}

namespace {
Task<> get_n(Queue<int>& queue, Log& log, int count, int yields_first) {
    co_await yield_times(yields_first);
    for (int i = 0; i < count; ++i) {
        const int value = co_await queue.get();
        log.push_back("got " + std::to_string(value));
    }
}
} // namespace

TEST_CASE("Queue: waiting putters get in in the order they began to wait, behind the queue",
          "[queue]") {
    FrameLeakCheck leaks;
    Queue<int> queue(1);
    Scheduler kernel;
    Log log;
    REQUIRE(queue.try_put(0));
    // Created p1..p3, but p3 waits first and p1 last.
    for (int i = 1; i <= 3; ++i) {
        kernel.add_task(putter(queue, log, "p" + std::to_string(i), 10 * i, 3 - i));
    }
    kernel.add_task(get_n(queue, log, 4, 4));
    kernel.run();
    // Each get lets the oldest putter's value in behind what is queued; the putters resume later.
    CHECK(log == Log{"got 0", "got 30", "got 20", "got 10", "p3 put 30", "p2 put 20", "p1 put 10"});
    CHECK(queue.empty());
    require_empty(kernel);
}

namespace {
struct Flow {
    int produced = 0;
    int consumed = 0;
    int most_ahead = 0; // produced - consumed, at most
    int puts_that_waited = 0;
    std::vector<long long> put_done_ms;
    std::vector<int> received;
};

Task<> fast_producer(Queue<int>& queue, Flow& flow, VirtualClock& clock, int count) {
    for (int i = 0; i < count; ++i) {
        const bool must_wait = queue.full();
        const auto before = clock.now();
        co_await queue.put(i);
        if (must_wait) {
            ++flow.puts_that_waited;
            CHECK(clock.now() > before); // it really waited for the consumer
        }
        ++flow.produced;
        flow.most_ahead = std::max(flow.most_ahead, flow.produced - flow.consumed);
        flow.put_done_ms.push_back(std::stoll(at(clock)));
    }
}

Task<> slow_consumer(Queue<int>& queue, Flow& flow, int count) {
    for (int i = 0; i < count; ++i) {
        co_await corio::Sleep{1s};
        flow.received.push_back(co_await queue.get());
        ++flow.consumed;
    }
}
} // namespace

TEST_CASE("Queue: backpressure: a fast producer waits in put while the queue is full", "[queue]") {
    FrameLeakCheck leaks;
    Queue<int> queue(3);
    VirtualClock clock;
    Scheduler kernel(clock);
    Flow flow;
    constexpr int count = 10;
    kernel.add_task(fast_producer(queue, flow, clock, count));
    kernel.add_task(slow_consumer(queue, flow, count));
    kernel.run();
    CHECK(flow.received == integers_below(count));
    // Three puts fit at once; every later one completes when the consumer's get made room.
    CHECK(flow.put_done_ms ==
          std::vector<long long>{0, 0, 0, 1000, 2000, 3000, 4000, 5000, 6000, 7000});
    CHECK(flow.puts_that_waited == count - 3);
    CHECK(flow.most_ahead == 3);
    CHECK(queue.empty());
    require_empty(kernel);
}

// ---- Cancellation -------------------------------------------------------------------------------

namespace {
Task<> kill_then_put(Queue<int>& queue, Log& log, TaskId victim, std::vector<int> values) {
    co_await corio::Yield{};
    log.push_back(co_await corio::KillTask{victim} ? "killed" : "no victim");
    for (const int value : values) {
        co_await queue.put(value);
    }
}
} // namespace

TEST_CASE("Queue: a killed getter leaves the wait list, and the others are served in order",
          "[queue][kill]") {
    FrameLeakCheck leaks;
    Queue<int> queue(0);
    Scheduler kernel;
    Log log;
    kernel.add_task(getter(queue, log, "g0"));
    const TaskId victim = kernel.add_task(getter(queue, log, "g1"));
    kernel.add_task(getter(queue, log, "g2"));
    kernel.add_task(kill_then_put(queue, log, victim, {1, 2, 3}));
    kernel.run();
    CHECK(log == Log{"killed", "g0 got 1", "g2 got 2"});
    CHECK(drain(queue) == std::vector<int>{3});
    require_empty(kernel);
}

namespace {
Task<> put_counted(Queue<Counted>& queue, Log& log, std::string name, int value) {
    co_await queue.put(Counted(value));
    log.push_back(name + " put " + std::to_string(value));
}

Task<> kill_then_get(Queue<Counted>& queue, Log& log, TaskId victim, int count) {
    co_await corio::Yield{};
    log.push_back(co_await corio::KillTask{victim} ? "killed" : "no victim");
    for (int i = 0; i < count; ++i) {
        const Counted value = co_await queue.get();
        log.push_back("got " + std::to_string(value.value()));
    }
}
} // namespace

TEST_CASE("Queue: a putter killed while it waits leaves the wait list and never puts its value",
          "[queue][kill]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    {
        Queue<Counted> queue(1);
        Scheduler kernel;
        Log log;
        REQUIRE(queue.try_put(Counted(0)));
        kernel.add_task(put_counted(queue, log, "p1", 1));
        const TaskId victim = kernel.add_task(put_counted(queue, log, "p2", 2));
        kernel.add_task(put_counted(queue, log, "p3", 3));
        kernel.add_task(kill_then_get(queue, log, victim, 3));
        kernel.run();
        CHECK(log == Log{"killed", "got 0", "got 1", "got 3", "p1 put 1", "p3 put 3"});
        CHECK(queue.empty());
        require_empty(kernel);
    }
    CHECK(Counted::alive() == 0);
    CHECK(Counted::copy_constructions == 0);
}

namespace {
Task<> get_with_timeout(Queue<int>& queue, Log& log, std::string name, VirtualClock& clock,
                        std::chrono::milliseconds limit) {
    try {
        const int value = co_await corio::timeout_after(limit, queue.get());
        log.push_back(name + " got " + std::to_string(value) + "@" + at(clock));
    } catch (const corio::TimeoutError&) {
        log.push_back(name + " TimeoutError@" + at(clock));
    }
}

Task<> get_or_ignore(Queue<int>& queue, Log& log, std::string name, VirtualClock& clock,
                     std::chrono::milliseconds limit) {
    const std::optional<int> value = co_await corio::ignore_after(limit, queue.get());
    log.push_back(name + (value ? " got " + std::to_string(*value) : std::string(" nothing")) +
                  "@" + at(clock));
}

Task<> put_at(Queue<int>& queue, Log& log, VirtualClock& clock, std::chrono::milliseconds when,
              std::vector<int> values) {
    co_await corio::Sleep{when};
    log.push_back("put@" + at(clock));
    for (const int value : values) {
        co_await queue.put(value);
    }
}
} // namespace

TEST_CASE("Queue: a getter whose deadline passes leaves the wait list (timeout_after, "
          "ignore_after)",
          "[queue][timeout]") {
    FrameLeakCheck leaks;
    Queue<int> queue(0);
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.add_task(getter(queue, log, "a"));
    kernel.add_task(get_with_timeout(queue, log, "b", clock, 1000ms));
    kernel.add_task(get_or_ignore(queue, log, "c", clock, 500ms));
    kernel.add_task(get_or_ignore(queue, log, "d", clock, 5000ms));
    kernel.add_task(get_with_timeout(queue, log, "e", clock, 3000ms));
    kernel.add_task(put_at(queue, log, clock, 2000ms, {1, 2, 3, 4}));
    kernel.run();
    CHECK(log == Log{"c nothing@500", "b TimeoutError@1000", "put@2000", "a got 1", "d got 2@2000",
                     "e got 3@2000"});
    CHECK(drain(queue) == std::vector<int>{4});
    require_empty(kernel);
}

namespace {
Task<> put_with_timeout(Queue<int>& queue, Log& log, std::string name, int value,
                        VirtualClock& clock, std::chrono::milliseconds limit) {
    try {
        co_await corio::timeout_after(limit, queue.put(value));
        log.push_back(name + " put " + std::to_string(value) + "@" + at(clock));
    } catch (const corio::TimeoutError&) {
        log.push_back(name + " TimeoutError@" + at(clock));
    }
}

Task<> put_or_ignore(Queue<int>& queue, Log& log, std::string name, int value, VirtualClock& clock,
                     std::chrono::milliseconds limit) {
    const bool put = co_await corio::ignore_after(limit, queue.put(value));
    log.push_back(name + (put ? " put " + std::to_string(value) : std::string(" gave up")) + "@" +
                  at(clock));
}

Task<> get_at(Queue<int>& queue, Log& log, VirtualClock& clock, std::chrono::milliseconds when,
              int count) {
    co_await corio::Sleep{when};
    for (int i = 0; i < count; ++i) {
        const int value = co_await queue.get();
        log.push_back("got " + std::to_string(value) + "@" + at(clock));
    }
}
} // namespace

TEST_CASE("Queue: a putter whose deadline passes leaves the wait list without putting "
          "(timeout_after, ignore_after)",
          "[queue][timeout]") {
    FrameLeakCheck leaks;
    Queue<int> queue(1);
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    REQUIRE(queue.try_put(0));
    kernel.add_task(put_with_timeout(queue, log, "a", 1, clock, 1000ms));
    kernel.add_task(put_or_ignore(queue, log, "b", 2, clock, 500ms));
    kernel.add_task(putter(queue, log, "c", 3));
    kernel.add_task(put_or_ignore(queue, log, "d", 4, clock, 5000ms));
    kernel.add_task(get_at(queue, log, clock, 2000ms, 3));
    kernel.run();
    CHECK(log == Log{"b gave up@500", "a TimeoutError@1000", "got 0@2000", "got 3@2000",
                     "got 4@2000", "c put 3", "d put 4@2000"});
    CHECK(queue.empty());
    require_empty(kernel);
}

// ---- Hand-off, then the getter dies before it runs ----------------------------------------------

namespace {
// Puts `value` (a getter waits: it is handed the value and woken), kills that getter before it
// runs, then puts `more` values.
Task<> hand_off_then_kill(Queue<int>& queue, Log& log, TaskId victim, int value,
                          std::vector<int> more) {
    co_await corio::Yield{};
    co_await queue.put(value);
    log.push_back(co_await corio::KillTask{victim} ? "killed" : "no victim");
    log.push_back("size " + std::to_string(queue.size()));
    for (const int next : more) {
        co_await queue.put(next);
    }
}
} // namespace

TEST_CASE("Queue: a getter killed after a value was handed to it passes the value to the next "
          "getter",
          "[queue][kill]") {
    FrameLeakCheck leaks;
    Queue<int> queue(1);
    Scheduler kernel;
    Log log;
    const TaskId victim = kernel.add_task(getter(queue, log, "g0"));
    kernel.add_task(getter(queue, log, "g1"));
    kernel.add_task(hand_off_then_kill(queue, log, victim, 1, {2}));
    kernel.run();
    CHECK(log == Log{"killed", "size 0", "g1 got 1"});
    CHECK(drain(queue) == std::vector<int>{2});
    require_empty(kernel);
}

namespace {
Task<> hand_off_try_put_then_kill(Queue<int>& queue, Log& log, TaskId victim) {
    co_await corio::Yield{};
    co_await queue.put(1);          // handed to the getter
    log.push_back(queue.try_put(2) ? "try_put 2" : "full"); // into the queue
    log.push_back(queue.try_put(3) ? "try_put 3" : "full");
    co_await corio::KillTask{victim};
    log.push_back("size " + std::to_string(queue.size()) + (queue.full() ? ", full" : ""));
    log.push_back(queue.try_put(4) ? "try_put 4" : "full");
}
} // namespace

TEST_CASE("Queue: a getter killed after a hand-off, with nobody else waiting, gives the value back "
          "at the front",
          "[queue][kill]") {
    FrameLeakCheck leaks;
    Queue<int> queue(1);
    Scheduler kernel;
    Log log;
    const TaskId victim = kernel.add_task(getter(queue, log, "g"));
    kernel.add_task(hand_off_try_put_then_kill(queue, log, victim));
    kernel.run();
    // The given-back value is the oldest: it goes in front of 2, even past max_size.
    CHECK(log == Log{"try_put 2", "full", "size 2, full", "full"});
    CHECK(drain(queue) == std::vector<int>{1, 2});
    require_empty(kernel);
}

namespace {
Task<> get_counted(Queue<Counted>& queue, Log& log) {
    const Counted value = co_await queue.get();
    log.push_back("got " + std::to_string(value.value()));
}

Task<> put_counted_then_stop(Scheduler& kernel, Queue<Counted>& queue, int first, int second) {
    co_await corio::Yield{};
    co_await queue.put(Counted(first)); // handed to the getter, which never runs
    co_await queue.put(Counted(second));
    kernel.stop();
}
} // namespace

TEST_CASE("Queue: a value handed to a getter comes back to the queue when the Scheduler is "
          "destroyed before the getter runs",
          "[queue][kill]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    {
        Queue<Counted> queue(0); // declared before the Scheduler: it outlives the tasks
        Log log;
        {
            Scheduler kernel;
            kernel.add_task(get_counted(queue, log));
            kernel.add_task(put_counted_then_stop(kernel, queue, 7, 8));
            kernel.run();
            CHECK(kernel.task_count() == 1); // the getter, woken, holding 7
            CHECK(queue.size() == 1);
        }
        CHECK(log.empty());
        REQUIRE(queue.size() == 2);
        CHECK(queue.try_get()->value() == 7);
        CHECK(queue.try_get()->value() == 8);
    }
    CHECK(Counted::alive() == 0);
    CHECK(Counted::copy_constructions == 0);
}

namespace {
Task<> hand_off_then_jump_time(Queue<int>& queue, VirtualClock& clock, std::vector<int> values) {
    co_await corio::Yield{};
    for (const int value : values) {
        co_await queue.put(value);
    }
    clock.advance(10s); // the woken waiters' deadlines pass before they run
}

Task<> try_get_then_jump_time(Queue<int>& queue, VirtualClock& clock, Log& log) {
    co_await corio::Yield{};
    log.push_back("try_get " + std::to_string(*queue.try_get())); // lets the putter in
    clock.advance(10s);
}
} // namespace

TEST_CASE("Queue: a getter handed a value is not interrupted by a deadline that passes before it "
          "runs",
          "[queue][timeout]") {
    FrameLeakCheck leaks;
    Queue<int> queue(0);
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    kernel.add_task(get_with_timeout(queue, log, "a", clock, 1000ms));
    kernel.add_task(get_or_ignore(queue, log, "b", clock, 1000ms));
    kernel.add_task(hand_off_then_jump_time(queue, clock, {1, 2}));
    kernel.run();
    CHECK(log == Log{"a got 1@10000", "b got 2@10000"});
    CHECK(queue.empty());
    require_empty(kernel);
}

TEST_CASE("Queue: a putter let in is not interrupted by a deadline that passes before it runs",
          "[queue][timeout]") {
    FrameLeakCheck leaks;
    Queue<int> queue(1);
    VirtualClock clock;
    Scheduler kernel(clock);
    Log log;
    REQUIRE(queue.try_put(0));
    kernel.add_task(put_with_timeout(queue, log, "a", 1, clock, 1000ms));
    kernel.add_task(try_get_then_jump_time(queue, clock, log));
    kernel.run();
    CHECK(log == Log{"try_get 0", "a put 1@10000"});
    CHECK(drain(queue) == std::vector<int>{1});
    require_empty(kernel);
}

namespace {
Task<> let_in_then_kill(Queue<int>& queue, Log& log, TaskId victim) {
    co_await corio::Yield{};
    log.push_back("got " + std::to_string(co_await queue.get())); // lets the putter's value in
    co_await corio::KillTask{victim};
}
} // namespace

TEST_CASE("Queue: a putter killed after its value got in has put it", "[queue][kill]") {
    FrameLeakCheck leaks;
    Queue<int> queue(1);
    Scheduler kernel;
    Log log;
    REQUIRE(queue.try_put(0));
    const TaskId victim = kernel.add_task(putter(queue, log, "p", 1));
    kernel.add_task(let_in_then_kill(queue, log, victim));
    kernel.run();
    CHECK(log == Log{"got 0"});
    CHECK(drain(queue) == std::vector<int>{1});
    require_empty(kernel);
}

// ---- Values: move-only, counted, throwing copies ------------------------------------------------

namespace {
Task<> produce_pointers(Queue<std::unique_ptr<int>>& queue, int count) {
    for (int i = 1; i <= count; ++i) {
        co_await queue.put(std::make_unique<int>(i));
    }
}

Task<> consume_pointers(Queue<std::unique_ptr<int>>& queue, int count, std::vector<int>& out) {
    for (int i = 0; i < count; ++i) {
        const std::unique_ptr<int> value = co_await queue.get();
        out.push_back(*value);
        co_await corio::Yield{};
    }
}
} // namespace

TEST_CASE("Queue: move-only values pass through the queue and through hand-offs", "[queue]") {
    FrameLeakCheck leaks;
    Queue<std::unique_ptr<int>> queue(2);
    Scheduler kernel;
    std::vector<int> out;
    kernel.add_task(consume_pointers(queue, 6, out));
    kernel.add_task(produce_pointers(queue, 6));
    kernel.run();
    CHECK(out == std::vector<int>{1, 2, 3, 4, 5, 6});
    require_empty(kernel);
}

namespace {
Task<> produce_counted(Queue<Counted>& queue, int count) {
    for (int i = 0; i < count; ++i) {
        co_await queue.put(Counted(i));
    }
}

Task<> consume_counted(Queue<Counted>& queue, int count, std::vector<int>& out) {
    for (int i = 0; i < count; ++i) {
        const Counted value = co_await queue.get();
        out.push_back(value.value());
        if (i % 3 == 0) {
            co_await corio::Yield{};
        }
    }
}
} // namespace

TEST_CASE("Queue: values are moved, never copied, and each is destroyed once", "[queue]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    {
        Queue<Counted> queue(2);
        Scheduler kernel;
        std::vector<int> out;
        kernel.add_task(consume_counted(queue, 20, out));
        kernel.add_task(produce_counted(queue, 20));
        kernel.run();
        CHECK(out == integers_below(20));
        require_empty(kernel);
    }
    CHECK(Counted::copy_constructions == 0);
    CHECK(Counted::copy_assignments == 0);
    CHECK(Counted::value_constructions == 20);
    CHECK(Counted::alive() == 0);
}

namespace {
struct ThrowsOnCopy {
    explicit ThrowsOnCopy(int v) noexcept : value(v) {}
    ThrowsOnCopy(const ThrowsOnCopy&) { throw TestError("copy"); }
    ThrowsOnCopy(ThrowsOnCopy&&) noexcept = default;
    ThrowsOnCopy& operator=(const ThrowsOnCopy&) = default;
    ThrowsOnCopy& operator=(ThrowsOnCopy&&) noexcept = default;
    ~ThrowsOnCopy() = default;
    int value;
};
} // namespace

TEST_CASE("Queue: try_put of a value whose copy throws leaves the queue as it was", "[queue]") {
    FrameLeakCheck leaks;
    Queue<ThrowsOnCopy> queue(2);
    CHECK(queue.try_put(ThrowsOnCopy(1)));
    const ThrowsOnCopy two(2);
    CHECK_THROWS_AS(queue.try_put(two), TestError);
    CHECK(queue.size() == 1);
    CHECK(queue.try_get()->value == 1);
    CHECK(queue.empty());
}

namespace {
Task<> consume_until_poisoned(Queue<int>& queue, Log& log, std::string name) {
    for (int i = 0; i < 10; ++i) {
        const int value = co_await queue.get();
        if (value < 0) {
            throw TestError(name + " poisoned");
        }
        log.push_back(name + " got " + std::to_string(value));
    }
}
} // namespace

TEST_CASE("Queue: a consumer that throws leaves the queue working for the others",
          "[queue]") {
    FrameLeakCheck leaks;
    Queue<int> queue(0);
    Scheduler kernel;
    Log log;
    const TaskId first = kernel.add_task(consume_until_poisoned(queue, log, "a"));
    kernel.add_task(expect_failure(first, log));
    kernel.add_task(getter(queue, log, "b", 1));
    kernel.add_task(put_and_look(queue, log, 2, {-1, 5, 6}));
    kernel.run();
    CHECK(log == Log{"put -1, size 0", "put 5, size 0", "put 6, size 1", "b got 5", "a poisoned"});
    CHECK(drain(queue) == std::vector<int>{6});
    require_empty(kernel);
}

namespace {
Task<std::string> get_expecting_logic_error(Queue<int>& queue) {
    try {
        (void)co_await queue.get();
    } catch (const std::logic_error&) {
        co_return "logic_error";
    }
    co_return "got a value";
}
} // namespace

TEST_CASE("Queue: waiting from a second Scheduler while tasks of the first wait throws "
          "std::logic_error",
          "[queue]") {
    FrameLeakCheck leaks;
    Queue<int> queue(0);
    Scheduler first;
    Log log;
    first.add_task(getter(queue, log, "g"));
    first.run(); // returns: the getter is parked, nothing can wake it
    REQUIRE(first.task_count() == 1);
    {
        Scheduler second;
        CHECK(second.run_until_complete(get_expecting_logic_error(queue)) == "logic_error");
        require_empty(second);
    }
    CHECK(queue.try_put(1)); // handed to the first Scheduler's getter
    first.run();
    CHECK(log == Log{"g got 1"});
    require_empty(first);
}

// ---- Many producers and consumers ---------------------------------------------------------------

namespace {
// seen[consumer][producer]: the items of each producer, in the order that consumer got them.
using Seen = std::vector<std::vector<std::vector<int>>>;

Task<> producer(Queue<int>& queue, int id, int count) {
    for (int i = 0; i < count; ++i) {
        co_await queue.put(id * 1000 + i);
        if ((i + id) % 3 == 0) {
            co_await corio::Yield{};
        }
    }
}

Task<> consumer(Queue<int>& queue, int id, Seen& seen, int limit) {
    auto& mine = seen[static_cast<std::size_t>(id)];
    for (int i = 0; i < limit; ++i) {
        const int value = co_await queue.get();
        if (value < 0) {
            co_return; // the end
        }
        mine[static_cast<std::size_t>(value / 1000)].push_back(value % 1000);
        if ((i + id) % 2 == 0) {
            co_await corio::Yield{};
        }
    }
    throw TestError("a consumer never saw the end");
}

Task<> run_all(Queue<int>& queue, Seen& seen, int producers, int consumers, int count) {
    std::vector<TaskId> makers;
    for (int id = 0; id < producers; ++id) {
        makers.push_back(co_await corio::NewTask{producer(queue, id, count)});
    }
    std::vector<TaskId> takers;
    for (int id = 0; id < consumers; ++id) {
        takers.push_back(co_await corio::NewTask{consumer(queue, id, seen, producers * count + 1)});
    }
    for (const TaskId id : makers) {
        (co_await corio::WaitTask{id}).rethrow_if_failed();
    }
    for (int id = 0; id < consumers; ++id) {
        co_await queue.put(-1);
    }
    for (const TaskId id : takers) {
        (co_await corio::WaitTask{id}).rethrow_if_failed();
    }
}
} // namespace

TEST_CASE("Queue: many producers and consumers: every item arrives once and in order", "[queue]") {
    FrameLeakCheck leaks;
    Queue<int> queue(4);
    Scheduler kernel;
    constexpr int producers = 4;
    constexpr int consumers = 3;
    constexpr int count = 200;
    Seen seen(consumers, std::vector<std::vector<int>>(producers));
    kernel.run_until_complete(run_all(queue, seen, producers, consumers, count));
    for (std::size_t p = 0; p < producers; ++p) {
        std::vector<int> all;
        for (const auto& by_consumer : seen) {
            const std::vector<int>& items = by_consumer[p];
            CHECK(std::is_sorted(items.begin(), items.end())); // FIFO, as each consumer sees it
            all.insert(all.end(), items.begin(), items.end());
        }
        std::sort(all.begin(), all.end());
        CHECK(all == integers_below(count)); // each item exactly once
    }
    for (const auto& by_consumer : seen) { // the consumers shared the work
        std::size_t total = 0;
        for (const auto& items : by_consumer) {
            total += items.size();
        }
        CHECK(total > 0);
    }
    CHECK(queue.empty());
    require_empty(kernel);
}
