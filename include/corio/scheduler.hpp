// corio/scheduler.hpp - Scheduler: what main() uses to run tasks.
//
// A Scheduler is a kernel (kernel/kernel.hpp: the loop, the task table, timers, fd watches, the
// inbox) with the face a program needs: add tasks, run them, stop, kill, post from other threads.
// System calls reach the kernel's services through the Scheduler& their handle() receives.
#pragma once

#include "corio/syscall_concept.hpp"
#include "corio/task.hpp"
#include "corio/task_exit.hpp"
#include "corio/thread_pool.hpp"
#include "corio/virtual_clock.hpp"
#include "corio/kernel/kernel.hpp"

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace corio {

namespace detail {

template <class T>
struct RunResult {
    using Stored = std::conditional_t<
        std::is_void_v<T>, bool,
        std::conditional_t<std::is_reference_v<T>,
                           std::reference_wrapper<std::remove_reference_t<T>>, T>>;
    std::optional<Stored> value;
    std::exception_ptr error;
};

template <class T>
Task<> capture_result(Task<T> task, RunResult<T>& out) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(task);
            out.value.emplace(true);
        } else if constexpr (std::is_reference_v<T>) {
            out.value.emplace(co_await std::move(task));
        } else {
            out.value.emplace(co_await std::move(task));
        }
    } catch (...) {
        out.error = std::current_exception();
    }
}

} // namespace detail

/// The kernel as main() sees it. Owns its tasks' frames; belongs to the thread that runs it: only
/// post(), hold() and Hold may be used from other threads. The services that system calls use
/// (wait_for_read, sleep_until, wait_in, ...) are those of detail::Kernel (kernel/kernel.hpp).
class Scheduler : public detail::Kernel {
public:
    /// Receives exceptions of tasks that failed while nobody waited for them.
    using ExceptionHandler = std::function<void(TaskId, std::exception_ptr)>;

    /// What the kernel holds right now (tests assert it holds nothing when they are done).
    struct Stats {
        std::size_t tasks = 0;
        std::size_t ready = 0;
        std::size_t waiting_on_fds = 0;
        std::size_t timers = 0;
        std::size_t watched_fds = 0;
        std::size_t thread_jobs = 0; // tasks waiting for a job on the thread pool
        std::size_t lent_buffers = 0; // buffers lent reads hold (LentBytes, or bytes not read yet)
    };

    /// A Scheduler on the real (steady) clock, waiting in `backend` (see backend/selector.hpp:
    /// by default io_uring where the kernel allows it, else epoll; CORIO_BACKEND overrides).
    /// Throws std::invalid_argument for a backend this build or system does not have.
    explicit Scheduler(Backend backend = Backend::automatic) : Kernel(backend) {}
    /// A Scheduler on a virtual clock (see virtual_clock.hpp), which must outlive it.
    explicit Scheduler(VirtualClock& clock, Backend backend = Backend::automatic) : Kernel(clock, backend) {}
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    /// Destroys every task still alive, as if killed: their destructors run, their waits are
    /// unregistered first. Then shuts the thread pool down: it waits for the jobs that are running
    /// (a job cannot be interrupted) and drops their results; queued jobs never run. Callables
    /// posted but not run yet are destroyed without running. Nobody may post() to a Scheduler
    /// while it is being destroyed.
    ///
    /// Tasks die newest first (by serial number, descending), so children die before the parents
    /// that spawned them: a child waiting on an Event, a Queue... in its parent's frame leaves it
    /// before the parent's frame (and the Event) is destroyed. Tasks spawned by the destructors
    /// that run are newer still, and die next.
    ~Scheduler() {
        kill_everything();
        pool_jobs_.shutdown(); // the last jobs deliver into the inbox, which is still here
        inbox_.discard_all();
    }

    /// Adds a task to the ready queue; it first runs in a later pass of the loop. (`site`, filled
    /// in by the compiler, is where it was spawned, for introspection.)
    // Always inlined: GCC 12 stops inlining it into NewTask's trap once it carries the site, and
    // the call costs more than the notes themselves (callgrind: 17 of 51 instructions per spawn).
    [[gnu::always_inline]] TaskId add_task(Task<> task, detail::SpawnSite site = detail::SpawnSite(__builtin_FILE(), __builtin_LINE())) {
        if (!task.valid() || task.done()) {
            throw std::invalid_argument("corio: add_task needs a Task that has not run");
        }
        const auto root = task.release();
        root.promise().set_kernel(this);
        return spawn(root, site);
    }

    /// Runs until no task is left, stop() is called, or nothing could ever wake the tasks left
    /// (they all wait for each other or are parked, and none waits for a thread-pool job). A task
    /// waiting for a run_in_thread job keeps it running; so does a Hold (see hold()), even with
    /// no task left. Callables posted before run() or while it runs are run before it returns;
    /// one posted after it returned runs in the next run().
    void run() {
        run_loop([] { return true; });
    }

