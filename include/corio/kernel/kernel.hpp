// corio/kernel/kernel.hpp - the loop, and the services that system calls use.
//
// One pass of the loop at a time, in a fixed order:
//
//     ┌─▶ 1. resume every task that was ready when the pass began, in FIFO order   (TaskTable)
//     │   2. the selector timeout: 0 if tasks are ready, else until the earliest timer (rounded
//     │      up: a task never wakes before its deadline), else unbounded              (Timers)
//     │   3. wait in the selector; attempt each ready fd's operations; a task whose
//     │      operation is done becomes ready                                          (FdWatches)
//     │   4. run what other threads posted, in arrival order                          (Inbox)
//     └── 5. a task whose timer expired becomes ready; a passed deadline interrupts   (Timers,
//            its task's wait                                                           DeadlineScopes)
//
// A task is resumed only from step 1, never from inside a system call or another task, so whatever
// a task does runs on the loop's own stack. While tasks stay ready pass after pass, step 3 runs
// once every `poll_interval` resumptions (a look at the selector is a system call): a task that
// yields in a loop cannot starve I/O, nor pays a system call per yield.
//
// The parts (kernel/*.hpp) keep their own state and report what became ready through a callback,
// as the selector does; they never call back into the kernel. The kernel alone moves tasks between
// them: detach() takes a task off whatever it waits on, make_ready() queues it.
//
// Destructors run user code, and may re-enter the kernel (kill, spawn, wake, forget_fd...) at
// these points, each written to be safe for it:
//   * kill_task / finish: destroying the task's frames (Failures::destroy_frames);
//   * ~Scheduler: each task killed in turn (newest first: tasks spawned meanwhile join in);
//   * a WaitQueue destroyed with waiters (abandon_waiters), an AsyncFd closed (forget_fd);
//   * reporting a failure (the exception handler), and running a posted callable.
#pragma once

#include "corio/syscall_concept.hpp"
#include "corio/task.hpp"
#include "corio/task_exit.hpp"
#include "corio/virtual_clock.hpp"
#include "corio/kernel/async_fd.hpp"
#include "corio/kernel/deadline_scopes.hpp"
#include "corio/kernel/failures.hpp"
#include "corio/kernel/fd_operation.hpp"
#include "corio/kernel/fd_watches.hpp"
#include "corio/kernel/inbox.hpp"
#include "corio/kernel/pool_jobs.hpp"
#include "corio/kernel/task_notes.hpp"
#include "corio/kernel/task_table.hpp"
#include "corio/kernel/timers.hpp"
#include "corio/kernel/wait_queue.hpp"

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

namespace corio {

class Scheduler;
struct TaskInfo;

namespace detail {

/// The kernel of a Scheduler: its loop, and the services system calls use. Each service acts on
/// the task that trapped into the kernel and leaves it suspended until the kernel wakes it.
class Kernel {
public:
    using Clock = std::chrono::steady_clock;

    /// While tasks stay ready, the loop looks at the fds once per this many resumptions: the most
    /// a busy loop delays I/O readiness, in resumptions.
    static constexpr std::uint32_t poll_interval = 64;

    Kernel(const Kernel&) = delete;
    Kernel& operator=(const Kernel&) = delete;

    /// The time on this Scheduler's clock: steady_clock, or its VirtualClock.
    [[nodiscard]] Clock::time_point now() const noexcept { return timers_.now(); }
    /// now() + `delay`, saturating at the end of time rather than overflowing.
    [[nodiscard]] Clock::time_point deadline_after(Clock::duration delay) const noexcept {
        return timers_.deadline_after(delay);
    }

