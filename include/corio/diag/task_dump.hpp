// corio/diag/task_dump.hpp - "what is this process doing?" on demand: every task under its
// spawner, then each task's frames, printed when a signal comes (as Go does on SIGQUIT) or when
// the program asks.
//
//     corio::claim_signals({SIGUSR1});                       // in main, before other threads
//     kernel.add_task(corio::dump_tasks_on_signal(kernel, SIGUSR1));
//     $ kill -USR1 <pid>                                      # the dump goes to stderr
#pragma once

#include "corio/diag/task_listing.hpp"
#include "corio/scheduler.hpp"
#include "corio/signal_wait.hpp"
#include "corio/syscalls.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <string_view>

namespace corio {

/// The dump: format_pstree of every task, then format_where of each.
inline std::string format_task_dump(const Scheduler& kernel) {
    const std::vector<TaskInfo> tasks = kernel.snapshot();
    std::string out = format_pstree(tasks);
    for (const TaskInfo& task : tasks) {
        out += '\n';
        out += format_where(task);
    }
    return out;
}

namespace detail {
// While it lives, a write to a pipe whose reader is gone fails with EPIPE instead of ending the
// process by SIGPIPE (whose default is death): SIGPIPE is blocked in this thread, and one that the
// writes raised is taken back before it is unblocked (sigwait on a pending signal returns at
// once). One that was pending already is left pending.
class SigpipeHeld {
public:
    SigpipeHeld() noexcept {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        ::pthread_sigmask(SIG_BLOCK, &pipe_, &before_);
        was_pending_ = pending();
    }
    SigpipeHeld(const SigpipeHeld&) = delete;
    SigpipeHeld& operator=(const SigpipeHeld&) = delete;
    ~SigpipeHeld() {
        if (!was_pending_ && pending()) {
            int taken = 0;
            ::sigwait(&pipe_, &taken);
        }
        ::pthread_sigmask(SIG_SETMASK, &before_, nullptr);
    }

private:
    bool pending() const noexcept {
        sigset_t now;
        sigemptyset(&now);
        return ::sigpending(&now) == 0 && sigismember(&now, SIGPIPE) == 1;
    }

    sigset_t pipe_;
    sigset_t before_;
    bool was_pending_ = false;
};

// Writes all of `text` to `fd`, blocking: a dump asked for is worth a stalled pass. A non-blocking
// fd (stderr is one when a parent made it so, and a dump outgrows a pipe's 64 KiB) is waited for
// with poll(), but at most 5 s without progress: the rest of the dump is lost then, rather than
// the loop stopped for good by a reader that never reads.
inline void write_fully(int fd, std::string_view text) noexcept {
    const SigpipeHeld held; // a reader that went away loses the dump, not the process
    while (!text.empty()) {
        const ssize_t written = ::write(fd, text.data(), text.size());
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd watched{fd, POLLOUT, 0};
            int ready = 0;
            do {
                ready = ::poll(&watched, 1, 5000);
            } while (ready < 0 && errno == EINTR);
            if (ready <= 0) {
                return; // no room for 5 s: the dump is lost, the program goes on
            }
            continue;
        }
        if (written <= 0) {
            return; // nowhere to write it: the dump is lost, the program goes on
        }
        text.remove_prefix(static_cast<std::size_t>(written));
    }
}
} // namespace detail

/// Writes format_task_dump to `fd` (stderr by default) each time `signal` arrives, until the task
/// is killed. Claim the signal in main first (claim_signals), so that one that comes before the
/// first wait is kept rather than acted on.
inline Task<> dump_tasks_on_signal(Scheduler& kernel, int signal, int fd = STDERR_FILENO) {
    co_await NameTask{"task dump"};
    for (;;) {
        co_await SignalWait{signal};
        detail::write_fully(fd, "corio: task dump (" + std::to_string(kernel.task_count()) + " tasks)\n" +
                                    format_task_dump(kernel));
    }
}

} // namespace corio
