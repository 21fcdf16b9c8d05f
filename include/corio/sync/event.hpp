// corio/sync/event.hpp - Event: a flag that tasks can wait for (curio's and asyncio's Event).
//
//     corio::Event ready;
//     co_await ready.wait();   // in some tasks: returns at once if the flag is set
//     ready.set();             // in another: sets the flag and wakes every waiter, oldest first
//
// The waiters are parked in a WaitQueue of the kernel (see Scheduler::wait_in), so the kernel does
// all the bookkeeping of cancellation: a waiter that is killed, or whose deadline passes, is taken
// off the queue by the kernel and set() never sees it. One Scheduler's tasks only: no atomics, no
// locks.
//
// Rules: docs/guide.md#event (and #synchronisation, for what every primitive shares).
#pragma once

#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"

#include <stdexcept>

namespace corio {

/// A flag tasks can wait for. set() wakes every waiter in FIFO order; clear() lowers the flag.
class Event {
public:
    /// The system call behind `co_await event.wait()`.
    class [[nodiscard]] Wait {
    public:
        /// Waits on `event`, which must outlive the wait.
        [[nodiscard]] explicit Wait(Event& event) noexcept : event_(&event) {}

        /// Kernel side (see SystemCall): continues at once if the flag is set, else parks the
        /// caller in the Event's queue. Throws std::logic_error if tasks of another Scheduler
        /// wait on the same Event.
        bool handle(Scheduler& kernel, TaskId /*caller*/) {
            if (event_->set_) {
                return false;
            }
            event_->adopt(kernel);
            kernel.wait_in(event_->waiters_);
            return true;
        }
        /// Nothing: the flag was set.
        void result() const noexcept {}

    private:
        Event* event_;
    };

    /// An Event whose flag is not set.
    Event() = default;
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    /// Tasks still waiting wake with std::logic_error (see WaitQueue).
    ~Event() = default;

    /// `co_await event.wait()` suspends the calling task until the flag is set; returns at once
    /// if it is set already.
    [[nodiscard]] Wait wait() noexcept { return Wait(*this); }

    /// Sets the flag and wakes every waiting task, in the order they began to wait. They run in
    /// a later pass of the loop. Does nothing more if the flag was set already.
    void set() noexcept {
        set_ = true;
        if (kernel_ != nullptr) {
            kernel_->wake_all(waiters_);
        }
    }

    /// Lowers the flag: later wait()s suspend until the next set().
    void clear() noexcept { set_ = false; }

    /// True while the flag is set.
    [[nodiscard]] bool is_set() const noexcept { return set_; }

private:
    void adopt(Scheduler& kernel) {
        if (kernel_ != &kernel) {
            if (!waiters_.empty()) {
                throw std::logic_error("corio: an Event is used by tasks of two Schedulers");
            }
            kernel_ = &kernel;
        }
    }

    WaitQueue waiters_{"event"};
    Scheduler* kernel_ = nullptr; // the Scheduler of the waiters
    bool set_ = false;
};

} // namespace corio
