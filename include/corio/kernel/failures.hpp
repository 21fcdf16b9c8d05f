// corio/kernel/failures.hpp - where failures go: to the tasks that wait for the one that failed,
// or to the exception handler (by default a line on stderr) when nobody receives them.
//
// No exception is dropped unreported. A failure handed to waiters is tracked until each of them has
// either received it (its WaitTask returned it) or ended first (killed, destroyed): if none
// received it, it is reported then. What destructors throw while a task's frame is destroyed is
// collected (task.hpp's hand_over_destruction_failure) and reported under the task's id.
#pragma once

#include "corio/task.hpp"
#include "corio/task_id.hpp"
#include "corio/kernel/task_record.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iostream>
#include <utility>
#include <vector>

namespace corio::detail {

class Failures {
public:
    using Handler = std::function<void(TaskId, std::exception_ptr)>;

    void set_handler(Handler handler) { handler_ = std::move(handler); }

    // Reports a failure nobody received (`id` empty: a posted callable's).
    void report(TaskId id, const std::exception_ptr& error) noexcept {
        try {
            if (handler_) {
                handler_(id, error);
                return;
            }
            const char* what = "a non-standard exception";
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            if (id) {
                std::cerr << "corio: task " << id << " failed and nobody waited for it: " << what
                          << '\n';
            } else {
                std::cerr << "corio: a posted callable failed: " << what << '\n';
            }
        } catch (...) { // a failing report must not take the loop down
        }
    }

    // Tracks the failure of task `id`, handed to `holders` waiters. False if there is no memory
    // to track it: the caller reports it now rather than risk a silent drop.
    bool hand(TaskId id, const std::exception_ptr& error, std::uint32_t holders) noexcept {
        try {
            handed_.push_back(Handed{id, error, holders, false});
            return true;
        } catch (...) {
            return false;
        }
    }

    // One holder of the failure of `failed` received it (or ended first: `received` false).
    void settle(TaskId failed, bool received) noexcept {
        for (std::size_t i = 0; i < handed_.size(); ++i) {
            Handed& handed = handed_[i];
            if (handed.task != failed) {
                continue;
            }
            handed.received = handed.received || received;
            if (--handed.holders == 0) {
                const Handed settled = std::move(handed);
                if (i + 1 != handed_.size()) {
                    handed = std::move(handed_.back());
                }
                handed_.pop_back();
                if (!settled.received) {
                    report(settled.task, settled.error);
                }
            }
            return;
        }
    }

    // Destroys the frames of `task` (its root and the frames it awaits), collecting what their
    // destructors throw; gives the mark to hand report_destruction_failures. Destructors may call
    // back into the kernel, and kill other tasks too.
    [[nodiscard]] std::size_t destroy_frames(TaskRecord& task) noexcept {
        const std::size_t first = destruction_failures_.size();
        std::vector<std::exception_ptr>* outer =
            std::exchange(destruction_failures, &destruction_failures_);
        try {
            destroy_frame(std::exchange(task.root, {}));
        } catch (...) { // thrown where the coroutine could not catch it (a parameter's destructor)
            try {
                destruction_failures_.push_back(std::current_exception());
            } catch (...) { // no memory to keep it: report it now, under no task id
                report(TaskId{}, std::current_exception());
            }
        }
        destruction_failures = outer;
        return first;
    }
    // Reports, under `id`, what was collected since the mark `first`. (Separate from
    // destroy_frames: the caller first frees the task's slot and wakes its waiters.)
    void report_destruction_failures(TaskId id, std::size_t first) noexcept {
        for (std::size_t i = first; i < destruction_failures_.size(); ++i) { // a report may add
            const std::exception_ptr error = destruction_failures_[i]; // a copy: it may grow
            report(id, error);
        }
        destruction_failures_.resize(first);
    }

private:
    struct Handed {
        TaskId task;
        std::exception_ptr error;
        std::uint32_t holders; // waiters that have neither received it nor ended
        bool received;
    };

    Handler handler_;
    std::vector<Handed> handed_;
    std::vector<std::exception_ptr> destruction_failures_;
};

} // namespace corio::detail
