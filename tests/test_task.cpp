// Tests for corio/task.hpp: Task<T> is lazy, move-only, owns its frame, carries values and
// exceptions to whoever awaits it, and runs synchronous co_awaits in constant stack space.
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/task.hpp>

#include "support/catch.hpp"
#include "support/counted.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;

Task<> hold(Counted held, int& seen) {
    seen = held.value();
    co_return;
}

// Clang may elide the heap allocation of a frame whose whole life it can see (HALO): such a frame
// is never counted by live_frames(). Passing the Task through a call it cannot see into makes the
// frame escape, so that the tests counting frames count every one.
template <class T>
[[gnu::noinline]] Task<T> escape(Task<T> task) {
    return task;
}

Task<std::unique_ptr<int>> make_unique_int(int value) {
    co_return std::make_unique<int>(value);
}

Task<int&> reference_to(int& target) {
    co_return target;
}

Task<Counted> make_counted(int value) {
    Counted local(value);
    co_return std::move(local);
}

} // namespace

// ---- laziness -----------------------------------------------------------------------------------

namespace {
Task<> create_child_then_await(bool& child_ran, bool& ran_before_await) {
    Task<> child = set_flag(child_ran);
    co_await corio::Yield{};
    ran_before_await = child_ran;
    co_await child;
}
} // namespace

TEST_CASE("Task does not run its body until it is scheduled or awaited", "[task]") {
    FrameLeakCheck leaks;
    bool ran = false;
    {
        Task<> task = set_flag(ran);
        CHECK(task.valid());
        CHECK_FALSE(task.done());
        CHECK_FALSE(ran);
    }
    CHECK_FALSE(ran); // destroyed without ever running

    corio::Scheduler kernel;
    bool scheduled_ran = false;
    kernel.add_task(set_flag(scheduled_ran));
    CHECK_FALSE(scheduled_ran); // add_task only queues it

    bool child_ran = false;
    bool ran_before_await = true;
    kernel.add_task(create_child_then_await(child_ran, ran_before_await));
    kernel.run();
    CHECK(scheduled_ran);
    CHECK_FALSE(ran_before_await); // created, then a whole pass of the loop, and still not run
    CHECK(child_ran);
    require_empty(kernel);
}

// ---- ownership ----------------------------------------------------------------------------------

static_assert(!std::is_copy_constructible_v<Task<int>>);
static_assert(!std::is_copy_assignable_v<Task<int>>);
static_assert(!std::is_copy_constructible_v<Task<>>);
static_assert(std::is_nothrow_move_constructible_v<Task<int>>);
static_assert(std::is_nothrow_move_assignable_v<Task<int>>);
static_assert(std::is_nothrow_default_constructible_v<Task<int>>);
static_assert(std::is_same_v<Task<>, Task<void>>);
static_assert(std::is_same_v<Task<int&>::value_type, int&>);

TEST_CASE("Task is move-only: moving transfers the frame, move-assignment destroys the old one",
          "[task]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    const long frames_before = live_frames();
    int seen = 0;
    {
        Task<> first = escape(hold(Counted(1), seen));
        Task<> second = escape(hold(Counted(2), seen));
        CHECK(live_frames() == frames_before + 2);
        CHECK(Counted::alive() == 2); // one parameter copy in each frame

        Task<> moved(std::move(first));
        CHECK_FALSE(
            first.valid()); // NOLINT(bugprone-use-after-move): checking the moved-from state
        CHECK(moved.valid());
        CHECK(live_frames() == frames_before + 2); // no new frame, none destroyed

        moved = std::move(second);   // the frame holding Counted(1) is destroyed
        CHECK_FALSE(second.valid()); // NOLINT(bugprone-use-after-move)
        CHECK(live_frames() == frames_before + 1);
        CHECK(Counted::alive() == 1);

        Task<>& alias = moved;
        moved = std::move(alias); // self-move-assignment keeps the frame
        CHECK(moved.valid());
        CHECK(live_frames() == frames_before + 1);

        corio::Scheduler kernel;
        kernel.add_task(std::move(moved));
        kernel.run();
        CHECK(seen == 2); // the surviving frame is the second one
        require_empty(kernel);
    }
    CHECK(Counted::alive() == 0);
    CHECK(live_frames() == frames_before);
}

