// corio/signal_wait.hpp - wait for a POSIX signal like for any other event.
//
//     corio::claim_signals({SIGINT, SIGTERM});             // in main, before starting threads
//     ...
//     int number = co_await corio::SignalWait{SIGINT, SIGTERM}; // in a task
//
// A signal handler may do almost nothing (only async-signal-safe calls: no locks, no allocation,
// no touching a Scheduler), so signals are turned into readiness of an fd that a task waits on:
//
//   Linux: signalfd.  The signals are blocked (pthread_sigmask) so that the kernel keeps them
//          pending instead of running their default action; each wait opens a signalfd for its
//          set, and the task waits until it is readable and reads one signal from it.
//   elsewhere (or when CORIO_SIGNAL_SELF_PIPE is defined, in every translation unit alike):
//          a self-pipe. A handler installed with sigaction marks the signal pending in a flag and
//          writes one byte into the pipe of each wait whose set contains it; the waiting task
//          wakes, and takes the flag.
//
// Semantics, the same on both paths:
//   * Claimed signals are never lost. From claim_signals (or the first SignalWait naming them) on,
//     a signal that arrives while no task waits for it stays pending, and the next SignalWait
//     whose set contains it returns it at once. Pending signals of one number coalesce (as the
//     kernel does for standard signals; the self-pipe path coalesces real-time signals too).
//   * Each signal is taken by one waiter. Several tasks may wait at once, for the same or for
//     different sets; a signal wakes one of those that wait for it (which one is unspecified). To
//     let several parts of a program react to one signal, let one task wait and tell the others
//     (an Event; across threads, a StopEvent).
//   * When several signals of the set are pending, the lowest number is taken first.
//   * To stop waiting: kill the task, or bound the wait with timeout_after / ignore_after. However
//     the wait ends, its fd is unregistered from the Scheduler, then closed. (A task killed after
//     it was woken with a signal, before it ran again, takes that signal with it.)
//   * Claiming is for the life of the process: the previous handler (or default action) of a
//     claimed signal is not restored.
//
// Threads. A signal sent to the process (kill, Ctrl-C) goes to any one thread that does not
// block it. On the signalfd path only the threads that claimed the signal block it, so claim the
// signals in main *before* starting other threads (they inherit the mask). Otherwise the signal
// may land in a thread that does not block it, where its default action runs (SIGINT/SIGTERM end
// the process) and no SignalWait sees it. A signal sent to one thread (raise, pthread_kill) can
// only be read by a signalfd in that thread: send it to the thread whose Scheduler waits, or to
// the process. On the self-pipe path any thread may run the handler, and every wait is told.
#pragma once

#include "corio/scheduler.hpp"
#include "corio/kernel/async_fd.hpp"
#include "corio/kernel/fd_awaiter.hpp"
#include "corio/backend/selector.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <concepts>
#include <cerrno>
#include <coroutine>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#if defined(__linux__) && !defined(CORIO_SIGNAL_SELF_PIPE)
#include <sys/signalfd.h>
#define CORIO_SIGNAL_USES_SIGNALFD 1
#else
#define CORIO_SIGNAL_USES_SIGNALFD 0
#endif

namespace corio {

namespace detail {

// A set of signal numbers 1..64: bit s-1 stands for signal s.
using SignalMask = std::uint64_t;
inline constexpr int highest_signal = 64;
static_assert(NSIG - 1 <= highest_signal, "corio: this system has more than 64 signals");

constexpr SignalMask signal_bit(int number) noexcept {
    return SignalMask{1} << (number - 1);
}

[[noreturn]] inline void throw_signal_error(int error, const std::string& what) {
    throw std::system_error(error, std::system_category(), "corio: " + what);
}

inline SignalMask signal_mask_of(std::initializer_list<int> signals) {
    if (signals.size() == 0) {
        throw std::system_error(EINVAL, std::generic_category(),
                                "corio: SignalWait needs at least one signal");
    }
    SignalMask mask = 0;
    for (const int number : signals) {
        // SIGKILL and SIGSTOP can be neither blocked nor caught: waiting for them would hang.
        if (number < 1 || number >= NSIG || number == SIGKILL || number == SIGSTOP) {
            throw std::system_error(EINVAL, std::generic_category(),
                                    "corio: cannot wait for signal " + std::to_string(number));
        }
        mask |= signal_bit(number);
    }
    return mask;
}

inline sigset_t signal_set_of(SignalMask mask) noexcept {
    sigset_t set;
    sigemptyset(&set);
    for (int number = 1; number < NSIG; ++number) {
        if ((mask & signal_bit(number)) != 0) {
            sigaddset(&set, number);
        }
    }
    return set;
}

inline void set_nonblocking_cloexec(int fd) {
    if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
        ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        throw_signal_error(errno, "fcntl");
    }
}

#if CORIO_SIGNAL_USES_SIGNALFD

// Blocks the signals in the calling thread: the kernel keeps them pending for a signalfd.
inline void claim_signal_mask(SignalMask mask) {
    const sigset_t set = signal_set_of(mask);
    if (const int error = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); error != 0) {
        throw_signal_error(error, "pthread_sigmask");
    }
}