    /// The trap: runs a system call's handle() for the task that awaits it (see syscall_concept.hpp).
    template <class Call, class Self = Scheduler>
    bool enter(Call& call, std::coroutine_handle<> caller) {
        TaskRecord& self = trapped_task();
        self.resume_point = caller;
        self.state = TaskState::parked;
        bool suspend = false;
        try {
            suspend = static_cast<bool>(call.handle(static_cast<Self&>(*this), TaskTable::id_of(self)));
        } catch (...) {
            detach(self);
            self.state = TaskState::running;
            throw;
        }
        if (!suspend) { // it continues now: undo anything the call registered it for
            detach(self);
            self.state = TaskState::running;
            return false;
        }
        if (recording_waits_) [[unlikely]] {
            notes_.waits_from(self, now());
        }
        if (self.expired_scopes > 0 && !self.kill_requested) [[unlikely]] {
            interrupt(self); // a deadline passed while it was busy: this wait ends at once
        }
        return true;
    }
    /// Called as a system call returns to its task: throws the TimeoutError of a deadline that
    /// interrupted the wait (or the logic_error of a WaitQueue destroyed under it).
    void throw_if_interrupted() {
        if (current_ != nullptr && current_->interrupted) [[unlikely]] {
            DeadlineScopes::throw_interruption(*current_); // out of line: runs on every resumption
        }
    }

    // ---- Waiting on fds.

    /// Suspends the calling task until `fd` is readable (or hung up, or in error), or holds bytes
    /// a lent read's receive brought (kernel/received_stash.hpp): those are read first.
    void wait_for_read(int fd) {
        if (stash_holds(fd)) [[unlikely]] {
            yield_now();
            return;
        }
        fd_watches_.add(trapped_task(), fd, Interest::read, nullptr, nullptr);
    }
    /// Suspends the calling task until `fd` is writable (or hung up, or in error).
    void wait_for_write(int fd) { fd_watches_.add(trapped_task(), fd, Interest::write, nullptr, nullptr); }
    /// Suspends the calling task until `operation` is done: on each readiness of its fd for its
    /// direction, the kernel calls `attempt(operation)`; the task resumes only once an attempt
    /// completes it (or forget_fd wakes it without one). A null `attempt`: done on readiness.
    void wait_for(FdOperation& operation, FdOperation::Attempt attempt) {
        if (operation.direction() == Interest::read && stash_holds(operation.target().fd())) [[unlikely]] {
            yield_now(); // its attempt takes them when it resumes (FdAwaiter::await_resume)
            return;
        }
        fd_watches_.add(trapped_task(), operation.target().fd(), operation.direction(), &operation,
                        attempt);
    }
    /// Stops watching `fd` and wakes every task waiting on it (their next system call on it sees
    /// the error). Call it before closing an fd that tasks waited on (AsyncFd does).
    void forget_fd(int fd) noexcept {
        fd_watches_.forget(fd, [this](TaskRecord& task) { tasks_.make_ready(task); });
    }
    /// The first operation of `kind` waiting on `fd` for `direction`, or null: sends on one
    /// socket keep their order with it (net/async_socket.hpp).
    [[nodiscard]] const FdOperation* first_operation(int fd, Interest direction,
                                                     FdOperation::Kind kind) const noexcept {
        return fd_watches_.first_operation(fd, direction, kind);
    }

    /// The buffers lent reads read into (see kernel/lent_buffers.hpp).
    [[nodiscard]] LentBuffers& lent_buffers() noexcept { return fd_watches_.lent_buffers(); }
    /// True once lent reads are receives the backend completes (io_uring).
    [[nodiscard]] bool lends_natively() const noexcept { return fd_watches_.lends_natively(); }
    /// What completed receives brought that no read took yet (see kernel/received_stash.hpp).
    [[nodiscard]] ReceivedStash& received_stash() noexcept { return fd_watches_.stash(); }
    /// True while a lent receive is in flight on `fd`: reads must not take bytes from the socket
    /// itself until it completes (see kernel/fd_watches.hpp).
    [[nodiscard]] bool receiving(int fd) const noexcept { return fd_watches_.receiving(fd); }
    /// True once sends go through the ring (io_uring: see kernel/fd_watches.hpp): a send that
    /// waits is submitted by its attempt, with submit_send.
    [[nodiscard]] bool sends_on_ring() const noexcept { return fd_watches_.sends_on_ring(); }
    /// Whether tasks other than the running one are ready: the loop's next wait comes after them.
    [[nodiscard]] bool others_ready() const noexcept { return tasks_.has_ready(); }
    void submit_send(int fd, const std::byte* data, std::uint32_t size) {
        fd_watches_.submit_send(fd, data, size);
    }

