// corio/kernel/task_snapshot.hpp - a picture of every task of a kernel, for people: what each
// waits on, for how long, who spawned it, and the chain of frames it waits in (an async stack);
// and the stall watch, which times each resumption (see kernel/task_notes.hpp). Included by
// kernel.hpp, whose class it completes; corio/diag/ renders the pictures (ps, pstree, where).
//
// The async stack is walked from the task's root frame through the frame each one awaits
// (PromiseBase::awaited, kept by co_await) down to the frame that trapped into the kernel. The
// chain is only sound while the task is suspended: a running task has no stack in its snapshot.
#pragma once

#include "corio/kernel/kernel.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace corio {

/// One suspended frame of a task: its coroutine, and the line of the co_await it waits in.
struct FrameInfo {
    std::string function; ///< the coroutine's name as the compiler gives it (`serve`, `operator()`)
    std::string file;
    std::uint32_t line = 0;
};

/// What one task was doing when Scheduler::snapshot() was taken.
struct TaskInfo {
    using Clock = std::chrono::steady_clock;
    enum class State : std::uint8_t {
        ready,   ///< in the ready queue (or not started yet)
        running, ///< being resumed: the task that took the snapshot
        waiting, ///< suspended until something (waits_on) happens
        dying,   ///< its frames are being destroyed
    };

    TaskId id;
    TaskId parent; ///< the task that spawned it; none if it was added from outside any task
    std::string name; ///< the name it was given (Scheduler::set_name, NameTask), else its root coroutine's
    State state = State::ready;
    /// What it waits on: "fd 7 read (recv)", "fd 9 write", "signal (fd 5)", "sleep", "task 12",
    /// "event", "lock", "semaphore", "queue get", "queue put", "children", "thread-pool job",
    /// "parked" (a system call of its own); "yield" for a task that yielded; empty otherwise.
    std::string waits_on;
    /// Until the wait ends by itself: a sleep's wake-up or the nearest deadline (timeout_after).
    std::optional<Clock::duration> time_left;
    /// How long it has been waiting (or ready); only while Scheduler::record_wait_times is on.
    std::optional<Clock::duration> waited;
    /// Where it was spawned: the file and line of the add_task or NewTask (line 0: unknown).
    std::string spawned_file;
    std::uint32_t spawned_line = 0;
    /// Its frames, the root first, the one it waits in last. Empty while it runs, or before it
    /// first ran.
    std::vector<FrameInfo> stack;
};

/// Readable names of TaskInfo::State: "ready", "running", "waiting", "dying".
constexpr const char* to_string(TaskInfo::State state) noexcept {
    switch (state) {
    case TaskInfo::State::ready: return "ready";
    case TaskInfo::State::running: return "running";
    case TaskInfo::State::waiting: return "waiting";
    case TaskInfo::State::dying: return "dying";
    }
    return "?";
}

static_assert(std::is_standard_layout_v<WaitQueue>, "corio: a task's list must lead to its WaitQueue");