TEST_CASE("Destroying a Task that never started destroys its frame and its parameters", "[task]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    const long frames_before = live_frames();
    int seen = 0;
    {
        Task<> task = escape(hold(Counted(7), seen));
        CHECK(live_frames() == frames_before + 1);
        CHECK(Counted::alive() == 1);
        CHECK(Counted::copy_constructions == 0); // the argument was moved into the frame
    }
    CHECK(live_frames() == frames_before);
    CHECK(Counted::alive() == 0);
    CHECK(seen == 0); // the body never ran
}

TEST_CASE("Task::release gives up the frame without destroying it", "[task]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    const long frames_before = live_frames();
    int seen = 0;
    Task<> task = escape(hold(Counted(3), seen));
    auto handle = task.release();
    CHECK_FALSE(task.valid());
    CHECK_FALSE(task.done());
    REQUIRE(handle);
    CHECK(live_frames() == frames_before + 1);
    CHECK(Counted::alive() == 1);
    handle.destroy();
    CHECK(live_frames() == frames_before);
    CHECK(Counted::alive() == 0);
}

namespace {
struct ValidDone {
    bool valid;
    bool done;
    friend bool operator==(const ValidDone&, const ValidDone&) = default;
};

Task<int> throw_or_return(bool fail, int value) {
    if (fail) {
        throw TestError("throw_or_return failed");
    }
    co_return value;
}

Task<> observe_valid_done(std::vector<ValidDone>& states) {
    Task<int> empty;
    states.push_back({empty.valid(), empty.done()});
    Task<int> child = identity(5);
    states.push_back({child.valid(), child.done()});
    const int value = co_await child;
    states.push_back({child.valid(), child.done() && value == 5});
    Task<int> failing = throw_or_return(true, 0);
    try {
        co_await failing;
    } catch (const TestError&) {
    }
    states.push_back({failing.valid(), failing.done()});
    Task<int> moved = std::move(child);
    states.push_back({child.valid(), child.done()}); // NOLINT(bugprone-use-after-move)
    states.push_back({moved.valid(), moved.done()});
}
} // namespace

TEST_CASE("Task::valid and Task::done follow the frame through its life", "[task]") {
    FrameLeakCheck leaks;
    corio::Scheduler kernel;
    std::vector<ValidDone> states;
    kernel.run_until_complete(observe_valid_done(states));
    const std::vector<ValidDone> expected{
        {false, false}, // default-constructed: no frame
        {true, false},  // created, not started
        {true, true},   // returned
        {true, true},   // threw
        {false, false}, // moved from
        {true, true},   // moved to: still the finished frame
    };
    CHECK(states == expected);
    require_empty(kernel);
}

// ---- values -------------------------------------------------------------------------------------

namespace {
Task<int> add_children(int a, int b) {
    const int first = co_await identity(a);
    Task<int> second = identity(b);
    const int second_value = co_await second;
    co_return first + second_value;
}
} // namespace

TEST_CASE("Task<int> delivers its value to the awaiting task", "[task]") {
    FrameLeakCheck leaks;
    corio::Scheduler kernel;
    CHECK(kernel.run_until_complete(add_children(40, 2)) == 42);
    CHECK(kernel.run_until_complete(identity(-7)) == -7);
    require_empty(kernel);
}

namespace {
Task<int> unique_ptr_by_rvalue_and_lvalue(bool& second_await_empty) {
    std::unique_ptr<int> from_temporary = co_await make_unique_int(10);
    Task<std::unique_ptr<int>> task = make_unique_int(20);
    std::unique_ptr<int>& in_frame = co_await task; // a reference into the child's frame
    std::unique_ptr<int> taken = std::move(in_frame);
    std::unique_ptr<int>& again = co_await task; // the same, now moved-from, object
    second_await_empty = again == nullptr;
    Task<std::unique_ptr<int>> moved_out = make_unique_int(30);
    std::unique_ptr<int> by_rvalue = co_await std::move(moved_out);
    co_return *from_temporary + *taken + *by_rvalue;
}
} // namespace

