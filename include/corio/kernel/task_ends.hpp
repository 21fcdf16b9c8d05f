// corio/kernel/task_ends.hpp - how a task starts and ends: the Kernel's spawn, finish, kill,
// teardown, and waiting for a task's end (included by kernel.hpp, whose class they complete).
//
// Ending a task is where user code re-enters the kernel most: destroying its frames runs the
// destructors of everything in them (see kernel.hpp's list). So the order is fixed: take the task
// off what it waits on, mark it dying (a second kill is a no-op), destroy its frames, wake its
// waiters with the outcome, free its slot, and only then report what its destructors threw.
#pragma once

#include "corio/kernel/kernel.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <utility>

namespace corio::detail {

// A task waits for another to end: it joins the other's waiters, which end_task wakes.
inline bool Kernel::wait_for_exit(TaskId target, TaskExit& exit) {
    TaskRecord& self = trapped_task();
    TaskRecord* record = tasks_.find(target);
    if (record == nullptr) {
        exit = TaskExit{};
        return false;
    }
    if (record == &self) {
        throw std::invalid_argument("corio: a task cannot wait for its own exit");
    }
    record->waiters.push_back(self);
    self.wait.exit_out = &exit;
    self.state = TaskState::waiting_task;
    return true;
}

inline TaskId Kernel::spawn(std::coroutine_handle<Promise<void>> root, SpawnSite site) {
    TaskRecord& record = tasks_.allocate();
    if (!notes_.has_room_for(record)) [[unlikely]] {
        make_room_in_notes(record); // a new slot: the notes grow with the table
    }
    record.root = root;
    record.resume_point = root;
    notes_.spawned(record, current_, site);
    if (recording_waits_) [[unlikely]] {
        notes_.waits_from(record, now());
    }
    tasks_.make_ready(record);
    return TaskTable::id_of(record);
}

// Out of the spawn path, which it would keep from being inlined: the notes' table grows by a
// slot; without memory for it, the new task's slot is freed and std::bad_alloc thrown.
[[gnu::noinline]] inline void Kernel::make_room_in_notes(TaskRecord& record) {
    try {
        notes_.make_room_for(record);
    } catch (...) {
        tasks_.free(record);
        throw;
    }
}

// Destroys a task now: taken off what it waits on, its frames destroyed (destructors run, and may
// re-enter), its waiters told it was killed.
inline void Kernel::kill_task(TaskRecord& record) {
    detach(record);
    record.state = TaskState::dying;
    const TaskId id = TaskTable::id_of(record);
    const std::size_t mark = failures_.destroy_frames(record);
    end_task(record, TaskExit{TaskExit::Outcome::killed, nullptr});
    failures_.report_destruction_failures(id, mark);
}

// Kills every task, newest first: children die before the parents whose frames hold what they
// wait on (an Event, a Queue...). Tasks that destructors spawn meanwhile die too.
inline void Kernel::kill_everything() noexcept {
    tasks_.each_newest_first([this](TaskRecord& record) { kill_task(record); });
}

inline void Kernel::finish(TaskRecord& record) {
    std::exception_ptr error = record.root.promise().exception();
    // A failure outranks a pending self-kill: an exception is never dropped unreported.
    TaskExit exit{error                   ? TaskExit::Outcome::failed
                  : record.kill_requested ? TaskExit::Outcome::killed
                                          : TaskExit::Outcome::completed,
                  error};
    record.state = TaskState::dying;
    const TaskId id = TaskTable::id_of(record);
    const std::size_t mark = failures_.destroy_frames(record);
    end_task(record, std::move(exit));
    failures_.report_destruction_failures(id, mark);
}

// Wakes the waiters of an ended task, frees its slot, and reports a failure nobody waits for (one
// handed to waiters is reported if none of them receives it: see Failures::settle).
inline void Kernel::end_task(TaskRecord& record, TaskExit exit) {
    const TaskId id = TaskTable::id_of(record);
    bool handed = false;
    if (exit.failed() && !record.waiters.empty()) {
        handed = failures_.hand(id, exit.error, static_cast<std::uint32_t>(record.waiters.size()));
    }
    while (ListLinks* links = record.waiters.front()) {
        auto& waiter = static_cast<TaskRecord&>(*links);
        *waiter.wait.exit_out = exit;
        wake(waiter);
    }
    notes_.ended(record.serial);
    tasks_.free(record);
    if (exit.failed() && !handed) {
        failures_.report(id, exit.error);
    }
}

} // namespace corio::detail
