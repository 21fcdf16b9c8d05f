// corio/backend/uring_ring.hpp - UringRing: one io_uring instance, spoken to with raw system calls.
//
// Why raw system calls and not liburing: corio is header-only, and liburing is a shared library
// that would become a link dependency of every program that includes corio (and a package every
// user must install) for the few hundred lines used here: setting the ring up, the two shared
// rings, one io_uring_enter per loop pass, and a provided-buffer ring. <linux/io_uring.h> comes
// with the kernel headers that every Linux toolchain has.
//
// The ring is set up with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (Linux 6.1):
// completions are processed only when the loop asks for them, on its own thread, in one batch per
// io_uring_enter. Kernels that refuse those flags (EINVAL) get a ring without them. Either way
// the ring belongs to the thread that first submits to it: a Scheduler on io_uring runs on one
// thread.
#pragma once

#if defined(__linux__)

#include "corio/detail/posix.hpp"

#include <linux/io_uring.h>
#include <linux/time_types.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

namespace corio::detail {

class UringRing {
public:
    // Sets up a ring of `entries` submissions (a power of two) and four times as many completions.
    // Throws std::system_error if the kernel refuses io_uring (ENOSYS, EPERM under seccomp...) or
    // lacks what corio needs (EOPNOTSUPP: Linux < 5.11).
    explicit UringRing(unsigned entries) {
        io_uring_params params{};
        fd_ = setup(entries, params);
        constexpr unsigned needed = IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG;
        if ((params.features & needed) != needed) {
            close_fd(fd_);
            throw_errno(EOPNOTSUPP, "io_uring lacks SINGLE_MMAP, NODROP or EXT_ARG (Linux < 5.11)");
        }
        deferred_ = (params.flags & IORING_SETUP_DEFER_TASKRUN) != 0;
        ring_bytes_ = std::max(params.sq_off.array + params.sq_entries * sizeof(unsigned),
                               params.cq_off.cqes + params.cq_entries * sizeof(io_uring_cqe));
        ring_ = map(ring_bytes_, IORING_OFF_SQ_RING);
        sqes_bytes_ = params.sq_entries * sizeof(io_uring_sqe);
        try {
            sqes_ = static_cast<io_uring_sqe*>(map(sqes_bytes_, IORING_OFF_SQES));
        } catch (...) {
            ::munmap(ring_, ring_bytes_);
            close_fd(fd_);
            throw;
        }
        auto* base = static_cast<char*>(ring_);
        sq_tail_ = reinterpret_cast<unsigned*>(base + params.sq_off.tail);
        sq_mask_ = *reinterpret_cast<unsigned*>(base + params.sq_off.ring_mask);
        sq_entries_ = params.sq_entries;
        auto* array = reinterpret_cast<unsigned*>(base + params.sq_off.array);
        for (unsigned i = 0; i < params.sq_entries; ++i) {
            array[i] = i; // slot i of the ring is always SQE i
        }
        sq_head_ = reinterpret_cast<unsigned*>(base + params.sq_off.head);
        cq_head_ = reinterpret_cast<unsigned*>(base + params.cq_off.head);
        cq_tail_ = reinterpret_cast<unsigned*>(base + params.cq_off.tail);
        cq_mask_ = *reinterpret_cast<unsigned*>(base + params.cq_off.ring_mask);
        cqes_ = reinterpret_cast<io_uring_cqe*>(base + params.cq_off.cqes);
        tail_ = *sq_tail_;
    }
    UringRing(const UringRing&) = delete;
    UringRing& operator=(const UringRing&) = delete;
    ~UringRing() {
        ::munmap(sqes_, sqes_bytes_);
        ::munmap(ring_, ring_bytes_);
        close_fd(fd_); // the kernel cancels what is still in flight
    }

