// corio/kernel/wait_queue.hpp - WaitQueue: the FIFO of tasks parked by a synchronisation primitive.
#pragma once

#include "corio/detail/task_list.hpp"

#include <cstddef>

namespace corio {

namespace detail {
class Kernel;
} // namespace detail

/// A FIFO of tasks parked by a synchronisation primitive (Event, Queue, Lock, ...): see
/// Scheduler::wait_in and Scheduler::wake_one. A task killed or timed out while it waits here
/// leaves the queue at once. Destroyed with tasks still in it (say, an Event in the frame of a
/// task that is killed while its children wait on it), it wakes each of them with a
/// std::logic_error, thrown from the `co_await` that waited.
class WaitQueue {
public:
    /// `what` names what its tasks wait for in a task listing (corio/diag/): a string literal
    /// such as "event" or "lock" (it is kept as a pointer).
    explicit WaitQueue(const char* what = "wait queue") noexcept : what_(what) {}
    WaitQueue(const WaitQueue&) = delete;
    WaitQueue& operator=(const WaitQueue&) = delete;
    ~WaitQueue(); // in kernel/kernel.hpp

    [[nodiscard]] bool empty() const noexcept { return tasks_.empty(); }
    [[nodiscard]] std::size_t size() const noexcept { return tasks_.size(); }
    /// What its tasks wait for (see the constructor).
    [[nodiscard]] const char* what() const noexcept { return what_; }

private:
    friend class detail::Kernel;
    detail::TaskList tasks_; // first: a task's list finds its queue (introspection)
    detail::Kernel* kernel_ = nullptr; // of the tasks in it (set by wait_in)
    const char* what_;
};

} // namespace corio
