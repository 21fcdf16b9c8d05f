// corio/group/child_set.hpp - the machinery under TaskGroup, when_all and when_any: a set of
// child tasks, each run by a small supervising coroutine that reports back to the set.
//
//   the owner task (spawns, waits)             one task per child, scheduled by the kernel
//   +----------------------------------+       +------------------------------------------+
//   | ChildSet                         |       | supervise(ChildLink link, Task<T> child) |
//   |   children_: list of ChildLinks <------------ link (a parameter, in the frame)      |
//   |   alive_, error_, winner_        |       |   co_await child     (same task id)      |
//   |   waiters_: the owner, parked    |       |   store its value, or catch its error    |
//   |   until alive_ == 0    <--------------------- ~ChildLink: "this child has ended"    |
//   +----------------------------------+       +------------------------------------------+
//
// Why a supervisor: the child runs as a task of its own (it interleaves with its siblings and the
// owner), but its outcome must reach the set and never the kernel's "nobody waited for this
// failure" report. The supervisor is the child's root coroutine: it awaits the real Task in the
// same task (no extra task, no extra id), catches whatever it throws, and hands the value or the
// exception to the set while the child's task is still the running one.
//
// Why the ChildLink is a *parameter* of the supervisor: parameters live in the coroutine frame
// from the moment the frame exists, before the task first runs, and are destroyed whenever the
// frame is - when the child returns, throws, or is killed (by the set, by KillTask, by the
// Scheduler's destruction), even if it is killed before it ever ran. So "the child has ended" is
// said by one destructor in every case, and the link costs no allocation of its own: the frame
// holds it. The argument is moved into the frame when the frame is created; ChildSet::spawn
// learns where that final copy lives through `newest_`, then links it into `children_`. A linked
// ChildLink never moves again (the frame does not move).
//
// Killing children: Scheduler::kill destroys a child's frame synchronously, which runs its
// ChildLink's destructor, which unlinks it - so the set never walks a list that a kill is
// changing: it moves its children to a local list first and kills them one by one. A child that
// cannot be killed at once (the running task itself: it dies at its next suspension; or a task
// whose frame is already being destroyed further up the stack) stays linked; when the set itself
// is destroyed it cuts such links, so a child that outlives it for those few instructions never
// touches it again.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

#include "corio/detail/task_list.hpp"
#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"
#include "corio/task.hpp"

namespace corio::detail {

// What a void Task contributes to a tuple or a variant of values.
template <class T>
using value_or_monostate_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// when_all and when_any check their tasks when called, before any of them is spawned.
template <class T>
void check_unstarted(const Task<T>& task, const char* what) {
    if (!task.valid() || task.done()) {
        throw std::invalid_argument(what);
    }
}

// How a set treats its children's outcomes.
enum class ChildPolicy : std::uint8_t {
    group, // TaskGroup: values are discarded; a child killed from outside has simply ended
    all,   // when_all: values are kept; a child killed from outside is a failure (no value)
    any,   // when_any: the first child to return or throw decides; the others are killed
};

class ChildSet;

// A child's membership of its set; lives in the child's supervisor frame (see the top).
class ChildLink : public ListLinks {
public:
    ChildLink(ChildLink** newest, std::size_t index) noexcept : newest_(newest), index_(index) {
        *newest_ = this;
    }
    ChildLink(ChildLink&& other) noexcept : newest_(other.newest_), index_(other.index_) {
        assert(other.set_ == nullptr && "corio: a linked ChildLink must not move");
        if (newest_ != nullptr) {
            *newest_ = this;
        }
    }
    ChildLink(const ChildLink&) = delete;
    ChildLink& operator=(const ChildLink&) = delete;
    ChildLink& operator=(ChildLink&&) = delete;
    inline ~ChildLink();

    // Called by the supervisor, while the child's task is the running one.
    [[nodiscard]] inline bool wants_value() const noexcept;
    inline void returned() noexcept;
    inline void threw(std::exception_ptr error) noexcept;

private:
    friend class ChildSet;