    [[nodiscard]] int fd() const noexcept { return fd_; }
    // True when completions run only at io_uring_enter (DEFER_TASKRUN was accepted).
    [[nodiscard]] bool deferred_task_work() const noexcept { return deferred_; }
    // Submissions written and not yet handed to the kernel.
    [[nodiscard]] unsigned queued() const noexcept { return tail_ - submitted_; }

    // A zeroed submission entry to fill; handed to the kernel by the next enter(). When the ring
    // is full, what is queued is submitted first (one system call).
    io_uring_sqe& next_sqe() {
        if (tail_ - std::atomic_ref<unsigned>(*sq_head_).load(std::memory_order_acquire) >= sq_entries_) {
            submit(0, 0);
        }
        io_uring_sqe& sqe = sqes_[tail_ & sq_mask_];
        std::memset(&sqe, 0, sizeof sqe);
        ++tail_;
        return sqe;
    }

    // Submits what is queued, then waits up to `timeout_ms` (-1: no limit, 0: not at all) until a
    // completion is there. Completions already there end the wait at once.
    void enter(int timeout_ms) {
        if (timeout_ms == 0 || completions_ready()) {
            submit(0, 0);
            return;
        }
        if (timeout_ms < 0) {
            submit(1, 0);
            return;
        }
        submit(1, timeout_ms);
    }

    // Hands every completion there to on_completion(user_data, res, flags), oldest first; gives
    // their number. on_completion must not throw; it may queue submissions.
    template <class OnCompletion>
    std::size_t drain(OnCompletion&& on_completion) {
        std::size_t count = 0;
        unsigned head = *cq_head_;
        for (;;) {
            const unsigned tail = std::atomic_ref<unsigned>(*cq_tail_).load(std::memory_order_acquire);
            if (head == tail) {
                break;
            }
            while (head != tail) {
                const io_uring_cqe& cqe = cqes_[head & cq_mask_];
                const std::uint64_t user_data = cqe.user_data;
                const std::int32_t res = cqe.res;
                const std::uint32_t flags = cqe.flags;
                ++head;
                // Give the slot back before the handler runs: it may queue work that completes.
                std::atomic_ref<unsigned>(*cq_head_).store(head, std::memory_order_release);
                on_completion(user_data, res, flags);
                ++count;
            }
        }
        return count;
    }

    // The result of the completion with `user_data` among those not drained yet, if there is one
    // (it stays there, to be drained as usual).
    [[nodiscard]] std::optional<std::int32_t> peek_completion(std::uint64_t user_data) const noexcept {
        const unsigned tail = std::atomic_ref<unsigned>(*cq_tail_).load(std::memory_order_acquire);
        for (unsigned head = *cq_head_; head != tail; ++head) {
            const io_uring_cqe& cqe = cqes_[head & cq_mask_];
            if (cqe.user_data == user_data) {
                return cqe.res;
            }
        }
        return std::nullopt;
    }

    // io_uring_register(2).
    int register_op(unsigned opcode, void* arg, unsigned count) noexcept {
        return static_cast<int>(::syscall(__NR_io_uring_register, fd_, opcode, arg, count));
    }

private:
    static int setup(unsigned entries, io_uring_params& params) {
        // Most wanted first; each EINVAL drops what an older kernel may not know.
        const unsigned attempts[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
                                     IORING_SETUP_CQSIZE, 0};
        int error = 0;
        for (const unsigned flags : attempts) {
            params = io_uring_params{};
            params.flags = flags;
            params.cq_entries = (flags & IORING_SETUP_CQSIZE) != 0 ? entries * 4 : 0;
            const long fd = ::syscall(__NR_io_uring_setup, entries, &params);
            if (fd >= 0) {
                return static_cast<int>(fd);
            }
            error = errno;
            if (error != EINVAL) {
                break;
            }
        }
        throw_errno(error, "io_uring_setup");
    }

    void* map(std::size_t bytes, off_t offset) {
        void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, offset);
        if (memory == MAP_FAILED) {
            const int error = errno;
            if (offset == IORING_OFF_SQ_RING) {
                close_fd(fd_);
            }
            throw_errno(error, "mmap of the io_uring rings");
        }
        return memory;
    }