    // ---- Waiting on tasks, time, and the ready queue.

    /// Suspends the calling task until `target` ends; the outcome is written to `exit` then.
    /// Returns false, with `exit` saying no_such_task, if there is no such task.
    bool wait_for_exit(TaskId target, TaskExit& exit);
    /// For a system call that waited with wait_for_exit and was handed a failure: call it once,
    /// with true when its task receives the failure, false when the task ends first. A failure
    /// that none of the waiters it was handed to receives is reported like one nobody waited for.
    void settle_failure(TaskId failed, bool received) noexcept { failures_.settle(failed, received); }
    /// Reports `error` as the failure of task `task` that nobody received (the exception
    /// handler, by default a line on stderr), now. For failures a task held for others and can
    /// no longer hand on: a TaskGroup destroyed before its parent received a child's failure.
    void report_failure(TaskId task, const std::exception_ptr& error) noexcept {
        failures_.report(task, error);
    }

    /// Suspends the calling task until `deadline`.
    void sleep_until(Clock::time_point deadline) {
        TaskRecord& self = trapped_task();
        self.wait.timer = &timers_.arm_sleep(self, deadline);
        self.state = TaskState::sleeping;
    }
    /// Puts the calling task at the back of the ready queue. A yield is a wait like any other: a
    /// deadline that passes (or has passed) before it runs again ends it with its TimeoutError.
    void yield_now() {
        TaskRecord& self = trapped_task();
        tasks_.make_ready(self);
        self.state = TaskState::yielding;
    }
    /// Wakes a task that a system call left parked. False if there is no such task or it is not
    /// parked.
    bool unpark(TaskId id) {
        TaskRecord* record = tasks_.find(id);
        if (record == nullptr || record->state != TaskState::parked || record == current_) {
            return false;
        }
        detach(*record);
        tasks_.make_ready(*record);
        return true;
    }

    // ---- WaitQueues (sync/ and group/ build on these).

    /// Parks the calling task at the back of `queue`, with a `cookie` that wake_one gives back to
    /// whoever wakes it (typically the waiting system call, to hand it a value).
    void wait_in(WaitQueue& queue, void* cookie = nullptr) {
        TaskRecord& self = trapped_task();
        queue.tasks_.push_back(self);
        queue.kernel_ = this;
        self.wait.cookie = cookie;
        self.state = TaskState::parked;
    }
    /// Wakes the task at the front of `queue`; gives its cookie, or null if the queue is empty
    /// (check `queue.empty()` first when the cookies may be null).
    void* wake_one(WaitQueue& queue) noexcept {
        ListLinks* links = queue.tasks_.front();
        if (links == nullptr) {
            return nullptr;
        }
        auto& record = static_cast<TaskRecord&>(*links);
        void* cookie = record.wait.cookie;
        detach(record);
        tasks_.make_ready(record);
        return cookie;
    }
    /// Wakes every task in `queue`, in order.
    void wake_all(WaitQueue& queue) noexcept { wake_all(queue.tasks_); }

    // ---- Deadlines (timeout.hpp builds on these).

    /// Enters a deadline scope for the calling task: once `deadline` has passed, and until the
    /// scope is left, every wait of the task ends at once with a TimeoutError for this scope.
    void enter_scope(TimeoutScope& scope, Clock::time_point deadline) {
        scopes_.enter(*this, trapped_task(), scope, deadline);
    }
    /// Leaves a deadline scope. Safe to call twice, and while the task is being killed.
    void leave_scope(TimeoutScope& scope) noexcept { scopes_.leave(scope); }

    // ---- The thread pool and the inbox (run_in_thread builds on these).

    /// The pool run_in_thread uses, created on first use (loop thread only).
    ThreadPool& thread_pool() { return pool_jobs_.pool(); }
    /// Queues `job` on the thread pool for the calling task, which counts as waiting for the pool
    /// until pool_job_ended(). The job comes back through deliver() and wakes it with unpark().
    void submit_to_pool(PoolJob& job) {
        TaskRecord& self = trapped_task();
        pool_jobs_.submit(job);
        self.wait.cookie = &pool_jobs_; // what a snapshot says it waits on
    }
    /// The task that submit_to_pool() counted no longer waits for its job.
    void pool_job_ended() noexcept { pool_jobs_.ended(); }
    /// Thread-safe: hands `item` to the loop, which runs it soon (see kernel/inbox.hpp).
    void deliver(InboxItem& item) noexcept { inbox_.push(item); }

