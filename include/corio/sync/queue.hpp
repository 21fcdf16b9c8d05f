// corio/sync/queue.hpp - Queue<T>: a FIFO between tasks, bounded for backpressure (curio's Queue).
//
//     corio::Queue<Job> jobs(100);          // at most 100 items waiting; 0 = unbounded
//     co_await jobs.put(std::move(job));    // producer: suspends while the queue is full
//     Job next = co_await jobs.get();       // consumer: suspends while it is empty
//
// Hand-off. Getters and putters each wait in a FIFO WaitQueue of the kernel, and a value never
// passes a waiting task by:
//
//     put(v), a getter waits ──▶ v goes straight into the oldest getter's system-call object
//                                 (the cookie of Scheduler::wait_in points at it) and that getter
//                                 is woken; the queue itself stays empty
//     get(), items waiting    ──▶ takes the front item; if that made room, the oldest putter's
//                                 value moves to the back of the queue and that putter is woken
//
// A getter that was handed a value and is killed before it runs gives it back from its Get's
// destructor: to the next waiting getter, or else to the front of the queue, where it was.
//
// Storage: a ring buffer (detail/ring_buffer.hpp) that grows to its peak and then never allocates
// again. It always keeps room for every value held by getters that have not run yet, so giving one
// back from a destructor (from a kill, or from the Scheduler's destruction) cannot fail. For the
// same reason T's move constructor and destructor must not throw: a move that failed half-way
// would lose the value.
//
// Rules (cancellation, max_size, lifetime): docs/guide.md#queue (and #synchronisation).
#pragma once

#include "corio/detail/ring_buffer.hpp"
#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"

#include <cassert>
#include <concepts>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace corio {

/// A FIFO queue between the tasks of one Scheduler: `co_await put(v)` waits while it is full,
/// `co_await get()` waits while it is empty. FIFO-fair for getters and for putters.
template <class T>
class Queue {
    static_assert(std::is_object_v<T> && !std::is_const_v<T>,
                  "corio: Queue<T> holds values: T must be a non-const object type");
    static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                  "corio: Queue<T> moves values at every hand-off: T's move constructor and "
                  "destructor must not throw");