namespace detail {

// The frame a suspended task waits in: the end of its chain of awaited frames.
inline const PromiseBase& innermost_frame(const TaskRecord& record) noexcept {
    const PromiseBase* frame = &record.root.promise();
    while (frame->awaited() != nullptr) {
        frame = frame->awaited();
    }
    return *frame;
}

// What the operation of a task waiting on an fd does, as a word.
inline const char* operation_word(FdOperation::Kind kind) noexcept {
    switch (kind) {
    case FdOperation::Kind::wait: return "";
    case FdOperation::Kind::recv: return "recv";
    case FdOperation::Kind::recv_lent: return "recv_lent";
    case FdOperation::Kind::send: return "send";
    case FdOperation::Kind::receive_from: return "receive_from";
    case FdOperation::Kind::send_to: return "send_to";
    case FdOperation::Kind::signal: return "signal";
    case FdOperation::Kind::check: return "check";
    }
    return "";
}

inline std::vector<TaskInfo> Kernel::snapshot() const {
    const Clock::time_point now_time = now();
    // Tasks waiting for a task are in its `waiters` list: which list is whose, once for all; and
    // the ids of the live tasks by serial number, for their children's parents.
    std::unordered_map<const TaskList*, TaskId> waiters_of;
    std::unordered_map<std::uint64_t, TaskId> by_serial;
    tasks_.each_live([&](const TaskRecord& record) {
        if (!record.waiters.empty()) {
            waiters_of.emplace(&record.waiters, TaskTable::id_of(record));
        }
        by_serial.emplace(record.serial, TaskTable::id_of(record));
    });
    std::vector<TaskInfo> tasks;
    tasks.reserve(tasks_.size());
    tasks_.each_live([&](const TaskRecord& record) {
        TaskInfo& info = tasks.emplace_back();
        info.id = TaskTable::id_of(record);
        if (const std::uint64_t parent = notes_.parent_of(record)) {
            const auto found = by_serial.find(parent);
            info.parent = found != by_serial.end() ? found->second : TaskTable::ended_id(parent);
        }
        info.name = name_of(record);
        std::tie(info.spawned_file, info.spawned_line) = notes_.site_of(record);
        describe_wait(record, info, waiters_of, now_time);
        const std::optional<Clock::time_point> since = notes_.waiting_since(record);
        if (recording_waits_ && since && info.state != TaskInfo::State::running) {
            info.waited = now_time - *since;
        }
        if (info.state != TaskInfo::State::running && info.state != TaskInfo::State::dying &&
            record.root.promise().line() != 0) { // 0: the task has not run yet
            for (const PromiseBase* frame = &record.root.promise(); frame != nullptr; frame = frame->awaited()) {
                info.stack.push_back(FrameInfo{frame->function(), frame->file(), frame->line()});
            }
        }
    });
    return tasks;
}

// The name given to the task; else what a wrapper called it; else its root coroutine's, or for a
// lambda (whose coroutine is `operator()`) "lambda@FILE:LINE" with where it was spawned.
inline std::string Kernel::name_of(const TaskRecord& record) const {
    if (const std::string* given = notes_.name_of(record.serial)) {
        return *given;
    }
    if (const char* called = notes_.called(record)) {
        return called;
    }
    const std::string_view function = record.root.promise().function();
    const auto [site_file, site_line] = notes_.site_of(record);
    if (function != "operator()" || site_line == 0) {
        return std::string(function);
    }
    std::string_view file = site_file;
    file.remove_prefix(file.rfind('/') == std::string_view::npos ? 0 : file.rfind('/') + 1);
    return "lambda@" + std::string(file) + ":" + std::to_string(site_line);
}

inline void Kernel::describe_wait(const TaskRecord& record, TaskInfo& info,
                                  const std::unordered_map<const TaskList*, TaskId>& waiters_of,
                                  Clock::time_point now_time) const {
    using State = TaskInfo::State;
    std::optional<Clock::time_point> ends;
    switch (record.state) {
    case TaskState::free: // not live: never listed
    case TaskState::ready:
    case TaskState::attempting: info.state = State::ready; break;
    case TaskState::yielding:
        info.state = State::ready;
        info.waits_on = "yield";
        break;
    case TaskState::running: info.state = State::running; break;
    case TaskState::dying: info.state = State::dying; break;
    case TaskState::waiting_fd: {
        info.state = State::waiting;
        const FdOperation* operation = record.wait.io.operation;
        const auto [fd, direction] = operation != nullptr
                                         ? std::pair<int, Interest>(operation->target().fd(), operation->direction())
                                         : fd_watches_.waited_on(record);
        const std::string number = std::to_string(fd);
        if (operation != nullptr && operation->kind() == FdOperation::Kind::signal) {
            info.waits_on = "signal (fd " + number + ")";
        } else {
            info.waits_on = "fd " + number + (direction == Interest::write ? " write" : " read");
            const char* word = operation != nullptr ? operation_word(operation->kind()) : "";
            if (*word != '\0') {
                info.waits_on += std::string(" (") + word + ")";
            }
        }
        break;
    }
    case TaskState::sleeping:
        info.state = State::waiting;
        info.waits_on = "sleep";
        ends = record.wait.timer->deadline;
        break;
    case TaskState::waiting_task: {
        info.state = State::waiting;
        const auto found = waiters_of.find(record.owner);
        info.waits_on = found != waiters_of.end() ? "task " + std::to_string(found->second.serial()) : "task";
        break;
    }
    case TaskState::parked:
        info.state = State::waiting;
        if (record.owner != nullptr) { // a WaitQueue: its list is its first member
            info.waits_on = reinterpret_cast<const WaitQueue*>(record.owner)->what();
        } else if (record.wait.cookie == &pool_jobs_) {
            info.waits_on = "thread-pool job";
        } else {
            info.waits_on = "parked";
        }
        break;
    }
    if (info.state == State::waiting || info.state == State::ready) {
        for (const TimeoutScope* scope = record.innermost_scope; scope != nullptr; scope = scope->outer) {
            if (!ends || scope->deadline < *ends) {
                ends = scope->deadline;
            }
        }
    }
    if (ends) {
        info.time_left = *ends > now_time ? *ends - now_time : Clock::duration::zero();
    }
}

// Resumes a task with the stall watch on: a resumption that runs longer than the threshold is
// reported with where the task resumed. Timed on the real clock, whatever clock the kernel uses.
inline void Kernel::resume_watched(TaskRecord& record) {
    const PromiseBase& frame = innermost_frame(record);
    StallReport report;
    report.function = frame.function();
    report.file = frame.file();
    report.line = frame.line();
    const std::uint64_t serial = record.serial;
    const TaskId id = TaskTable::id_of(record);
    const auto start = std::chrono::steady_clock::now();
    record.resume_point.resume();
    report.ran = std::chrono::steady_clock::now() - start;
    if (report.ran < notes_.stall_threshold()) {
        return;
    }
    report.task = id;
    report.name = name_of(record);
    try {
        if (notes_.stall_handler()) {
            notes_.stall_handler()(report);
        } else {
            std::fprintf(stderr, "corio: task %llu (%s) ran %.1f ms without suspending, resumed at %s:%u\n",
                         static_cast<unsigned long long>(serial), report.name.c_str(),
                         std::chrono::duration<double, std::milli>(report.ran).count(), report.file,
                         static_cast<unsigned>(report.line));
        }
    } catch (...) { // a report that fails is no reason to stop the loop
    }
}

} // namespace detail
} // namespace corio