    // ---- Introspection (kernel/task_snapshot.hpp; rendered by corio/diag/).

    /// Every live task: its id, spawner, name, what it waits on and for how long, and its frames.
    /// Costs a walk of the task table; meant for people (a monitor, a dump), not for the loop.
    [[nodiscard]] std::vector<TaskInfo> snapshot() const;
    /// Names task `id` in snapshots and stall warnings (an empty name takes the name back: the
    /// root coroutine's is used). False if there is no such task.
    bool set_name(TaskId id, std::string name) {
        const TaskRecord* record = tasks_.find(id);
        if (record == nullptr) {
            return false;
        }
        notes_.set_name(record->serial, std::move(name));
        return true;
    }
    /// Has task `id` called `function` (a string that outlives the task, e.g. a frame's
    /// function()) unless it is given a name: what a wrapper around a coroutine does so that the
    /// task is known by the coroutine it runs. No allocation.
    void call_task(TaskId id, const char* function) noexcept {
        if (const TaskRecord* record = tasks_.find(id)) {
            notes_.call(*record, function);
        }
    }
    /// The live task whose serial number is `serial` (TaskId::serial), or an empty id: how a
    /// person's "task 12" becomes an id. A scan of the task table.
    [[nodiscard]] TaskId find_task(std::uint64_t serial) noexcept {
        const TaskRecord* record = tasks_.find_serial(serial);
        return record != nullptr ? TaskTable::id_of(*record) : TaskId{};
    }
    /// Notes since when each task waits (a clock read per wait), for TaskInfo::waited. Off by default.
    void record_wait_times(bool on) noexcept {
        if (on && !recording_waits_) {
            notes_.forget_wait_times();
        }
        recording_waits_ = on;
    }
    /// Reports every resumption that runs `threshold` or longer without suspending: to `handler`,
    /// or, without one, as a line on stderr. A zero threshold turns it off (the default).
    void warn_of_stalls(Clock::duration threshold, TaskNotes::StallHandler handler = {}) {
        notes_.warn_of_stalls(threshold, std::move(handler));
        watching_stalls_ = threshold > Clock::duration::zero();
    }

protected:
    explicit Kernel(Backend backend) : scopes_(timers_), fd_watches_(backend) {}
    Kernel(VirtualClock& clock, Backend backend) : timers_(clock), scopes_(timers_), fd_watches_(backend) {}
    ~Kernel() = default;

    TaskId spawn(std::coroutine_handle<Promise<void>> root, SpawnSite site);
    void make_room_in_notes(TaskRecord& record);
    void kill_task(TaskRecord& record);
    void kill_everything() noexcept;
    template <class KeepGoing>
    void run_loop(KeepGoing keep_going);

    // What every pass reads comes first, so that a busy loop touches few cache lines.
    TaskRecord* current_ = nullptr;
    std::uint32_t resumed_since_poll_ = 0;
    bool running_ = false;
    bool stop_requested_ = false;
    bool recording_waits_ = false; // record_wait_times: read on every wait
    bool watching_stalls_ = false; // warn_of_stalls: read on every resumption
    TaskTable tasks_;
    Timers timers_;
    DeadlineScopes scopes_;
    FdWatches fd_watches_;
    Failures failures_;
    Inbox inbox_;
    PoolJobs pool_jobs_; // after inbox_: destroyed first (its jobs deliver there)
    TaskNotes notes_;

private:
    friend class corio::WaitQueue;
    friend class corio::AsyncFd;

    TaskRecord& trapped_task() {
        if (current_ == nullptr) {
            throw std::logic_error("corio: a kernel service was called outside a running task");
        }
        return *current_;
    }

    bool stash_holds(int fd) noexcept {
        return !fd_watches_.stash().empty() && fd_watches_.stash().holds(fd);
    }

