// corio/task_exit.hpp - how a task ended, as its waiters learn it.
#pragma once

#include <cstdint>
#include <exception>

namespace corio {

/// What `co_await WaitTask{id}` gives: whether the task returned, was killed, or threw.
struct TaskExit {
    enum class Outcome : std::uint8_t {
        completed,    ///< the task returned
        killed,       ///< KillTask (or Scheduler::kill, or the Scheduler's destruction) ended it
        failed,       ///< the task threw; `error` holds the exception
        no_such_task, ///< there was no such task when the wait began (it may have ended earlier)
    };

    Outcome outcome = Outcome::no_such_task;
    std::exception_ptr error; ///< set when outcome is failed

    [[nodiscard]] bool completed() const noexcept { return outcome == Outcome::completed; }
    [[nodiscard]] bool killed() const noexcept { return outcome == Outcome::killed; }
    [[nodiscard]] bool failed() const noexcept { return outcome == Outcome::failed; }

    /// Rethrows the task's exception if it failed; does nothing otherwise.
    void rethrow_if_failed() const {
        if (error) {
            std::rethrow_exception(error);
        }
    }
};

} // namespace corio
