// Test support: the small helpers that many test files share. The exception tests throw on
// purpose and the log they record into; how failures that nobody waited for are recorded; virtual
// time as tests look at it; and small tasks that yield, sleep, give a value, fail or kill on cue.
//
// A test file that uses them says `using namespace corio::test;` (the rest of tests/support is in
// that namespace too), which also brings the names of corio that nearly every test uses:
// Scheduler, Task, TaskId and VirtualClock.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/virtual_clock.hpp>

#include "support/counted.hpp"

namespace corio::test {

// For `using namespace corio::test;` in the test files.
using corio::Scheduler;
using corio::Task;
using corio::TaskId;
using corio::VirtualClock;

/// The exception tests throw on purpose (anything else is a real failure).
struct TestError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// What the tasks of a test record, in order; the test compares it with what it expects.
using Log = std::vector<std::string>;

// ---- failures -----------------------------------------------------------------------------------

/// The what() of the exception `error` holds, or "(not a std::exception)".
inline std::string what_of(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "(not a std::exception)";
    }
}

/// Every failure the kernel reports as "nobody waited for it" lands in `reports`; tests check it
/// is empty (a child's failure belongs to whoever awaits it) or holds exactly what they expect.
inline void record_reports(Scheduler& kernel, Log& reports) {
    kernel.set_exception_handler([&reports](TaskId /*id*/, const std::exception_ptr& error) {
        reports.push_back(what_of(error));
    });
}

/// Waits for task `id` and logs what its TestError says, or "no failure" if it did not fail.
inline Task<> expect_failure(TaskId id, Log& log) {
    const TaskExit exit = co_await WaitTask{id};
    try {
        exit.rethrow_if_failed();
        log.emplace_back("no failure");
    } catch (const TestError& e) {
        log.emplace_back(e.what());
    }
}

/// The errno of the std::system_error that awaiting `operation` (a Task, a system call or a
/// socket operation) throws, or 0 if it completes. Await it before a CHECK, never inside one:
/// Catch2 v2 repeats a CHECK's expression (in __builtin_constant_p and a dead branch), and with
/// GCC 12 a co_await in there ran twice (seen: a KillTask that found its victim gone, datagrams
/// sent twice).
template <class Awaitable>
Task<int> error_of(Awaitable operation) {
    try {
        (void)co_await std::move(operation);
    } catch (const std::system_error& e) {
        co_return e.code().value();
    }
    co_return 0;
}

/// What awaiting `operation` threw, or null if it completed. (Await it before a CHECK, never
/// inside one: see error_of.)
template <class Awaitable>
Task<std::exception_ptr> failure_of(Awaitable operation) {
    try {
        co_await std::move(operation);
    } catch (...) {
        co_return std::current_exception();
    }
    co_return nullptr;
}

/// How many fds this process has open now (the entries of /proc/self/fd, the directory's own
/// included: compare counts, not absolute numbers).
inline std::size_t open_fd_count() {
    std::size_t count = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        (void)entry;
        ++count;
    }
    return count;
}

// ---- virtual time -------------------------------------------------------------------------------

/// Milliseconds of virtual time since the clock's start, as text for the logs.
inline std::string at(const VirtualClock& clock) {
    const auto elapsed = clock.now() - VirtualClock().now();
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count());
}

/// Virtual time passed since `start`.
inline Scheduler::Clock::duration elapsed(const VirtualClock& clock,
                                          Scheduler::Clock::time_point start) {
    return clock.now() - start;
}

/// A sleep long enough that a kill (or a deadline) has certainly come first.
inline constexpr auto long_sleep = std::chrono::seconds(100);

/// Appends "<name> destroyed" to a log when destroyed: shows when (and in which order) frames
/// unwind or tasks die.
class Noted {
public:
    Noted(Log& log, std::string name) : log_(&log), name_(std::move(name)) {}
    Noted(const Noted&) = delete;
    Noted& operator=(const Noted&) = delete;
    ~Noted() { log_->push_back(name_ + " destroyed"); }

private:
    Log* log_;
    std::string name_;
};

// ---- small tasks --------------------------------------------------------------------------------

inline Task<> nothing() {
    co_return;
}

inline Task<int> identity(int value) {
    co_return value;
}

inline Task<> set_flag(bool& flag) {
    flag = true;
    co_return;
}

inline Task<> yield_times(int count) {
    for (int i = 0; i < count; ++i) {
        co_await Yield{};
    }
}

inline Task<> stop_now(Scheduler& kernel) {
    kernel.stop();
    co_return;
}

/// Leaves the caller suspended without registering it anywhere: only Scheduler::unpark (or a
/// kill) ends that.
struct Park {
    bool handle(Scheduler& /*kernel*/, TaskId /*caller*/) noexcept { return true; }
    void result() const noexcept {}
};

// ---- tasks that sleep, then do one thing --------------------------------------------------------

inline Task<> sleep_for(Scheduler::Clock::duration length) {
    co_await Sleep{length};
}

template <class T>
Task<T> value_after(Scheduler::Clock::duration length, T value) {
    co_await Sleep{length};
    co_return value;
}

inline Task<> log_after(Scheduler::Clock::duration length, Log& log, std::string name) {
    co_await Sleep{length};
    log.push_back(std::move(name));
}

inline Task<int> throw_after(Scheduler::Clock::duration length, std::string message) {
    co_await Sleep{length};
    throw TestError(message);
}

/// Holds a Counted in its frame while it sleeps; `resumed` says whether it ever woke.
inline Task<int> hold_and_sleep(Scheduler::Clock::duration length, Counted held, bool& resumed) {
    co_await Sleep{length};
    resumed = true;
    co_return held.value();
}

inline Task<> kill_after(Scheduler::Clock::duration delay, const TaskId& victim) {
    co_await Sleep{delay};
    co_await KillTask{victim};
}

/// A result type with no default constructor.
struct NoDefault {
    explicit NoDefault(int initial) : value(initial) {}
    int value;
};

inline Task<NoDefault> make_no_default(Scheduler::Clock::duration length, int value) {
    co_await Sleep{length};
    co_return NoDefault(value);
}

} // namespace corio::test
