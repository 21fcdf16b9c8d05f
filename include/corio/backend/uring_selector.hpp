// corio/backend/uring_selector.hpp - the io_uring backend's readiness half (see
// corio/backend/selector_contract.hpp for the contract).
//
// Readiness is a one-shot IORING_OP_POLL_ADD per fd and direction: it checks the fd's state when
// it is armed (so a task that waits again on an fd that is still readable is told at once: the
// level-triggered meaning epoll gives) and reports once. A report disarms that direction; the
// caller re-arms it while tasks still wait. The polls are queued in the ring and reach the kernel
// with the loop's one io_uring_enter per pass, which also waits: no system call of their own.
//
// A poll that is taken back (the fd is forgotten, or nobody waits any more) is removed with
// IORING_OP_POLL_REMOVE: a poll holds a reference to the open file, and a socket that is closed
// while a poll holds it would stay connected until the poll fired. Each (fd, direction) has a
// generation in the poll's user_data, so that the completion of a poll taken back, which may
// arrive after the fd number was reused, is recognised and dropped.
//
// The ring is created when first used, i.e. on the thread that runs the loop (a ring set up with
// SINGLE_ISSUER takes submissions from one thread only).
#pragma once

#if defined(__linux__)

#include "corio/backend/poll_selector.hpp"
#include "corio/backend/selector_contract.hpp"
#include "corio/backend/uring_ring.hpp"

#include <poll.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace corio {

/// io_uring, as a selector: one-shot polls on a ring (see the top of this file).
class UringSelector {
public:
    /// Submissions the ring holds; more are submitted early, in batches of this many.
    static constexpr unsigned ring_entries = 1024;

    UringSelector() = default;
    UringSelector(const UringSelector&) = delete;
    UringSelector& operator=(const UringSelector&) = delete;

    void watch(int fd, Interest before, Interest after) {
        if (before == after) {
            return;
        }
        if (fd < 0) {
            detail::throw_errno(EBADF, "io_uring poll");
        }
        for (const Interest direction : {Interest::read, Interest::write}) {
            if (has(after, direction) && !has(before, direction)) {
                arm(fd, direction);
            } else if (!has(after, direction) && has(before, direction)) {
                disarm(fd, direction);
            }
        }
    }

    template <class OnReady>
    std::size_t wait(int timeout_ms, OnReady&& on_ready) {
        detail::UringRing& uring = ring();
        uring.enter(timeout_ms);
        std::size_t reported = 0;
        uring.drain([&](std::uint64_t user_data, std::int32_t res, std::uint32_t /*flags*/) {
            const auto direction = static_cast<Interest>((user_data >> 32) & 3U);
            const auto fd = static_cast<int>(user_data & 0xffffffffU);
            if (direction == Interest::none || generation_of(fd, direction) != (user_data >> 40)) {
                return; // a removal's own completion, or a poll that was taken back
            }
            // An error (EBADF: the fd was closed under the poll) is reported as readiness for
            // both directions, like a hang-up: the waiting task's next system call sees it.
            const Interest ready = res < 0 ? Interest::read_write
                                           : PollSelector::from_poll(static_cast<unsigned>(res));
            bump(fd, direction); // a one-shot poll is over: a late duplicate cannot match
            on_ready(fd, ready, direction);
            ++reported;
        });
        return reported;
    }

    /// The ring, set up on first use.
    detail::UringRing& ring() {
        if (!ring_) {
            ring_.emplace(ring_entries);
        }
        return *ring_;
    }

private:
    void arm(int fd, Interest direction) {
        io_uring_sqe& sqe = ring().next_sqe();
        sqe.opcode = IORING_OP_POLL_ADD;
        sqe.fd = fd;
        sqe.poll32_events = direction == Interest::read ? (POLLIN | POLLRDHUP) : POLLOUT;
        sqe.user_data = user_data_of(fd, direction);
    }
    void disarm(int fd, Interest direction) {
        const std::uint64_t armed = user_data_of(fd, direction);
        bump(fd, direction);
        io_uring_sqe& sqe = ring().next_sqe();
        sqe.opcode = IORING_OP_POLL_REMOVE;
        sqe.fd = -1;
        sqe.addr = armed;
        sqe.user_data = 0; // direction none: ignored when it completes
    }

    std::uint64_t user_data_of(int fd, Interest direction) {
        return (std::uint64_t{generation_of(fd, direction)} << 40) |
               (std::uint64_t{static_cast<std::uint8_t>(direction)} << 32) |
               static_cast<std::uint32_t>(fd);
    }
    std::uint8_t& slot(int fd, Interest direction) {
        const std::size_t index = static_cast<std::size_t>(fd) * 2 + (direction == Interest::write ? 1 : 0);
        if (index >= generations_.size()) {
            generations_.resize(index + 2, 0);
        }
        return generations_[index];
    }
    std::uint8_t generation_of(int fd, Interest direction) {
        return fd < 0 ? 0 : slot(fd, direction);
    }
    void bump(int fd, Interest direction) { ++slot(fd, direction); }

    std::optional<detail::UringRing> ring_;
    std::vector<std::uint8_t> generations_; // per fd and direction
};

} // namespace corio

#endif // __linux__