    // Takes a task off whatever it waits on.
    void detach(TaskRecord& record) noexcept {
        if (record.state == TaskState::waiting_fd) {
            fd_watches_.remove(record);
        } else if (record.state == TaskState::sleeping) {
            timers_.end_sleep(*record.wait.timer); // cancels it unless it expired already
        } else if (record.owner != nullptr) {
            record.owner->remove(record);
        }
        record.wait = {};
    }
    void wake(TaskRecord& record) noexcept {
        detach(record);
        tasks_.make_ready(record);
    }
    void wake_all(TaskList& list) noexcept {
        while (ListLinks* links = list.front()) {
            wake(static_cast<TaskRecord&>(*links));
        }
    }
    // Wakes the tasks left in a WaitQueue that is destroyed, each with a std::logic_error thrown
    // from the system call it waits in: what it waited for is gone.
    void abandon_waiters(WaitQueue& queue) noexcept {
        while (ListLinks* links = queue.tasks_.front()) {
            auto& record = static_cast<TaskRecord&>(*links);
            wake(record);
            record.abandoned = true;
            record.interrupted = true; // so that throw_if_interrupted looks
        }
    }
    // Ends the wait of a suspended task with the TimeoutError of its outermost expired scope.
    void interrupt(TaskRecord& record) noexcept {
        // An operation the backend completed before the deadline could stop it (a ring send whose
        // bytes went) resumes with its result: a completion wins.
        if (record.state == TaskState::waiting_fd && fd_watches_.settle_before_deadline(record)) [[unlikely]] {
            wake(record);
            return;
        }
        if (DeadlineScopes::mark_interruption(record)) {
            wake(record);
        }
    }

