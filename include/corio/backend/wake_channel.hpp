// corio/backend/wake_channel.hpp - a file descriptor other threads make readable to wake the loop.
//
// The loop sleeps in epoll_wait or poll; another thread cannot call into it, but it can make an
// fd the loop watches readable. On Linux that fd is an eventfd (one fd, an 8-byte counter); on
// other systems, and in CORIO_FORCE_POLL builds so that Linux tests run the portable path too,
// it is the read end of a non-blocking self-pipe. Notifying an already notified channel is
// harmless (the eventfd counter grows, a full pipe refuses the byte): a waker needs no lock of
// its own, and many notifications before the loop looks cost it one wake-up.
#pragma once

#include "corio/detail/posix.hpp"

#include <unistd.h>
#if defined(__linux__) && !defined(CORIO_FORCE_POLL)
#define CORIO_DETAIL_WAKE_EVENTFD 1
#endif

#include <cerrno>
#include <cstdint>

namespace corio::detail {

class WakeChannel {
public:
    WakeChannel() = default;
    WakeChannel(const WakeChannel&) = delete;
    WakeChannel& operator=(const WakeChannel&) = delete;
    ~WakeChannel() {
        close_fd(read_fd_);
        if (write_fd_ != read_fd_) {
            close_fd(write_fd_);
        }
    }

    /// Creates the fds (once). Throws std::system_error.
    void open() {
        if (read_fd_ >= 0) {
            return;
        }
#if defined(CORIO_DETAIL_WAKE_EVENTFD)
        read_fd_ = write_fd_ = open_eventfd();
#else
        const PipeEnds ends = open_pipe();
        read_fd_ = ends.read;
        write_fd_ = ends.write;
#endif
    }

    [[nodiscard]] bool is_open() const noexcept { return read_fd_ >= 0; }
    /// The fd the loop watches for readability.
    [[nodiscard]] int fd() const noexcept { return read_fd_; }

    /// Makes fd() readable. From any thread.
    void notify() const noexcept {
#if defined(CORIO_DETAIL_WAKE_EVENTFD)
        const std::uint64_t one = 1;
        while (::write(write_fd_, &one, sizeof one) < 0 && errno == EINTR) {
        }
#else
        const char byte = 1;
        while (::write(write_fd_, &byte, 1) < 0 && errno == EINTR) {
        }
#endif
        // Any other failure (EAGAIN: the counter or the pipe is full) leaves it readable already.
    }

    /// Makes fd() unreadable again (from the loop's thread).
    void clear() const noexcept {
        std::uint64_t sink[8];
        for (;;) {
            const ssize_t count = ::read(read_fd_, sink, sizeof sink);
            if (count < 0 && errno == EINTR) {
                continue;
            }
#if defined(CORIO_DETAIL_WAKE_EVENTFD)
            return; // one read resets the counter
#else
            if (count <= 0) {
                return; // EAGAIN: empty
            }
#endif
        }
    }

private:
    int read_fd_ = -1;
    int write_fd_ = -1;
};

} // namespace corio::detail