TEST_CASE("Task<std::unique_ptr<int>> moves a move-only value out, or lends it by reference",
          "[task]") {
    FrameLeakCheck leaks;
    corio::Scheduler kernel;
    bool second_await_empty = false;
    CHECK(kernel.run_until_complete(unique_ptr_by_rvalue_and_lvalue(second_await_empty)) == 60);
    CHECK(second_await_empty);

    auto direct = kernel.run_until_complete(make_unique_int(99));
    REQUIRE(direct != nullptr);
    CHECK(*direct == 99);
    require_empty(kernel);
}

namespace {
Task<bool> reference_round_trip(int& target) {
    int& ref = co_await reference_to(target);
    ref = 123; // writes through to the caller's variable
    Task<int&> task = reference_to(target);
    int& from_lvalue = co_await task;
    int& from_rvalue = co_await std::move(task);
    co_return &ref == &target&&& from_lvalue == &target&&& from_rvalue == &target;
}
} // namespace

TEST_CASE("Task<int&> returns a reference to the very object, not a copy", "[task]") {
    FrameLeakCheck leaks;
    corio::Scheduler kernel;
    int target = 1;
    CHECK(kernel.run_until_complete(reference_round_trip(target)));
    CHECK(target == 123);

    int& direct = kernel.run_until_complete(reference_to(target));
    CHECK(&direct == &target);
    require_empty(kernel);
}

namespace {
Task<int> void_children(int& steps) {
    co_await nothing();
    ++steps;
    Task<> lvalue = nothing();
    co_await lvalue;
    ++steps;
    bool flag = false;
    co_await set_flag(flag);
    steps += flag ? 1 : 100;
    co_return steps;
}
} // namespace

TEST_CASE("Task<void> completes and resumes its awaiter", "[task]") {
    FrameLeakCheck leaks;
    corio::Scheduler kernel;
    int steps = 0;
    CHECK(kernel.run_until_complete(void_children(steps)) == 3);
    CHECK(steps == 3);
    kernel.run_until_complete(nothing()); // void run_until_complete returns normally
    require_empty(kernel);
}

namespace {
struct AwaitKinds {
    bool lvalue_gives_reference = false;
    bool same_object_twice = false;
    int lvalue_value = 0;
    int rvalue_value = 0;
    std::size_t copies_before_explicit_copy = 99;
    std::size_t copies_after_explicit_copy = 0;
};

Task<> await_lvalue_and_rvalue(AwaitKinds& out) {
    Task<Counted> task = make_counted(3);
    auto&& from_lvalue = co_await task;
    static_assert(std::is_same_v<decltype(from_lvalue), Counted&>);
    out.lvalue_value = from_lvalue.value();
    Counted& second = co_await task; // already done: the same object in the same frame
    out.same_object_twice = &second == &from_lvalue;
    out.lvalue_gives_reference = task.done();

    auto&& from_rvalue = co_await make_counted(4);
    static_assert(std::is_same_v<decltype(from_rvalue), Counted&&>);
    out.rvalue_value = from_rvalue.value();
    out.copies_before_explicit_copy = Counted::copy_constructions;

    Counted copy = co_await task; // copying from the lvalue's reference is the caller's choice
    out.copies_after_explicit_copy = Counted::copy_constructions;
    CHECK(copy.value() == 3);
}
} // namespace

TEST_CASE("co_await on an lvalue Task lends its value, on an rvalue it moves it, never copying",
          "[task]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    {
        corio::Scheduler kernel;
        AwaitKinds out;
        kernel.run_until_complete(await_lvalue_and_rvalue(out));
        CHECK(out.lvalue_value == 3);
        CHECK(out.same_object_twice);
        CHECK(out.lvalue_gives_reference);
        CHECK(out.rvalue_value == 4);
        CHECK(out.copies_before_explicit_copy == 0);
        CHECK(out.copies_after_explicit_copy == 1);

        Counted::reset_counts();
        Counted direct = kernel.run_until_complete(make_counted(8));
        CHECK(direct.value() == 8);
        CHECK(Counted::copy_constructions == 0);
        require_empty(kernel);
    }
    CHECK(Counted::alive() == 0);
}

// ---- exceptions ---------------------------------------------------------------------------------