    void resume(TaskRecord& record);
    void resume_watched(TaskRecord& record);
    std::string name_of(const TaskRecord& record) const;
    void describe_wait(const TaskRecord& record, TaskInfo& info,
                       const std::unordered_map<const TaskList*, TaskId>& waiters_of,
                       Clock::time_point now_time) const;
    // A task made ready by readiness whose operation waits to be attempted until now (see
    // FdWatches::complete): true if the attempt completed it, or the task must resume anyway (a
    // deadline passed, or it cannot wait again); false if it waits on its fd again.
    bool attempt_before_resuming(TaskRecord& record) noexcept {
        const auto io = record.wait.io;
        record.wait = {};
        if (io.attempt(*io.operation)) {
            return true;
        }
        if (record.expired_scopes > 0) {
            DeadlineScopes::mark_interruption(record); // its await_resume throws the TimeoutError
            return true;
        }
        try {
            fd_watches_.add(record, io.operation->target().fd(), io.operation->direction(),
                            io.operation, io.attempt);
            return false;
        } catch (...) { // its await_resume tries once more and reports what it finds
            return true;
        }
    }
    void finish(TaskRecord& record);
    void end_task(TaskRecord& record, TaskExit exit);
    void run_ready_tasks();
    bool collect_ready_tasks();
    // Step 3: gives the number of ready fds.
    std::size_t select_fds(int timeout_ms) {
        return fd_watches_.select(timeout_ms, [this](TaskRecord& task) { tasks_.make_ready(task); });
    }
    void run_inbox();
    void expire_timers();
    // Before the loop stops: on io_uring, what the ring did since the last wait (bytes a receive
    // took, for the stash) is collected, so that a read after the loop finds it.
    void collect_ring() {
        if (fd_watches_.ring_in_flight()) [[unlikely]] {
            select_fds(0);
        }
    }
};

} // namespace detail

inline WaitQueue::~WaitQueue() {
    if (!tasks_.empty()) {
        kernel_->abandon_waiters(*this);
    }
}

inline void AsyncFd::forget() noexcept {
    if (kernel_ != nullptr) {
        kernel_->forget_fd(fd_);
        unlink();
    }
}

inline void AsyncFd::move_to(detail::Kernel& kernel) noexcept {
    forget(); // the Scheduler it waited in before stops watching the fd
    kernel_ = &kernel;
    AsyncFd& head = kernel.fd_watches_.owners();
    prev_ = head.prev_;
    next_ = &head;
    head.prev_->next_ = this;
    head.prev_ = this;
}

namespace detail {

inline void Kernel::resume(TaskRecord& record) {
    if (record.state == TaskState::attempting && !attempt_before_resuming(record)) [[unlikely]] {
        return; // it would block after all: it waits again
    }
    ++resumed_since_poll_;
    record.state = TaskState::running;
    current_ = &record;
    if (watching_stalls_) [[unlikely]] {
        resume_watched(record);
    } else {
        record.resume_point.resume();
    }
    current_ = nullptr;
    if (record.root.done()) {
        finish(record);
    } else if (record.kill_requested) {
        kill_task(record);
    }
}

// Step 1 of the loop.
inline void Kernel::run_ready_tasks() {
    tasks_.begin_pass();
    while (TaskRecord* record = tasks_.next_ready()) {
        resume(*record);
    }
}

// Steps 2-5. Returns false when no task can ever be woken.
inline bool Kernel::collect_ready_tasks() {
    if (tasks_.has_ready() && resumed_since_poll_ < poll_interval) {
        run_inbox(); // busy: the inbox and timers every pass, the fds after a few more resumptions
        expire_timers();
        return true;
    }
    resumed_since_poll_ = 0;
    int timeout_ms = 0;
    if (!tasks_.has_ready() && !inbox_.has_work()) {
        if (!timers_.empty()) {
            timeout_ms = timers_.milliseconds_to_earliest();
        } else if (fd_watches_.waiting_tasks() > 0 || pool_jobs_.waiting() > 0 || inbox_.held()) {
            timeout_ms = -1; // the inbox's fd is watched too: a post or a finished job wakes it
        } else {
            collect_ring(); // nothing can wake a task
            return tasks_.has_ready();
        }
    }
    VirtualClock* virtual_clock = timers_.virtual_clock();
    if (virtual_clock != nullptr && timeout_ms > 0) {
        // Virtual time: look at the fds without sleeping; if nothing happened, jump the clock to
        // the next deadline instead of waiting for it.
        if (!fd_watches_.has_work() || select_fds(0) == 0) {
            virtual_clock->advance_to(timers_.earliest());
        }
    } else if (fd_watches_.has_work() || timeout_ms != 0) {
        select_fds(timeout_ms);
    }
    run_inbox();
    expire_timers();
    return true;
}

// Runs what other threads delivered, in arrival order.
inline void Kernel::run_inbox() {
    if (!inbox_.has_work()) {
        return;
    }
    Inbox::Batch batch = inbox_.take_all();
    while (InboxItem* item = batch.pop()) {
        try {
            item->run(*this);
        } catch (...) {
            failures_.report(TaskId{}, std::current_exception());
        }
    }
}

inline void Kernel::expire_timers() {
    timers_.expire([this](TaskRecord& sleeper) { wake(sleeper); }, // wake gives the timer back
                   [this](TaskTimer& deadline) {
                       auto& scope = static_cast<TimeoutScope&>(deadline);
                       if (DeadlineScopes::expire(scope)) {
                           interrupt(*scope.task);
                       }
                   });
}

template <class KeepGoing>
void Kernel::run_loop(KeepGoing keep_going) {
    if (running_) {
        throw std::logic_error("corio: the Scheduler is already running (run is not re-entrant)");
    }
    running_ = true;
    struct Reset {
        Kernel& kernel;
        ~Reset() {
            kernel.running_ = false;
            kernel.stop_requested_ = false;
        }
    } reset{*this};
    if (inbox_.fd() < 0) { // the inbox's wake channel is opened, and watched, when the loop first runs
        inbox_.open();
        fd_watches_.watch_quietly(inbox_.fd());
    }
    auto go_on = [&] {
        return (tasks_.size() > 0 || inbox_.has_work() || inbox_.held()) && !stop_requested_ &&
               keep_going();
    };
    while (go_on()) {
        run_ready_tasks();
        if (!go_on()) {
            collect_ring();
            break;
        }
        if (!collect_ready_tasks()) {
            break;
        }
    }
}

} // namespace detail
} // namespace corio

#include "corio/kernel/task_ends.hpp" // how tasks start and end: spawn, finish, kill, teardown
#include "corio/kernel/task_snapshot.hpp" // what a snapshot of the tasks says, and the stall watch
