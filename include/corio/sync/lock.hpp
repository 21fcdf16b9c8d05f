// corio/sync/lock.hpp - Lock: mutual exclusion between the tasks of one Scheduler (curio's Lock).
//
//     corio::Lock lock;
//     {
//         corio::Lock::Guard held = co_await lock.acquire(); // waits while another task holds it
//         ...                                                 // may co_await: the lock stays held
//     }                                                       // released here, however it is left
//
// FIFO hand-off, no barging: releasing the lock while tasks wait does not unlock it; the
// longest-waiting task becomes the owner there and then (its Acquire is marked through the cookie
// of Scheduler::wait_in) and is woken. An Acquire that was handed the lock and whose task is
// killed before it runs passes the lock on from its destructor. A Lock destroyed while tasks wait
// wakes them with a std::logic_error (see WaitQueue); one destroyed while handed to a task that
// has not run yet leaves that task the same error (see ~Lock).
//
// Rules: docs/guide.md#lock (and #synchronisation).
#pragma once

#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"

#include <cassert>
#include <optional>
#include <stdexcept>
#include <utility>

namespace corio {

/// A FIFO-fair mutual-exclusion lock for the tasks of one Scheduler; held through a Guard.
class Lock {
public:
    /// Ownership of the lock: releases it when destroyed (or on unlock()). Move-only.
    class [[nodiscard]] Guard {
    public:
        /// A Guard that holds nothing.
        Guard() noexcept = default;
        /// Takes over what `other` holds; `other` then holds nothing.
        Guard(Guard&& other) noexcept : lock_(std::exchange(other.lock_, nullptr)) {}
        /// Releases what this Guard holds, then takes over what `other` holds.
        Guard& operator=(Guard&& other) noexcept {
            if (this != &other) {
                unlock();
                lock_ = std::exchange(other.lock_, nullptr);
            }
            return *this;
        }
        Guard(const Guard&) = delete;
        Guard& operator=(const Guard&) = delete;
        ~Guard() { unlock(); }

        /// Releases the lock now (to the longest-waiting task, if any). Does nothing if this
        /// Guard holds nothing.
        void unlock() noexcept {
            if (lock_ != nullptr) {
                std::exchange(lock_, nullptr)->unlock();
            }
        }

        /// True while this Guard holds its lock.
        [[nodiscard]] bool owns_lock() const noexcept { return lock_ != nullptr; }
        /// owns_lock().
        [[nodiscard]] explicit operator bool() const noexcept { return owns_lock(); }

    private:
        friend class Lock;
        explicit Guard(Lock& lock) noexcept : lock_(&lock) {}

        Lock* lock_ = nullptr;
    };

    /// The system call behind `co_await lock.acquire()`.
    class [[nodiscard]] Acquire {
    public:
        /// Acquires `lock`, which must outlive the wait.
        [[nodiscard]] explicit Acquire(Lock& lock) noexcept : lock_(&lock) {}
        /// Movable only as a co_await operand is (GCC moves it into the frame); never once awaited.
        Acquire(Acquire&& other) noexcept
            : lock_(other.lock_), granted_(std::exchange(other.granted_, false)) {}
        Acquire(const Acquire&) = delete;
        Acquire& operator=(const Acquire&) = delete;
        Acquire& operator=(Acquire&&) = delete;
        ~Acquire() {
            if (granted_) { // handed the lock, never took it: the task was killed
                lock_->handed_to_ = nullptr;
                lock_->unlock();
            }
        }

        /// Kernel side (see SystemCall): takes a free lock at once, else parks the caller in
        /// the Lock's queue. Throws std::logic_error if tasks of another Scheduler wait on it.
        bool handle(Scheduler& kernel, TaskId /*caller*/) {
            lock_->adopt(kernel);
            if (!lock_->locked_) { // unlocked means nobody waits: the lock is handed on, not freed
                lock_->locked_ = true;
                granted_ = true;
                return false;
            }
            kernel.wait_in(lock_->waiters_, this); // unlock() sets granted_, then wakes us
            return true;
        }
        /// The Guard that holds the lock for the caller. Throws std::logic_error if the Lock was
        /// destroyed after it was handed to the caller, before the caller ran.
        Guard result() {
            if (lock_ == nullptr) {
                throw std::logic_error("corio: the Lock this task waited on was destroyed");
            }
            if (granted_ && lock_->handed_to_ == this) {
                lock_->handed_to_ = nullptr;
            }
            granted_ = false;
            return Guard(*lock_);
        }

    private:
        friend class Lock;
        Lock* lock_; // null: the Lock was destroyed while handed to us
        bool granted_ = false; // the lock is ours, from the hand-off until result()
    };

    /// An unlocked Lock.
    Lock() = default;
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
    ~Lock() {
        if (handed_to_ != nullptr) { // its task has not run yet: it gets an error instead
            handed_to_->lock_ = nullptr;
            handed_to_->granted_ = false;
            locked_ = false;
        }
        assert(!locked_ && "corio: a Lock was destroyed while held"); // waiters: see the top
    }

    /// `co_await lock.acquire()` suspends until the calling task owns the lock (after the tasks
    /// that were waiting before), and gives the Guard that holds it.
    [[nodiscard]] Acquire acquire() noexcept { return Acquire(*this); }

    /// Takes the lock without waiting if it is free; empty if it is held (or promised to a waiter).
    [[nodiscard]] std::optional<Guard> try_acquire() noexcept {
        if (locked_) {
            return std::nullopt;
        }
        locked_ = true;
        return Guard(*this);
    }

    /// True while a task holds the lock (or it has been handed to a waiter that has not run yet).
    [[nodiscard]] bool locked() const noexcept { return locked_; }

private:
    void adopt(Scheduler& kernel) {
        if (kernel_ != &kernel) {
            if (!waiters_.empty()) {
                throw std::logic_error("corio: a Lock is used by tasks of two Schedulers");
            }
            kernel_ = &kernel;
        }
    }

    void unlock() noexcept {
        assert(locked_);
        if (waiters_.empty()) {
            locked_ = false;
            return;
        }
        handed_to_ = static_cast<Acquire*>(kernel_->wake_one(waiters_)); // stays locked
        handed_to_->granted_ = true;
    }

    WaitQueue waiters_{"lock"}; // cookie: their Acquire
    Scheduler* kernel_ = nullptr; // the Scheduler of the waiters
    Acquire* handed_to_ = nullptr; // woken as the owner, not run yet (see ~Lock)
    bool locked_ = false;
};

} // namespace corio
