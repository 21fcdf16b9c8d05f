// corio/kernel/deadline_scopes.hpp - deadlines around parts of a task (timeout_after and friends).
//
// A scope lives in the task's frame and nests: each knows the one around it. Once its deadline
// passes, every wait of the task inside it ends at once with its TimeoutError, until the scope is
// left. When several have passed, the outermost wins (it makes every inner one moot). The task
// learns it from a flag in its record, checked as each system call returns
// (Kernel::throw_if_interrupted), and from a mark on the scope that was passed, rather than from
// a pointer in every record.
#pragma once

#include "corio/timeout_error.hpp"
#include "corio/kernel/task_record.hpp"
#include "corio/kernel/timers.hpp"

#include <stdexcept>

namespace corio::detail {

class Kernel;

// A deadline around part of a task.
struct TimeoutScope : TaskTimer {
    TimeoutScope() noexcept : TaskTimer(Kind::deadline) {}
    TimeoutScope(const TimeoutScope&) = delete;
    TimeoutScope& operator=(const TimeoutScope&) = delete;

    Kernel* kernel = nullptr; // set while the scope is entered
    TimeoutScope* outer = nullptr;
    bool expired = false;      // the deadline passed: every wait inside the scope now ends at once
    bool interrupting = false; // its TimeoutError is to be thrown at the task when it resumes
};

class DeadlineScopes {
public:
    explicit DeadlineScopes(Timers& timers) noexcept : timers_(&timers) {}

    void enter(Kernel& kernel, TaskRecord& task, TimeoutScope& scope, Timers::Clock::time_point deadline) {
        scope.kernel = &kernel;
        scope.task = &task;
        scope.outer = task.innermost_scope;
        scope.expired = false;
        task.innermost_scope = &scope;
        timers_->arm(scope, deadline);
    }

    // Safe to call twice, and while the task is being killed.
    void leave(TimeoutScope& scope) noexcept {
        TaskRecord* task = scope.task;
        if (task == nullptr) {
            return;
        }
        timers_->cancel(scope);
        for (TimeoutScope** link = &task->innermost_scope; *link != nullptr; link = &(*link)->outer) {
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

    // The deadline of `scope` passed. True if its task waits now and must be interrupted
    // (see interruption); false if it runs or is ready: its next wait is interrupted instead.
    static bool expire(TimeoutScope& scope) noexcept {
        scope.expired = true;
        TaskRecord& task = *scope.task;
        ++task.expired_scopes;
        switch (task.state) {
        case TaskState::parked:
        case TaskState::waiting_fd:
        case TaskState::sleeping:
        case TaskState::waiting_task:
        case TaskState::yielding: return true; // a yield waits for nothing, so it ends too
        default: return false;
        }
    }

    // Marks the outermost expired scope of `task` as the one to throw, and returns true; false if
    // none has expired. The caller ends the task's wait.
    static bool mark_interruption(TaskRecord& task) noexcept {
        TimeoutScope* outermost = nullptr;
        for (TimeoutScope* scope = task.innermost_scope; scope != nullptr; scope = scope->outer) {
            scope->interrupting = false; // at most one scope is marked
            if (scope->expired) {
                outermost = scope;
            }
        }
        if (outermost == nullptr) {
            return false;
        }
        outermost->interrupting = true;
        task.interrupted = true;
        return true;
    }

    // Throws what ended the wait of a task whose `interrupted` flag is set: a std::logic_error if
    // the WaitQueue it waited in was destroyed, else the TimeoutError of the marked scope.
    [[gnu::noinline]] static void throw_interruption(TaskRecord& task) {
        task.interrupted = false;
        if (task.abandoned) {
            task.abandoned = false;
            throw std::logic_error("corio: what this task waited on (an Event, a Queue, a Lock, a "
                                   "Semaphore...) was destroyed while it waited");
        }
        for (TimeoutScope* scope = task.innermost_scope; scope != nullptr; scope = scope->outer) {
            if (scope->interrupting) {
                scope->interrupting = false;
                throw TimeoutError(scope);
            }
        }
    }

private:
    Timers* timers_;
};

} // namespace corio::detail
