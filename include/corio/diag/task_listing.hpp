// corio/diag/task_listing.hpp - a Scheduler's tasks as text: `ps` (one line per task), `pstree`
// (the tasks under their spawners), `where` (one task's frames, the async stack), and `stats`.
// They render a snapshot (Scheduler::snapshot, kernel/task_snapshot.hpp); the monitor
// (diag/monitor.hpp) and the dump (diag/task_dump.hpp) print them.
//
//     $ echo ps | nc -U /tmp/echo.monitor
//        ID  PARENT  STATE    WAITED  LEFT    NAME                  WAITS ON
//         1       -  waiting  -       -       serve                 fd 5 read
//         7       1  waiting  -       -       handle_client         fd 9 read (recv)
#pragma once

#include "corio/scheduler.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace corio {

/// A duration as people read it: "850ns", "12us", "3.4ms", "2.50s", "1h02m".
inline std::string format_duration(std::chrono::steady_clock::duration length) {
    using namespace std::chrono;
    const auto ns = duration_cast<nanoseconds>(length).count();
    char text[32];
    if (ns < 1'000) {
        std::snprintf(text, sizeof text, "%lldns", static_cast<long long>(ns));
    } else if (ns < 1'000'000) {
        std::snprintf(text, sizeof text, "%lldus", static_cast<long long>(ns / 1'000));
    } else if (ns < 1'000'000'000) {
        std::snprintf(text, sizeof text, "%.1fms", static_cast<double>(ns) / 1e6);
    } else if (ns < 3'600'000'000'000) {
        std::snprintf(text, sizeof text, "%.2fs", static_cast<double>(ns) / 1e9);
    } else {
        const long long minutes = ns / 60'000'000'000;
        std::snprintf(text, sizeof text, "%lldh%02lldm", minutes / 60, minutes % 60);
    }
    return text;
}

namespace detail {

inline std::string optional_duration(const std::optional<std::chrono::steady_clock::duration>& length) {
    return length ? format_duration(*length) : "-";
}

inline void append_padded(std::string& out, std::string_view text, std::size_t width) {
    out += text;
    out.append(text.size() < width ? width - text.size() : 1, ' ');
}

inline void append_task_line(std::string& out, const TaskInfo& task, std::string_view indent) {
    char ids[48];
    std::snprintf(ids, sizeof ids, "%6llu  %6s  ", static_cast<unsigned long long>(task.id.serial()),
                  task.parent ? std::to_string(task.parent.serial()).c_str() : "-");
    out += ids;
    append_padded(out, to_string(task.state), 9);
    append_padded(out, optional_duration(task.waited), 8);
    append_padded(out, optional_duration(task.time_left), 8);
    std::string name(indent);
    name += task.name;
    append_padded(out, name, 22);
    out += task.waits_on;
    while (!out.empty() && out.back() == ' ') {
        out.pop_back();
    }
    out += '\n';
}

inline constexpr std::string_view listing_header =
    "    ID  PARENT  STATE    WAITED  LEFT    NAME                  WAITS ON\n";

} // namespace detail

/// One line per task, oldest first: id, spawner, state, how long it has waited (with
/// Scheduler::record_wait_times on), time left to its sleep or deadline, name, what it waits on.
inline std::string format_ps(const std::vector<TaskInfo>& tasks) {
    std::string out(detail::listing_header);
    std::vector<const TaskInfo*> by_id;
    by_id.reserve(tasks.size());
    for (const TaskInfo& task : tasks) {
        by_id.push_back(&task);
    }
    std::sort(by_id.begin(), by_id.end(), [](const TaskInfo* a, const TaskInfo* b) { return a->id < b->id; });
    for (const TaskInfo* task : by_id) {
        detail::append_task_line(out, *task, "");
    }
    return out;
}

/// format_ps, with each task under the task that spawned it (indented); a task whose spawner has
/// ended, or that was added from outside any task, is at the top level.
inline std::string format_pstree(const std::vector<TaskInfo>& tasks) {
    std::unordered_map<std::uint64_t, std::vector<const TaskInfo*>> children;
    std::vector<const TaskInfo*> tops;
    std::unordered_map<std::uint64_t, bool> alive;
    for (const TaskInfo& task : tasks) {
        alive[task.id.serial()] = true;
    }
    for (const TaskInfo& task : tasks) {
        if (task.parent && alive.count(task.parent.serial()) != 0) {
            children[task.parent.serial()].push_back(&task);
        } else {
            tops.push_back(&task);
        }
    }
    const auto by_id = [](const TaskInfo* a, const TaskInfo* b) { return a->id < b->id; };
    std::sort(tops.begin(), tops.end(), by_id);
    for (auto& [parent, list] : children) {
        std::sort(list.begin(), list.end(), by_id);
    }
    std::string out(detail::listing_header);
    // Depth first, without recursion (a long chain of spawns must not overflow the stack).
    std::vector<std::pair<const TaskInfo*, std::size_t>> pending;
    for (auto top = tops.rbegin(); top != tops.rend(); ++top) {
        pending.emplace_back(*top, 0);
    }
    while (!pending.empty()) {
        const auto [task, depth] = pending.back();
        pending.pop_back();
        detail::append_task_line(out, *task, std::string(2 * depth, ' '));
        const auto found = children.find(task->id.serial());
        if (found != children.end()) {
            for (auto child = found->second.rbegin(); child != found->second.rend(); ++child) {
                pending.emplace_back(*child, depth + 1);
            }
        }
    }
    return out;
}

/// One task's frames, the one it waits in first (as a debugger prints a stack):
///     task 7 (handle_client), waiting on fd 9 read (recv) for 2.50s
///       spawned by task 1 at examples/echo_server.cpp:80
///       #0 echo_once at examples/echo_server.cpp:41
///       #1 handle_client at examples/echo_server.cpp:63
inline std::string format_where(const TaskInfo& task) {
    std::string out = "task " + std::to_string(task.id.serial()) + " (" + task.name + "), " +
                      to_string(task.state);
    if (!task.waits_on.empty()) {
        out += " on " + task.waits_on;
    }
    if (task.waited) {
        out += " for " + format_duration(*task.waited);
    }
    if (task.time_left) {
        out += ", " + format_duration(*task.time_left) + " left";
    }
    out += '\n';
    if (task.spawned_line != 0) {
        out += "  spawned";
        if (task.parent) {
            out += " by task " + std::to_string(task.parent.serial());
        }
        out += " at " + task.spawned_file + ":" + std::to_string(task.spawned_line) + "\n";
    }
    if (task.stack.empty()) {
        out += task.state == TaskInfo::State::running ? "  (running: no stack while it runs)\n"
                                                      : "  (not started yet)\n";
    }
    std::size_t depth = 0;
    for (auto frame = task.stack.rbegin(); frame != task.stack.rend(); ++frame, ++depth) {
        out += "  #" + std::to_string(depth) + " " + frame->function + " at " + frame->file + ":" +
               std::to_string(frame->line) + "\n";
    }
    return out;
}

/// What the kernel holds (Scheduler::stats) and which backend it waits in, one `name value` per line.
inline std::string format_stats(const Scheduler& kernel) {
    const Scheduler::Stats stats = kernel.stats();
    std::string out;
    const auto line = [&out](const char* name, const std::string& value) {
        out += name;
        out += ' ';
        out += value;
        out += '\n';
    };
    line("backend", to_string(kernel.backend()));
    line("tasks", std::to_string(stats.tasks));
    line("ready", std::to_string(stats.ready));
    line("waiting_on_fds", std::to_string(stats.waiting_on_fds));
    line("watched_fds", std::to_string(stats.watched_fds));
    line("timers", std::to_string(stats.timers));
    line("thread_jobs", std::to_string(stats.thread_jobs));
    line("lent_buffers", std::to_string(stats.lent_buffers));
    return out;
}

} // namespace corio
