// corio/detail/frame_pool.hpp - recycles coroutine frames, so spawning a task or awaiting a child
// does not go to the heap once the program is warm.
//
// One pool per thread (frames are created and destroyed by the thread that runs their Scheduler),
// with a free list per size class of 64 bytes up to 1 KiB; larger frames go to operator new. Each
// list keeps at most `max_cached` frames, so a burst of tasks leaves a bounded amount behind.
// Under AddressSanitizer, or with CORIO_NO_FRAME_POOL defined, frames go straight to the heap so
// that a use after free of a frame is still caught.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#define CORIO_DETAIL_NO_FRAME_POOL 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORIO_DETAIL_NO_FRAME_POOL 1
#endif
#endif
#if defined(CORIO_NO_FRAME_POOL)
#define CORIO_DETAIL_NO_FRAME_POOL 1
#endif

namespace corio::detail {

class FramePool {
public:
    static constexpr std::size_t granule = 64;
    static constexpr std::size_t classes = 16; // up to 1 KiB
    static constexpr std::uint32_t max_cached = 256;

    FramePool() = default;
    FramePool(const FramePool&) = delete;
    FramePool& operator=(const FramePool&) = delete;
    ~FramePool() {
        for (Block*& head : free_) {
            while (head != nullptr) {
                ::operator delete(std::exchange(head, head->next));
            }
        }
    }

    void* allocate(std::size_t size) {
        const std::size_t index = class_of(size);
        if (index < classes) {
            if (Block* block = free_[index]) {
                free_[index] = block->next;
                --cached_[index];
                return block;
            }
            return ::operator new((index + 1) * granule);
        }
        return ::operator new(size);
    }

    void deallocate(void* frame, std::size_t size) noexcept {
        const std::size_t index = class_of(size);
        if (index < classes && cached_[index] < max_cached) {
            free_[index] = new (frame) Block{free_[index]};
            ++cached_[index];
            return;
        }
        ::operator delete(frame);
    }

private:
    struct Block {
        Block* next;
    };
    static std::size_t class_of(std::size_t size) noexcept { return (size - 1) / granule; }

    std::array<Block*, classes> free_{};
    std::array<std::uint32_t, classes> cached_{};
};

#if !defined(CORIO_DETAIL_NO_FRAME_POOL)
inline FramePool& frame_pool_of_this_thread() {
    thread_local FramePool pool;
    return pool;
}
#endif

inline void* allocate_frame(std::size_t size) {
#if defined(CORIO_DETAIL_NO_FRAME_POOL)
    return ::operator new(size);
#else
    return frame_pool_of_this_thread().allocate(size);
#endif
}

inline void deallocate_frame(void* frame, [[maybe_unused]] std::size_t size) noexcept {
#if defined(CORIO_DETAIL_NO_FRAME_POOL)
    ::operator delete(frame);
#else
    frame_pool_of_this_thread().deallocate(frame, size);
#endif
}

} // namespace corio::detail
