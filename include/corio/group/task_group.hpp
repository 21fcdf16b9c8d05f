// corio/group/task_group.hpp - TaskGroup: run child tasks as one unit; no child outlives the group.
//
//     corio::Task<> serve_both(corio::AsyncSocket a, corio::AsyncSocket b) {
//         corio::TaskGroup group;
//         co_await group.spawn(echo(std::move(a)));   // each child is a task of its own
//         co_await group.spawn(echo(std::move(b)));
//         co_await group.wait();                      // until both end; rethrows the first failure
//     }                                               // leaving the scope kills what is left
//
// Structured concurrency, after curio's TaskGroup and trio's nursery: the children's lifetimes
// nest inside the group's scope, so a task that returns (or throws, or is killed) never leaves
// work running behind its back, and a failure in a child is never lost.
//
// The rules:
// * `spawn` starts the task as a separate task of the Scheduler, like NewTask: it first runs in a
//   later pass of the loop and interleaves with its siblings and the parent. It gives the child's
//   TaskId (which KillTask and WaitTask accept). The child's value, if any, is discarded: use
//   when_all to collect values.
// * `wait()` suspends the parent until every child has ended. If a child throws, the group kills
//   every other child at once - synchronously, from the failing child, so none of them runs
//   again - and `wait()` rethrows that first exception. Exceptions that come after the first are
//   dropped on purpose: the siblings were killed because of the first one, and only it says why
//   the group failed. A group that has failed stays failed: every later `wait()` rethrows the same
//   exception, and so does `spawn` (the task handed to it is destroyed without having run): a
//   parent that goes on spawning into a broken group learns at once that it should stop.
// * A child failure is the group's: the Scheduler never reports it as a failure nobody waited for.
//   Only if the parent never receives it (it is killed, or leaves the group's scope without
//   waiting, after a child failed) is the exception reported through the Scheduler's exception
//   handler, as the failure of a small task the group's destructor spawns to carry it: never
//   silently dropped.
// * A child killed from outside (KillTask, Scheduler::kill) has simply ended: it is not a failure.
// * `cancel()` kills every child now; the group stays usable. `size()` counts the children alive.
// * No child outlives the group: its destructor kills the children still alive, synchronously
//   (Scheduler::kill: each child is taken off whatever it waits on and its frame is destroyed, its
//   destructors run) before the parent's frame goes on unwinding.
//
// Cancellation: killing the parent (KillTask on it, also while it is inside `co_await
// group.wait()`) destroys the parent's frame, and with it the group: every child is killed before
// the KillTask returns, and the parent's waiters see TaskExit::Outcome::killed. A deadline
// (`timeout_after(d, group.wait())`) throws TimeoutError in the parent and leaves the children
// running: the parent may catch it and wait again, or leave the scope, which kills them. Killing
// a child ends only that child, as above. A child that kills its own parent destroys the group
// while it is itself running: it cannot be destroyed in the middle of its own code, so it dies when
// it next suspends (as any task that kills itself), and it no longer belongs to the group then.
//
// A TaskGroup belongs to one Scheduler and one parent task: the first task that spawns into it (or
// waits for it) is the parent, and only the parent may `wait()` (std::logic_error otherwise, which
// also keeps a child from waiting for itself). Other tasks of the same Scheduler may spawn into it
// - typically its children spawning siblings, trio's nursery pattern: the group outlives them all.
// `wait()` returns only when no child is alive, even if one was spawned after the last one ended.
// Spawning from another Scheduler's task throws std::logic_error. Declare the group in the parent's
// frame; it can be neither copied nor moved, and must not outlive its Scheduler.
//
// Cost: each child is its own frame plus one small supervising coroutine frame (see
// detail/child_set.hpp); the group allocates nothing else per child.
#pragma once

#include <cstddef>
#include <utility>

#include "corio/group/child_set.hpp"
#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"
#include "corio/task.hpp"

namespace corio {

/// Children that run as tasks of their own and end before the group's scope does: see the top of
/// task_group.hpp.
class TaskGroup {
public:
    /// The system call behind `co_await group.spawn(task)`: gives the child's TaskId.
    template <class T>
    class [[nodiscard]] Spawn {
    public:
        /// Spawns `task` into `group`.
        [[nodiscard]] Spawn(TaskGroup& group, Task<T> task) noexcept : group_(&group), task_(std::move(task)) {}

        /// Kernel side (see SystemCall): starts the child (see TaskGroup::spawn); never suspends.
        bool handle(Scheduler& kernel, TaskId caller) {
            group_->children_.bind(kernel, caller);
            group_->children_.rethrow_if_failed(caller); // into a failed group: see the top
            id_ = group_->children_.spawn(std::move(task_), detail::Discard{}, 0);
            return false;
        }
        /// The child's id.
        [[nodiscard]] TaskId result() const noexcept { return id_; }

    private:
        TaskGroup* group_;
        Task<T> task_;
        TaskId id_{};
    };

    /// An empty group; the first task that spawns into it or waits for it is its parent.
    TaskGroup() = default;
    TaskGroup(const TaskGroup&) = delete;
    TaskGroup& operator=(const TaskGroup&) = delete;
    TaskGroup(TaskGroup&&) = delete;
    TaskGroup& operator=(TaskGroup&&) = delete;
    /// Kills the children still alive (their frames are destroyed now).
    ~TaskGroup() = default;

    /// `co_await group.spawn(task)` starts `task` as a child task (it first runs in a later pass
    /// of the loop) and gives its TaskId; its value is discarded. Throws std::invalid_argument
    /// for an empty Task or one that has run, and rethrows the group's first failure if a child
    /// has failed already (`task` is then destroyed without running).
    template <class T>
    [[nodiscard]] Spawn<T> spawn(Task<T> task) noexcept {
        return Spawn<T>(*this, std::move(task));
    }

    /// `co_await group.wait()` suspends until every child has ended (at once if none is alive),
    /// then rethrows the first exception a child threw, if one did. Only the parent may wait:
    /// another task gets std::logic_error.
    [[nodiscard]] Task<> wait() {
        do {
            co_await detail::AwaitChildren(children_);
        } while (children_.alive() > 0); // a child spawned a sibling before the parent resumed
        children_.rethrow_if_failed(children_.owner());
    }

    /// Kills every child now (a child that calls it dies when it next suspends). The group stays
    /// usable, and a child killed this way is not a failure.
    void cancel() noexcept { children_.kill_children(nullptr); }

    /// The number of children alive (spawned and not yet ended).
    [[nodiscard]] std::size_t size() const noexcept { return children_.alive(); }

private:
    detail::ChildSet children_{detail::ChildPolicy::group};
};

} // namespace corio
