// corio/syscalls.hpp - the system calls: what a task can ask of the kernel with `co_await`.
//
// Each is a small struct in the SystemCall shape (see syscall_concept.hpp): handle() runs in the kernel
// when the task traps, result() is what the task gets back. Writing your own is the same: the kernel
// services they use (Scheduler::wait_for_read, sleep_until, unpark, ...) are public.
//
// Every call has a constructor although an aggregate would do: GCC 12 mis-compiles an aggregate
// temporary with a non-trivial member in a co_await operand (`co_await NewTask{make()}` copies the
// member's bytes and destroys it twice). The types and their constructors are both [[nodiscard]]
// so that a forgotten co_await is a warning: Clang warns for the type alone, GCC 12 only for a
// constructor marked [[nodiscard]].
//
// Rules: docs/guide.md#system-calls.
#pragma once

#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"
#include "corio/task.hpp"
#include "corio/task_exit.hpp"

#include <chrono>
#include <string>
#include <utility>

namespace corio {

/// `co_await NewTask{task}` adds `task` to the scheduler and gives its id. The new task runs later;
/// the caller continues at once.
struct [[nodiscard]] NewTask {
    /// Takes the task to spawn; it must not have run yet. (`spawned_at`, filled in by the
    /// compiler, is where, for introspection.)
    [[nodiscard]] explicit NewTask(Task<> spawned,
                                   detail::SpawnSite spawned_at = detail::SpawnSite(__builtin_FILE(), __builtin_LINE())) noexcept
        : task(std::move(spawned)), site(spawned_at) {}

    Task<> task;  ///< The task to add; moved into the Scheduler by handle().
    TaskId id{};  ///< The new task's id, once handle() has run.
    detail::SpawnSite site; ///< Where it was spawned.

    /// Kernel side (see SystemCall): adds the task with Scheduler::add_task; never suspends.
    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        id = kernel.add_task(std::move(task), site);
        return false;
    }
    /// The new task's id.
    [[nodiscard]] TaskId result() const noexcept { return id; }
};

/// `co_await GetTid{}` gives the calling task's id.
struct [[nodiscard]] GetTid {
    /// The call; the kernel fills in the id.
    [[nodiscard]] GetTid() noexcept = default;

    TaskId id{}; ///< The caller's id, once handle() has run.

    /// Kernel side (see SystemCall): notes the caller's id; never suspends.
    bool handle(Scheduler& /*kernel*/, TaskId caller) noexcept {
        id = caller;
        return false;
    }
    /// The calling task's id.
    [[nodiscard]] TaskId result() const noexcept { return id; }
};

/// `co_await NameTask{"name"}` names the calling task in snapshots, task listings and stall
/// warnings (see Scheduler::set_name and corio/diag/); an empty name takes the name back.
struct [[nodiscard]] NameTask {
    /// The name to give; the kernel keeps a copy until the task ends.
    [[nodiscard]] explicit NameTask(std::string task_name) noexcept : name(std::move(task_name)) {}

    std::string name; ///< The name, moved into the kernel by handle().

    /// Kernel side (see SystemCall): Scheduler::set_name for the caller; never suspends.
    bool handle(Scheduler& kernel, TaskId caller) {
        kernel.set_name(caller, std::move(name));
        return false;
    }
    /// Nothing.
    void result() const noexcept {}
};

/// `co_await KillTask{id}` kills a task (see Scheduler::kill) and gives true if it existed. A task
/// that kills itself does not come back from this call.
struct [[nodiscard]] KillTask {
    /// Names the task to kill (possibly the caller itself).
    [[nodiscard]] explicit KillTask(TaskId victim) noexcept : target(victim) {}

    TaskId target;        ///< The task to kill.
    bool existed = false; ///< Whether it existed, once handle() has run.

    /// Kernel side (see SystemCall): Scheduler::kill; suspends only a task that killed itself,
    /// which is then destroyed instead of resumed.
    bool handle(Scheduler& kernel, TaskId caller) {
        existed = kernel.kill(target);
        return existed && target == caller;
    }
    /// True if the task existed (and is now killed).
    [[nodiscard]] bool result() const noexcept { return existed; }
};

/// `co_await WaitTask{id}` suspends until that task ends and gives how it ended; at once, with
/// TaskExit::Outcome::no_such_task, if there is no such task.
struct [[nodiscard]] WaitTask {
    /// Names the task to wait for; it must not be the caller.
    [[nodiscard]] explicit WaitTask(TaskId awaited) noexcept : target(awaited) {}
    WaitTask(const WaitTask& other) noexcept : target(other.target) {} // a copy has not waited
    WaitTask(WaitTask&& other) noexcept
        : target(other.target), exit(std::move(other.exit)),
          kernel_(std::exchange(other.kernel_, nullptr)) {}
    WaitTask& operator=(const WaitTask&) = delete;
    WaitTask& operator=(WaitTask&&) = delete;
    // A failure handed to this wait and never received (the task was killed, or destroyed with
    // its Scheduler, before it ran) must not vanish with the frame: see Scheduler::settle_failure.
    ~WaitTask() {
        if (kernel_ != nullptr && exit.failed()) { // only the waiters there were get it
            kernel_->settle_failure(target, false);
        }
    }