// The fd one SignalWait waits on: a signalfd for its set.
class SignalSource {
public:
    SignalSource() noexcept = default;
    SignalSource(SignalSource&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    SignalSource& operator=(SignalSource&&) = delete;
    ~SignalSource() { close(); }

    void open(SignalMask mask) {
        const sigset_t set = signal_set_of(mask);
        fd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd_ < 0) {
            throw_signal_error(errno, "signalfd");
        }
    }
    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    [[nodiscard]] int fd() const noexcept { return fd_; }

    // Takes one pending signal: its number, 0 if none is pending, or -errno.
    int take() noexcept {
        signalfd_siginfo info{};
        for (;;) {
            const ssize_t count = ::read(fd_, &info, sizeof info);
            if (count == static_cast<ssize_t>(sizeof info)) {
                return static_cast<int>(info.ssi_signo);
            }
            if (count >= 0) {
                return -EIO; // a short read of a signalfd: cannot happen
            }
            if (errno != EINTR) {
                return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
            }
        }
    }

    void close() noexcept {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }

private:
    int fd_ = -1;
};

#else // the self-pipe path

// What the handler shares with the waits. Constant-initialised (no guard for the handler to
// trip over) and lock-free: a handler may only touch lock-free atomics.
struct SelfPipeWaiter {
    std::atomic<bool> used{false};  // the slot belongs to a wait
    std::atomic<int> write_fd{-1};  // its pipe; -1 while the slot is being set up or torn down
    std::atomic<SignalMask> mask{0};
    std::atomic<int> handlers_inside{0}; // handlers that may be about to write to write_fd
};

struct SelfPipeTable {
    static constexpr std::size_t max_waiters = 64;
    std::array<std::atomic<bool>, highest_signal + 1> pending{}; // by signal number
    std::array<SelfPipeWaiter, max_waiters> waiters{};
    std::atomic<SignalMask> installed{0}; // signals whose handler is ours
    std::mutex installing;                // serialises sigaction calls (never taken by a handler)
};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free &&
                  std::atomic<SignalMask>::is_always_lock_free,
              "corio: the self-pipe path needs lock-free atomics");

constinit inline SelfPipeTable self_pipe_table{};

inline void on_claimed_signal(int number) noexcept {
    const int saved_errno = errno; // the interrupted code may be about to read errno
    SelfPipeTable& table = self_pipe_table;
    table.pending[static_cast<std::size_t>(number)].store(true); // before the wake-ups
    for (SelfPipeWaiter& waiter : table.waiters) {
        waiter.handlers_inside.fetch_add(1); // before reading the fd: see SignalSource::close
        const int fd = waiter.write_fd.load();
        if (fd >= 0 && (waiter.mask.load() & signal_bit(number)) != 0) {
            const char byte = 1;
            const ssize_t written = ::write(fd, &byte, 1);
            (void)written; // a full pipe already holds a wake-up
        }
        waiter.handlers_inside.fetch_sub(1);
    }
    errno = saved_errno;
}