namespace {
Task<int> deepest(Counted held, bool suspend_first) {
    if (suspend_first) {
        co_await corio::Yield{};
    }
    if (held.value() >= 0) {
        throw TestError("thrown at level 3");
    }
    co_return held.value();
}

Task<int> middle_level(bool suspend_first, int& passed) {
    Counted local(2);
    const int value = co_await deepest(Counted(3), suspend_first);
    ++passed; // never reached: the exception skips the rest of this frame
    co_return value + local.value();
}

Task<int> top_level(bool suspend_first, int& passed) {
    Counted local(1);
    const int value = co_await middle_level(suspend_first, passed);
    ++passed;
    co_return value + local.value();
}

Task<int> catching_level(bool suspend_first, int& passed, std::string& message) {
    try {
        co_return co_await top_level(suspend_first, passed);
    } catch (const TestError& error) {
        message = error.what();
    }
    co_return -1;
}
} // namespace

TEST_CASE("An exception propagates through several levels of awaiting tasks", "[task]") {
    for (const bool suspend_first : {false, true}) {
        CAPTURE(suspend_first);
        FrameLeakCheck leaks;
        Counted::reset_counts();
        {
            corio::Scheduler kernel;
            int passed = 0;
            try {
                kernel.run_until_complete(top_level(suspend_first, passed));
                FAIL("run_until_complete did not rethrow");
            } catch (const TestError& error) {
                CHECK(std::string(error.what()) == "thrown at level 3");
            }
            CHECK(passed == 0);
            CHECK(Counted::alive() == 0); // every level's locals and parameters were destroyed

            std::string message;
            CHECK(kernel.run_until_complete(catching_level(suspend_first, passed, message)) == -1);
            CHECK(message == "thrown at level 3");
            CHECK(passed == 0);
            require_empty(kernel);
        }
        CHECK(Counted::alive() == 0);
    }
}

namespace {
Task<std::string> await_empty_tasks() {
    std::string log;
    Task<int> empty;
    try {
        co_await empty;
        log += "no-throw;";
    } catch (const std::logic_error&) {
        log += "lvalue;";
    }
    try {
        co_await Task<>{};
        log += "no-throw;";
    } catch (const std::logic_error&) {
        log += "rvalue;";
    }
    Task<int> source = identity(1);
    Task<int> target = std::move(source);
    try {
        co_await source; // NOLINT(bugprone-use-after-move): awaiting the moved-from Task
        log += "no-throw;";
    } catch (const std::logic_error&) {
        log += "moved-from;";
    }
    log += std::to_string(co_await target); // the task keeps working after those failures
    co_return log;
}
} // namespace

TEST_CASE("co_await on an empty Task throws std::logic_error", "[task]") {
    FrameLeakCheck leaks;
    corio::Scheduler kernel;
    CHECK(kernel.run_until_complete(await_empty_tasks()) == "lvalue;rvalue;moved-from;1");
    require_empty(kernel);
}

namespace {
// Awaits a Task that another task may be awaiting too; logs what it got or what it caught.
Task<> await_shared(Task<int>& shared, Log& log, std::string name) {
    try {
        const int value = co_await shared;
        log.push_back(name + " got " + std::to_string(value));
    } catch (const std::logic_error& e) {
        log.push_back(name + " caught: " + e.what());
    }
}
} // namespace

TEST_CASE("A second task awaiting a Task that another one awaits gets std::logic_error", "[task]") {
    FrameLeakCheck leaks;
    corio::Scheduler kernel;
    Log log;
    Task<int> shared = value_after(10ms, 7); // suspends in its Sleep while the first awaits it
    kernel.add_task(await_shared(shared, log, "first"));
    kernel.add_task(await_shared(shared, log, "second"));
    kernel.run();
    CHECK(log == Log{"second caught: corio: a Task is awaited by two tasks at once", "first got 7"});
    // Once it has finished, awaiting it again gives its value again.
    kernel.add_task(await_shared(shared, log, "third"));
    kernel.run();
    CHECK(log.back() == "third got 7");
    require_empty(kernel);
}

// ---- stack depth --------------------------------------------------------------------------------

