// corio/backend/poll_selector.hpp - the portable selector (see corio/backend/selector_contract.hpp for the contract).
#pragma once

#include "corio/backend/selector_contract.hpp"
#include "corio/detail/posix.hpp"

#include <poll.h>

#include <cerrno>
#include <cstddef>
#include <vector>

namespace corio {

/// poll(2) over a dense array of the watched fds; an fd-indexed table finds an fd's slot in O(1).
class PollSelector {
public:
    void watch(int fd, Interest before, Interest after) {
        if (before == after) {
            return;
        }
        if (fd < 0) {
            detail::throw_errno(EBADF, "poll watch"); // what epoll_ctl says, in the same category
        }
        auto index = static_cast<std::size_t>(fd);
        if (index >= slot_of_fd_.size()) {
            slot_of_fd_.resize(index + 1, absent);
        }
        std::size_t slot = slot_of_fd_[index];
        if (after == Interest::none) {
            if (slot != absent) { // swap-remove keeps the array dense
                fds_[slot] = fds_.back();
                slot_of_fd_[static_cast<std::size_t>(fds_[slot].fd)] = slot;
                fds_.pop_back();
                slot_of_fd_[index] = absent;
            }
            return;
        }
        if (slot == absent) {
            slot_of_fd_[index] = fds_.size();
            fds_.push_back(pollfd{fd, to_poll(after), 0});
        } else {
            fds_[slot].events = to_poll(after);
        }
    }

    template <class OnReady>
    std::size_t wait(int timeout_ms, OnReady&& on_ready) {
        detail::WaitBudget budget(timeout_ms);
        int count = 0;
        while ((count = ::poll(fds_.data(), static_cast<nfds_t>(fds_.size()),
                               budget.remaining_ms())) < 0) {
            if (errno != EINTR) {
                detail::throw_errno(errno, "poll");
            }
        }
        std::size_t reported = 0;
        for (std::size_t i = 0; i < fds_.size() && reported < static_cast<std::size_t>(count); ++i) {
            if (fds_[i].revents != 0) {
                ++reported;
                on_ready(fds_[i].fd, from_poll(fds_[i].revents), Interest::none);
            }
        }
        return reported;
    }

    // What poll(2) readiness means to corio; also read from io_uring's poll completions.
    static short to_poll(Interest interest) noexcept {
        short events = 0;
        if (has(interest, Interest::read)) {
            events |= POLLIN;
        }
        if (has(interest, Interest::write)) {
            events |= POLLOUT;
        }
        return events;
    }
    static Interest from_poll(unsigned revents) noexcept {
        if ((revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) {
            return Interest::read_write;
        }
        Interest ready = Interest::none;
        if ((revents & (POLLIN | POLLPRI)) != 0) {
            ready = ready | Interest::read;
        }
        if ((revents & POLLOUT) != 0) {
            ready = ready | Interest::write;
        }
        return ready;
    }

private:
    static constexpr std::size_t absent = static_cast<std::size_t>(-1);

    std::vector<pollfd> fds_;
    std::vector<std::size_t> slot_of_fd_;
};

} // namespace corio
