// corio/run_on_threads.hpp - using every core: N Schedulers on N threads, each with its own
// listener, in one call.
//
//     auto listeners = corio::listen_reuse_port("127.0.0.1", 5001, n);
//     corio::StopEvent stop;
//     corio::run_on_threads(n, [&](unsigned index, corio::Scheduler& kernel) {
//         if (index == 0) { kernel.add_task(stop_on_signal(stop)); } // SignalWait, stop.set()
//         return serve(std::move(listeners[index]));                 // a Task<>
//     }, stop);
//
// The Schedulers share nothing: each thread has its own kernel, its own tasks and its own
// listening socket. With SO_REUSEPORT the kernel spreads incoming connections over the listeners
// (Linux hashes each connection's addresses to pick one), so no lock and no hand-off between
// threads is needed on the way in. What they do share is one StopEvent: set() wakes a task in
// every Scheduler, which stops it.
//
// Rules (make_task, failures; claim signals first): docs/guide.md#run_on_threads.
#pragma once

#include "corio/net/async_socket.hpp"
#include "corio/scheduler.hpp"
#include "corio/sync/stop_event.hpp"
#include "corio/task.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace corio {

namespace detail {

// The first failure of any thread, for the caller.
class FirstFailure {
public:
    void record(std::exception_ptr error, StopEvent& stop) noexcept {
        {
            const std::lock_guard lock(mutex_);
            if (!first_) {
                first_ = std::move(error);
            }
        }
        stop.set(); // every thread ends: the caller gets the failure only once all are joined
    }
    void rethrow_if_any() {
        const std::lock_guard lock(mutex_);
        if (first_) {
            std::rethrow_exception(first_);
        }
    }

private:
    std::mutex mutex_;
    std::exception_ptr first_;
};

inline Task<> stop_kernel_when_set(const StopEvent& stop, Scheduler& kernel) {
    co_await stop.wait();
    kernel.stop();
}

inline Task<> run_root(Task<> root, Scheduler& kernel, StopEvent& stop, FirstFailure& failure) {
    try {
        co_await std::move(root);
    } catch (...) {
        failure.record(std::current_exception(), stop);
    }
    kernel.stop();
}

template <class MakeTask>
Task<> make_root(MakeTask& make_task, unsigned index, Scheduler& kernel) {
    if constexpr (std::is_invocable_v<MakeTask&, unsigned, Scheduler&>) {
        return make_task(index, kernel);
    } else {
        return make_task(index);
    }
}

template <class MakeTask>
void run_thread(MakeTask& make_task, unsigned index, StopEvent& stop,
                FirstFailure& failure) noexcept {
    try {
        Scheduler kernel;
        Task<> root = make_root(make_task, index, kernel);
        kernel.add_task(stop_kernel_when_set(stop, kernel));
        kernel.add_task(run_root(std::move(root), kernel, stop, failure));
        kernel.run();
    } catch (...) { // destroying the Scheduler killed what was left; report why it ended
        failure.record(std::current_exception(), stop);
    }
}

} // namespace detail

/// Runs `count` Schedulers, one per thread (index 0 on the calling thread), each with the Task
/// that `make_task(index)` or `make_task(index, scheduler)` gives as its root, until the roots
/// have ended or `stop` is set (docs/guide.md#run_on_threads). Rethrows the first failure once every
/// thread has been joined. Throws std::system_error (EINVAL) if `count` is 0.
template <class MakeTask>
    requires std::is_invocable_r_v<Task<>, MakeTask&, unsigned, Scheduler&> ||
             std::is_invocable_r_v<Task<>, MakeTask&, unsigned>
void run_on_threads(unsigned count, MakeTask make_task, StopEvent& stop) {
    if (count == 0) {
        throw std::system_error(EINVAL, std::generic_category(),
                                "corio: run_on_threads needs at least one thread");
    }
    detail::FirstFailure failure;
    std::vector<std::thread> threads;
    try {
        threads.reserve(count - 1);
        for (unsigned index = 1; index < count; ++index) {
            threads.emplace_back([&make_task, index, &stop, &failure] {
                detail::run_thread(make_task, index, stop, failure);
            });
        }
    } catch (...) { // e.g. no thread could be started: stop those that were
        failure.record(std::current_exception(), stop);
    }
    if (!stop.is_set()) {
        detail::run_thread(make_task, 0, stop, failure);
    }
    for (std::thread& thread : threads) { // nothing above throws: every started thread is joined
        thread.join();
    }
    failure.rethrow_if_any();
}

/// run_on_threads without a StopEvent of the caller's: it ends when every root has ended, or
/// when one fails.
template <class MakeTask>
void run_on_threads(unsigned count, MakeTask make_task) {
    StopEvent stop;
    run_on_threads(count, std::move(make_task), stop);
}

/// `count` listening sockets on one address, each with SO_REUSEPORT, for the threads of
/// run_on_threads: the kernel spreads incoming connections over them. With port 0 the first one
/// picks a free port and the others bind to the same. Throws std::system_error as
/// AsyncSocket::listen does (EINVAL if `count` is 0).
inline std::vector<AsyncSocket> listen_reuse_port(std::string_view host, std::uint16_t port,
                                                  unsigned count, int backlog = SOMAXCONN) {
    if (count == 0) {
        throw std::system_error(EINVAL, std::generic_category(),
                                "corio: listen_reuse_port needs at least one listener");
    }
    std::vector<AsyncSocket> listeners;
    listeners.reserve(count);
    listeners.push_back(AsyncSocket::listen(host, port, backlog, ReusePort::yes));
    const std::uint16_t bound = listeners.front().local_port();
    for (unsigned index = 1; index < count; ++index) {
        listeners.push_back(AsyncSocket::listen(host, bound, backlog, ReusePort::yes));
    }
    return listeners;
}

} // namespace corio
