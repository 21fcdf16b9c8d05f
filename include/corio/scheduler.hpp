// corio/scheduler.hpp - the kernel: a task table, a ready queue, timers and one selector.
//
// The loop runs in a fixed order, one pass at a time:
//
//     ┌─▶ 1. resume every task that was ready when the pass began, in FIFO order
//     │   2. compute the selector timeout: 0 if tasks are ready, else until the earliest timer
//     │      (rounded up, so a task never wakes just before its deadline), else unbounded
//     │   3. wait in the selector; move each task whose fd became ready to the ready queue
//     └── 4. move each task whose timer expired to the ready queue
//
// A task is resumed only from step 1, never from inside a system call or another task, so whatever
// a task does runs on the loop's own stack. Tasks made ready during a pass (Yield, a task that ends
// and wakes its waiters) run in the next pass. While tasks stay ready pass after pass, step 3
// runs once every `poll_interval` resumptions rather than after every pass (a non-blocking look at
// the selector is a system call): a task that yields in a loop cannot starve I/O, and does not pay
// a system call per yield either. Timers are looked at after every pass.
//
// Each task is a record in a slot table (TaskId = serial number + slot: O(1) lookup, no reuse of
// ids) and is in at most one intrusive list at a time: the ready queue, the readers or writers of
// one fd, or the waiters of another task; a sleeping task is in the timer heap. Killing a task
// therefore takes it off whatever it waits on in O(1) (O(log n) for a timer) before its frame is
// destroyed. fds are watched lazily: interest is added when a task first waits, kept while tasks
// come back to wait again, and dropped only when the selector reports readiness nobody waits for.
//
// Threads: a Scheduler and everything in it (its tasks, their sockets, Events, Queues...) belong
// to the one thread that runs it, and nothing here takes a lock — with two exceptions, which are
// safe from any thread: post(callable), the one door into the loop from other threads, and
// hold() / Hold. Both go through the inbox (detail/inbox.hpp): a locked FIFO plus one eventfd
// (a self-pipe off Linux and in CORIO_FORCE_POLL builds) that the selector watches, so a loop
// asleep in epoll_wait wakes up. The loop empties the inbox after each look at the selector (and
// between busy passes, where an atomic flag spares the system call), in arrival order: what one
// thread posts runs in the order it was posted. run_in_thread's jobs come back through the same
// door, so however many finish at once, the loop wakes once for them.
#pragma once