// Installs the handler for the signals of `mask` that do not have it yet.
inline void claim_signal_mask(SignalMask mask) {
    SelfPipeTable& table = self_pipe_table;
    if ((table.installed.load() & mask) == mask) {
        return;
    }
    const std::lock_guard lock(table.installing);
    for (int number = 1; number < NSIG; ++number) {
        if ((mask & signal_bit(number)) == 0 || (table.installed.load() & signal_bit(number)) != 0) {
            continue;
        }
        struct sigaction action {};
        action.sa_handler = &on_claimed_signal;
        sigfillset(&action.sa_mask); // one handler at a time per thread: no nesting to reason about
        action.sa_flags = SA_RESTART; // blocking calls elsewhere resume instead of failing
        if (::sigaction(number, &action, nullptr) < 0) {
            throw_signal_error(errno, "sigaction(" + std::to_string(number) + ")");
        }
        table.installed.fetch_or(signal_bit(number));
    }
}

// The fd one SignalWait waits on: the read end of a pipe of its own, registered in the table.
class SignalSource {
public:
    SignalSource() noexcept = default;
    SignalSource(SignalSource&& other) noexcept
        : read_fd_(std::exchange(other.read_fd_, -1)), waiter_(std::exchange(other.waiter_, nullptr)),
          mask_(other.mask_) {}
    SignalSource& operator=(SignalSource&&) = delete;
    ~SignalSource() { close(); }

    void open(SignalMask mask) {
        int ends[2] = {-1, -1};
        if (::pipe(ends) < 0) {
            throw_signal_error(errno, "pipe");
        }
        read_fd_ = ends[0];
        try {
            set_nonblocking_cloexec(ends[0]);
            set_nonblocking_cloexec(ends[1]);
        } catch (...) {
            ::close(ends[1]);
            close();
            throw;
        }
        for (SelfPipeWaiter& waiter : self_pipe_table.waiters) {
            bool free = false;
            if (waiter.used.compare_exchange_strong(free, true)) {
                waiter.mask.store(mask);
                waiter.write_fd.store(ends[1]); // last: the handler sees a complete slot
                waiter_ = &waiter;
                mask_ = mask;
                return;
            }
        }
        ::close(ends[1]);
        close();
        throw std::system_error(EBUSY, std::generic_category(),
                                "corio: more than 64 SignalWaits at once (self-pipe path)");
    }
    [[nodiscard]] bool is_open() const noexcept { return read_fd_ >= 0; }
    [[nodiscard]] int fd() const noexcept { return read_fd_; }

    // Takes one pending signal of the set: its number, or 0 if none is pending.
    int take() noexcept {
        char bytes[64];
        for (;;) { // the wake-ups are only hints (drained here): the flags say what is pending
            const ssize_t count = ::read(read_fd_, bytes, sizeof bytes);
            if (count <= 0 && !(count < 0 && errno == EINTR)) {
                break;
            }
        }
        for (int number = 1; number < NSIG; ++number) {
            if ((mask_ & signal_bit(number)) != 0 &&
                self_pipe_table.pending[static_cast<std::size_t>(number)].exchange(false)) {
                return number;
            }
        }
        return 0;
    }

    void close() noexcept {
        if (waiter_ != nullptr) {
            const int write_fd = waiter_->write_fd.exchange(-1);
            // A handler that read the old fd has announced itself first: wait until it is done
            // before closing, or it could write into whatever file reuses the number.
            while (waiter_->handlers_inside.load() != 0) {
                std::this_thread::yield();
            }
            ::close(write_fd);
            waiter_->mask.store(0);
            waiter_->used.store(false);
            waiter_ = nullptr;
        }
        if (read_fd_ >= 0) {
            ::close(read_fd_);
            read_fd_ = -1;
        }
    }

private:
    int read_fd_ = -1;
    SelfPipeWaiter* waiter_ = nullptr;
    SignalMask mask_ = 0;
};

#endif

} // namespace detail

/// Claims `signals` for SignalWait from now on, for the life of the process: they no longer run
/// their default action or handler, and each one that arrives stays pending until a SignalWait
/// takes it. On the signalfd path this blocks them in the calling thread: call it in main before
/// starting other threads (see the top of this file). SignalWait claims its own set anyway; call
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
        : FdAwaiter(watched_, Kind::read, Interest::read),
          mask_(detail::signal_mask_of({signal, more...})) {}
    // Movable only because GCC 12 moves a co_await operand into the frame; never moved once
    // awaited (the kernel holds its address while the task waits).
    SignalWait(SignalWait&& other) noexcept
        : FdAwaiter(watched_, Kind::read, Interest::read), mask_(other.mask_),
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
