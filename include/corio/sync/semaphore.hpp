// corio/sync/semaphore.hpp - Semaphore: a counter of permits between the tasks of one Scheduler.
//
//     corio::Semaphore slots(3);      // at most 3 tasks at a time past acquire()
//     co_await slots.acquire();       // takes a permit, suspending while there is none
//     ...
//     slots.release();                // gives it back (to the longest-waiting task, if any)
//
// FIFO hand-off, no barging: release() with tasks waiting does not raise the count; the permit
// goes straight to the longest-waiting task (its Acquire is marked through the cookie of
// Scheduler::wait_in), which is woken. An Acquire that was handed a permit and whose task is
// killed before it runs gives the permit back from its destructor.
//
// Rules: docs/guide.md#semaphore (and #synchronisation).
#pragma once

#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"

#include <cstddef>
#include <stdexcept>
#include <utility>

namespace corio {

/// A FIFO-fair counting semaphore for the tasks of one Scheduler.
class Semaphore {
public:
    /// The system call behind `co_await semaphore.acquire()`.
    class [[nodiscard]] Acquire {
    public:
        /// Takes a permit of `semaphore`, which must outlive the wait.
        [[nodiscard]] explicit Acquire(Semaphore& semaphore) noexcept : semaphore_(&semaphore) {}
        /// Movable only as a co_await operand is (GCC moves it into the frame); never once awaited.
        Acquire(Acquire&& other) noexcept
            : semaphore_(other.semaphore_), granted_(std::exchange(other.granted_, false)) {}
        Acquire(const Acquire&) = delete;
        Acquire& operator=(const Acquire&) = delete;
        Acquire& operator=(Acquire&&) = delete;
        ~Acquire() {
            if (granted_) { // handed a permit, never took it: the task was killed
                semaphore_->release();
            }
        }

        /// Kernel side (see SystemCall): takes a permit at once if there is one, else parks the
        /// caller in the Semaphore's queue. Throws std::logic_error if tasks of another Scheduler
        /// wait on it.
        bool handle(Scheduler& kernel, TaskId /*caller*/) {
            semaphore_->adopt(kernel);
            if (semaphore_->value_ > 0) { // a permit in the count means nobody waits
                --semaphore_->value_;
                return false;
            }
            kernel.wait_in(semaphore_->waiters_, this); // release() sets granted_, then wakes us
            return true;
        }
        /// Nothing: the caller now has a permit (give it back with Semaphore::release).
        void result() noexcept { granted_ = false; }

    private:
        friend class Semaphore;
        Semaphore* semaphore_;
        bool granted_ = false; // a permit is ours, from the hand-off until result()
    };

    /// A semaphore with `initial` permits.
    explicit Semaphore(std::size_t initial) noexcept : value_(initial) {}
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;
    /// Tasks still waiting wake with std::logic_error (see WaitQueue).
    ~Semaphore() = default;

    /// `co_await semaphore.acquire()` takes a permit, suspending while there is none (after the
    /// tasks that were waiting before).
    [[nodiscard]] Acquire acquire() noexcept { return Acquire(*this); }

    /// Takes a permit without waiting; false if there is none.
    [[nodiscard]] bool try_acquire() noexcept {
        if (value_ == 0) {
            return false;
        }
        --value_;
        return true;
    }

    /// Gives a permit back: to the longest-waiting task if any (it is woken), else to the count.
    void release() noexcept {
        if (waiters_.empty()) {
            ++value_;
            return;
        }
        static_cast<Acquire*>(kernel_->wake_one(waiters_))->granted_ = true;
    }

    /// The permits available now (0 while tasks wait).
    [[nodiscard]] std::size_t value() const noexcept { return value_; }

private:
    void adopt(Scheduler& kernel) {
        if (kernel_ != &kernel) {
            if (!waiters_.empty()) {
                throw std::logic_error("corio: a Semaphore is used by tasks of two Schedulers");
            }
            kernel_ = &kernel;
        }
    }

    WaitQueue waiters_{"semaphore"}; // cookie: their Acquire
    Scheduler* kernel_ = nullptr; // the Scheduler of the waiters
    std::size_t value_;
};

} // namespace corio