    ChildLink** newest_;      // until linked: where the newest copy records its address
    ChildSet* set_ = nullptr; // the set, while linked
    TaskId id_{};
    std::size_t index_;      // position among the tasks handed to when_all / when_any
    bool ended_ = false;     // the child returned or threw (rather than being killed)
    bool kill_sent_ = false; // the set itself killed it: not a failure
};

// Stores a child's value into an optional (when_all's slots, when_any's vector result).
template <class V>
struct StoreIn {
    std::optional<V>* slot;
    template <class... Value>
    void operator()(Value&&... value) const {
        slot->emplace(std::forward<Value>(value)...);
    }
};

// Stores a child's value as alternative I of a variant (variadic when_any).
template <std::size_t I, class Variant>
struct StoreAlternative {
    std::optional<Variant>* slot;
    template <class... Value>
    void operator()(Value&&... value) const {
        slot->emplace(std::in_place_index<I>, std::forward<Value>(value)...);
    }
};

// Drops a child's value (TaskGroup; when_all of void tasks).
struct Discard {
    template <class... Value>
    void operator()(Value&&... /*value*/) const noexcept {}
};

// The root coroutine of a child's task: awaits the child in the same task and reports to the set.
// Nothing escapes it, so the kernel never sees a group child fail.
template <class T, class Store>
Task<> supervise(ChildLink link, Task<T> child, Store store) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(child);
            if (link.wants_value()) {
                store();
            }
        } else {
            auto&& value = co_await std::move(child);
            if (link.wants_value()) {
                store(std::forward<decltype(value)>(value));
            }
        }
        link.returned();
    } catch (...) {
        link.threw(std::current_exception());
    }
}

// The children of one owner task (see the top of this file).
class ChildSet {
public:
    explicit ChildSet(ChildPolicy policy) noexcept : policy_(policy) {}
    ChildSet(const ChildSet&) = delete;
    ChildSet& operator=(const ChildSet&) = delete;

    // No child outlives the set: the ones still alive are killed (their frames destroyed) now. A
    // failure the owner never received is reported as the failure of a task nobody waited for.
    ~ChildSet() {
        kill_children(nullptr);
        while (ListLinks* links = children_.front()) { // not killable now: cut them loose
            auto& link = static_cast<ChildLink&>(*links);
            children_.remove(link);
            link.set_ = nullptr;
            --alive_;
        }
        assert(waiters_.empty() && "corio: a TaskGroup was destroyed while a task waits for it");
        if (error_ && !delivered_ && kernel_ != nullptr) {
            // Reported now, under the owner's id: a task spawned to carry it would die unrun
            // when the set goes with its Scheduler, and the failure with it.
            kernel_->report_failure(owner_, error_);
        }
    }

    [[nodiscard]] std::size_t alive() const noexcept { return alive_; }
    [[nodiscard]] bool failed() const noexcept { return static_cast<bool>(error_); }
    [[nodiscard]] bool decided() const noexcept { return decided_; }
    [[nodiscard]] std::size_t winner() const noexcept { return winner_; }

    // The first use binds the set to its Scheduler and its owner (the calling task).
    void bind(Scheduler& kernel, TaskId caller) {
        if (kernel_ == nullptr) {
            kernel_ = &kernel;
            owner_ = caller;
        } else if (kernel_ != &kernel) {
            throw std::logic_error("corio: a TaskGroup belongs to the Scheduler of its first task");
        }
    }

    // Starts `task` as a new task under a supervisor (it first runs in a later pass, like NewTask).
    // The set must be bound.
    template <class T, class Store>
    TaskId spawn(Task<T> task, Store store, std::size_t index) {
        assert(kernel_ != nullptr);
        if (!task.valid() || task.done()) {
            throw std::invalid_argument("corio: spawn needs a Task that has not run");
        }
        ChildLink* newest = nullptr;
        const auto handle = task.release();
        const char* function = handle.promise().function();
        Task<> supervisor = supervise(ChildLink(&newest, index), Task<T>(handle), store);
        assert(newest != nullptr); // the copy of the ChildLink in the supervisor's frame
        const TaskId id = kernel_->add_task(std::move(supervisor));
        kernel_->call_task(id, function); // known by its coroutine, not by the supervisor
        link(*newest, id);
        return id;
    }

    // Kills every child but `spare` now. Their frames are destroyed before this returns, except a
    // child that is the running task (it dies when it next suspends).
    void kill_children(ChildLink* spare) noexcept {
        if (kernel_ == nullptr) {
            return;
        }
        TaskList doomed;
        while (ListLinks* links = children_.front()) {
            children_.remove(*links);
            doomed.push_back(*links);
        }
        if (spare != nullptr && spare->owner == &doomed) {
            doomed.remove(*spare);
            children_.push_back(*spare);
        }
        while (ListLinks* links = doomed.front()) {
            auto& link = static_cast<ChildLink&>(*links);
            doomed.remove(link);
            children_.push_back(link); // the kill unlinks it, unless it cannot die at once
            link.kill_sent_ = true;
            kernel_->kill(link.id_); // may destroy `link`
        }
    }

