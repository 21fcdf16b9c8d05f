// corio/detail/fd_table.hpp - a table indexed by fd whose entries never move.
//
// The kernel looks an fd up for every readiness event and every wait, so indexing must be cheap:
// fixed chunks of a power-of-two size make it a shift, a mask and two loads (std::deque needs a
// division and more). Entries never move, because tasks point into them (TaskList::owner).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace corio::detail {

template <class Entry>
class FdTable {
public:
    static constexpr std::size_t chunk_size = 256;

    /// How many entries exist (a multiple of chunk_size): fds below it may be indexed.
    [[nodiscard]] std::size_t size() const noexcept { return chunks_.size() * chunk_size; }

    Entry& operator[](std::size_t fd) noexcept { return chunks_[fd / chunk_size][fd % chunk_size]; }
    const Entry& operator[](std::size_t fd) const noexcept {
        return chunks_[fd / chunk_size][fd % chunk_size];
    }

    /// The fd whose entry holds the byte at `inside` (a member of an entry), or -1: a search of
    /// the chunks, for introspection.
    [[nodiscard]] long index_of(const void* inside) const noexcept {
        const auto address = reinterpret_cast<std::uintptr_t>(inside);
        for (std::size_t chunk = 0; chunk < chunks_.size(); ++chunk) {
            const auto first = reinterpret_cast<std::uintptr_t>(chunks_[chunk].get());
            if (address >= first && address < first + chunk_size * sizeof(Entry)) {
                return static_cast<long>(chunk * chunk_size + (address - first) / sizeof(Entry));
            }
        }
        return -1;
    }

    /// Makes entry `fd` exist (default-constructed, as all new ones are).
    void make_room_for(std::size_t fd) {
        while (fd >= size()) {
            chunks_.push_back(std::make_unique<Entry[]>(chunk_size));
        }
    }

private:
    std::vector<std::unique_ptr<Entry[]>> chunks_;
};

} // namespace corio::detail
