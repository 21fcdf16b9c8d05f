// Test support: run a Scheduler until given tasks have ended, but never longer than a time limit,
// so that a test whose task would wait forever on an fd fails instead of hanging.
#pragma once

#include <chrono>
#include <stdexcept>
#include <utility>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>

namespace corio::test {

namespace detail {

inline Task<> join_all(std::vector<TaskId> ids) {
    for (const TaskId id : ids) {
        const TaskExit exit = co_await WaitTask{id};
        exit.rethrow_if_failed(); // a joined task's failure is the test's failure
    }
}

inline Task<> watchdog(Scheduler& kernel, std::chrono::steady_clock::duration limit, bool& fired) {
    co_await Sleep{limit};
    fired = true;
    kernel.stop();
}

} // namespace detail

/// Runs `kernel` until every task in `ids` has ended (rethrowing the first failure among them) or
/// `limit` has passed. Returns false if the limit was reached; the tasks still alive stay in the
/// kernel then. The watchdog's timer is gone when this returns.
inline bool run_until_ended(Scheduler& kernel, std::vector<TaskId> ids,
                            std::chrono::steady_clock::duration limit = std::chrono::seconds(10)) {
    bool fired = false;
    const TaskId dog = kernel.add_task(detail::watchdog(kernel, limit, fired));
    struct KillDog {
        Scheduler& kernel;
        TaskId id;
        ~KillDog() { kernel.kill(id); }
    } kill_dog{kernel, dog};
    try {
        kernel.run_until_complete(detail::join_all(std::move(ids)));
    } catch (const std::runtime_error&) {
        if (!fired) {
            throw;
        }
    }
    return !fired;
}

} // namespace corio::test
