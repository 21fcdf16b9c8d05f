// corio/virtual_clock.hpp - time that passes only when told to, for exact and instant timer tests.
#pragma once

#include <chrono>

namespace corio {

/// A clock for a Scheduler (`Scheduler kernel(clock);`) whose time moves only by advance() and
/// when the loop would otherwise sleep until a timer: then it jumps straight to that timer's
/// deadline. Timer tests become exact (no scheduling noise) and take no wall-clock time. Waits on
/// fds still use the real selector, so a test may mix real sockets and virtual deadlines.
class VirtualClock {
public:
    using duration = std::chrono::steady_clock::duration;     ///< The Scheduler's duration.
    using time_point = std::chrono::steady_clock::time_point; ///< The Scheduler's time point.

    /// Starts at `start` (an arbitrary, fixed point: runs are reproducible).
    explicit VirtualClock(time_point start = time_point(std::chrono::hours(1))) noexcept
        : now_(start) {}

    /// The virtual time now.
    [[nodiscard]] time_point now() const noexcept { return now_; }

    /// Moves time forward by `step` (a negative step is ignored: time never runs backwards).
    void advance(duration step) noexcept {
        if (step > duration::zero()) {
            now_ += step;
        }
    }
    /// Moves time forward to `when`, if that is later than now.
    void advance_to(time_point when) noexcept {
        if (when > now_) {
            now_ = when;
        }
    }

private:
    time_point now_;
};

} // namespace corio
