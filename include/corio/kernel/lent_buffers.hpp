// corio/kernel/lent_buffers.hpp - buffers the Scheduler owns and lends for one read at a time.
//
// A server that reads into a buffer of its own per connection pays for that buffer on every idle
// connection; one that reads into a small buffer pays a system call per small piece. A lent read
// (`co_await socket.recv_lent()`) reads as much as has arrived, up to `buffer_size`, into a
// buffer the Scheduler lends until the LentBytes it gives is destroyed: the buffers in use are
// those of the reads being handled, not those of the connections that are open.
//
// Where they come from: on epoll and poll, a free list of heap buffers (in steady state one
// buffer goes round, and at most `kept_free` wait unused); on io_uring, the ring's provided
// buffers (backend/uring_selector.hpp), which the kernel fills itself, with the heap ones as the
// fallback when the ring has none left.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace corio {

namespace detail {
class LentBuffers;
}

/// Bytes read into a buffer the Scheduler lent (see AsyncSocket::recv_lent). Move-only; gives
/// the buffer back when destroyed. It must not outlive its Scheduler. Empty: end of stream.
class LentBytes {
public:
    LentBytes() noexcept = default;
    LentBytes(LentBytes&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)), data_(other.data_),
          size_(std::exchange(other.size_, 0)), id_(other.id_) {}
    LentBytes& operator=(LentBytes&& other) noexcept {
        if (this != &other) {
            give_back();
            owner_ = std::exchange(other.owner_, nullptr);
            data_ = other.data_;
            size_ = std::exchange(other.size_, 0);
            id_ = other.id_;
        }
        return *this;
    }
    LentBytes(const LentBytes&) = delete;
    LentBytes& operator=(const LentBytes&) = delete;
    ~LentBytes() { give_back(); }

    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
    [[nodiscard]] const std::byte* data() const noexcept { return data_; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

    /// Gives the buffer back now (idempotent); the bytes are gone.
    void give_back() noexcept;

private:
    friend class detail::LentBuffers;
    LentBytes(detail::LentBuffers& owner, std::byte* data, std::size_t size, std::int32_t id) noexcept
        : owner_(&owner), data_(data), size_(size), id_(id) {}

    detail::LentBuffers* owner_ = nullptr; // null: holds no buffer
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::int32_t id_ = -1; // a ring buffer's id, or -1 for a heap buffer
};

namespace detail {

class LentBuffers {
public:
    /// The most one lent read takes.
    static constexpr std::size_t buffer_size = 64 * 1024;
    /// Heap buffers kept for reuse; more are freed when given back.
    static constexpr std::size_t kept_free = 4;

    // How a ring buffer goes back to the ring it came from.
    using Recycle = void (*)(void* ring, std::int32_t id) noexcept;

    LentBuffers() = default;
    LentBuffers(const LentBuffers&) = delete;
    LentBuffers& operator=(const LentBuffers&) = delete;

    // A heap buffer of buffer_size bytes, to read into; give it back with give_back_heap() or
    // lend() it. Throws std::bad_alloc.
    std::byte* take_heap() {
        std::byte* buffer = nullptr;
        if (free_.empty()) {
            buffer = new std::byte[buffer_size];
        } else {
            buffer = free_.back().release();
            free_.pop_back();
        }
        ++out_;
        return buffer;
    }
    void give_back_heap(std::byte* buffer) noexcept {
        --out_;
        if (free_.size() < kept_free) {
            try {
                free_.emplace_back(buffer);
                return;
            } catch (...) { // no room to keep it: free it
            }
        }
        delete[] buffer;
    }

    // Lends `size` bytes read into `data`: a heap buffer (id -1) or the ring's buffer `id`.
    LentBytes lend(std::byte* data, std::size_t size, std::int32_t id) noexcept {
        return LentBytes(*this, data, size, id);
    }

    // Where ring buffers go back (set by the kernel when the io_uring backend lends its own).
    void set_ring(void* ring, Recycle recycle) noexcept {
        ring_ = ring;
        recycle_ = recycle;
    }
    // A ring buffer the backend filled is now held here (by the stash, then a LentBytes).
    void took_ring_buffer() noexcept { ++out_; }
    // Buffers not back yet: held by LentBytes, or by bytes that wait for a read.
    [[nodiscard]] std::size_t out() const noexcept { return out_; }

    void give_back(std::byte* data, std::int32_t id) noexcept {
        if (id >= 0) {
            --out_;
            recycle_(ring_, id);
        } else {
            give_back_heap(data);
        }
    }

private:
    std::vector<std::unique_ptr<std::byte[]>> free_;
    std::size_t out_ = 0;
    void* ring_ = nullptr;
    Recycle recycle_ = nullptr;
};

} // namespace detail

inline void LentBytes::give_back() noexcept {
    if (owner_ != nullptr) {
        std::exchange(owner_, nullptr)->give_back(data_, id_);
        size_ = 0;
    }
}

} // namespace corio
