// corio/kernel/task_record.hpp - what the kernel keeps of one task, and what every part of it
// reads: the task's state, the one thing it waits on, its links.
//
// A task waits for one thing at a time, so it is in at most one intrusive list (the ready queue,
// the readers or writers of one fd, the waiters of another task, a WaitQueue) and its TaskWait
// holds the one member that its TaskState names. Taking a task off what it waits on is therefore
// O(1) (O(log n) for a timer) whatever that is.
#pragma once

#include "corio/task.hpp"
#include "corio/task_exit.hpp"
#include "corio/detail/task_list.hpp"

#include <coroutine>
#include <cstdint>

namespace corio::detail {

class FdOperation;
struct TaskTimer;
struct TimeoutScope;

enum class TaskState : std::uint8_t {
    free,         // the slot holds no task
    ready,        // in the ready queue
    attempting,   // in the ready queue; its fd operation (wait.io) is attempted as it resumes
    yielding,     // in the ready queue after a Yield (or a Sleep with nothing to wait for)
    running,      // being resumed right now
    parked,       // suspended by a system call that will unpark it (or in a WaitQueue)
    waiting_fd,   // in the readers or writers of an fd
    sleeping,     // in the timer heap
    waiting_task, // in the waiters of another task
    dying,        // its frame is being destroyed
};

// What a suspended task waits with: one member at a time, the one its TaskState names (a union:
// every idle connection has a TaskRecord).
union TaskWait {
    TaskExit* exit_out = nullptr; // waiting_task: where the kernel writes the outcome
    void* cookie;                 // parked in a WaitQueue: what its owner handed in
    struct {
        FdOperation* operation;             // waiting_fd, attempting: retried on readiness; null: a plain wait
        bool (*attempt)(FdOperation&) noexcept; // how (FdOperation::Attempt); null: done on readiness
    } io;
    TaskTimer* timer;             // sleeping: the timer the kernel lent it
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
    bool interrupted = false;    // a scope of its own is `interrupting` (see DeadlineScopes)
    bool abandoned = false;      // the WaitQueue it was parked in was destroyed (see ~WaitQueue)
    std::coroutine_handle<Promise<void>> root;
    std::coroutine_handle<> resume_point; // the innermost suspended frame of the task
    TaskWait wait;
    TaskList waiters; // tasks waiting for this one to end
    TimeoutScope* innermost_scope = nullptr;
};

// The size issue 4's memory budget counts on (64-bit targets): see bench/library_share.cpp.
static_assert(sizeof(void*) != 8 || sizeof(TaskRecord) <= 96, "corio: TaskRecord grew");

} // namespace corio::detail
