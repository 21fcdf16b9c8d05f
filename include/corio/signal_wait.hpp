// corio/signal_wait.hpp - wait for a POSIX signal like for any other event.
//
//     corio::claim_signals({SIGINT, SIGTERM});             // in main, before starting threads
//     ...
//     int number = co_await corio::SignalWait{SIGINT, SIGTERM}; // in a task
//
// Which wait takes a signal, what stays pending and which threads must claim: README.md,
// "Signals". How a signal becomes an fd to wait on (signalfd on Linux, a self-pipe elsewhere):
// backend/signal_source.hpp.
#pragma once

#include "corio/backend/signal_source.hpp"
#include "corio/scheduler.hpp"
#include "corio/kernel/async_fd.hpp"
#include "corio/kernel/fd_awaiter.hpp"
#include "corio/backend/selector.hpp"

#include <cerrno>
#include <concepts>
#include <coroutine>
#include <initializer_list>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace corio {

/// Claims `signals` for SignalWait from now on, for the life of the process: they no longer run
/// their default action or handler, and each one that arrives stays pending until a SignalWait
/// takes it. On the signalfd path this blocks them in the calling thread: call it in main before
/// starting other threads (README.md, "Signals"). SignalWait claims its own set anyway; call
/// this first so that a signal that comes before the first wait is kept rather than acted on.
/// Throws std::system_error (EINVAL) for SIGKILL, SIGSTOP or a number that is no signal.
inline void claim_signals(std::initializer_list<int> signals) {
    detail::claim_signal_mask(detail::signal_mask_of(signals));
}

/// `int number = co_await SignalWait{SIGINT, SIGTERM};` waits until one of the signals arrives
/// (or takes one that is pending) and gives its number. See the top of this file.
class [[nodiscard]] SignalWait : public detail::FdAwaiter<SignalWait> {
public:
    /// Throws std::system_error (EINVAL) for SIGKILL, SIGSTOP or a number that is no signal.
    /// (A list of ints rather than a std::initializer_list: GCC 12 cannot keep the latter's
    /// array in a coroutine frame, which `co_await SignalWait{...}` needs.)
    template <std::same_as<int>... More>
    [[nodiscard]] explicit SignalWait(int signal, More... more)
        : FdAwaiter(watched_, Kind::signal, Interest::read),
          mask_(detail::signal_mask_of({signal, more...})) {}
    // Movable only because GCC 12 moves a co_await operand into the frame; never moved once
    // awaited (the kernel holds its address while the task waits).
    SignalWait(SignalWait&& other) noexcept
        : FdAwaiter(watched_, Kind::signal, Interest::read), mask_(other.mask_),
          source_(std::move(other.source_)), watched_(std::move(other.watched_)) {
        result_ = other.result_;
    }
    SignalWait& operator=(SignalWait&&) = delete;
    ~SignalWait() { close_source(); } // a killed waiter: unregister, then close

    bool await_ready() {
        detail::claim_signal_mask(mask_);
        source_.open(mask_);
        if (!watched_.is_open()) {
            watched_ = AsyncFd(source_.fd()); // the source owns it: see close_source()
        }
        return try_now();
    }

    int await_resume() {
        detail::Kernel* kernel = watched_.kernel();
        close_source();
        if (kernel != nullptr) {
            kernel->throw_if_interrupted(); // a deadline ended the wait (no signal was taken)
        }
        if (result_ == pending || result_ < 0) { // woken without a signal (our fd forgotten), or an error
            throw std::system_error(result_ < 0 && result_ != pending ? -result_ : EAGAIN,
                                    std::system_category(), "corio: SignalWait");
        }
        return result_;
    }

    bool try_now() noexcept {
        const int taken = source_.take(); // a signal, 0 while none, or -errno
        if (taken == 0) {
            return false;
        }
        result_ = taken;
        return true;
    }
    static const char* name() noexcept { return "SignalWait"; }

private:
    void close_source() noexcept {
        static_cast<void>(watched_.release()); // unregistered before the source closes it
        source_.close();
    }

    detail::SignalMask mask_;
    detail::SignalSource source_;
    AsyncFd watched_; // the source's fd, and the Scheduler it waits in
};

} // namespace corio
