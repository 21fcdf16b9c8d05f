// corio/kernel/received_stash.hpp - what a completed receive brought that nobody took yet.
//
// On io_uring a lent read is a receive the kernel completes by itself, into a provided buffer. If
// the task that asked stopped waiting meanwhile (a deadline, a kill), the bytes have already left
// the socket: they wait here, per fd, for the next read of that fd (recv_lent takes the buffer,
// recv copies what fits and leaves the rest), so that nothing is lost or reordered. An end of
// stream or an error waits here the same way. Forgetting the fd drops its entry and gives the
// buffer back. Usually empty: a look costs one comparison.
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
    [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
    [[nodiscard]] bool holds(int fd) const noexcept { return find(fd) != entries_.size(); }

    // A receive on `fd` completed with `result` (a count, 0 or -errno) into `data` (ring buffer
    // `id`, or none: -1). Throws std::bad_alloc (the buffer is then given back).
    void put(int fd, std::int32_t result, std::byte* data, std::int32_t id, LentBuffers& buffers) {
        try {
            entries_.push_back(Entry{fd, result, id, data});
        } catch (...) {
            if (id >= 0) {
                buffers.give_back(data, id);
            }
            throw;
        }
    }

    // The whole entry of `fd` as a loan; false if there is none.
    bool take(int fd, LentBytes& loan, std::int32_t& result, LentBuffers& buffers) noexcept {
        const std::size_t index = find(fd);
        if (index == entries_.size()) {
            return false;
        }
        const Entry entry = entries_[index];
        erase(index);
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

    // Up to `size` bytes of `fd`'s entry copied into `out`; false if there is none.
    bool copy(int fd, std::byte* out, std::size_t size, std::int32_t& result, LentBuffers& buffers) noexcept {
        const std::size_t index = find(fd);
        if (index == entries_.size()) {
            return false;
        }
        Entry& entry = entries_[index];
        if (entry.result <= 0 || size == 0) {
            result = size == 0 && entry.result > 0 ? 0 : entry.result;
            if (entry.result <= 0) {
                erase(index);
            }
            return true;
        }
        const std::size_t count = std::min(size, static_cast<std::size_t>(entry.result));
        std::memcpy(out, entry.data, count);
        result = static_cast<std::int32_t>(count);
        entry.data += count;
        entry.result -= static_cast<std::int32_t>(count);
        if (entry.result == 0) {
            buffers.give_back(entry.data - count, entry.id); // recycling goes by id
            erase(index);
        }
        return true;
    }

    // Drops `fd`'s entry, giving its buffer back.
    void drop(int fd, LentBuffers& buffers) noexcept {
        const std::size_t index = find(fd);
        if (index != entries_.size()) {
            if (entries_[index].id >= 0) {
                buffers.give_back(entries_[index].data, entries_[index].id);
            }
            erase(index);
        }
    }

private:
    struct Entry {
        int fd;
        std::int32_t result; // bytes left (from data on), or 0 / -errno
        std::int32_t id;     // the ring buffer holding them, or -1
        std::byte* data;
    };

    [[nodiscard]] std::size_t find(int fd) const noexcept {
        std::size_t index = 0;
        while (index < entries_.size() && entries_[index].fd != fd) {
            ++index;
        }
        return index;
    }
    void erase(std::size_t index) noexcept { entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(index)); }

    std::vector<Entry> entries_;
};

} // namespace corio::detail
