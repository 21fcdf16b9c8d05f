// corio/kernel/async_fd.hpp - AsyncFd: an fd that tasks wait on, and the Scheduler they wait in.
//
// Closing an fd that a Scheduler watches must first unregister it there: else the Scheduler goes
// on believing it watches that number (epoll dropped the fd when it was closed), and a new fd
// given the same number is never registered there, nor wakes. So an AsyncFd remembers the
// Scheduler it last waited in and unregisters, then closes, when it is closed or destroyed.
//
// Each Scheduler keeps the AsyncFds that waited in it on a ring whose links live in the AsyncFds
// (no allocation), so that
//   * an AsyncFd that next waits in another Scheduler first makes the old one forget its fd;
//   * a Scheduler destroyed before its AsyncFds detaches them: they only close their fd then.
// Like the Scheduler, an AsyncFd belongs to the Scheduler's thread.
#pragma once

#include "corio/detail/posix.hpp"

#include <utility>

namespace corio {

namespace detail {
class Kernel;
class FdWatches;
} // namespace detail

/// Owns an fd that tasks wait on (the base of AsyncSocket, UdpSocket, SignalWait's and
/// StopEvent's fds). Move-only; closing unregisters the fd from its Scheduler, then closes it.
class AsyncFd {
public:
    AsyncFd() noexcept = default;
    /// Adopts `fd` (-1: none).
    explicit AsyncFd(int fd) noexcept : fd_(fd) {}
    /// Takes the other's fd and its place on its Scheduler's ring; the other is left empty.
    AsyncFd(AsyncFd&& other) noexcept { take_from(other); }
    AsyncFd& operator=(AsyncFd&& other) noexcept {
        if (this != &other) {
            close();
            take_from(other);
        }
        return *this;
    }
    AsyncFd(const AsyncFd&) = delete;
    AsyncFd& operator=(const AsyncFd&) = delete;
    ~AsyncFd() { close(); }

    [[nodiscard]] int fd() const noexcept { return fd_; }
    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }

    /// Unregisters the fd from the Scheduler it waited in (waking whoever waits on it there),
    /// then closes it. Idempotent.
    void close() noexcept {
        forget();
        detail::close_fd(std::exchange(fd_, -1));
    }

    /// Unregisters the fd from the Scheduler it waited in (see close()), and keeps it open.
    void forget() noexcept;

    /// Unregisters the fd (see forget()) and gives it up unclosed: for an fd that something else
    /// owns and closes (SignalWait's signal source).
    [[nodiscard]] int release() noexcept {
        forget();
        return std::exchange(fd_, -1);
    }

    /// The Scheduler's kernel the fd last waited in: null if none, or if it was destroyed.
    [[nodiscard]] detail::Kernel* kernel() const noexcept { return kernel_; }

    /// Call before the fd waits in `kernel`. The same one as last time costs one comparison.
    void enter(detail::Kernel& kernel) noexcept {
        if (kernel_ != &kernel) [[unlikely]] {
            move_to(kernel);
        }
    }

private:
    friend class detail::FdWatches; // holds the ring's head, and detaches the ring when it goes
    struct RingHead {};
    explicit AsyncFd(RingHead /*tag*/) noexcept : prev_(this), next_(this) {}

    void move_to(detail::Kernel& kernel) noexcept;
    void unlink() noexcept {
        if (prev_ != nullptr) {
            prev_->next_ = next_;
            next_->prev_ = prev_;
            prev_ = next_ = nullptr;
        }
        kernel_ = nullptr;
    }
    void take_from(AsyncFd& other) noexcept {
        fd_ = std::exchange(other.fd_, -1);
        kernel_ = std::exchange(other.kernel_, nullptr);
        prev_ = std::exchange(other.prev_, nullptr);
        next_ = std::exchange(other.next_, nullptr);
        if (prev_ != nullptr) {
            prev_->next_ = this;
            next_->prev_ = this;
        }
    }

    detail::Kernel* kernel_ = nullptr;
    AsyncFd* prev_ = nullptr; // on the ring of kernel_ while kernel_ is set
    AsyncFd* next_ = nullptr;
    int fd_ = -1;
    // 4 bytes of padding left, which AsyncSocket's state uses for its flags.
};

} // namespace corio