    // The owner starts waiting for every child to end; false if none is alive (no wait).
    bool begin_wait(Scheduler& kernel, TaskId caller) {
        bind(kernel, caller);
        if (caller != owner_) {
            throw std::logic_error("corio: only the task that owns a TaskGroup may wait for it");
        }
        if (alive_ == 0) {
            return false;
        }
        kernel.wait_in(waiters_);
        return true;
    }

    // Rethrows the first failure, if any. Delivered to the owner, it is not reported again.
    void rethrow_if_failed(TaskId caller) {
        if (error_) {
            delivered_ = delivered_ || caller == owner_;
            std::rethrow_exception(error_);
        }
    }
    [[nodiscard]] TaskId owner() const noexcept { return owner_; }

private:
    friend class ChildLink;

    void link(ChildLink& child, TaskId id) noexcept {
        child.newest_ = nullptr;
        child.set_ = this;
        child.id_ = id;
        children_.push_back(child);
        ++alive_;
    }

    // The first failure is kept and every other child is killed; later failures are dropped:
    // they are consequences (or coincidences) of the first, which alone says why the set failed.
    void fail(std::exception_ptr error, ChildLink* spare) noexcept {
        if (error_) {
            return;
        }
        error_ = std::move(error);
        kill_children(spare);
    }

    void child_returned(ChildLink& child) noexcept {
        if (policy_ == ChildPolicy::any && !decided_) {
            decided_ = true;
            winner_ = child.index_;
            kill_children(&child);
        }
    }

    void child_threw(ChildLink& child, std::exception_ptr error) noexcept {
        if (policy_ == ChildPolicy::any) {
            if (decided_) {
                return;
            }
            decided_ = true;
            winner_ = child.index_;
        }
        fail(std::move(error), &child);
    }

    void child_ended(ChildLink& child) noexcept {
        if (child.owner != nullptr) {
            child.owner->remove(child);
        }
        child.set_ = nullptr;
        --alive_;
        if (policy_ == ChildPolicy::all && !child.ended_ && !child.kill_sent_) {
            // Killed from outside: when_all cannot give its value, so when_all fails.
            try {
                fail(std::make_exception_ptr(std::runtime_error(
                         "corio: when_all: a task was killed before it completed")),
                     nullptr);
            } catch (...) { // making the exception ran out of memory: fail with that instead
                fail(std::current_exception(), nullptr);
            }
        }
        if (alive_ == 0 && kernel_ != nullptr) {
            kernel_->wake_one(waiters_);
        }
    }

    Scheduler* kernel_ = nullptr;
    TaskId owner_{};
    TaskList children_; // the linked ChildLinks of children still alive
    WaitQueue waiters_{"children"}; // the owner, while it waits for the last child to end
    std::exception_ptr error_;
    std::size_t alive_ = 0;
    std::size_t winner_ = 0;
    ChildPolicy policy_;
    bool decided_ = false;   // when_any: a child has returned or thrown
    bool delivered_ = false; // error_ was rethrown to the owner
};

inline ChildLink::~ChildLink() {
    if (set_ != nullptr) {
        set_->child_ended(*this);
    }
}

inline bool ChildLink::wants_value() const noexcept {
    if (set_ == nullptr) {
        return false;
    }
    switch (set_->policy_) {
    case ChildPolicy::all:
        return !set_->failed();
    case ChildPolicy::any:
        return !set_->decided_;
    case ChildPolicy::group:
        break;
    }
    return false;
}

inline void ChildLink::returned() noexcept {
    if (set_ != nullptr) {
        ended_ = true;
        set_->child_returned(*this);
    }
}

inline void ChildLink::threw(std::exception_ptr error) noexcept {
    if (set_ != nullptr) {
        ended_ = true;
        set_->child_threw(*this, std::move(error));
    }
}

// `co_await BindChildren(set)`: binds a set to the calling task and its Scheduler (never suspends).
class [[nodiscard]] BindChildren {
public:
    [[nodiscard]] explicit BindChildren(ChildSet& set) noexcept : set_(&set) {}
    bool handle(Scheduler& kernel, TaskId caller) {
        set_->bind(kernel, caller);
        return false;
    }
    void result() const noexcept {}

private:
    ChildSet* set_;
};

// `co_await AwaitChildren(set)`: suspends the owner until no child of the set is alive.
class [[nodiscard]] AwaitChildren {
public:
    [[nodiscard]] explicit AwaitChildren(ChildSet& set) noexcept : set_(&set) {}
    bool handle(Scheduler& kernel, TaskId caller) { return set_->begin_wait(kernel, caller); }
    void result() const noexcept {}

private:
    ChildSet* set_;
};

} // namespace corio::detail
