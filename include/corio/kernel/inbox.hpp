// corio/kernel/inbox.hpp - the Scheduler's one thread-safe door: a FIFO that any thread fills and
// the loop's thread empties.
//
// Items are intrusive (a posted callable, a finished thread-pool job), so delivering one takes a
// lock and no allocation. The first item after the loop last emptied the inbox notifies its
// WakeChannel; the ones after it only queue: a hundred jobs finishing at once cost the loop one
// wake-up and one batch. `pending_` mirrors "something is queued or a wake-up was asked for" so
// that the loop can look without a lock or a system call between two passes.
#pragma once

#include "corio/backend/wake_channel.hpp"

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>

namespace corio::detail {

class Kernel;

// Something delivered to the loop. Exactly one of run() and discard() is called, on the loop's
// thread; either frees the item.
class InboxItem {
public:
    InboxItem() = default;
    InboxItem(const InboxItem&) = delete;
    InboxItem& operator=(const InboxItem&) = delete;

    /// Does what the item was delivered for. May throw (the Scheduler reports it).
    virtual void run(Kernel& kernel) = 0;
    /// The Scheduler is being destroyed: free the item without running it.
    virtual void discard() noexcept = 0;

protected:
    ~InboxItem() = default;

private:
    friend class Inbox;
    InboxItem* next_in_inbox_ = nullptr;
};

class InboxHold;

class Inbox {
public:
    // What take_all() gives: the items in arrival order. Whatever is left in it when it goes
    // away is discarded (only if running an item unwound past the loop that empties it).
    class Batch {
    public:
        explicit Batch(InboxItem* head) noexcept : head_(head) {}
        Batch(const Batch&) = delete;
        Batch& operator=(const Batch&) = delete;
        ~Batch() {
            while (InboxItem* item = pop()) {
                item->discard();
            }
        }
        InboxItem* pop() noexcept {
            InboxItem* item = head_;
            if (item != nullptr) {
                head_ = item->next_in_inbox_;
            }
            return item;
        }

    private:
        InboxItem* head_;
    };

    Inbox() = default;
    Inbox(const Inbox&) = delete;
    Inbox& operator=(const Inbox&) = delete;
    ~Inbox() { discard_all(); }

    /// Loop thread: creates the wake channel (once), signalled if items already wait.
    void open() {
        std::lock_guard lock(mutex_);
        if (!channel_.is_open()) {
            channel_.open();
            if (pending_.load(std::memory_order_relaxed)) {
                channel_.notify();
            }
        }
    }
    /// The fd the loop watches (-1 before open()).
    [[nodiscard]] int fd() const noexcept { return channel_.fd(); }

    /// Any thread: queues `item` and wakes the loop if it is the first since the loop looked.
    void push(InboxItem& item) noexcept {
        std::lock_guard lock(mutex_);
        item.next_in_inbox_ = nullptr;
        (tail_ != nullptr ? tail_->next_in_inbox_ : head_) = &item;
        tail_ = &item;
        signal();
    }
    /// Any thread: wakes the loop with nothing to deliver (so that it looks at its state again).
    void poke() noexcept {
        std::lock_guard lock(mutex_);
        signal();
    }

    /// Loop thread, without a lock: whether take_all() has something to do (a hint: an item
    /// delivered right after it said false wakes the loop through the channel).
    [[nodiscard]] bool has_work() const noexcept { return pending_.load(std::memory_order_acquire); }

    /// Loop thread: everything delivered so far; the channel is made unreadable again.
    [[nodiscard]] Batch take_all() noexcept {
        std::lock_guard lock(mutex_);
        InboxItem* head = head_;
        head_ = tail_ = nullptr;
        pending_.store(false, std::memory_order_relaxed);
        if (channel_.is_open()) {
            channel_.clear(); // under the lock: a push after this notifies afresh
        }
        return Batch(head);
    }

    /// Any thread: keeps the loop from returning for lack of work while the InboxHold lives.
    [[nodiscard]] InboxHold hold() noexcept;
    /// Whether an InboxHold lives.
    [[nodiscard]] bool held() const noexcept { return holds_.load(std::memory_order_acquire) > 0; }

    /// Frees every queued item without running it.
    void discard_all() noexcept {
        Batch batch = take_all();
        static_cast<void>(batch); // its destructor discards
    }

private:
    friend class InboxHold;

    void signal() noexcept {
        if (!pending_.load(std::memory_order_relaxed)) {
            pending_.store(true, std::memory_order_release);
            if (channel_.is_open()) {
                channel_.notify();
            }
        }
    }

    std::mutex mutex_;
    WakeChannel channel_;
    InboxItem* head_ = nullptr;
    InboxItem* tail_ = nullptr;
    std::atomic<bool> pending_{false};
    std::atomic<std::size_t> holds_{0};
};

// What Scheduler::post() queues: a callable, run once on the loop's thread.
template <class Callable>
class Posted final : public InboxItem {
public:
    template <class Given>
    explicit Posted(Given&& callable) : callable_(std::forward<Given>(callable)) {}

    void run(Kernel& /*kernel*/) override {
        const std::unique_ptr<Posted> self(this); // freed even if it throws
        callable_();
    }
    void discard() noexcept override { delete this; }

private:
    Callable callable_;
};

// Keeps the loop from returning for lack of work while it exists (Scheduler::hold()). Move-only;
// must not outlive its Inbox. Thread-safe.
class InboxHold {
public:
    InboxHold() noexcept = default;
    InboxHold(InboxHold&& other) noexcept : inbox_(std::exchange(other.inbox_, nullptr)) {}
    InboxHold& operator=(InboxHold&& other) noexcept {
        if (this != &other) {
            release();
            inbox_ = std::exchange(other.inbox_, nullptr);
        }
        return *this;
    }
    InboxHold(const InboxHold&) = delete;
    InboxHold& operator=(const InboxHold&) = delete;
    ~InboxHold() { release(); }

    /// Ends the hold: run() may return again when nothing is left to do (and is woken to notice).
    /// Idempotent.
    void release() noexcept {
        if (Inbox* inbox = std::exchange(inbox_, nullptr)) {
            inbox->holds_.fetch_sub(1, std::memory_order_release);
            inbox->poke();
        }
    }

private:
    friend class Inbox;
    explicit InboxHold(Inbox& inbox) noexcept : inbox_(&inbox) {}

    Inbox* inbox_ = nullptr;
};

inline InboxHold Inbox::hold() noexcept {
    holds_.fetch_add(1, std::memory_order_relaxed);
    return InboxHold(*this);
}

} // namespace corio::detail
