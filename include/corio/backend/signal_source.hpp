// corio/backend/signal_source.hpp - the fd a SignalWait waits on: how a signal becomes readiness.
//
// A signal handler may do almost nothing (only async-signal-safe calls: no locks, no allocation,
// no touching a Scheduler), so a signal is turned into readiness of an fd that a task waits on:
//
//   Linux: signalfd.  The signals are blocked (pthread_sigmask) so that the kernel keeps them
//          pending instead of running their default action; each wait opens a signalfd for its
//          set, and the task waits until it is readable and reads one signal from it. The
//          kernel's set of pending signals is the queue.
//   elsewhere (or when CORIO_SIGNAL_SELF_PIPE is defined, in every translation unit alike):
//          a self-pipe. A handler installed with sigaction marks the signal pending in a flag and
//          writes one byte into the pipe of each wait whose set contains it; the waiting task
//          wakes, and takes the flag. The flags are the queue (one per number, so real-time
//          signals coalesce too); the bytes are only wake-ups. Any thread may run the handler.
//
// Both give what SignalWait promises (README.md, "Signals"). What it uses of them:
// signal_mask_of (checks the numbers), claim_signal_mask (idempotent), and a SignalSource:
// open(mask), fd(), take() -> a signal number, 0 if none is pending, or -errno; close().
#pragma once

#include "corio/detail/posix.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <mutex>
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

namespace corio::detail {

// A set of signal numbers 1..64: bit s-1 stands for signal s.
using SignalMask = std::uint64_t;
inline constexpr int highest_signal = 64;
static_assert(NSIG - 1 <= highest_signal, "corio: this system has more than 64 signals");

constexpr SignalMask signal_bit(int number) noexcept {
    return SignalMask{1} << (number - 1);
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

#if CORIO_SIGNAL_USES_SIGNALFD

// Blocks the signals in the calling thread: the kernel keeps them pending for a signalfd.
inline void claim_signal_mask(SignalMask mask) {
    const sigset_t set = signal_set_of(mask);
    if (const int error = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); error != 0) {
        throw_errno(error, "pthread_sigmask");
    }
}

// The fd one SignalWait waits on: a signalfd for its set.
class SignalSource {
public:
    SignalSource() noexcept = default;
    SignalSource(SignalSource&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    SignalSource& operator=(SignalSource&&) = delete;
    ~SignalSource() { close(); }

    void open(SignalMask mask) { fd_ = open_signalfd(signal_set_of(mask)); }
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

    void close() noexcept { close_fd(std::exchange(fd_, -1)); }

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
            throw_errno(errno, "sigaction(" + std::to_string(number) + ")");
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
        const PipeEnds ends = open_pipe(); // a full pipe refuses the handler's byte: no blocking
        read_fd_ = ends.read;
        for (SelfPipeWaiter& waiter : self_pipe_table.waiters) {
            bool free = false;
            if (waiter.used.compare_exchange_strong(free, true)) {
                waiter.mask.store(mask);
                waiter.write_fd.store(ends.write); // last: the handler sees a complete slot
                waiter_ = &waiter;
                mask_ = mask;
                return;
            }
        }
        close_fd(ends.write);
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
            close_fd(write_fd);
            waiter_->mask.store(0);
            waiter_->used.store(false);
            waiter_ = nullptr;
        }
        close_fd(std::exchange(read_fd_, -1));
    }

private:
    int read_fd_ = -1;
    SelfPipeWaiter* waiter_ = nullptr;
    SignalMask mask_ = 0;
};

#endif

} // namespace corio::detail
