// corio/backend/selector_contract.hpp - the contract between the kernel and the operating system's
// readiness API: what a selector must do, and the Interest sets it speaks in.
//
// A selector knows which fds the kernel watches and for what, and reports which became ready. It
// keeps no tasks: the Scheduler maps fds to waiting tasks itself. The whole contract:
//
//     void watch(int fd, Interest before, Interest after);  // change what the kernel watches fd for
//     template <class OnReady>            // on_ready(int fd, Interest ready, Interest disarmed)
//     std::size_t wait(int timeout_ms, OnReady&& on_ready);  // -1 waits without limit
//
// `disarmed`: the directions the report used up. epoll and poll keep watching until told
// otherwise (none); io_uring's polls are one-shot, and a direction reported is no longer watched
// until `watch` arms it again (the caller's `before` must then leave it out).
// `before` is what the caller asked for last time (Interest::none if never), so a backend needs no
// table of its own to choose between add, modify and remove. `on_ready` must not call `watch`.
// Hang-up and error conditions are reported as ready for both directions: whoever waits learns of
// them from its next system call. An interrupted wait (EINTR) is retried with the time that remains.
#pragma once

#include <chrono>
#include <cstdint>

namespace corio {

/// What a task waits for on an fd; also what a selector watches an fd for, and reports ready.
enum class Interest : std::uint8_t {
    none = 0,      ///< nothing
    read = 1,      ///< readable (or hung up, or in error)
    write = 2,     ///< writable (or hung up, or in error)
    read_write = 3 ///< both
};

/// Both sets together.
constexpr Interest operator|(Interest a, Interest b) noexcept {
    return static_cast<Interest>(static_cast<std::uint8_t>(a) | static_cast<std::uint8_t>(b));
}
/// What both sets have in common.
constexpr Interest operator&(Interest a, Interest b) noexcept {
    return static_cast<Interest>(static_cast<std::uint8_t>(a) & static_cast<std::uint8_t>(b));
}
/// The directions not in the set.
constexpr Interest operator~(Interest a) noexcept {
    return static_cast<Interest>(~static_cast<std::uint8_t>(a) & 3U);
}
/// True if `set` includes `bit`.
constexpr bool has(Interest set, Interest bit) noexcept { return (set & bit) != Interest::none; }

namespace detail {

// Remaining milliseconds of a wait that was interrupted, for the EINTR retry.
class WaitBudget {
public:
    // The clock is read only for a bounded wait: a poll (0) or an unbounded wait (-1) never needs
    // it, and the loop polls after every busy pass.
    explicit WaitBudget(int timeout_ms) noexcept
        : timeout_ms_(timeout_ms),
          start_(timeout_ms > 0 ? std::chrono::steady_clock::now()
                                : std::chrono::steady_clock::time_point{}) {}

    [[nodiscard]] int remaining_ms() const noexcept {
        if (timeout_ms_ <= 0) {
            return timeout_ms_; // 0 stays a poll, -1 stays unbounded
        }
        // Elapsed time rounds down, so the remaining time never undercuts the timeout.
        auto elapsed = std::chrono::floor<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start_);
        auto left = timeout_ms_ - elapsed.count();
        return left > 0 ? static_cast<int>(left) : 0;
    }

private:
    int timeout_ms_;
    std::chrono::steady_clock::time_point start_;
};

} // namespace detail
} // namespace corio