public:
    using value_type = T; ///< The type of the items.

    /// The system call behind `co_await queue.put(value)`. It carries the value until the queue
    /// takes it.
    class [[nodiscard]] Put {
    public:
        /// Puts `value` into `queue`, which must outlive the wait.
        [[nodiscard]] Put(Queue& queue, T value) noexcept : queue_(&queue), value_(std::move(value)) {}

        /// Kernel side (see SystemCall): hands the value over at once if a getter waits or the
        /// queue has room, else parks the caller among the putters. Throws std::logic_error if
        /// tasks of another Scheduler wait on the queue.
        bool handle(Scheduler& kernel, TaskId /*caller*/) {
            queue_->adopt(kernel);
            if (queue_->takes_now()) {
                queue_->put_now(std::move(value_));
                return false;
            }
            kernel.wait_in(queue_->putters_, this); // a getter moves value_ in, then wakes us
            return true;
        }
        /// Nothing: the value is in the queue, or in a getter's hands.
        void result() const noexcept {}

    private:
        friend class Queue;
        Queue* queue_;
        T value_;
    };

    /// The system call behind `co_await queue.get()`. A putter (or a killed getter) hands the value
    /// into it while its task waits; if the task dies before taking it, the destructor gives the
    /// value back to the queue.
    class [[nodiscard]] Get {
    public:
        /// Gets from `queue`, which must outlive the wait.
        [[nodiscard]] explicit Get(Queue& queue) noexcept : queue_(&queue) {}
        /// Movable only as a co_await operand is (GCC moves it into the frame); never once awaited.
        Get(Get&& other) noexcept : queue_(other.queue_), value_(std::move(other.value_)) {
            other.value_.reset();
        }
        Get(const Get&) = delete;
        Get& operator=(const Get&) = delete;
        Get& operator=(Get&&) = delete;
        ~Get() {
            if (value_) { // handed a value, never took it: the task was killed
                queue_->give_back(std::move(*value_));
            }
        }

        /// Kernel side (see SystemCall): takes the front item at once if there is one, else parks
        /// the caller among the getters. Throws std::logic_error if tasks of another Scheduler
        /// wait on the queue.
        bool handle(Scheduler& kernel, TaskId /*caller*/) {
            queue_->adopt(kernel);
            if (queue_->items_.empty()) {
                kernel.wait_in(queue_->getters_, this);
                return true;
            }
            queue_->reserve_one_more(); // for a putter's value, if this get lets one in
            value_.emplace(queue_->take_front());
            ++queue_->held_;
            return false;
        }
        /// The item the caller got.
        T result() noexcept {
            T value(std::move(*value_));
            value_.reset();
            --queue_->held_;
            return value;
        }

    private:
        friend class Queue;
        Queue* queue_;
        std::optional<T> value_; // engaged from the hand-off until result()
    };

    /// A queue that holds at most `max_size` items (0: no limit).
    explicit Queue(std::size_t max_size = 0) noexcept : max_size_(max_size) {}
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;
    ~Queue() {
        // Waiters are woken with an error (see WaitQueue); a held value cannot be.
        assert(held_ == 0 && "corio: a Queue was destroyed while a getter held its value");
    }

    /// `co_await queue.put(value)` adds `value` at the back: hands it straight to the
    /// longest-waiting getter if there is one, else suspends while the queue is full (after the
    /// putters that were waiting before). A put that need not wait continues at once, without
    /// yielding. Bounded by timeout_after/ignore_after, a put that times out has not put its value.
    [[nodiscard]] Put put(T value) noexcept { return Put(*this, std::move(value)); }

    /// `co_await queue.get()` removes and gives the front item, suspending while the queue is
    /// empty (after the getters that were waiting before). A get that finds an item continues at
    /// once, without yielding.
    [[nodiscard]] Get get() noexcept { return Get(*this); }

    /// Adds `value` without waiting, if the queue has room (or a getter waits); returns false, and
    /// leaves `value` untouched, if it is full. Throws only if memory runs out (nothing changed).
    bool try_put(T&& value) {
        if (!takes_now()) {
            return false;
        }
        put_now(std::move(value));
        return true;
    }

    /// try_put with a copy of `value`.
    bool try_put(const T& value)
        requires std::copy_constructible<T>
    {
        if (!takes_now()) {
            return false;
        }
        T copy(value);
        put_now(std::move(copy));
        return true;
    }

    /// Removes and gives the front item without waiting; empty if the queue is empty.
    [[nodiscard]] std::optional<T> try_get() noexcept {
        if (items_.empty()) {
            return std::nullopt;
        }
        return take_front();
    }

    /// The items in the queue (not counting values already handed to getters that have not run).
    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
    /// True when size() is 0.
    [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
    /// True when a put would have to wait (never for an unbounded queue).
    [[nodiscard]] bool full() const noexcept {
        return max_size_ != 0 && items_.size() >= max_size_;
    }
    /// The bound given to the constructor (0: unbounded).
    [[nodiscard]] std::size_t max_size() const noexcept { return max_size_; }

private:
    void adopt(Scheduler& kernel) {
        if (kernel_ != &kernel) {
            if (!getters_.empty() || !putters_.empty() || held_ != 0) {
                throw std::logic_error("corio: a Queue is used by tasks of two Schedulers");
            }
            kernel_ = &kernel;
        }
    }

    // Getters wait only while the queue is empty, putters only while it is full: a put goes
    // through if a getter waits or there is room.
    [[nodiscard]] bool takes_now() const noexcept { return !getters_.empty() || !full(); }

    // Room in the ring for every item plus every value held by a getter, plus one: whatever comes
    // next can be given back later without allocating. May throw; then nothing changed.
    void reserve_one_more() { items_.reserve(items_.size() + held_ + 1); }

    // Precondition: takes_now().
    void put_now(T&& value) {
        reserve_one_more();
        if (!getters_.empty()) {
            hand_to_getter(std::move(value));
        } else {
            items_.push_back(std::move(value));
        }
    }

    void hand_to_getter(T&& value) noexcept {
        auto& getter = *static_cast<Get*>(kernel_->wake_one(getters_));
        getter.value_.emplace(std::move(value));
        ++held_;
    }

    // Precondition: !items_.empty(). Lets the longest-waiting putter in if that made room (the
    // ring has room for it: an item just left).
    T take_front() noexcept {
        T value = items_.pop_front();
        if (!putters_.empty() && !full()) {
            auto& putter = *static_cast<Put*>(kernel_->wake_one(putters_));
            items_.push_back(std::move(putter.value_));
        }
        return value;
    }

    // A getter's value comes back (see the top of this file). The ring has room for it.
    void give_back(T&& value) noexcept {
        --held_;
        if (!getters_.empty()) {
            hand_to_getter(std::move(value));
        } else {
            items_.push_front(std::move(value));
        }
    }

    detail::RingBuffer<T> items_;
    WaitQueue getters_{"queue get"}; // cookie: their Get
    WaitQueue putters_{"queue put"}; // cookie: their Put
    Scheduler* kernel_ = nullptr; // the Scheduler of the waiters
    std::size_t max_size_;
    std::size_t held_ = 0; // values handed to getters that have not taken them yet
};

} // namespace corio
