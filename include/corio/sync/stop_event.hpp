// corio/sync/stop_event.hpp - StopEvent: a one-shot flag that wakes tasks in every Scheduler, on any
// thread, once it is set.
//
//     corio::StopEvent stop;
//     co_await stop.wait();   // in tasks of any Scheduler: returns at once if it is set already
//     stop.set();             // from any thread, or from a signal handler
//
// Behind it is one fd (an eventfd on Linux, a pipe elsewhere) that set() makes readable and that
// nobody ever reads: readiness is level, so one write wakes every Scheduler that watches it, and
// keeps waking those that come later. Each wait watches a dup of that fd of its own, so that when
// it ends (or its task is killed) it can unregister and close its fd without disturbing the other
// waits of its Scheduler, which may watch the same event.
//
// Unlike Event (one Scheduler, no locks), a StopEvent is meant to be shared between threads; it is
// what run_on_threads (run_on_threads.hpp) stops all its Schedulers with. It stays set. It must
// outlive its waits: destroy it after the tasks that wait on it have ended or been killed.
#pragma once

#include "corio/scheduler.hpp"
#include "corio/kernel/async_fd.hpp"
#include "corio/kernel/fd_awaiter.hpp"
#include "corio/backend/selector.hpp"
#include "corio/detail/posix.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <coroutine>
#include <cstdint>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace corio {

/// A one-shot, thread-safe flag: set() wakes every task that waits in wait(), in any Scheduler.
class StopEvent {
public:
    /// The awaitable behind `co_await stop.wait()`.
    class [[nodiscard]] Wait : public detail::FdAwaiter<Wait> {
    public:
        [[nodiscard]] explicit Wait(const StopEvent& event) noexcept
            : FdAwaiter(watched_, Kind::check, Interest::read), event_(&event) {}
        // Movable only because GCC 12 moves a co_await operand into the frame; never moved once
        // awaited (the kernel holds its address while the task waits).
        Wait(Wait&& other) noexcept
            : FdAwaiter(watched_, Kind::check, Interest::read), event_(other.event_),
              watched_(std::move(other.watched_)) {}
        Wait& operator=(Wait&&) = delete;

        bool await_ready() const noexcept { return event_->is_set(); }

        template <class Promise>
        bool await_suspend(std::coroutine_handle<Promise> caller) {
            const int fd = ::fcntl(event_->fd_, F_DUPFD_CLOEXEC, 0);
            if (fd < 0) {
                throw std::system_error(errno, std::system_category(), "corio: StopEvent: dup");
            }
            watched_ = AsyncFd(fd); // a dup per waiter: each Scheduler watches its own
            return FdAwaiter::await_suspend(caller);
        }

        void await_resume() {
            detail::Kernel* kernel = watched_.kernel();
            watched_.close(); // unregistered, then closed
            if (kernel != nullptr) {
                kernel->throw_if_interrupted(); // a deadline ended the wait
            }
        }

        bool try_now() const noexcept { return event_->is_set(); }
        static const char* name() noexcept { return "StopEvent::wait"; }

    private:
        const StopEvent* event_;
        AsyncFd watched_; // our dup of the event's fd, while we wait (closed with the Wait)
    };

    /// Throws std::system_error if the fd cannot be created.
    StopEvent() {
#if defined(__linux__)
        fd_ = write_fd_ = detail::open_eventfd();
#else
        const detail::PipeEnds ends = detail::open_pipe();
        fd_ = ends.read;
        write_fd_ = ends.write;
#endif
    }
    StopEvent(const StopEvent&) = delete;
    StopEvent& operator=(const StopEvent&) = delete;
    ~StopEvent() {
        detail::close_fd(fd_);
        if (write_fd_ != fd_) {
            detail::close_fd(write_fd_);
        }
    }

    /// Sets the flag and wakes every waiter. Idempotent; callable from any thread, and from a
    /// signal handler (it only stores an atomic and writes to an fd).
    void set() noexcept {
        if (set_.exchange(true)) {
            return;
        }
#if defined(__linux__)
        const std::uint64_t one = 1;
        const ssize_t written = ::write(write_fd_, &one, sizeof one);
#else
        const char one = 1;
        const ssize_t written = ::write(write_fd_, &one, 1);
#endif
        (void)written; // cannot fail short of a closed fd: the counter is far from full
    }

    [[nodiscard]] bool is_set() const noexcept { return set_.load(); }

    /// `co_await stop.wait()`: returns once the flag is set (at once if it is). A task waiting
    /// here can be killed, or bounded with timeout_after.
    [[nodiscard]] Wait wait() const noexcept { return Wait(*this); }

private:
    int fd_ = -1;       // what waiters watch (dups of it)
    int write_fd_ = -1; // what set() writes to: the same eventfd, or the pipe's write end
    std::atomic<bool> set_{false};
};

} // namespace corio
