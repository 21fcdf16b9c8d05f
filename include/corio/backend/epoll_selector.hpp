// corio/backend/epoll_selector.hpp - the Linux selector (see corio/backend/selector_contract.hpp for the contract).
#pragma once

#include "corio/backend/selector_contract.hpp"
#include "corio/detail/posix.hpp"

#include <sys/epoll.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace corio {

/// Level-triggered epoll. An fd is added the first time someone waits on it and then only modified
/// when the interest changes, so a task that waits on the same socket again costs no system call.
class EpollSelector {
public:
    EpollSelector() : epoll_fd_(detail::open_epoll()) {}
    EpollSelector(const EpollSelector&) = delete;
    EpollSelector& operator=(const EpollSelector&) = delete;
    ~EpollSelector() { detail::close_fd(epoll_fd_); }

    void watch(int fd, Interest before, Interest after) {
        if (before == after) {
            return;
        }
        epoll_event event{};
        event.events = to_epoll(after);
        event.data.fd = fd;
        if (after == Interest::none) {
            // ENOENT/EBADF: the fd was closed already and the kernel dropped it; nothing to undo.
            if (::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &event) < 0 && errno != ENOENT &&
                errno != EBADF) {
                fail("epoll_ctl(DEL)");
            }
            return;
        }
        int op = before == Interest::none ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (::epoll_ctl(epoll_fd_, op, fd, &event) == 0) {
            return;
        }
        // The kernel's view differs from ours when an fd was closed and its number reused, or is
        // still registered through a dup: switch operation once before giving up.
        if ((op == EPOLL_CTL_MOD && errno == ENOENT) || (op == EPOLL_CTL_ADD && errno == EEXIST)) {
            op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
            if (::epoll_ctl(epoll_fd_, op, fd, &event) == 0) {
                return;
            }
        }
        fail(op == EPOLL_CTL_ADD ? "epoll_ctl(ADD)" : "epoll_ctl(MOD)");
    }

    template <class OnReady>
    std::size_t wait(int timeout_ms, OnReady&& on_ready) {
        detail::WaitBudget budget(timeout_ms);
        int count = 0;
        while ((count = ::epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()),
                                     budget.remaining_ms())) < 0) {
            if (errno != EINTR) {
                fail("epoll_wait");
            }
        }
        for (int i = 0; i < count; ++i) {
            on_ready(events_[static_cast<std::size_t>(i)].data.fd,
                     from_epoll(events_[static_cast<std::size_t>(i)].events), Interest::none);
        }
        return static_cast<std::size_t>(count);
    }

private:
    // At most this many fds per epoll_wait, however many are ready: the Scheduler retries each
    // one's I/O now and resumes its task after the whole batch, and that task touches again what
    // the retry touched (its record, its frame). With a thousand connections ready at once, a
    // batch of all of them has evicted those cache lines by then; 64 keeps them warm for the price
    // of one epoll_wait per 64 events (bench/README.md: the 1000-connection scenario).
    static constexpr std::size_t batch = 64;

    static std::uint32_t to_epoll(Interest interest) noexcept {
        std::uint32_t events = 0;
        if (has(interest, Interest::read)) {
            events |= EPOLLIN | EPOLLRDHUP;
        }
        if (has(interest, Interest::write)) {
            events |= EPOLLOUT;
        }
        return events;
    }
    static Interest from_epoll(std::uint32_t events) noexcept {
        if ((events & (EPOLLHUP | EPOLLERR)) != 0) {
            return Interest::read_write;
        }
        Interest ready = Interest::none;
        if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)) != 0) {
            ready = ready | Interest::read;
        }
        if ((events & EPOLLOUT) != 0) {
            ready = ready | Interest::write;
        }
        return ready;
    }
    [[noreturn]] static void fail(const char* what) { detail::throw_errno(errno, what); }

    int epoll_fd_;
    std::array<epoll_event, batch> events_{};
};

} // namespace corio
