// corio/detail/ring_buffer.hpp - a growable circular FIFO that allocates only when it grows.
//
// Queue<T> keeps its items here rather than in a std::deque for two reasons: a deque allocates and
// frees a block every few hundred items as the queue slides along, so a busy queue allocates in
// steady state, while a ring grows to its peak once and then never allocates again; and a ring
// can promise room ahead of time (reserve), which lets Queue give a value back from a destructor
// (a killed getter's) without any allocation that could fail there.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

namespace corio::detail {

template <class T>
class RingBuffer {
    static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                  "corio: RingBuffer needs a type that moves and is destroyed without throwing");

public:
    RingBuffer() noexcept = default;
    RingBuffer(const RingBuffer&) = delete;
    RingBuffer& operator=(const RingBuffer&) = delete;
    ~RingBuffer() {
        clear();
        if (slots_ != nullptr) {
            std::allocator<T>().deallocate(slots_, capacity_);
        }
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

    /// Makes room for `wanted` items in all. Strong guarantee: on failure nothing changed.
    void reserve(std::size_t wanted) {
        if (wanted <= capacity_) {
            return;
        }
        const std::size_t grown = std::max({wanted, capacity_ * 2, std::size_t{4}});
        T* fresh = std::allocator<T>().allocate(grown);
        for (std::size_t i = 0; i < size_; ++i) { // moves cannot throw (see the static_assert)
            T* item = slot_at(i);
            std::construct_at(fresh + i, std::move(*item));
            std::destroy_at(item);
        }
        if (slots_ != nullptr) {
            std::allocator<T>().deallocate(slots_, capacity_);
        }
        slots_ = fresh;
        capacity_ = grown;
        head_ = 0;
    }

    /// Appends; the caller made room first (size() < capacity()).
    void push_back(T&& item) noexcept {
        std::construct_at(slot_at(size_), std::move(item));
        ++size_;
    }

    /// Prepends; the caller made room first (size() < capacity()).
    void push_front(T&& item) noexcept {
        const std::size_t slot = head_ == 0 ? capacity_ - 1 : head_ - 1;
        std::construct_at(slots_ + slot, std::move(item));
        head_ = slot;
        ++size_;
    }

    /// Removes the first item and gives it. Precondition: !empty().
    T pop_front() noexcept {
        T& first = slots_[head_];
        T item(std::move(first));
        std::destroy_at(&first);
        head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
        --size_;
        return item;
    }

    void clear() noexcept {
        while (size_ > 0) {
            std::destroy_at(slot_at(size_ - 1));
            --size_;
        }
        head_ = 0;
    }

private:
    // Where the i-th item from the front lives (for i == size(), where the next one goes).
    T* slot_at(std::size_t i) const noexcept {
        const std::size_t slot = head_ + i;
        return slots_ + (slot < capacity_ ? slot : slot - capacity_);
    }

    T* slots_ = nullptr;
    std::size_t capacity_ = 0;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

} // namespace corio::detail
