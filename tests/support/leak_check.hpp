// Test support: assert that a test leaves no coroutine frame and no kernel state behind
// (libuv's habit of ending every test by checking the loop holds nothing).
#pragma once

#include "support/catch.hpp"

#include <corio/scheduler.hpp>

#ifndef CORIO_COUNT_FRAMES
#error "tests must be built with CORIO_COUNT_FRAMES defined"
#endif

namespace corio::test {

inline long live_frames() { return corio::detail::live_frame_count.load(); }

/// Checks, when it goes out of scope, that every coroutine frame created since it was made has
/// been destroyed. Declare it before the Scheduler so that it checks after the Scheduler is gone.
class FrameLeakCheck {
public:
    FrameLeakCheck() : before_(live_frames()) {}
    FrameLeakCheck(const FrameLeakCheck&) = delete;
    FrameLeakCheck& operator=(const FrameLeakCheck&) = delete;
    ~FrameLeakCheck() { CHECK(live_frames() == before_); }

private:
    long before_;
};

/// The kernel holds nothing: no task, nothing ready, no waiter, no timer, no watched fd.
inline void require_empty(const Scheduler& kernel) {
    const auto stats = kernel.stats();
    CHECK(stats.tasks == 0);
    CHECK(stats.ready == 0);
    CHECK(stats.waiting_on_fds == 0);
    CHECK(stats.timers == 0);
    CHECK(stats.watched_fds == 0);
}

} // namespace corio::test
