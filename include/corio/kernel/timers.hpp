// corio/kernel/timers.hpp - the kernel's clock and timers: sleeping tasks and deadlines in one
// heap, and the pool of timers lent to sleepers.
//
// A sleeping task borrows its timer from the pool: a timer in every record would cost every idle
// connection 40 bytes for a Sleep it may never do. The pool grows geometrically (one slot per new
// timer made arming n sleepers cost O(n^2) copies: see bench/sleepers.cpp).
#pragma once

#include "corio/virtual_clock.hpp"
#include "corio/kernel/task_record.hpp"
#include "corio/detail/timer_heap.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstddef>
#include <deque>
#include <stdexcept>
#include <vector>

namespace corio::detail {

// A timer that belongs to a task: its Sleep, or one of its deadlines (TimeoutScope).
struct TaskTimer : TimerNode {
    explicit TaskTimer(Kind what) noexcept : TimerNode(what) {}
    TaskRecord* task = nullptr;
};

// Converts any duration to the clock's, rounding up and saturating instead of overflowing:
// Sleep{std::chrono::seconds::max()} means "practically never", not "at once". A floating
// duration that is NaN or infinite is refused (converting it would be undefined behaviour, and
// no length of time is meant by it): std::invalid_argument.
template <class Rep, class Period>
std::chrono::steady_clock::duration to_clock_duration(std::chrono::duration<Rep, Period> length) {
    using Target = std::chrono::steady_clock::duration;
    const std::chrono::duration<long double, Target::period> exact = length;
    if (!std::isfinite(exact.count())) {
        throw std::invalid_argument("corio: a duration must be finite (it is NaN or infinite)");
    }
    if (exact >= std::chrono::duration<long double, Target::period>(Target::max())) {
        return Target::max();
    }
    if (exact <= std::chrono::duration<long double, Target::period>(Target::min())) {
        return Target::min();
    }
    return std::chrono::ceil<Target>(length);
}

class Timers {
public:
    using Clock = std::chrono::steady_clock;

    Timers() = default;
    explicit Timers(VirtualClock& clock) noexcept : virtual_clock_(&clock) {}

    [[nodiscard]] Clock::time_point now() const noexcept {
        return virtual_clock_ != nullptr ? virtual_clock_->now() : Clock::now();
    }
    [[nodiscard]] Clock::time_point deadline_after(Clock::duration delay) const noexcept {
        const Clock::time_point start = now();
        return delay >= Clock::time_point::max() - start ? Clock::time_point::max() : start + delay;
    }
    [[nodiscard]] VirtualClock* virtual_clock() const noexcept { return virtual_clock_; }

    [[nodiscard]] bool empty() const noexcept { return heap_.empty(); }
    [[nodiscard]] std::size_t size() const noexcept { return heap_.size(); }
    [[nodiscard]] Clock::time_point earliest() const noexcept { return heap_.top()->deadline; }

    // Milliseconds until the earliest timer, rounded up (a task never wakes just before its
    // deadline), 0 if it is due, at most INT_MAX. The heap must not be empty.
    [[nodiscard]] int milliseconds_to_earliest() const noexcept {
        const auto left = earliest() - now();
        if (left <= Clock::duration::zero()) {
            return 0;
        }
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
        return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
    }

    void arm(TimerNode& timer, Clock::time_point deadline) { heap_.push(timer, deadline); }
    void cancel(TimerNode& timer) noexcept { heap_.remove(timer); } // no-op if not armed

    // Arms a timer from the pool for `task` (a Sleep).
    TaskTimer& arm_sleep(TaskRecord& task, Clock::time_point deadline) {
        TaskTimer& timer = lend();
        try {
            heap_.push(timer, deadline);
        } catch (...) {
            free_.push_back(&timer); // within the capacity lend() reserved
            throw;
        }
        timer.task = &task;
        return timer;
    }
    // Cancels a sleep timer (if it has not expired) and returns it to the pool.
    void end_sleep(TaskTimer& timer) noexcept {
        heap_.remove(timer);
        timer.task = nullptr;
        free_.push_back(&timer); // within the capacity reserved by lend()
    }

    // Takes every due timer off the heap, in deadline order (FIFO for equal deadlines), and hands
    // it over: on_sleep_over(TaskRecord&) for a sleep (whose timer the caller gives back with
    // end_sleep), on_deadline(TaskTimer&) for a deadline.
    template <class OnSleepOver, class OnDeadline>
    void expire(OnSleepOver&& on_sleep_over, OnDeadline&& on_deadline) {
        if (heap_.empty()) {
            return;
        }
        const Clock::time_point current_time = now();
        while (TimerNode* timer = heap_.top()) {
            if (timer->deadline > current_time) {
                break;
            }
            heap_.remove(*timer);
            auto& task_timer = static_cast<TaskTimer&>(*timer);
            if (timer->kind == TimerNode::Kind::deadline) {
                on_deadline(task_timer);
            } else {
                on_sleep_over(*task_timer.task);
            }
        }
    }

private:
    TaskTimer& lend() {
        if (free_.empty()) {
            TaskTimer& timer = pool_.emplace_back(TimerNode::Kind::wake);
            try {
                // Room for every timer, so that end_sleep never allocates.
                if (free_.capacity() < pool_.size()) {
                    free_.reserve(std::max<std::size_t>(2 * free_.capacity(), 64));
                }
            } catch (...) {
                pool_.pop_back();
                throw;
            }
            return timer;
        }
        TaskTimer& timer = *free_.back();
        free_.pop_back();
        return timer;
    }

    TimerHeap heap_;
    std::deque<TaskTimer> pool_; // lent to sleeping tasks; a deque: timers never move
    std::vector<TaskTimer*> free_;
    VirtualClock* virtual_clock_ = nullptr;
};

} // namespace corio::detail
