// corio/kernel/fd_awaiter.hpp - FdAwaiter: the one way a task awaits an FdOperation.
//
// `co_await operation` tries the system call first (await_ready), unless the operation knows it
// would block; only when it would block does the task trap into the kernel, once, to wait with the
// operation (Kernel::wait_for). On readiness the kernel attempts it again before it resumes the
// task, so the task resumes only with its operation done: no coroutine frame, no allocation, and
// no resumption for a stale readiness.
//
// Derived supplies:
//     bool wait_first() const noexcept;  // true: wait for readiness before the first try
//     bool try_now() noexcept;           // one attempt (EINTR aside): true when over
//     bool done() const noexcept;        // an attempt completed it
//     R outcome();                       // what co_await gives (throws the operation's error)
//     static const char* name() noexcept;
#pragma once

#include "corio/kernel/async_fd.hpp"
#include "corio/kernel/fd_operation.hpp"
#include "corio/kernel/kernel.hpp"

#include <cerrno>
#include <coroutine>
#include <stdexcept>
#include <string>
#include <system_error>

namespace corio::detail {

template <class Derived>
class FdAwaiter : public FdOperation {
public:
    FdAwaiter(AsyncFd& target, Kind kind, Interest direction) noexcept
        : FdOperation(target, kind, direction) {}
    FdAwaiter(FdAwaiter&&) noexcept = default;

    bool await_ready() { return !self().wait_first() && self().try_now(); }

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> caller) {
        auto* kernel = caller.promise().kernel();
        if (kernel == nullptr) {
            throw std::logic_error(std::string("corio: ") + Derived::name() +
                                   " was awaited outside a Scheduler's task");
        }
        target().enter(*kernel);
        suspended_ = true;
        const bool suspend = kernel->enter(*this, caller);
        suspended_ = suspend;
        return suspend;
    }

    decltype(auto) await_resume() {
        suspended_ = false; // a retry here, if any, is its own
        // A deadline may have ended the wait. (Asked whether or not this operation waited: a task
        // that did not suspend has no interruption pending, and a flag would cost the frame.)
        if (Kernel* kernel = target().kernel()) {
            kernel->throw_if_interrupted();
        }
        if (!self().done() && !self().try_now()) { // woken, not completed: the fd was forgotten
            throw std::system_error(EAGAIN, std::system_category(),
                                    std::string("corio: ") + Derived::name());
        }
        return self().outcome();
    }

    // The trap (Kernel::enter): wait with this operation.
    template <class Kernel>
    bool handle(Kernel& kernel, TaskId /*caller*/) {
        kernel.wait_for(*this, kind() == Kind::wait ? nullptr : &attempt_of);
        return true;
    }

private:
    static bool attempt_of(FdOperation& operation) noexcept {
        return static_cast<Derived&>(operation).try_now();
    }
    Derived& self() noexcept { return static_cast<Derived&>(*this); }
};

} // namespace corio::detail
