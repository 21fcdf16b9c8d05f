// corio/run_in_thread.hpp - `co_await run_in_thread(fn, args...)`: blocking work off the loop.
//
//     std::string text = co_await corio::run_in_thread(read_whole_file, path);
//
// fn(args...) runs on the Scheduler's thread pool while the task waits, parked. The job comes back
// through the Scheduler's inbox (kernel/inbox.hpp), so the loop learns of any number of finished
// jobs with one wake-up. A running job cannot be interrupted, so a task that stops waiting (a
// kill, a deadline) abandons its job rather than cancel it: the worker never touches the task's
// frame, the job keeps its own state, and the loop frees it when it comes back (see ThreadJob).
//
// Rules (what is passed, what comes back, cancellation): docs/guide.md#run_in_thread.
#pragma once

#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"
#include "corio/thread_pool.hpp"
#include "corio/kernel/inbox.hpp"

#include <atomic>
#include <cerrno>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

namespace corio {

namespace detail {

// fn, its arguments and, once it ran, its outcome: shared by the task (through RunInThread) and a
// worker, and owned by one of them at a time (see RunInThread's destructor).
//   the task's call ──submit──▶ pool queue ──run/cancel──▶ worker ──deliver──▶ inbox ──▶ loop
// The worker writes the outcome before it delivers the job; the inbox's lock makes the write
// visible to the loop. The loop alone reads the outcome, and `abandoned_` is the only field both
// sides touch while the job is away (atomic: the worker skips a job nobody waits for any more).
template <class Fn, class... Args>
class ThreadJob final : public PoolJob, public InboxItem {
public:
    using Result = std::remove_cvref_t<std::invoke_result_t<Fn, Args...>>;

    template <class GivenFn, class... GivenArgs>
    explicit ThreadJob(GivenFn&& fn, GivenArgs&&... args)
        : fn_(std::forward<GivenFn>(fn)), args_(std::forward<GivenArgs>(args)...) {}

    // ---- the task's side (loop thread)

    void start(Scheduler& kernel, TaskId waiter) {
        kernel_ = &kernel;
        waiter_ = waiter;
        kernel.submit_to_pool(*this);
        away_ = true;
    }
    [[nodiscard]] bool away() const noexcept { return away_; }
    // The task no longer waits: the loop frees the job when it comes back.
    void abandon() noexcept {
        abandoned_.store(true, std::memory_order_relaxed);
        kernel_->pool_job_ended();
    }
    Result take_result() {
        if (error_) {
            std::rethrow_exception(error_);
        }
        if constexpr (!std::is_void_v<Result>) {
            return std::move(*value_);
        }
    }

    // ---- the worker's side

    void run() noexcept override {
        if (!abandoned_.load(std::memory_order_relaxed)) {
            try {
                if constexpr (std::is_void_v<Result>) {
                    std::apply(std::move(fn_), std::move(args_));
                    value_.emplace();
                } else {
                    value_.emplace(std::apply(std::move(fn_), std::move(args_)));
                }
            } catch (...) {
                error_ = std::current_exception();
            }
        }
        kernel_->deliver(*this); // the last access to *this on this thread
    }
    void cancel() noexcept override {
        error_ = std::make_exception_ptr(std::system_error(
            ECANCELED, std::generic_category(), "corio: the thread pool shut down before the job ran"));
        kernel_->deliver(*this);
    }

    // ---- back on the loop

    void run(Kernel& kernel) override {
        if (abandoned_.load(std::memory_order_relaxed)) {
            delete this;
            return;
        }
        away_ = false; // the task's call owns it again
        kernel.pool_job_ended();
        kernel.unpark(waiter_);
    }
    void discard() noexcept override { delete this; }

private:
    struct Nothing {};
    using Stored = std::conditional_t<std::is_void_v<Result>, Nothing, Result>;

    Fn fn_;
    std::tuple<Args...> args_;
    std::optional<Stored> value_;
    std::exception_ptr error_;
    Scheduler* kernel_ = nullptr;
    TaskId waiter_;
    std::atomic<bool> abandoned_{false};
    bool away_ = false; // submitted and not back yet (loop thread only)
};

} // namespace detail

/// The system call behind run_in_thread: it owns its job until the pool takes it, and again once
/// the job is back; destroyed while the job is away (the task killed, or a deadline), it leaves
/// the job to the loop, which frees it when it returns.
template <class Fn, class... Args>
class [[nodiscard]] RunInThread {
public:
    using Job = detail::ThreadJob<Fn, Args...>;
    using Result = typename Job::Result;

    template <class GivenFn, class... GivenArgs>
    [[nodiscard]] explicit RunInThread(GivenFn&& fn, GivenArgs&&... args)
        : job_(new Job(std::forward<GivenFn>(fn), std::forward<GivenArgs>(args)...)) {}
    RunInThread(RunInThread&& other) noexcept : job_(std::exchange(other.job_, nullptr)) {}
    RunInThread& operator=(RunInThread&&) = delete;
    RunInThread(const RunInThread&) = delete;
    RunInThread& operator=(const RunInThread&) = delete;
    ~RunInThread() {
        if (job_ == nullptr) {
            return;
        }
        if (job_->away()) {
            job_->abandon(); // no longer ours to free
        } else {
            delete job_;
        }
    }

    bool handle(Scheduler& kernel, TaskId caller) {
        job_->start(kernel, caller);
        return true; // parked until the job comes back
    }
    Result result() { return job_->take_result(); }

private:
    Job* job_;
};

/// `co_await run_in_thread(fn, args...)` runs fn(args...) on the Scheduler's thread pool and gives
/// its result or rethrows its exception (rules: docs/guide.md#run_in_thread).
template <class Fn, class... Args>
    requires std::is_invocable_v<std::decay_t<Fn>, std::decay_t<Args>...>
[[nodiscard]] RunInThread<std::decay_t<Fn>, std::decay_t<Args>...> run_in_thread(Fn&& fn, Args&&... args) {
    return RunInThread<std::decay_t<Fn>, std::decay_t<Args>...>(std::forward<Fn>(fn),
                                                                 std::forward<Args>(args)...);
}

} // namespace corio
