// corio/thread_pool.hpp - ThreadPool: a bounded set of worker threads for blocking work.
//
// The loop must never block, yet some work only comes in blocking form (getaddrinfo, file I/O on
// most systems, a library without an asynchronous API, a long computation): it goes to a pool of
// threads while the task waits (run_in_thread.hpp). The pool knows nothing of Schedulers: it runs
// jobs, first in, first out.
//
// Workers start lazily: a Scheduler owns one pool and most programs never use it, and eager
// workers would put threads into every process that links corio (the "threads by default" an
// event loop should not have). Once started they live until shutdown(), ready for the next burst.
// Every worker blocks every signal, from before the thread starts so that not even its first
// instruction can receive one: signals go to the loop's thread, where a signalfd or a handler
// expects them, never to a worker in the middle of someone's blocking call.
//
// Rules: docs/guide.md#threadpool.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace corio {

namespace detail {

// A unit of work for the pool, linked into its queue without allocation (run_in_thread's job is
// one, and carries its own result). Exactly one of run() and cancel() is called, on some thread,
// and then the pool forgets the job: whoever implements it decides who frees it.
class PoolJob {
public:
    PoolJob() = default;
    PoolJob(const PoolJob&) = delete;
    PoolJob& operator=(const PoolJob&) = delete;

    /// On a worker: do the work.
    virtual void run() noexcept = 0;
    /// The pool was shut down before the job started: it never runs.
    virtual void cancel() noexcept = 0;

protected:
    ~PoolJob() = default; // never deleted through the pool

private:
    friend class JobQueue;
    PoolJob* next_in_pool_ = nullptr;
};

// An intrusive FIFO of PoolJobs (not thread-safe: the pool's mutex guards it).
class JobQueue {
public:
    [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

    void push(PoolJob& job) noexcept {
        job.next_in_pool_ = nullptr;
        (tail_ != nullptr ? tail_->next_in_pool_ : head_) = &job;
        tail_ = &job;
        ++size_;
    }
    PoolJob* pop() noexcept {
        PoolJob* job = head_;
        if (job != nullptr) {
            head_ = job->next_in_pool_;
            tail_ = head_ != nullptr ? tail_ : nullptr;
            --size_;
        }
        return job;
    }

private:
    PoolJob* head_ = nullptr;
    PoolJob* tail_ = nullptr;
    std::size_t size_ = 0;
};

// What ThreadPool::submit(fn) queues: fn, which frees itself once run or cancelled.
template <class Fn>
class CallableJob final : public PoolJob {
public:
    explicit CallableJob(Fn fn) : fn_(std::move(fn)) {}

    void run() noexcept override {
        std::unique_ptr<CallableJob> self(this);
        fn_(); // noexcept: an exception here has nobody to go to, so it terminates
    }
    void cancel() noexcept override { delete this; }

private:
    Fn fn_;
};

// Blocks every signal in the calling thread for as long as it lives: a thread started meanwhile
// inherits the full mask.
class BlockAllSignals {
public:
    BlockAllSignals() noexcept {
        sigset_t all;
        ::sigfillset(&all);
        ::pthread_sigmask(SIG_SETMASK, &all, &saved_);
    }
    BlockAllSignals(const BlockAllSignals&) = delete;
    BlockAllSignals& operator=(const BlockAllSignals&) = delete;
    ~BlockAllSignals() { ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }

private:
    sigset_t saved_{};
};

} // namespace detail

/// A bounded pool of worker threads running jobs in FIFO order. Thread-safe: any thread may
/// submit. Destroying the pool shuts it down (see shutdown()).
class ThreadPool {
public:
    /// The bound a Scheduler's pool gets: hardware threads + 4, at least 4, at most 32. Jobs
    /// mostly wait (a DNS reply, a disk) rather than compute, so more threads than cores pay off,
    /// while the cap keeps a burst of lookups from starting hundreds of threads.
    [[nodiscard]] static std::size_t default_thread_count() noexcept {
        const std::size_t cores = std::thread::hardware_concurrency(); // 0 if unknown
        return std::clamp<std::size_t>(cores + 4, 4, 32);
    }

    /// A pool of at most `max_threads` workers (none started yet). Throws std::invalid_argument
    /// for 0.
    explicit ThreadPool(std::size_t max_threads = default_thread_count())
        : max_threads_(max_threads) {
        if (max_threads == 0) {
            throw std::invalid_argument("corio: a ThreadPool needs at least one thread");
        }
    }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() { shutdown(); }

    /// Queues `fn()` to run on a worker. `fn` must not throw: nobody could receive the exception,
    /// so it ends the program (run_in_thread gives results and exceptions back to a task). A job
    /// still queued at shutdown() is destroyed without running. Throws std::logic_error after
    /// shutdown(), std::system_error if no worker exists and none can be started.
    template <class Fn>
        requires std::is_invocable_v<std::decay_t<Fn>&>
    void submit(Fn&& fn) {
        auto job = std::make_unique<detail::CallableJob<std::decay_t<Fn>>>(std::forward<Fn>(fn));
        submit(*job);
        static_cast<void>(job.release()); // it frees itself now
    }

    /// Queues `job` (see detail::PoolJob): the lower-level door run_in_thread uses.
    void submit(detail::PoolJob& job) {
        std::unique_lock lock(mutex_);
        if (stopping_) {
            throw std::logic_error("corio: ThreadPool::submit after shutdown");
        }
        if (idle_ <= queue_.size() && workers_.size() < max_threads_) { // nobody free for it
            try {
                start_worker();
            } catch (...) {
                if (workers_.empty()) {
                    throw; // nobody would ever run it
                }
                // Fewer threads than wished: the ones there will get to it.
            }
        }
        queue_.push(job);
        lock.unlock();
        work_available_.notify_one();
    }

    /// Stops taking jobs, lets the running ones finish, cancels the queued ones (they never run)
    /// and joins every worker. Idempotent. Must not be called from a worker of this pool.
    void shutdown() noexcept {
        detail::JobQueue cancelled;
        std::vector<std::thread> workers;
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
            std::swap(cancelled, queue_);
            std::swap(workers, workers_);
        }
        work_available_.notify_all();
        while (detail::PoolJob* job = cancelled.pop()) {
            job->cancel();
        }
        for (std::thread& worker : workers) {
            worker.join();
        }
    }

    /// The most workers this pool starts.
    [[nodiscard]] std::size_t max_threads() const noexcept { return max_threads_; }
    /// Workers started so far.
    [[nodiscard]] std::size_t thread_count() const {
        std::lock_guard lock(mutex_);
        return workers_.size();
    }
    /// Jobs waiting for a worker (not the running ones).
    [[nodiscard]] std::size_t queued() const {
        std::lock_guard lock(mutex_);
        return queue_.size();
    }

private:
    void start_worker() {
        const detail::BlockAllSignals blocked; // inherited by the new thread
        workers_.emplace_back([this] { work(); });
    }

    void work() noexcept {
        std::unique_lock lock(mutex_);
        for (;;) {
            ++idle_;
            work_available_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            --idle_;
            detail::PoolJob* job = queue_.pop();
            if (job == nullptr) {
                return; // stopping, and shutdown() took what was queued
            }
            lock.unlock();
            job->run();
            lock.lock();
        }
    }

    const std::size_t max_threads_;
    mutable std::mutex mutex_;
    std::condition_variable work_available_;
    detail::JobQueue queue_;
    std::vector<std::thread> workers_;
    std::size_t idle_ = 0; // workers waiting for a job
    bool stopping_ = false;
};

} // namespace corio
