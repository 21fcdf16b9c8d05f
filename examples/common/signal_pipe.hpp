// examples/common/signal_pipe.hpp - SIGINT/SIGTERM as an event the loop can wait for.
//
// corio has no signal support yet, and a signal handler may do almost nothing (only
// async-signal-safe calls: no locks, no allocation, no touching the Scheduler). The classic way
// out is the self-pipe trick:
//
//     signal ──▶ handler: write(pipe, signal number) ──▶ pipe readable ──▶ task: ReadWait, read
//
// The handler only writes one byte into a non-blocking pipe; a task waits for the read end to be
// readable like for any socket, and then does the real work (stop the Scheduler) in normal code.
#pragma once

#include <atomic>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <initializer_list>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

#include <corio/corio.hpp>

namespace examples {

/// Routes the given signals into a pipe whose read end tasks can wait on. One at a time per
/// process; it restores the previous handlers when destroyed. Create it after the Scheduler (it
/// unregisters its fd from the Scheduler when destroyed).
class SignalPipe {
public:
    SignalPipe(corio::Scheduler& kernel, std::initializer_list<int> signals) : kernel_(kernel) {
        int ends[2] = {-1, -1};
        if (::pipe(ends) < 0) {
            throw std::system_error(errno, std::system_category(), "pipe");
        }
        read_end_ = ends[0];
        write_end_ = ends[1];
        // Non-blocking both ways: the handler must never block (a full pipe already holds a
        // wake-up), and the task reads only what is there.
        for (const int fd : ends) {
            if (::fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                const int error = errno;
                close_ends();
                throw std::system_error(error, std::system_category(), "fcntl");
            }
        }
        handler_fd().store(write_end_);
        for (const int number : signals) {
            struct sigaction action {};
            action.sa_handler = &SignalPipe::on_signal;
            sigemptyset(&action.sa_mask);
            action.sa_flags = SA_RESTART; // blocking calls elsewhere resume instead of failing
            struct sigaction before {};
            if (::sigaction(number, &action, &before) < 0) {
                const int error = errno;
                restore_handlers();
                close_ends();
                throw std::system_error(error, std::system_category(), "sigaction");
            }
            previous_.emplace_back(number, before);
        }
    }

    SignalPipe(const SignalPipe&) = delete;
    SignalPipe& operator=(const SignalPipe&) = delete;

    ~SignalPipe() {
        restore_handlers();
        close_ends();
    }

    /// Waits until one of the signals arrives and gives its number.
    corio::Task<int> next() const {
        for (;;) {
            unsigned char number = 0;
            const ssize_t count = ::read(read_end_, &number, 1);
            if (count == 1) {
                co_return number;
            }
            if (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                throw std::system_error(errno, std::system_category(), "read from the signal pipe");
            }
            co_await corio::ReadWait{read_end_};
        }
    }

private:
    // The write end, for the handler: a lock-free atomic is safe to read in a signal handler.
    static std::atomic<int>& handler_fd() noexcept {
        static std::atomic<int> fd{-1};
        return fd;
    }

    static void on_signal(int number) noexcept {
        const int saved_errno = errno; // the interrupted code may be about to read errno
        const auto byte = static_cast<unsigned char>(number);
        const ssize_t written = ::write(handler_fd().load(), &byte, 1);
        (void)written; // a full pipe already holds a wake-up: nothing is lost
        errno = saved_errno;
    }

    void restore_handlers() noexcept {
        for (const auto& [number, before] : previous_) {
            ::sigaction(number, &before, nullptr);
        }
        previous_.clear();
    }

    void close_ends() noexcept {
        handler_fd().store(-1);
        if (read_end_ >= 0) {
            kernel_.forget_fd(read_end_); // an fd is deregistered before it is closed
            ::close(read_end_);
        }
        if (write_end_ >= 0) {
            ::close(write_end_);
        }
        read_end_ = write_end_ = -1;
    }

    corio::Scheduler& kernel_;
    int read_end_ = -1;
    int write_end_ = -1;
    std::vector<std::pair<int, struct sigaction>> previous_;
};

/// A task: waits for a signal on `signals`, then stops `kernel`. Scheduler::run() returns after
/// the current pass, and the program ends normally (status 0): destroying the Scheduler ends the
/// tasks still alive, and their sockets close.
inline corio::Task<> stop_on_signal(corio::Scheduler& kernel, SignalPipe& signals) {
    co_await signals.next();
    kernel.stop();
}

} // namespace examples
