// corio/kernel/task_notes.hpp - what the kernel notes about its tasks for people, not for running
// them: who spawned each, the names given to tasks, since when each waits, and how long each
// resumption ran (stall warnings). Read by Kernel::snapshot (kernel/task_snapshot.hpp) and the
// renderings and monitor of corio/diag/.
//
// Costs, by what is switched on:
//   * always: the spawner, the spawn site and what a wrapper calls the task, 32 bytes a task in a
//     table by slot (beside the TaskRecords, which stay at 96 bytes), written once per spawn; each
//     frame's origin and line, 32 bytes a frame and two stores per co_await (task.hpp).
//   * names: a hash map by serial number, touched only when a task is named or ends while any is.
//   * wait times (record_wait_times): a clock read each time a task begins to wait.
//   * stall warnings (warn_of_stalls): two clock reads per resumption.
// Off, the last two cost one predictable branch each on the loop's path.
#pragma once

#include "corio/task_id.hpp"
#include "corio/kernel/task_record.hpp"
#include "corio/kernel/task_table.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace corio {

/// What a stall warning says: a task ran `ran` without suspending, having resumed at `function`
/// (`file`:`line`), the innermost frame of the task when it resumed.
struct StallReport {
    TaskId task;
    std::string name;
    std::chrono::steady_clock::duration ran{};
    const char* function = "";
    const char* file = "";
    std::uint32_t line = 0;
};

namespace detail {

class TaskNotes {
public:
    using Clock = std::chrono::steady_clock;
    using StallHandler = std::function<void(const StallReport&)>;

    // ---- Spawners (always noted).

    [[nodiscard]] bool has_room_for(const TaskRecord& task) const noexcept { return task.slot < slots_.size(); }
    void make_room_for(const TaskRecord& task) { slots_.resize(static_cast<std::size_t>(task.slot) + 1); }
    // A task was spawned in a slot there is room for (make_room_for).
    void spawned(const TaskRecord& child, const TaskRecord* parent, SpawnSite site) noexcept {
        Slot& slot = slots_[child.slot];
        slot.parent = parent != nullptr ? parent->serial : 0;
        slot.site_file = site.file;
        slot.called = nullptr;
        slot.site_line = site.line;
    }
    // The serial number of the task's spawner (0: none).
    [[nodiscard]] std::uint64_t parent_of(const TaskRecord& task) const noexcept {
        return task.slot < slots_.size() ? slots_[task.slot].parent : 0;
    }
    // Where the task was spawned: file and line (line 0: unknown).
    [[nodiscard]] std::pair<const char*, std::uint32_t> site_of(const TaskRecord& task) const noexcept {
        if (task.slot >= slots_.size()) {
            return {"", 0};
        }
        return {slots_[task.slot].site_file, slots_[task.slot].site_line};
    }
    // What a task is called when it was given no name: `called` (a string that outlives the
    // task), else its root coroutine's name. For wrappers (run_until_complete, TaskGroup's
    // supervisor) that call a task after the coroutine they wrap, without allocating.
    void call(const TaskRecord& task, const char* called) noexcept {
        if (task.slot < slots_.size()) {
            slots_[task.slot].called = called;
        }
    }
    [[nodiscard]] const char* called(const TaskRecord& task) const noexcept {
        return task.slot < slots_.size() ? slots_[task.slot].called : nullptr;
    }

    // ---- Names.

    void set_name(std::uint64_t serial, std::string name) {
        if (name.empty()) {
            names_.erase(serial);
        } else {
            names_[serial] = std::move(name);
        }
    }
    // The name given to the task, or null.
    [[nodiscard]] const std::string* name_of(std::uint64_t serial) const noexcept {
        if (names_.empty()) {
            return nullptr;
        }
        const auto found = names_.find(serial);
        return found != names_.end() ? &found->second : nullptr;
    }
    void ended(std::uint64_t serial) noexcept {
        if (!names_.empty()) [[unlikely]] {
            names_.erase(serial);
        }
    }

    // ---- Wait times (a table of their own, touched only while they are recorded).

    // Whether they are recorded is the kernel's flag (read on every wait, so kept with what every
    // pass reads). Turned on, it forgets what was noted before: a wait begun while it was off was
    // not seen.
    void forget_wait_times() noexcept { std::fill(since_.begin(), since_.end(), unknown); }
    // The task begins to wait (or to be ready) at `now`.
    void waits_from(const TaskRecord& task, Clock::time_point now) noexcept {
        try {
            if (task.slot >= since_.size()) {
                since_.resize(static_cast<std::size_t>(task.slot) + 1, unknown);
            }
            since_[task.slot] = now;
        } catch (...) { // no memory for the table: this wait goes unrecorded
        }
    }
    // Since when the task waits, if that was recorded.
    [[nodiscard]] std::optional<Clock::time_point> waiting_since(const TaskRecord& task) const noexcept {
        if (task.slot >= since_.size() || since_[task.slot] == unknown) {
            return std::nullopt;
        }
        return since_[task.slot];
    }

    // ---- Stall warnings.

    void warn_of_stalls(Clock::duration threshold, StallHandler handler) {
        stall_threshold_ = threshold;
        stall_handler_ = std::move(handler);
    }
    [[nodiscard]] Clock::duration stall_threshold() const noexcept { return stall_threshold_; }
    [[nodiscard]] const StallHandler& stall_handler() const noexcept { return stall_handler_; }

private:
    static constexpr Clock::time_point unknown = Clock::time_point::min(); // a virtual clock starts at 0

    // 32 bytes a task (64-bit), beside its TaskRecord.
    struct Slot {
        std::uint64_t parent = 0; // the spawner's serial number
        const char* site_file = "";
        const char* called = nullptr;
        std::uint32_t site_line = 0;
    };
    std::vector<Slot> slots_; // by TaskRecord::slot
    std::vector<Clock::time_point> since_; // by TaskRecord::slot, while wait times are recorded
    std::unordered_map<std::uint64_t, std::string> names_;
    Clock::duration stall_threshold_{};
    StallHandler stall_handler_;
};

} // namespace detail
} // namespace corio
