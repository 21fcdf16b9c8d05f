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
// work running behind its back, and a child's failure goes to the parent rather than to the
// Scheduler's report of failures nobody waited for. Only the first failure is kept: the siblings
// are killed because of it, and it alone says why the group failed.
//
// Cost: each child is its own frame plus one small supervising coroutine frame (see
// group/child_set.hpp); the group allocates nothing else per child.
//
// Rules: docs/guide.md#taskgroup.
#pragma once

#include <cstddef>
#include <utility>

#include "corio/group/child_set.hpp"
#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"
#include "corio/task.hpp"

namespace corio {

/// Children that run as tasks of their own and end before the group's scope does (rules:
/// docs/guide.md#taskgroup).
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
            group_->children_.rethrow_if_failed(caller); // a failed group stays failed
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