    bool completions_ready() const noexcept {
        return std::atomic_ref<unsigned>(*cq_tail_).load(std::memory_order_acquire) != *cq_head_;
    }

    // io_uring_enter: submits what is queued; with `wait_for` 1, waits for a completion, up to
    // `timeout_ms` if positive. Task work always runs (GETEVENTS): under DEFER_TASKRUN nothing
    // completes otherwise.
    void submit(unsigned wait_for, int timeout_ms) {
        std::atomic_ref<unsigned>(*sq_tail_).store(tail_, std::memory_order_release);
        __kernel_timespec timeout{};
        io_uring_getevents_arg arg{};
        unsigned flags = IORING_ENTER_GETEVENTS;
        void* argp = nullptr;
        std::size_t argsz = 0;
        const auto start = std::chrono::steady_clock::now();
        for (;;) {
            if (timeout_ms > 0) {
                const auto left = std::chrono::milliseconds(timeout_ms) -
                                  (std::chrono::steady_clock::now() - start);
                const auto ns = std::max<std::int64_t>(
                    0, std::chrono::duration_cast<std::chrono::nanoseconds>(left).count());
                if (ns == 0 && tail_ == submitted_) {
                    return; // the time is up, and everything was submitted
                }
                timeout.tv_sec = ns / 1'000'000'000;
                timeout.tv_nsec = ns % 1'000'000'000;
                arg.sigmask_sz = _NSIG / 8;
                arg.ts = reinterpret_cast<std::uint64_t>(&timeout);
                flags |= IORING_ENTER_EXT_ARG;
                argp = &arg;
                argsz = sizeof arg;
            }
            const unsigned to_submit = tail_ - submitted_;
            const long done = ::syscall(__NR_io_uring_enter, fd_, to_submit, wait_for, flags, argp, argsz);
            if (done >= 0) {
                submitted_ += static_cast<unsigned>(done);
                if (tail_ != submitted_ && done > 0) {
                    continue; // the rest of the batch
                }
                // All in (or the kernel takes no more now, and said why in a CQE). A wait that a
                // signal cut short goes on with the time that is left; a full CQ ends it.
                if (wait_for == 0 || completions_ready() || tail_ != submitted_) {
                    return;
                }
                continue;
            }
            const int error = errno;
            if (error == ETIME) {
                return; // the wait timed out, as asked (submissions were taken)
            }
            if (error == EINTR) {
                continue; // retried with the time that is left
            }
            if ((error == EAGAIN || error == EBUSY) && completions_ready()) {
                return; // completions must be reaped before the kernel takes more
            }
            if (error == EEXIST) { // SINGLE_ISSUER: another thread set the ring up
                throw_errno(error, "io_uring_enter from a thread other than the one that first ran "
                                   "this Scheduler (on io_uring a Scheduler stays on that thread; "
                                   "Backend::epoll lets it move)");
            }
            throw_errno(error, "io_uring_enter");
        }
    }

    int fd_ = -1;
    bool deferred_ = false;
    void* ring_ = nullptr;
    std::size_t ring_bytes_ = 0;
    io_uring_sqe* sqes_ = nullptr;
    std::size_t sqes_bytes_ = 0;
    unsigned* sq_head_ = nullptr;
    unsigned* sq_tail_ = nullptr;
    unsigned sq_mask_ = 0;
    unsigned sq_entries_ = 0;
    unsigned* cq_head_ = nullptr;
    unsigned* cq_tail_ = nullptr;
    unsigned cq_mask_ = 0;
    io_uring_cqe* cqes_ = nullptr;
    unsigned tail_ = 0;      // our copy of the submission tail
    unsigned submitted_ = 0; // how much of it the kernel took
};

} // namespace corio::detail

#endif // __linux__