    TaskId target;   ///< The task waited for.
    TaskExit exit{}; ///< How it ended: written by the kernel when it ends.

    /// Kernel side (see SystemCall): Scheduler::wait_for_exit; suspends unless there is no such
    /// task.
    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        const bool waits = kernel.wait_for_exit(target, exit);
        kernel_ = waits ? &kernel : nullptr; // until the outcome is known
        return waits;
    }
    /// How the task ended (its exception, if it failed, is in TaskExit::error).
    [[nodiscard]] TaskExit result() noexcept {
        Scheduler* kernel = std::exchange(kernel_, nullptr);
        if (kernel != nullptr && exit.failed()) {
            kernel->settle_failure(target, true); // received
        }
        return std::move(exit);
    }

private:
    Scheduler* kernel_ = nullptr; // set while it may hold a failure it has not received
};

/// `co_await ReadWait{fd}` suspends until `fd` is readable. Hang-up and error count as readable:
/// the next system call on the fd reports them.
struct [[nodiscard]] ReadWait {
    /// Names the fd to wait on (any fd the selector accepts: a socket, a pipe, an eventfd...).
    [[nodiscard]] explicit ReadWait(int watched) noexcept : fd(watched) {}

    int fd; ///< The fd waited on.

    /// Kernel side (see SystemCall): Scheduler::wait_for_read; always suspends.
    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        kernel.wait_for_read(fd);
        return true;
    }
    /// Nothing: the fd is ready (or hung up, or in error).
    void result() const noexcept {}
};

/// `co_await WriteWait{fd}` suspends until `fd` is writable. Hang-up and error count as writable.
struct [[nodiscard]] WriteWait {
    /// Names the fd to wait on.
    [[nodiscard]] explicit WriteWait(int watched) noexcept : fd(watched) {}

    int fd; ///< The fd waited on.

    /// Kernel side (see SystemCall): Scheduler::wait_for_write; always suspends.
    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        kernel.wait_for_write(fd);
        return true;
    }
    /// Nothing: the fd is ready (or hung up, or in error).
    void result() const noexcept {}
};

/// `co_await Sleep{duration}` suspends for at least `duration` (a zero or negative one yields:
/// see Yield).
struct [[nodiscard]] Sleep {
    /// Takes any std::chrono duration: rounded up to the clock's resolution, and saturated
    /// rather than overflowed (`Sleep{std::chrono::seconds::max()}` is practically forever).
    /// Throws std::invalid_argument for a floating-point duration that is NaN or infinite.
    template <class Rep, class Period>
    [[nodiscard]] explicit Sleep(std::chrono::duration<Rep, Period> length)
        : duration(detail::to_clock_duration(length)) {}

    Scheduler::Clock::duration duration; ///< How long to sleep, on the Scheduler's clock.

    /// Kernel side (see SystemCall): arms a timer (Scheduler::sleep_until), or yields for a
    /// duration that is not positive; always suspends.
    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        if (duration <= Scheduler::Clock::duration::zero()) {
            kernel.yield_now();
        } else {
            kernel.sleep_until(kernel.deadline_after(duration));
        }
        return true;
    }
    /// Nothing: the time has come.
    void result() const noexcept {}
};

/// `co_await SleepUntil{time_point}` suspends until `deadline` on the Scheduler's clock
/// (steady_clock, or its VirtualClock). A deadline that has already passed yields, like a zero
/// Sleep.
struct [[nodiscard]] SleepUntil {
    /// Takes the time to wake at, on the Scheduler's clock (Scheduler::now()).
    [[nodiscard]] explicit SleepUntil(Scheduler::Clock::time_point when) noexcept : deadline(when) {}

    Scheduler::Clock::time_point deadline; ///< When to wake.

    /// Kernel side (see SystemCall): arms a timer, or yields if the deadline has passed; always
    /// suspends.
    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        if (deadline <= kernel.now()) {
            kernel.yield_now();
        } else {
            kernel.sleep_until(deadline);
        }
        return true;
    }
    /// Nothing: the time has come.
    void result() const noexcept {}
};

/// `co_await Yield{}` lets every other ready task run, and the selector look, before continuing.
/// It is a wait like any other: inside timeout_after, a deadline that has passed (or passes before
/// the task runs again) ends it with TimeoutError. So do a Sleep that is not positive and a
/// SleepUntil whose time has passed, which yield.
struct [[nodiscard]] Yield {
    /// The call. (Not `= default`: GCC 12 sees no constructor call in `Yield{}` then, and
    /// does not warn when it is not awaited.)
    [[nodiscard]] Yield() noexcept {} // NOLINT(modernize-use-equals-default)

    /// Kernel side (see SystemCall): Scheduler::yield_now; always suspends.
    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        kernel.yield_now();
        return true;
    }
    /// Nothing.
    void result() const noexcept {}
};

} // namespace corio
