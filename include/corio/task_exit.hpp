// corio/task_exit.hpp - how a task ended, as its waiters learn it.
#pragma once

#include <cstdint>
#include <exception>

namespace corio {

/// What `co_await WaitTask{id}` gives: whether the task returned, was killed, or threw.
struct TaskExit {
    /// How the task ended.
    enum class Outcome : std::uint8_t {
        completed,    ///< the task returned
        killed,       ///< KillTask (or Scheduler::kill, or the Scheduler's destruction) ended it
        failed,       ///< the task threw; `error` holds the exception
        no_such_task, ///< there was no such task when the wait began (it may have ended earlier)
    };

    Outcome outcome = Outcome::no_such_task; ///< How the task ended.
    std::exception_ptr error;                ///< The task's exception, when outcome is failed.

    /// True if the task returned.
    [[nodiscard]] bool completed() const noexcept { return outcome == Outcome::completed; }
    /// True if the task was killed.
    [[nodiscard]] bool killed() const noexcept { return outcome == Outcome::killed; }
    /// True if the task threw (see error and rethrow_if_failed).
    [[nodiscard]] bool failed() const noexcept { return outcome == Outcome::failed; }

    /// Rethrows the task's exception if it failed; does nothing otherwise.
    void rethrow_if_failed() const {
        if (error) {
            std::rethrow_exception(error);
        }
    }
};

} // namespace corio
