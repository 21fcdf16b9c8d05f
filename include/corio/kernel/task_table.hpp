// corio/kernel/task_table.hpp - the task table (a slot per task, ids that are never reused) and
// the ready queue.
//
// A TaskId is a serial number plus a slot: lookup is O(1), and a stale id (its serial gone from
// the slot) names nothing. Records live in a deque, so they never move while tasks point at them.
// The ready queue remembers the pass in which each task became ready: a pass resumes only the
// tasks that were ready when it began.
#pragma once

#include "corio/task_id.hpp"
#include "corio/kernel/task_record.hpp"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

namespace corio::detail {

class TaskTable {
public:
    static TaskId id_of(const TaskRecord& record) noexcept {
        return TaskId(record.serial, record.slot);
    }

    [[nodiscard]] TaskRecord* find(TaskId id) noexcept {
        return const_cast<TaskRecord*>(std::as_const(*this).find(id));
    }
    [[nodiscard]] const TaskRecord* find(TaskId id) const noexcept {
        if (id.serial_ == 0 || id.slot_ >= records_.size()) {
            return nullptr;
        }
        const TaskRecord& record = records_[id.slot_];
        return record.serial == id.serial_ ? &record : nullptr;
    }

    // The id of a task that has ended, from its serial number: it names no task.
    static TaskId ended_id(std::uint64_t serial) noexcept { return TaskId(serial, no_slot); }

    [[nodiscard]] std::size_t size() const noexcept { return live_; }
    [[nodiscard]] std::uint64_t last_serial() const noexcept { return last_serial_; }

    // A record for a new task, in state `running` until the caller makes it ready.
    TaskRecord& allocate() {
        TaskRecord* record = nullptr;
        if (free_head_ != no_slot) {
            record = &records_[free_head_];
            free_head_ = record->next_free;
        } else {
            if (records_.size() >= no_slot) {
                throw std::length_error("corio: too many tasks");
            }
            record = &records_.emplace_back();
            record->slot = static_cast<std::uint32_t>(records_.size() - 1);
        }
        record->serial = ++last_serial_;
        record->state = TaskState::running;
        ++live_;
        return *record;
    }

    // Frees the slot of a task that ended (its waiters were told, its frame is gone).
    void free(TaskRecord& record) noexcept {
        record.serial = 0;
        record.state = TaskState::free;
        record.kill_requested = false;
        record.resume_point = {};
        record.innermost_scope = nullptr; // the scopes lived in the frame, gone now
        record.interrupted = false;
        record.abandoned = false;
        record.expired_scopes = 0;
        record.next_free = free_head_;
        free_head_ = record.slot;
        --live_;
    }

    // Calls look(const TaskRecord&) for every live task, oldest slot first (introspection).
    template <class Look>
    void each_live(Look&& look) const {
        for (const TaskRecord& record : records_) {
            if (record.serial != 0) {
                look(record);
            }
        }
    }
    // The live task with serial number `serial`, or null (a scan: for people, not for the loop).
    [[nodiscard]] TaskRecord* find_serial(std::uint64_t serial) noexcept {
        for (TaskRecord& record : records_) {
            if (serial != 0 && record.serial == serial) {
                return &record;
            }
        }
        return nullptr;
    }

    // ---- The ready queue.

    void make_ready(TaskRecord& record) noexcept {
        record.state = TaskState::ready;
        record.ready_pass = pass_;
        ready_.push_back(record);
    }
    [[nodiscard]] bool has_ready() const noexcept { return !ready_.empty(); }
    [[nodiscard]] std::size_t ready_count() const noexcept { return ready_.size(); }

    // Starts a pass: the tasks ready now are the ones next_ready() gives until it gives null.
    void begin_pass() noexcept { ++pass_; }
    // The next task that was ready when the pass began, taken off the queue; null when none is.
    TaskRecord* next_ready() noexcept {
        ListLinks* links = ready_.front();
        if (links == nullptr) {
            return nullptr;
        }
        auto& record = static_cast<TaskRecord&>(*links);
        if (record.ready_pass == pass_) {
            return nullptr; // made ready during this pass: next pass
        }
        ready_.remove(record);
        return &record;
    }

    // ---- Teardown order (see ~Scheduler).

    // Hands every live task to end(TaskRecord&), which must end it, newest first (by serial
    // number). end may spawn (the new tasks are newer still, and come next) or end other tasks.
    // The live tasks wait in a max-heap by serial number; without memory for it, a search per task.
    template <class End>
    void each_newest_first(End&& end) noexcept {
        try {
            std::vector<std::pair<std::uint64_t, TaskRecord*>> newest_on_top;
            std::uint64_t taken_in = 0; // every task up to this serial is in the heap, or gone
            const auto take_in_newer = [&] {
                each_live_newer_than(taken_in, [&](TaskRecord& record) {
                    newest_on_top.emplace_back(record.serial, &record);
                    std::push_heap(newest_on_top.begin(), newest_on_top.end());
                });
                taken_in = last_serial_;
            };
            take_in_newer();
            while (!newest_on_top.empty()) {
                std::pop_heap(newest_on_top.begin(), newest_on_top.end());
                const auto [serial, record] = newest_on_top.back();
                newest_on_top.pop_back();
                if (record->serial == serial && record->state != TaskState::dying) {
                    end(*record);
                    if (last_serial_ != taken_in) {
                        take_in_newer();
                    }
                }
            }
        } catch (const std::bad_alloc&) { // no memory for the heap: the slow way below
        }
        while (TaskRecord* newest = newest_live()) {
            end(*newest);
        }
    }

private:
    static constexpr std::uint32_t no_slot = UINT32_MAX;

    template <class Take>
    void each_live_newer_than(std::uint64_t serial, Take&& take) {
        for (TaskRecord& record : records_) {
            if (record.serial > serial && record.state != TaskState::dying) {
                take(record);
            }
        }
    }
    TaskRecord* newest_live() noexcept {
        TaskRecord* newest = nullptr;
        each_live_newer_than(0, [&](TaskRecord& record) {
            if (newest == nullptr || record.serial > newest->serial) {
                newest = &record;
            }
        });
        return newest;
    }

    std::deque<TaskRecord> records_; // a deque: records never move
    TaskList ready_;
    std::uint64_t last_serial_ = 0;
    std::uint32_t pass_ = 0; // wraps: compared for equality with ready_pass only
    std::uint32_t free_head_ = no_slot;
    std::size_t live_ = 0;
};

} // namespace corio::detail
