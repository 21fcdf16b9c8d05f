// corio/kernel/pool_jobs.hpp - the Scheduler's thread pool (run_in_thread's), and how many tasks
// wait for a job on it: a task waiting for a job keeps the loop running, as one waiting on an fd does.
//
// The pool is created on first use, so a Scheduler that never runs blocking work starts no thread.
// Jobs come back through the inbox (kernel/inbox.hpp), which must outlive the pool: the Kernel
// declares this part after its inbox.
#pragma once

#include "corio/thread_pool.hpp"

#include <cstddef>
#include <memory>
#include <stdexcept>

namespace corio::detail {

class PoolJobs {
public:
    // The pool, created on first use (loop thread only). Its workers start when jobs arrive.
    ThreadPool& pool() {
        if (!pool_) {
            pool_ = std::make_unique<ThreadPool>(bound_ != 0 ? bound_ : ThreadPool::default_thread_count());
        }
        return *pool_;
    }
    // Bounds the pool that pool() will create. Throws std::logic_error once it exists,
    // std::invalid_argument for 0.
    void set_bound(std::size_t max_threads) {
        if (pool_) {
            throw std::logic_error("corio: set_thread_pool_size after the thread pool was created");
        }
        if (max_threads == 0) {
            throw std::invalid_argument("corio: a ThreadPool needs at least one thread");
        }
        bound_ = max_threads;
    }

    // A task waits for `job` from now on, until ended().
    void submit(PoolJob& job) {
        pool().submit(job);
        ++waiting_;
    }
    void ended() noexcept { --waiting_; }
    [[nodiscard]] std::size_t waiting() const noexcept { return waiting_; }

    // Waits for the running jobs (a job cannot be interrupted); queued ones never run.
    void shutdown() noexcept {
        if (pool_) {
            pool_->shutdown();
        }
    }

private:
    std::unique_ptr<ThreadPool> pool_;
    std::size_t bound_ = 0;   // 0: ThreadPool::default_thread_count()
    std::size_t waiting_ = 0; // tasks waiting for a job
};

} // namespace corio::detail