    /// Runs the loop until `task` completes and gives its value or rethrows its exception, like
    /// asyncio's run_until_complete. Other tasks stay in the Scheduler.
    template <class T>
    T run_until_complete(Task<T> task) {
        detail::RunResult<T> result;
        const auto handle = task.release();
        const char* name = handle ? handle.promise().function() : "";
        const TaskId id = add_task(detail::capture_result(Task<T>(handle), result));
        call_task(id, name); // after the caller's coroutine, not the wrapper that keeps its result
        struct KillIfLeft { // the task refers to `result`: it must not outlive this call
            Scheduler& kernel;
            TaskId id;
            ~KillIfLeft() { kernel.kill(id); }
        } guard{*this, id};
        run_loop([&] { return contains(id); });
        if (result.error) {
            std::rethrow_exception(result.error);
        }
        if (!result.value) {
            throw std::runtime_error(contains(id)
                                         ? "corio: the loop stopped before the task completed"
                                         : "corio: the task was killed before it completed");
        }
        if constexpr (!std::is_void_v<T>) {
            if constexpr (std::is_reference_v<T>) {
                return static_cast<T>(result.value->get());
            } else {
                return std::move(*result.value);
            }
        }
    }

    /// Makes run() return after the current pass (at once, if called before run()). Tasks stay;
    /// run() may be called again.
    void stop() noexcept { stop_requested_ = true; }

    /// The backend the loop waits in: epoll, poll or io_uring, never automatic.
    [[nodiscard]] Backend backend() const noexcept { return fd_watches_.backend(); }
    [[nodiscard]] std::size_t task_count() const noexcept { return tasks_.size(); }
    [[nodiscard]] bool contains(TaskId id) const noexcept { return tasks_.find(id) != nullptr; }
    /// The task being resumed now, or an empty id outside of a task.
    [[nodiscard]] TaskId current_task() const noexcept {
        return current_ != nullptr ? detail::TaskTable::id_of(*current_) : TaskId{};
    }
    [[nodiscard]] Stats stats() const noexcept {
        return Stats{tasks_.size(), tasks_.ready_count(), fd_watches_.waiting_tasks(),
                     timers_.size(), fd_watches_.watched_fds(), pool_jobs_.waiting(),
                     fd_watches_.lent_buffers().out()};
    }

    // ---- The thread-safe door (see kernel/inbox.hpp).

    /// Thread-safe. Runs `callable()` on the loop's thread soon: after the current pass, or when
    /// run() next runs if it is not running. Callables run in the order they were posted. Wakes
    /// a loop blocked in the selector. A posted callable runs outside of any task: it may add or
    /// kill tasks (post([&] { kernel.add_task(serve()); })), set Events, post again; create the
    /// Task inside the callable, on the loop's thread, not in the posting thread. An exception
    /// that escapes it is reported like the failure of a task nobody waited for. Throws
    /// std::bad_alloc (one allocation per post).
    template <class Callable>
        requires std::is_invocable_v<std::decay_t<Callable>&>
    void post(Callable&& callable) {
        auto item = std::make_unique<detail::Posted<std::decay_t<Callable>>>(std::forward<Callable>(callable));
        inbox_.push(*item.release()); // it frees itself once run or discarded
    }

    /// Keeps run() from returning while it exists (thread-safe; see hold()). Move-only; it must
    /// not outlive its Scheduler. release() (or its destructor) ends it.
    using Hold = detail::InboxHold;

    /// Thread-safe. While the returned Hold lives, run() does not return for lack of work: with
    /// no task left, or with tasks that only another thread can wake (a task waiting on an Event
    /// that a posted callable sets), it waits for posts. stop() still ends run().
    Hold hold() noexcept { return inbox_.hold(); }

    /// Bounds the pool that thread_pool() will create (default: ThreadPool::default_thread_count()).
    /// Throws std::logic_error once the pool exists, std::invalid_argument for 0.
    void set_thread_pool_size(std::size_t max_threads) { pool_jobs_.set_bound(max_threads); }

    /// Kills a task: it is taken off whatever it waits on, its frame is destroyed (its destructors
    /// run) and its waiters wake with TaskExit::Outcome::killed. A task that kills itself dies
    /// when it next suspends. Returns false if there is no such task.
    bool kill(TaskId id) {
        detail::TaskRecord* record = tasks_.find(id);
        if (record == nullptr || record->state == detail::TaskState::dying) {
            return false;
        }
        if (record == current_) {
            record->kill_requested = true;
        } else {
            kill_task(*record);
        }
        return true;
    }

    /// Replaces the report of exceptions nobody waited for (by default, a line on stderr).
    void set_exception_handler(ExceptionHandler handler) { failures_.set_handler(std::move(handler)); }
};

/// Runs `task` to completion on a new Scheduler and gives its value (like asyncio.run). Tasks it
/// spawned that are still alive when it completes are destroyed with the Scheduler.
template <class T>
T run(Task<T> task) {
    Scheduler kernel;
    return kernel.run_until_complete(std::move(task));
}

} // namespace corio