#include "corio/backend/selector.hpp"
#include "corio/system_call.hpp"
#include "corio/task.hpp"
#include "corio/task_exit.hpp"
#include "corio/timeout_error.hpp"
#include "corio/thread_pool.hpp"
#include "corio/virtual_clock.hpp"
#include "corio/detail/fd_table.hpp"
#include "corio/kernel/inbox.hpp"
#include "corio/detail/task_list.hpp"
#include "corio/detail/timer_heap.hpp"

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace corio {

namespace detail {

enum class TaskState : std::uint8_t {
    free,         // the slot holds no task
    ready,        // in the ready queue
    yielding,     // in the ready queue after a Yield (or a Sleep with nothing to wait for)
    running,      // being resumed right now
    parked,       // suspended by a system call that will unpark it
    waiting_fd,   // in the readers or writers of an fd
    sleeping,     // in the timer heap
    waiting_task, // in the waiters of another task
    dying,        // its frame is being destroyed
};

struct TaskRecord;

// A timer that belongs to a task: its Sleep, or one of its deadlines.
struct TaskTimer : TimerNode {
    explicit TaskTimer(Kind what) noexcept : TimerNode(what) {}
    TaskRecord* task = nullptr;
};

// A deadline around part of a task (timeout_after). Scopes nest: each knows the one around it.
struct TimeoutScope : TaskTimer {
    TimeoutScope() noexcept : TaskTimer(Kind::deadline) {}
    TimeoutScope(const TimeoutScope&) = delete;
    TimeoutScope& operator=(const TimeoutScope&) = delete;

    Scheduler* kernel = nullptr; // set while the scope is entered
    TimeoutScope* outer = nullptr;
    bool expired = false; // the deadline passed: every wait inside the scope now ends at once
    bool interrupting = false; // its TimeoutError is to be thrown at the task when it resumes
};

// What a suspended task waits with. A task waits for one thing at a time, so one member at a time
// is in use, the one its TaskState names (a union: every idle connection has a TaskRecord).
union TaskWait {
    TaskExit* exit_out = nullptr; // waiting_task: where the kernel writes the outcome
    void* cookie;                 // parked in a WaitQueue: what its owner handed in
    struct {
        bool (*attempt)(void*); // waiting_fd: retried on readiness (see wait_for_io); null: none
        void* operation;
    } io;
    TaskTimer* timer; // sleeping: the timer the kernel lent it
};

// One per task, alive or free (a slot). Kept small: an idle connection is a task waiting in recv,
// and this is most of what the kernel spends on it (issue 4 wants <= 256 B in all).
struct TaskRecord : ListLinks {
    std::uint64_t serial = 0; // 0 while the slot is free
    std::uint32_t slot = 0;
    union {
        std::uint32_t ready_pass = 0; // while ready; 32 bits: only compared with the current pass
        std::uint32_t next_free;      // while the slot is free
    };
    std::uint32_t expired_scopes = 0; // entered scopes whose deadline passed
    TaskState state = TaskState::free;
    bool kill_requested = false; // a task killed itself: it dies when it next suspends
    bool interrupted = false;    // a scope of its own is `interrupting` (see throw_if_interrupted)
    bool abandoned = false;      // the WaitQueue it was parked in was destroyed (see ~WaitQueue)
    std::coroutine_handle<Promise<void>> root;
    std::coroutine_handle<> resume_point; // the innermost suspended frame of the task
    TaskWait wait;
    TaskList waiters; // tasks waiting for this one to end
    TimeoutScope* innermost_scope = nullptr;
};

// One per fd number up to the highest one waited on.
struct FdWatch {
    TaskList readers;
    TaskList writers;
    Interest watched = Interest::none; // what the selector watches this fd for
};

// The sizes issue 4's memory budget counts on (64-bit targets): see bench/library_share.cpp.
static_assert(sizeof(void*) != 8 || sizeof(TaskRecord) <= 96, "corio: TaskRecord grew");
static_assert(sizeof(void*) != 8 || sizeof(FdWatch) <= 24, "corio: FdWatch grew");

// Whatever keeps the Scheduler its fd waited in, to unregister the fd there before closing it:
// AsyncSocket's state (and so UdpSocket's), SignalWait, StopEvent's wait. Each Scheduler keeps the
// owners that waited in it on a ring whose links live in the owners (no allocation), so that
//   * an owner that next waits in another Scheduler first makes the old one forget its fd (enter):
//     else the old one would go on believing it watches that number, epoll having dropped the fd
//     when it was closed, and a new fd with that number would never be registered there, nor wake;
//   * a Scheduler destroyed before its owners detaches them (their kernel() becomes null): they
//     only close their fd then, instead of reaching into a Scheduler that is gone.
// An owner costs two pointers besides its Scheduler*. Like the Scheduler, it belongs to the
// Scheduler's thread: an owner that waited in one Scheduler may wait in another of the same thread
// later, not in one of another thread (closing it, or destroying the Scheduler, ends that tie).
class FdOwner {
public:
    FdOwner() noexcept = default;
    // Takes the other's place on its Scheduler's ring; the other is left detached.
    FdOwner(FdOwner&& other) noexcept { take_place_of(other); }
    FdOwner& operator=(FdOwner&& other) noexcept {
        if (this != &other) {
            unlink();
            take_place_of(other);
        }
        return *this;
    }
    FdOwner(const FdOwner&) = delete;
    FdOwner& operator=(const FdOwner&) = delete;
    ~FdOwner() { unlink(); }

    // The Scheduler it last waited in: null if none, or if that Scheduler was destroyed.
    [[nodiscard]] Scheduler* kernel() const noexcept { return kernel_; }

    // Call before `fd` waits in `kernel`. The same Scheduler as last time costs one comparison.
    void enter(Scheduler& kernel, int fd) noexcept {
        if (kernel_ != &kernel) [[unlikely]] {
            move_to(kernel, fd);
        }
    }
    // Unregisters `fd` from the Scheduler it waited in (Scheduler::forget_fd) and detaches from
    // it. Call it before closing the fd.
    void forget(int fd) noexcept;

private:
    friend class corio::Scheduler;
    struct RingHead {};
    explicit FdOwner(RingHead /*tag*/) noexcept : prev_(this), next_(this) {}

    void move_to(Scheduler& kernel, int fd) noexcept;
    void unlink() noexcept {
        if (prev_ != nullptr) {
            prev_->next_ = next_;
            next_->prev_ = prev_;
            prev_ = next_ = nullptr;
        }
        kernel_ = nullptr;
    }
    void take_place_of(FdOwner& other) noexcept {
        kernel_ = std::exchange(other.kernel_, nullptr);
        prev_ = std::exchange(other.prev_, nullptr);
        next_ = std::exchange(other.next_, nullptr);
        if (prev_ != nullptr) {
            prev_->next_ = this;
            next_->prev_ = this;
        }
    }

    Scheduler* kernel_ = nullptr;
    FdOwner* prev_ = nullptr; // on the ring of kernel_ while kernel_ is set
    FdOwner* next_ = nullptr;
};

// Converts any duration to the clock's, rounding up and saturating instead of overflowing:
// Sleep{std::chrono::seconds::max()} means "practically never", not "at once". A floating
// duration that is NaN or infinite is refused (converting it would be undefined behaviour, and
// no length of time is meant by it): std::invalid_argument.
template <class Rep, class Period>
std::chrono::steady_clock::duration to_clock_duration(std::chrono::duration<Rep, Period> length) {
    using Target = std::chrono::steady_clock::duration;
    const std::chrono::duration<long double, Target::period> exact = length;
    if (!std::isfinite(exact.count())) {
        throw std::invalid_argument("corio: a duration must be finite (it is NaN or infinite)");
    }
    if (exact >= std::chrono::duration<long double, Target::period>(Target::max())) {
        return Target::max();
    }
    if (exact <= std::chrono::duration<long double, Target::period>(Target::min())) {
        return Target::min();
    }
    return std::chrono::ceil<Target>(length);
}

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

/// A FIFO of tasks parked by a synchronisation primitive (Event, Queue, Lock, ...): see
/// Scheduler::wait_in and Scheduler::wake_one. A task killed or timed out while it waits here
/// leaves the queue at once. Destroyed with tasks still in it (say, an Event in the frame of a
/// task that is killed while its children wait on it), it wakes each of them with a
/// std::logic_error, thrown from the `co_await` that waited (see Scheduler::abandon_waiters).
class WaitQueue {
public:
    WaitQueue() = default;
    WaitQueue(const WaitQueue&) = delete;
    WaitQueue& operator=(const WaitQueue&) = delete;
    ~WaitQueue();

    [[nodiscard]] bool empty() const noexcept { return tasks_.empty(); }
    [[nodiscard]] std::size_t size() const noexcept { return tasks_.size(); }

private:
    friend class Scheduler;
    detail::TaskList tasks_;
    Scheduler* kernel_ = nullptr; // of the tasks in it (set by wait_in)
};

/// The kernel. Owns its tasks' frames; belongs to the thread that runs it: only post(), hold()
/// and Hold may be used from other threads.
class Scheduler {
public:
    using Clock = std::chrono::steady_clock;
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
    };

    /// While tasks stay ready, the loop looks at the fds once per this many resumptions
    /// (see the top of this file): the most a busy loop delays I/O readiness, in resumptions.
    static constexpr std::uint32_t poll_interval = 64;

    /// A Scheduler on the real (steady) clock.
    Scheduler() = default;
    /// A Scheduler on a virtual clock (see virtual_clock.hpp), which must outlive it.
    explicit Scheduler(VirtualClock& clock) noexcept : virtual_clock_(&clock) {}
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
        try {
            kill_all_newest_first();
        } catch (const std::bad_alloc&) { // no memory for its heap: the slow way below
        }
        while (detail::TaskRecord* newest = newest_task()) { // a search per task
            kill_now(*newest);
        }
        if (pool_) {
            pool_->shutdown(); // the last jobs deliver into the inbox, which is still here
        }
        inbox_.discard_all();
        // Sockets (and other fd owners) that outlive the Scheduler: they only close their fd now.
        while (fd_owners_.next_ != &fd_owners_) {
            fd_owners_.next_->unlink();
        }
    }

    /// Adds a task to the ready queue; it first runs in a later pass of the loop.
    TaskId add_task(Task<> task) {
        if (!task.valid() || task.done()) {
            throw std::invalid_argument("corio: add_task needs a Task that has not run");
        }
        detail::TaskRecord& record = allocate_record();
        record.root = task.release();
        record.root.promise().set_kernel(this);
        record.resume_point = record.root;
        make_ready(record);
        return id_of(record);
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
        const TaskId id = add_task(detail::capture_result(std::move(task), result));
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

    [[nodiscard]] std::size_t task_count() const noexcept { return task_count_; }
    [[nodiscard]] bool contains(TaskId id) const noexcept { return find(id) != nullptr; }
    /// The task being resumed now, or an empty id outside of a task.
    [[nodiscard]] TaskId current_task() const noexcept {
        return current_ != nullptr ? id_of(*current_) : TaskId{};
    }
    /// The time on this Scheduler's clock: steady_clock, or its VirtualClock.
    [[nodiscard]] Clock::time_point now() const noexcept {
        return virtual_clock_ != nullptr ? virtual_clock_->now() : Clock::now();
    }
    /// now() + `delay`, saturating at the end of time rather than overflowing.
    [[nodiscard]] Clock::time_point deadline_after(Clock::duration delay) const noexcept {
        const Clock::time_point start = now();
        return delay >= Clock::time_point::max() - start ? Clock::time_point::max() : start + delay;
    }
    [[nodiscard]] Stats stats() const noexcept {
        return Stats{task_count_, ready_.size(), io_waiters_, timers_.size(), watched_fds_,
                     pool_waiters_};
    }

    // ---- The thread-safe door (see the top of this file).

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
        auto item = std::make_unique<Posted<std::decay_t<Callable>>>(std::forward<Callable>(callable));
        inbox_.push(*item.release()); // it frees itself once run or discarded
    }

    /// Keeps run() from returning while it exists (thread-safe; see hold()). Move-only; it must
    /// not outlive its Scheduler.
    class [[nodiscard]] Hold {
    public:
        Hold() noexcept = default;
        Hold(Hold&& other) noexcept : kernel_(std::exchange(other.kernel_, nullptr)) {}
        Hold& operator=(Hold&& other) noexcept {
            if (this != &other) {
                release();
                kernel_ = std::exchange(other.kernel_, nullptr);
            }
            return *this;
        }
        Hold(const Hold&) = delete;
        Hold& operator=(const Hold&) = delete;
        ~Hold() { release(); }

        /// Lets run() return again when nothing is left to do (and wakes it to notice). Idempotent.
        void release() noexcept {
            if (Scheduler* kernel = std::exchange(kernel_, nullptr)) {
                kernel->holds_.fetch_sub(1, std::memory_order_release);
                kernel->inbox_.poke();
            }
        }

    private:
        friend class Scheduler;
        explicit Hold(Scheduler& kernel) noexcept : kernel_(&kernel) {}

        Scheduler* kernel_ = nullptr;
    };

    /// Thread-safe. While the returned Hold lives, run() does not return for lack of work: with
    /// no task left, or with tasks that only another thread can wake (a task waiting on an Event
    /// that a posted callable sets), it waits for posts. stop() still ends run().
    Hold hold() noexcept {
        holds_.fetch_add(1, std::memory_order_relaxed);
        return Hold(*this);
    }

    /// The pool run_in_thread uses, created on first use (loop thread only). Its workers start
    /// only when jobs arrive.
    ThreadPool& thread_pool() {
        if (!pool_) {
            pool_ = std::make_unique<ThreadPool>(pool_size_ != 0 ? pool_size_
                                                                 : ThreadPool::default_thread_count());
        }
        return *pool_;
    }
    /// Bounds the pool that thread_pool() will create (default: ThreadPool::default_thread_count()).
    /// Throws std::logic_error once the pool exists, std::invalid_argument for 0.
    void set_thread_pool_size(std::size_t max_threads) {
        if (pool_) {
            throw std::logic_error("corio: set_thread_pool_size after the thread pool was created");
        }
        if (max_threads == 0) {
            throw std::invalid_argument("corio: a ThreadPool needs at least one thread");
        }
        pool_size_ = max_threads;
    }

    /// Kills a task: it is taken off whatever it waits on, its frame is destroyed (its destructors
    /// run) and its waiters wake with TaskExit::Outcome::killed. A task that kills itself dies
    /// when it next suspends. Returns false if there is no such task.
    bool kill(TaskId id) {
        detail::TaskRecord* record = find(id);
        if (record == nullptr || record->state == detail::TaskState::dying) {
            return false;
        }
        if (record == current_) {
            record->kill_requested = true;
        } else {
            kill_now(*record);
        }
        return true;
    }

    /// Replaces the report of exceptions nobody waited for (by default, a line on stderr).
    void set_exception_handler(ExceptionHandler handler) { exception_handler_ = std::move(handler); }

    /// For a system call that waited with wait_for_exit and was handed a failure: call it once,
    /// with true when its task receives the failure, false when the task ends first (killed, or
    /// destroyed with the Scheduler). A failure that none of the waiters it was handed to
    /// receives is reported like one nobody waited for. WaitTask does this.
    void settle_failure(TaskId failed, bool received) noexcept {
        for (std::size_t i = 0; i < handed_.size(); ++i) {
            HandedFailure& handed = handed_[i];
            if (handed.task != failed) {
                continue;
            }
            handed.received = handed.received || received;
            if (--handed.holders == 0) {
                const HandedFailure settled = std::move(handed);
                if (i + 1 != handed_.size()) {
                    handed = std::move(handed_.back());
                }
                handed_.pop_back();
                if (!settled.received) {
                    report(settled.task, settled.error);
                }
            }
            return;
        }
    }

    // ---- Kernel services for system calls. Each acts on the task that trapped into the kernel
    // ---- and leaves it suspended until the kernel wakes it (return true from handle()).

    /// Suspends the calling task until `fd` is readable (or hung up, or in error).
    void wait_for_read(int fd) { wait_for_fd(fd, Interest::read, nullptr, nullptr); }
    /// Suspends the calling task until `fd` is writable (or hung up, or in error).
    void wait_for_write(int fd) { wait_for_fd(fd, Interest::write, nullptr, nullptr); }

    /// Suspends the calling task until an I/O operation on `fd` completes: each time the fd is
    /// ready for `direction`, the kernel calls `attempt(operation)`, which tries the system call
    /// and returns false to keep waiting (EAGAIN: the readiness was stale) or true when done. The
    /// task is resumed only then, so a spurious wake-up costs no resumption. (A forget_fd wakes it
    /// without a completed attempt.) AsyncSocket's operations are built on this.
    void wait_for_io(int fd, Interest direction, bool (*attempt)(void*), void* operation) {
        wait_for_fd(fd, direction, attempt, operation);
    }

    /// Suspends the calling task until `target` ends; the outcome is written to `exit` then.
    /// Returns false, with `exit` saying no_such_task, if there is no such task.
    bool wait_for_exit(TaskId target, TaskExit& exit) {
        detail::TaskRecord& self = trapped_task();
        detail::TaskRecord* record = find(target);
        if (record == nullptr) {
            exit = TaskExit{};
            return false;
        }
        if (record == &self) {
            throw std::invalid_argument("corio: a task cannot wait for its own exit");
        }
        record->waiters.push_back(self);
        self.wait.exit_out = &exit;
        self.state = detail::TaskState::waiting_task;
        return true;
    }

    /// Suspends the calling task until `deadline`.
    void sleep_until(Clock::time_point deadline) {
        detail::TaskRecord& self = trapped_task();
        detail::TaskTimer& timer = lend_timer();
        try {
            timers_.push(timer, deadline);
        } catch (...) {
            give_back(timer);
            throw;
        }
        timer.task = &self;
        self.wait.timer = &timer;
        self.state = detail::TaskState::sleeping;
    }

    /// Puts the calling task at the back of the ready queue. A yield is a wait like any other:
    /// a deadline of the task that passes (or has passed) before it runs again ends it with its
    /// TimeoutError.
    void yield_now() {
        detail::TaskRecord& self = trapped_task();
        make_ready(self);
        self.state = detail::TaskState::yielding;
    }

    /// Wakes a task that a system call left parked (suspended without waiting on anything).
    /// Returns false if there is no such task or it is not parked.
    bool unpark(TaskId id) {
        detail::TaskRecord* record = find(id);
        if (record == nullptr || record->state != detail::TaskState::parked || record == current_) {
            return false;
        }
        detach(*record);
        make_ready(*record);
        return true;
    }

    /// Parks the calling task at the back of `queue`, with a `cookie` that wake_one gives back to
    /// whoever wakes it (typically the waiting system call, to hand it a value).
    void wait_in(WaitQueue& queue, void* cookie = nullptr) {
        detail::TaskRecord& self = trapped_task();
        queue.tasks_.push_back(self);
        queue.kernel_ = this;
        self.wait.cookie = cookie;
        self.state = detail::TaskState::parked;
    }

    /// Wakes the task at the front of `queue`; gives its cookie, or null if the queue is empty
    /// (check `queue.empty()` first when the cookies may be null).
    void* wake_one(WaitQueue& queue) noexcept {
        detail::ListLinks* links = queue.tasks_.front();
        if (links == nullptr) {
            return nullptr;
        }
        auto& record = static_cast<detail::TaskRecord&>(*links);
        void* cookie = record.wait.cookie;
        detach(record);
        make_ready(record);
        return cookie;
    }

    /// Wakes every task in `queue`, in order.
    void wake_all(WaitQueue& queue) noexcept { wake_all(queue.tasks_); }

    /// Queues `job` on the thread pool for the calling task (run_in_thread uses it): the task is
    /// counted as waiting for the pool until pool_job_ended(). The job comes back through
    /// deliver() and wakes the task with unpark().
    void submit_to_pool(detail::PoolJob& job) {
        static_cast<void>(trapped_task());
        thread_pool().submit(job);
        ++pool_waiters_;
    }
    /// The task that submit_to_pool() counted no longer waits for its job (it got its result, or
    /// it is gone).
    void pool_job_ended() noexcept { --pool_waiters_; }
    /// Thread-safe: hands `item` to the loop, which runs it soon (see detail/inbox.hpp).
    void deliver(detail::InboxItem& item) noexcept { inbox_.push(item); }

    // ---- Deadlines (timeout_after and friends build on these).

    /// Enters a deadline scope for the calling task: once `deadline` has passed, and until the
    /// scope is left, every wait of the task ends at once with a TimeoutError for this scope.
    void enter_scope(detail::TimeoutScope& scope, Clock::time_point deadline) {
        detail::TaskRecord& self = trapped_task();
        scope.kernel = this;
        scope.task = &self;
        scope.outer = self.innermost_scope;
        scope.expired = false;
        self.innermost_scope = &scope;
        timers_.push(scope, deadline);
    }

    /// Leaves a deadline scope (its timer is cancelled). Safe to call twice, and while the task
    /// is being killed.
    void leave_scope(detail::TimeoutScope& scope) noexcept {
        detail::TaskRecord* task = scope.task;
        if (task == nullptr) {
            return;
        }
        timers_.remove(scope);
        for (detail::TimeoutScope** link = &task->innermost_scope; *link != nullptr;
             link = &(*link)->outer) {
            if (*link == &scope) {
                *link = scope.outer;
                break;
            }
        }
        if (scope.expired) {
            --task->expired_scopes;
        }
        if (scope.interrupting) {
            scope.interrupting = false;
            task->interrupted = false;
        }
        scope.task = nullptr;
        scope.kernel = nullptr;
    }

    /// Called as a system call returns to its task: throws the TimeoutError of a deadline that
    /// interrupted the wait.
    void throw_if_interrupted() {
        if (current_ != nullptr && current_->interrupted) [[unlikely]] {
            throw_interruption(*current_); // out of line: this check runs on every resumption
        }
    }

    /// Stops watching `fd` and wakes every task waiting on it (their next system call on it sees
    /// the error). Call it before closing an fd that tasks waited on; AsyncSocket does.
    void forget_fd(int fd) noexcept {
        if (fd < 0 || static_cast<std::size_t>(fd) >= fd_watches_.size()) {
            return;
        }
        detail::FdWatch& watch = fd_watches_[static_cast<std::size_t>(fd)];
        wake_all(watch.readers);
        wake_all(watch.writers);
        if (watch.watched != Interest::none) {
            try {
                selector_.watch(fd, watch.watched, Interest::none);
            } catch (...) { // nothing to do: the fd is going away, the kernel drops it on close
            }
            watch.watched = Interest::none;
            --watched_fds_;
        }
    }

    /// The operation of the first task waiting on `fd` for `direction` with an attempt (see
    /// wait_for_io), or null. AsyncSocket's sends keep their order with it: a send that waits
    /// behind another one attempts only once it is first.
    [[nodiscard]] const void* first_io_operation(int fd, Interest direction) const noexcept {
        if (fd < 0 || static_cast<std::size_t>(fd) >= fd_watches_.size()) {
            return nullptr;
        }
        const detail::FdWatch& watch = fd_watches_[static_cast<std::size_t>(fd)];
        const detail::TaskList& waiting =
            direction == Interest::read ? watch.readers : watch.writers;
        for (const detail::ListLinks* links = waiting.front(); links != nullptr;
             links = waiting.after(*links)) {
            const auto& record = static_cast<const detail::TaskRecord&>(*links);
            if (record.wait.io.attempt != nullptr) {
                return record.wait.io.operation;
            }
        }
        return nullptr;
    }

    /// The trap: runs a system call's handle() for the task that awaits it (see system_call.hpp).
    template <class Call>
    bool enter(Call& call, std::coroutine_handle<> caller) {
        detail::TaskRecord& self = trapped_task();
        self.resume_point = caller;
        self.state = detail::TaskState::parked;
        bool suspend = false;
        try {
            suspend = static_cast<bool>(call.handle(*this, id_of(self)));
        } catch (...) {
            detach(self);
            self.state = detail::TaskState::running;
            throw;
        }
        if (!suspend) { // it continues now: undo anything the call registered it for
            detach(self);
            self.state = detail::TaskState::running;
        } else if (self.expired_scopes > 0 && !self.kill_requested) [[unlikely]] {
            interrupt(self); // a deadline passed while it was busy: this wait ends at once
        }
        return suspend;
    }

private:
    friend class WaitQueue;

    // Wakes every task in `queue`, in order, with a std::logic_error thrown from the system call
    // it waits in: what it waited for is gone. ~WaitQueue calls it for the tasks left in it.
    void abandon_waiters(WaitQueue& queue) noexcept {
        while (detail::ListLinks* links = queue.tasks_.front()) {
            auto& record = static_cast<detail::TaskRecord&>(*links);
            detach(record);
            record.abandoned = true;
            record.interrupted = true; // so that throw_if_interrupted looks
            make_ready(record);
        }
    }
    friend class detail::FdOwner; // links itself on fd_owners_

    // What post() queues.
    template <class Callable>
    class Posted final : public detail::InboxItem {
    public:
        template <class Given>
        explicit Posted(Given&& callable) : callable_(std::forward<Given>(callable)) {}

        void run(Scheduler& /*kernel*/) override {
            const std::unique_ptr<Posted> self(this); // freed even if it throws
            callable_();
        }
        void discard() noexcept override { delete this; }

    private:
        Callable callable_;
    };

    static TaskId id_of(const detail::TaskRecord& record) noexcept {
        return TaskId(record.serial, record.slot);
    }

    detail::TaskRecord* find(TaskId id) noexcept {
        return const_cast<detail::TaskRecord*>(std::as_const(*this).find(id));
    }
    const detail::TaskRecord* find(TaskId id) const noexcept {
        if (id.serial_ == 0 || id.slot_ >= records_.size()) {
            return nullptr;
        }
        const detail::TaskRecord& record = records_[id.slot_];
        return record.serial == id.serial_ ? &record : nullptr;
    }

    [[gnu::noinline]] static void throw_interruption(detail::TaskRecord& self) {
        self.interrupted = false;
        if (self.abandoned) {
            self.abandoned = false;
            throw std::logic_error("corio: what this task waited on (an Event, a Queue, a Lock, a "
                                   "Semaphore...) was destroyed while it waited");
        }
        // A flag in the record and a mark on the scope rather than a pointer in every record.
        for (detail::TimeoutScope* scope = self.innermost_scope; scope != nullptr;
             scope = scope->outer) {
            if (scope->interrupting) {
                scope->interrupting = false;
                throw TimeoutError(scope);
            }
        }
    }

    detail::TaskRecord& trapped_task() {
        if (current_ == nullptr) {
            throw std::logic_error("corio: a kernel service was called outside a running task");
        }
        return *current_;
    }

    detail::TaskRecord& allocate_record() {
        detail::TaskRecord* record = nullptr;
        if (free_head_ != no_slot) {
            record = &records_[free_head_];
            free_head_ = record->next_free;
        } else {
            if (records_.size() >= no_slot) {
                throw std::length_error("corio: too many tasks");
            }
            record = &records_.emplace_back();
            record->slot = static_cast<std::uint32_t>(records_.size() - 1);
        }
        record->serial = ++last_serial_;
        record->state = detail::TaskState::running; // made ready by the caller
        ++task_count_;
        return *record;
    }

    void make_ready(detail::TaskRecord& record) noexcept {
        record.state = detail::TaskState::ready;
        record.ready_pass = pass_;
        ready_.push_back(record);
    }

    // Takes a task off whatever it waits on.
    void detach(detail::TaskRecord& record) noexcept {
        if (record.owner != nullptr) {
            record.owner->remove(record);
        }
        if (record.state == detail::TaskState::waiting_fd) {
            --io_waiters_;
        } else if (record.state == detail::TaskState::sleeping) {
            timers_.remove(*record.wait.timer); // no-op if it expired already
            give_back(*record.wait.timer);
        }
        record.wait = {};
    }

    // Sleeping tasks borrow their timer from the kernel: a timer in every record would cost every
    // idle connection 40 bytes for a Sleep it may never do.
    detail::TaskTimer& lend_timer() {
        if (free_timers_.empty()) {
            detail::TaskTimer& timer = sleep_timers_.emplace_back(detail::TimerNode::Kind::wake);
            try {
                // Room for every timer, so that give_back never allocates; grown geometrically, as
                // one slot per new timer made arming n sleepers cost O(n^2) copies.
                if (free_timers_.capacity() < sleep_timers_.size()) {
                    free_timers_.reserve(std::max<std::size_t>(2 * free_timers_.capacity(), 64));
                }
            } catch (...) {
                sleep_timers_.pop_back();
                throw;
            }
            return timer;
        }
        detail::TaskTimer& timer = *free_timers_.back();
        free_timers_.pop_back();
        return timer;
    }
    void give_back(detail::TaskTimer& timer) noexcept {
        timer.task = nullptr;
        free_timers_.push_back(&timer); // within the capacity reserved by lend_timer
    }

    void wake_all(detail::TaskList& list) noexcept {
        while (detail::ListLinks* links = list.front()) {
            auto& record = static_cast<detail::TaskRecord&>(*links);
            detach(record);
            make_ready(record);
        }
    }

    void wait_for_fd(int fd, Interest direction, bool (*attempt)(void*), void* operation) {
        detail::TaskRecord& self = trapped_task();
        if (fd < 0) {
            throw std::system_error(EBADF, std::generic_category(), "corio: waiting on a negative fd");
        }
        // The table grows to the highest fd waited on: a number that is not an open fd (say
        // 1'000'000'000) would make it allocate gigabytes before the selector refused it. Open fds
        // are bounded by RLIMIT_NOFILE, so the check is needed (and paid for) only on growth.
        if (static_cast<std::size_t>(fd) >= fd_watches_.size() && ::fcntl(fd, F_GETFD) < 0) {
            const int error = errno;
            throw std::system_error(error, std::generic_category(),
                                    "corio: waiting on fd " + std::to_string(fd) + ", not open");
        }
        fd_watches_.make_room_for(static_cast<std::size_t>(fd));
        detail::FdWatch& watch = fd_watches_[static_cast<std::size_t>(fd)];
        const Interest wanted = watch.watched | direction;
        if (wanted != watch.watched) {
            selector_.watch(fd, watch.watched, wanted);
            watched_fds_ += watch.watched == Interest::none ? 1 : 0;
            watch.watched = wanted;
        }
        (direction == Interest::read ? watch.readers : watch.writers).push_back(self);
        self.state = detail::TaskState::waiting_fd;
        self.wait.io = {attempt, operation};
        ++io_waiters_;
    }

    // Ends the wait of a suspended task with the TimeoutError of its outermost expired scope (an
    // outer deadline makes every inner one moot).
    void interrupt(detail::TaskRecord& record) noexcept {
        detail::TimeoutScope* outermost = nullptr;
        for (detail::TimeoutScope* scope = record.innermost_scope; scope != nullptr;
             scope = scope->outer) {
            scope->interrupting = false; // at most one scope is marked
            if (scope->expired) {
                outermost = scope;
            }
        }
        if (outermost == nullptr) {
            return;
        }
        detach(record);
        outermost->interrupting = true;
        record.interrupted = true;
        make_ready(record);
    }

    void expire_deadline(detail::TimeoutScope& scope) noexcept {
        scope.expired = true;
        detail::TaskRecord& record = *scope.task;
        ++record.expired_scopes;
        switch (record.state) {
        case detail::TaskState::parked:
        case detail::TaskState::waiting_fd:
        case detail::TaskState::sleeping:
        case detail::TaskState::waiting_task:
        case detail::TaskState::yielding: interrupt(record); break; // a yield waits for nothing
        default: break; // woken or running: its next wait is interrupted (see enter)
        }
    }

    // Kills every task, newest first (see ~Scheduler): the tasks alive are in a max-heap by serial
    // number, which the tasks that destructors spawn meanwhile join.
    void kill_all_newest_first() {
        std::vector<std::pair<std::uint64_t, detail::TaskRecord*>> newest_on_top;
        std::uint64_t taken_in = 0; // every task up to this serial number is in the heap, or gone
        const auto take_in_newer = [&] {
            for (detail::TaskRecord& record : records_) {
                if (record.serial > taken_in && record.state != detail::TaskState::dying) {
                    newest_on_top.emplace_back(record.serial, &record);
                    std::push_heap(newest_on_top.begin(), newest_on_top.end());
                }
            }
            taken_in = last_serial_;
        };
        take_in_newer();
        while (!newest_on_top.empty()) {
            std::pop_heap(newest_on_top.begin(), newest_on_top.end());
            const auto [serial, record] = newest_on_top.back();
            newest_on_top.pop_back();
            if (record->serial == serial && record->state != detail::TaskState::dying) {
                kill_now(*record); // its destructors may kill others, or spawn
                if (last_serial_ != taken_in) {
                    take_in_newer();
                }
            }
        }
    }

    // The live task with the highest serial number, or null: one search per kill, for when
    // kill_all_newest_first had no memory for its heap.
    detail::TaskRecord* newest_task() noexcept {
        detail::TaskRecord* newest = nullptr;
        for (detail::TaskRecord& record : records_) {
            if (record.serial != 0 && record.state != detail::TaskState::dying &&
                (newest == nullptr || record.serial > newest->serial)) {
                newest = &record;
            }
        }
        return newest;
    }

    void kill_now(detail::TaskRecord& record) {
        detach(record);
        record.state = detail::TaskState::dying;
        const TaskId id = id_of(record);
        const std::size_t failures_before = destruction_failures_.size();
        destroy_root(record); // destructors run; they may call back in here
        release(record, TaskExit{TaskExit::Outcome::killed, nullptr});
        report_destruction_failures(id, failures_before);
    }

    // Destroys a task's frame (and the frames it awaits), collecting what destructors throw
    // meanwhile into destruction_failures_ (see detail::destroy_frame).
    void destroy_root(detail::TaskRecord& record) noexcept {
        std::vector<std::exception_ptr>* outer = std::exchange(
            detail::destruction_failures, &destruction_failures_); // a destructor may kill too
        try {
            detail::destroy_frame(std::exchange(record.root, {}));
        } catch (...) { // thrown where the coroutine could not catch it (a parameter's destructor)
            collect_destruction_failure(std::current_exception());
        }
        detail::destruction_failures = outer;
    }

    void collect_destruction_failure(std::exception_ptr error) noexcept {
        try {
            destruction_failures_.push_back(std::move(error));
        } catch (...) { // no memory to keep it: report it now, under no task id
            report(TaskId{}, error);
        }
    }

    // Reports what the destructors of task `id` threw (those collected since `first`), like a
    // failure nobody waited for.
    void report_destruction_failures(TaskId id, std::size_t first) noexcept {
        for (std::size_t i = first; i < destruction_failures_.size(); ++i) { // a report may add
            const std::exception_ptr error = destruction_failures_[i]; // a copy: it may grow
            report(id, error);
        }
        destruction_failures_.resize(first);
    }

    void finish(detail::TaskRecord& record) {
        std::exception_ptr error = record.root.promise().exception();
        // A failure outranks a pending self-kill: an exception is never dropped unreported.
        TaskExit exit{error                   ? TaskExit::Outcome::failed
                      : record.kill_requested ? TaskExit::Outcome::killed
                                              : TaskExit::Outcome::completed,
                      error};
        record.state = detail::TaskState::dying;
        const TaskId id = id_of(record);
        const std::size_t failures_before = destruction_failures_.size();
        destroy_root(record);
        release(record, std::move(exit));
        report_destruction_failures(id, failures_before);
    }

    // Wakes the waiters of an ended task, frees its slot, and reports a failure nobody waits for
    // (one handed to waiters is reported if none of them receives it: see settle_failure).
    void release(detail::TaskRecord& record, TaskExit exit) {
        const TaskId id = id_of(record);
        bool handed = false; // to the waiters: reported later if none of them receives it
        if (exit.failed() && !record.waiters.empty()) {
            try {
                const auto holders = static_cast<std::uint32_t>(record.waiters.size());
                handed_.push_back(HandedFailure{id, exit.error, holders, false});
                handed = true;
            } catch (...) { // no memory to track it: report it now rather than risk a silent drop
            }
        }
        while (detail::ListLinks* links = record.waiters.front()) {
            auto& waiter = static_cast<detail::TaskRecord&>(*links);
            *waiter.wait.exit_out = exit;
            detach(waiter);
            make_ready(waiter);
        }
        record.serial = 0;
        record.state = detail::TaskState::free;
        record.kill_requested = false;
        record.resume_point = {};
        record.innermost_scope = nullptr; // the scopes lived in the frame, gone now
        record.interrupted = false;
        record.abandoned = false;
        record.expired_scopes = 0;
        record.next_free = free_head_;
        free_head_ = record.slot;
        --task_count_;
        if (exit.failed() && !handed) {
            report(id, exit.error);
        }
    }

    void report(TaskId id, const std::exception_ptr& error) noexcept {
        try {
            if (exception_handler_) {
                exception_handler_(id, error);
                return;
            }
            const char* what = "a non-standard exception";
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            if (id) {
                std::cerr << "corio: task " << id << " failed and nobody waited for it: " << what
                          << '\n';
            } else {
                std::cerr << "corio: a posted callable failed: " << what << '\n';
            }
        } catch (...) { // a failing report must not take the loop down
        }
    }

    void resume(detail::TaskRecord& record) {
        ++resumed_since_poll_;
        record.state = detail::TaskState::running;
        current_ = &record;
        record.resume_point.resume();
        current_ = nullptr;
        if (record.root.done()) {
            finish(record);
        } else if (record.kill_requested) {
            kill_now(record);
        }
    }

    // Step 1 of the loop: the tasks that were ready when the pass began.
    void run_ready_tasks() {
        ++pass_;
        while (detail::ListLinks* links = ready_.front()) {
            auto& record = static_cast<detail::TaskRecord&>(*links);
            if (record.ready_pass == pass_) {
                break; // made ready during this pass: next pass
            }
            ready_.remove(record);
            resume(record);
        }
    }

    // Steps 2-4. Returns false when no task can ever be woken.
    bool wait_for_events() {
        if (!ready_.empty() && resumed_since_poll_ < poll_interval) {
            run_inbox(); // busy: the inbox and timers every pass, the fds after a few more resumptions
            expire_timers();
            return true;
        }
        resumed_since_poll_ = 0;
        int timeout_ms = 0;
        if (ready_.empty() && !inbox_.has_work()) {
            if (!timers_.empty()) {
                timeout_ms = milliseconds_until(timers_.top()->deadline);
            } else if (io_waiters_ > 0 || pool_waiters_ > 0 || held()) {
                timeout_ms = -1; // the inbox's fd is watched too: a post or a finished job wakes it
            } else {
                return false;
            }
        }
        if (virtual_clock_ != nullptr && timeout_ms > 0) {
            // Virtual time: look at the fds without sleeping; if nothing happened, jump the clock
            // to the next deadline instead of waiting for it.
            if (watched_fds_ == 0 || poll_selector(0) == 0) {
                virtual_clock_->advance_to(timers_.top()->deadline);
            }
        } else if (watched_fds_ > 0 || timeout_ms != 0) {
            poll_selector(timeout_ms);
        }
        run_inbox();
        expire_timers();
        return true;
    }

    [[nodiscard]] bool held() const noexcept { return holds_.load(std::memory_order_acquire) > 0; }

    // Runs what other threads delivered, in arrival order.
    void run_inbox() {
        if (!inbox_.has_work()) {
            return;
        }
        detail::Inbox::Batch batch = inbox_.take_all();
        while (detail::InboxItem* item = batch.pop()) {
            try {
                item->run(*this);
            } catch (...) {
                report(TaskId{}, std::current_exception());
            }
        }
    }

    // The inbox's wake channel is opened, and watched, when the loop first runs.
    void open_inbox() {
        if (inbox_.fd() < 0) {
            inbox_.open();
            selector_.watch(inbox_.fd(), Interest::none, Interest::read);
        }
    }

    // Readiness for the tasks in `waiting`: a plain wait ends; an I/O operation is attempted and
    // ends only if the attempt completes it.
    void complete_io(detail::TaskList& waiting) noexcept {
        detail::ListLinks* links = waiting.front();
        while (links != nullptr) {
            auto& record = static_cast<detail::TaskRecord&>(*links);
            links = waiting.after(*links);
            const auto& io = record.wait.io;
            if (io.attempt == nullptr || io.attempt(io.operation)) {
                detach(record);
                make_ready(record);
            }
        }
    }

    std::size_t poll_selector(int timeout_ms) {
        const std::size_t events =
            selector_.wait(timeout_ms, [this](int fd, Interest ready) { on_ready(fd, ready); });
        drop_stale_interest();
        return events;
    }

    void on_ready(int fd, Interest ready) {
        if (fd < 0 || fd == inbox_.fd() || static_cast<std::size_t>(fd) >= fd_watches_.size()) {
            return; // the inbox is looked at after the selector (run_inbox)
        }
        detail::FdWatch& watch = fd_watches_[static_cast<std::size_t>(fd)];
        Interest unwanted = Interest::none;
        if (has(ready, Interest::read)) {
            if (watch.readers.empty()) {
                unwanted = unwanted | (watch.watched & Interest::read);
            }
            complete_io(watch.readers);
        }
        if (has(ready, Interest::write)) {
            if (watch.writers.empty()) {
                unwanted = unwanted | (watch.watched & Interest::write);
            }
            complete_io(watch.writers);
        }
        if (unwanted != Interest::none) {
            stale_.emplace_back(fd, unwanted);
        }
    }

    // Readiness that nobody waited for: stop watching for it (level-triggered would repeat it).
    void drop_stale_interest() {
        for (auto [fd, unwanted] : stale_) {
            detail::FdWatch& watch = fd_watches_[static_cast<std::size_t>(fd)];
            const Interest keep = watch.watched & ~unwanted;
            selector_.watch(fd, watch.watched, keep);
            watched_fds_ -= keep == Interest::none && watch.watched != Interest::none ? 1 : 0;
            watch.watched = keep;
        }
        stale_.clear();
    }

    void expire_timers() {
        if (timers_.empty()) {
            return;
        }
        // Every due timer is taken off the heap before any task runs: the tasks only become
        // ready here, in deadline order (FIFO for equal deadlines).
        const Clock::time_point current_time = now();
        while (detail::TimerNode* timer = timers_.top()) {
            if (timer->deadline > current_time) {
                break;
            }
            timers_.remove(*timer);
            if (timer->kind == detail::TimerNode::Kind::deadline) {
                expire_deadline(static_cast<detail::TimeoutScope&>(*timer));
            } else {
                detail::TaskRecord& record = *static_cast<detail::TaskTimer*>(timer)->task;
                detach(record); // gives the timer back
                make_ready(record);
            }
        }
    }

    [[nodiscard]] int milliseconds_until(Clock::time_point deadline) const noexcept {
        const auto left = deadline - now();
        if (left <= Clock::duration::zero()) {
            return 0;
        }
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count(); // never early
        return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
    }

    template <class KeepGoing>
    void run_loop(KeepGoing keep_going) {
        if (running_) {
            throw std::logic_error("corio: the Scheduler is already running (run is not re-entrant)");
        }
        running_ = true;
        struct Reset {
            Scheduler& kernel;
            ~Reset() {
                kernel.running_ = false;
                kernel.stop_requested_ = false;
            }
        } reset{*this};
        open_inbox();
        auto go_on = [&] {
            return (task_count_ > 0 || inbox_.has_work() || held()) && !stop_requested_ &&
                   keep_going();
        };
        while (go_on()) {
            run_ready_tasks();
            if (!go_on() || !wait_for_events()) {
                break;
            }
        }
    }

    static constexpr std::uint32_t no_slot = UINT32_MAX;

    DefaultSelector selector_;
    VirtualClock* virtual_clock_ = nullptr;
    std::deque<detail::TaskRecord> records_; // a deque: records never move
    detail::FdTable<detail::FdWatch> fd_watches_; // indexed by fd; never moves either
    detail::FdOwner fd_owners_{detail::FdOwner::RingHead{}}; // who waited here (see FdOwner)
    detail::TaskList ready_;
    detail::TimerHeap timers_;
    std::deque<detail::TaskTimer> sleep_timers_; // lent to sleeping tasks (see lend_timer)
    std::vector<detail::TaskTimer*> free_timers_;
    std::vector<std::pair<int, Interest>> stale_;
    // Failures handed to waiters, until each of those has received it or ended (settle_failure).
    struct HandedFailure {
        TaskId task;
        std::exception_ptr error;
        std::uint32_t holders; // waiters that have neither received it nor ended
        bool received;
    };
    std::vector<HandedFailure> handed_;
    std::vector<std::exception_ptr> destruction_failures_; // see destroy_root
    detail::TaskRecord* current_ = nullptr;
    ExceptionHandler exception_handler_;
    std::uint64_t last_serial_ = 0;
    std::uint32_t pass_ = 0; // wraps: compared for equality with ready_pass only
    std::uint32_t free_head_ = no_slot;
    std::size_t task_count_ = 0;
    std::size_t io_waiters_ = 0;
    std::size_t watched_fds_ = 0;
    std::uint32_t resumed_since_poll_ = 0;
    bool running_ = false;
    bool stop_requested_ = false;
    std::size_t pool_waiters_ = 0; // tasks waiting for a thread-pool job
    std::size_t pool_size_ = 0;    // the bound thread_pool() will use; 0: the default
    std::atomic<std::size_t> holds_{0};
    detail::Inbox inbox_;
    std::unique_ptr<ThreadPool> pool_; // after inbox_: destroyed first (its jobs deliver there)
};

inline WaitQueue::~WaitQueue() {
    if (!tasks_.empty()) {
        kernel_->abandon_waiters(*this);
    }
}

namespace detail {

inline void FdOwner::forget(int fd) noexcept {
    if (kernel_ != nullptr) {
        kernel_->forget_fd(fd);
        unlink();
    }
}

inline void FdOwner::move_to(Scheduler& kernel, int fd) noexcept {
    forget(fd); // the Scheduler it waited in before stops watching the fd
    kernel_ = &kernel;
    FdOwner& head = kernel.fd_owners_;
    prev_ = head.prev_;
    next_ = &head;
    head.prev_->next_ = this;
    head.prev_ = this;
}

} // namespace detail

/// Runs `task` to completion on a new Scheduler and gives its value (like asyncio.run). Tasks it
/// spawned that are still alive when it completes are destroyed with the Scheduler.
template <class T>
T run(Task<T> task) {
    Scheduler kernel;
    return kernel.run_until_complete(std::move(task));
}

} // namespace corio