namespace {
constexpr int million = 1'000'000;

Task<long long> sum_of_synchronous_awaits(int count) {
    long long sum = 0;
    for (int i = 0; i < count; ++i) {
        sum += co_await identity(i);
    }
    co_return sum;
}

Task<long long> void_and_lvalue_awaits(int count) {
    long long steps = 0;
    for (int i = 0; i < count; ++i) {
        Task<> task = nothing();
        co_await task;
        ++steps;
    }
    co_return steps;
}

Task<int> identity_sometimes_yielding(int value, int& yields) {
    if (value % 1000 == 0) {
        ++yields;
        co_await corio::Yield{};
    }
    co_return value;
}

Task<long long> sum_with_some_yields(int count, int& yields, bool& done) {
    long long sum = 0;
    for (int i = 0; i < count; ++i) {
        sum += co_await identity_sometimes_yielding(i, yields);
    }
    done = true;
    co_return sum;
}

Task<> tick_until(const bool& done, int& ticks, int limit) {
    while (!done && ticks < limit) {
        ++ticks;
        co_await corio::Yield{};
    }
}
} // namespace

TEST_CASE("A million synchronously completing co_awaits run in constant stack space", "[task]") {
    FrameLeakCheck leaks;
    corio::Scheduler kernel;
    const long long expected = static_cast<long long>(million) * (million - 1) / 2;
    CHECK(kernel.run_until_complete(sum_of_synchronous_awaits(million)) == expected);
    CHECK(kernel.run_until_complete(void_and_lvalue_awaits(million)) == million);
    require_empty(kernel);
}

TEST_CASE("A million co_awaits mixing synchronous completion and suspension (Yield) in the child",
          "[task]") {
    FrameLeakCheck leaks;
    corio::Scheduler kernel;
    int yields = 0;
    int ticks = 0;
    bool done = false;
    kernel.add_task(tick_until(done, ticks, 10 * million));
    const long long expected = static_cast<long long>(million) * (million - 1) / 2;
    CHECK(kernel.run_until_complete(sum_with_some_yields(million, yields, done)) == expected);
    CHECK(yields == million / 1000);
    // The other task ran once per pass while the summing task was suspended in its child.
    CHECK(ticks >= million / 1000 - 1);
    kernel.run();
    CHECK(ticks < 10 * million);
    require_empty(kernel);
}

// ---- suspension inside a child ------------------------------------------------------------------

namespace {
Task<int> sleep_then_return(int value, std::chrono::milliseconds length) {
    co_await corio::Sleep{length};
    co_return value;
}

Task<int> await_sleeping_child(int value, int order_marker, std::vector<int>& order) {
    Counted local(value);
    const int from_child = co_await sleep_then_return(value, 20ms);
    order.push_back(order_marker);
    co_return from_child * 10 + local.value();
}

Task<std::unique_ptr<int>> sleep_then_unique(int value) {
    co_await corio::Sleep{1ms};
    co_return std::make_unique<int>(value);
}

Task<int> three_levels_with_sleep(int value) {
    std::unique_ptr<int> pointer = co_await sleep_then_unique(value);
    co_return *pointer + co_await sleep_then_return(1, 1ms);
}

Task<> record_now(std::vector<int>& order, int marker) {
    order.push_back(marker);
    co_return;
}
} // namespace

TEST_CASE("A child that suspends on a Sleep returns its value to the waiting parent", "[task]") {
    FrameLeakCheck leaks;
    Counted::reset_counts();
    {
        corio::Scheduler kernel;
        std::vector<int> order;
        kernel.add_task(record_now(order, 1)); // runs while the parent's child sleeps
        const auto start = std::chrono::steady_clock::now();
        CHECK(kernel.run_until_complete(await_sleeping_child(4, 2, order)) == 44);
        CHECK(std::chrono::steady_clock::now() - start >= 20ms);
        CHECK(order == std::vector<int>{1, 2});
        CHECK(kernel.run_until_complete(three_levels_with_sleep(41)) == 42);
        require_empty(kernel);
    }
    CHECK(Counted::alive() == 0);
}

// ---- outside a Scheduler ------------------------------------------------------------------------

namespace {
Task<int> ask_for_tid() {
    const corio::TaskId id = co_await corio::GetTid{};
    co_return static_cast<int>(id.serial());
}
} // namespace

TEST_CASE("A system call in a Task that no Scheduler runs throws std::logic_error", "[task]") {
    FrameLeakCheck leaks;
    Task<int> task = ask_for_tid();
    auto handle = task.release();
    handle.resume(); // as if someone other than a Scheduler ran it
    REQUIRE(handle.done());
    REQUIRE(handle.promise().exception() != nullptr);
    CHECK_THROWS_AS(std::rethrow_exception(handle.promise().exception()), std::logic_error);
    handle.destroy();
}
