// corio/kernel/received_stash.hpp - what a completed receive brought that nobody took yet.
//
// On io_uring a lent read is a receive the kernel completes by itself, into a provided buffer. If
// the task that asked stopped waiting meanwhile (a deadline, a kill), the bytes have already left
// the socket: they wait here, per fd, for the next read of that fd (recv_lent takes the buffer,
// recv copies what fits and leaves the rest), so that nothing is lost or reordered. An end of
// stream or an error waits here the same way. Forgetting the fd drops its entries and gives the
// buffers back.
//
// A receive that stays armed (multishot) brings a completion for each piece that arrives, so an
// fd may have several entries: they queue per fd, oldest first, and every operation is O(1) (a
// thousand sockets made readable by one wait put a thousand entries here, each taken by its
// reader). Entries live in one pool with a free list; each fd has a head, a tail and a count.
#pragma once

#include "corio/kernel/lent_buffers.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace corio::detail {

class ReceivedStash {
public:
    [[nodiscard]] bool empty() const noexcept { return stashed_ == 0; }
    [[nodiscard]] bool holds(int fd) const noexcept { return count(fd) != 0; }
    // How many completions wait for `fd`'s reads.
    [[nodiscard]] std::uint32_t count(int fd) const noexcept {
        const std::size_t index = static_cast<std::size_t>(fd);
        return fd >= 0 && index < queues_.size() ? queues_[index].count : 0;
    }

    // A receive on `fd` completed with `result` (a count, 0 or -errno) into `data` (ring buffer
    // `id`, or none: -1); it goes behind the fd's earlier ones. Throws std::bad_alloc (the buffer
    // is then given back).
    void put(int fd, std::int32_t result, std::byte* data, std::int32_t id, LentBuffers& buffers) {
        std::uint32_t slot = 0;
        try {
            if (static_cast<std::size_t>(fd) >= queues_.size()) {
                queues_.resize(static_cast<std::size_t>(fd) + 1);
            }
            slot = allocate();
        } catch (...) {
            if (id >= 0) {
                buffers.give_back(data, id);
            }
            throw;
        }
        pool_[slot] = Entry{result, id, data, none};
        Queue& queue = queues_[static_cast<std::size_t>(fd)];
        (queue.count == 0 ? queue.head : pool_[queue.tail].next) = slot;
        queue.tail = slot;
        ++queue.count;
        ++stashed_;
    }

    // The oldest entry of `fd` as a loan; false if there is none.
    bool take(int fd, LentBytes& loan, std::int32_t& result, LentBuffers& buffers) noexcept {
        if (!holds(fd)) {
            return false;
        }
        const Entry entry = pop(fd);
        result = entry.result;
        if (entry.id >= 0) {
            if (entry.result > 0) {
                loan = buffers.lend(entry.data, static_cast<std::size_t>(entry.result), entry.id);
            } else {
                buffers.give_back(entry.data, entry.id);
            }
        }
        return true;
    }

    // Up to `size` bytes of `fd`'s oldest entry copied into `out`; false if there is none.
    bool copy(int fd, std::byte* out, std::size_t size, std::int32_t& result, LentBuffers& buffers) noexcept {
        if (!holds(fd)) {
            return false;
        }
        Entry& entry = pool_[queues_[static_cast<std::size_t>(fd)].head];
        if (entry.result <= 0 || size == 0) {
            result = size == 0 && entry.result > 0 ? 0 : entry.result;
            if (entry.result <= 0) {
                const Entry ended = pop(fd);
                if (ended.id >= 0) {
                    buffers.give_back(ended.data, ended.id);
                }
            }
            return true;
        }
        const std::size_t count = std::min(size, static_cast<std::size_t>(entry.result));
        std::memcpy(out, entry.data, count);
        result = static_cast<std::int32_t>(count);
        entry.data += count;
        entry.result -= static_cast<std::int32_t>(count);
        if (entry.result == 0) {
            const Entry used = pop(fd);
            buffers.give_back(used.data - count, used.id); // recycling goes by id
        }
        return true;
    }

    // Drops `fd`'s entries, giving their buffers back.
    void drop(int fd, LentBuffers& buffers) noexcept {
        while (holds(fd)) {
            const Entry entry = pop(fd);
            if (entry.id >= 0) {
                buffers.give_back(entry.data, entry.id);
            }
        }
    }

private:
    static constexpr std::uint32_t none = 0xffffffffU;

    struct Entry {
        std::int32_t result; // bytes left (from data on), or 0 / -errno
        std::int32_t id;     // the ring buffer holding them, or -1
        std::byte* data;
        std::uint32_t next;  // the fd's next entry, or the next free one
    };
    struct Queue {
        std::uint32_t head = none;
        std::uint32_t tail = none;
        std::uint32_t count = 0;
    };

    std::uint32_t allocate() {
        if (free_ != none) {
            const std::uint32_t slot = free_;
            free_ = pool_[slot].next;
            return slot;
        }
        pool_.push_back(Entry{0, -1, nullptr, none});
        return static_cast<std::uint32_t>(pool_.size() - 1);
    }
    // Takes `fd`'s oldest entry off its queue (there is one) and frees its slot.
    Entry pop(int fd) noexcept {
        Queue& queue = queues_[static_cast<std::size_t>(fd)];
        const std::uint32_t slot = queue.head;
        const Entry entry = pool_[slot];
        queue.head = entry.next;
        if (--queue.count == 0) {
            queue.tail = none;
        }
        --stashed_;
        pool_[slot].next = free_;
        free_ = slot;
        return entry;
    }

    std::vector<Entry> pool_;
    std::vector<Queue> queues_; // indexed by fd
    std::uint32_t free_ = none;
    std::size_t stashed_ = 0;
};

} // namespace corio::detail
