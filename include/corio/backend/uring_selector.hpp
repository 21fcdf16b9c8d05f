// corio/backend/uring_selector.hpp - the io_uring backend's readiness half (see
// corio/backend/selector_contract.hpp for the contract).
//
// Readiness is a one-shot IORING_OP_POLL_ADD per fd and direction: it checks the fd's state when
// it is armed (so a task that waits again on an fd that is still readable is told at once: the
// level-triggered meaning epoll gives) and reports once. A report disarms that direction; the
// caller re-arms it while tasks still wait. The polls are queued in the ring and reach the kernel
// with the loop's one io_uring_enter per pass, which also waits: no system call of their own.
//
// A poll that is taken back (the fd is forgotten, or nobody waits any more) is removed with
// IORING_OP_POLL_REMOVE: a poll holds a reference to the open file, and a socket that is closed
// while a poll holds it would stay connected until the poll fired. Each (fd, direction) has a
// generation in the poll's user_data, so that the completion of a poll taken back, which may
// arrive after the fd number was reused, is recognised and dropped.
//
// Receives (the completion half): `receive(fd)` submits an IORING_OP_RECV that picks a buffer
// from a ring of provided buffers this selector owns (IORING_REGISTER_PBUF_RING, Linux 5.19), so
// the kernel only ever writes into memory that lives as long as the selector, whatever happens to
// the task that asked: a task killed or timed out while its receive is in flight leaves nothing
// the kernel could write into. The receive is multishot (IORING_RECV_MULTISHOT, Linux 6.0; a
// plain one where the kernel refuses that): armed once, it completes for every piece that
// arrives until the end of the stream, an error, or a cancel, so a connection read in a loop
// costs no submission and no poll arming per read. Each completion is handed to
// `on_received(fd, res, buffer id, more)`, `more` saying the receive is still armed; the buffer
// goes back to the ring with `recycle(id)`. A receive taken back (`cancel_receive`) is
// cancelled, and its completions, if they got buffers after all, recycle them; one paused
// (`pause_receive`) is cancelled too, but what it brought until then is still handed on.
//
// The buffers come in chunks of `lent_chunk`, added while the loop runs: a receive that finds the
// ring empty (ENOBUFS) adds a chunk, up to `lent_capacity` buffers, and is submitted again, so
// that a server whose readers all hold buffers at once (a thousand connections made readable by
// one wait) keeps receiving instead of falling back to readiness. Only the pages the kernel writes
// become resident: a 64-byte message touches one page of its buffer.
//
// Sends (the completion half too): `send(fd, data, size)` submits an IORING_OP_SEND from the
// caller's memory, so that a connection that sends costs no system call of its own (the loop's
// io_uring_enter carries it). That memory is the caller's, not the selector's: a send taken back
// (`cancel_send`: a task killed or timed out while its send is in flight, an fd closed under it)
// is cancelled synchronously (IORING_REGISTER_SYNC_CANCEL, Linux 6.0), after what is queued has
// been submitted, so that when cancel_send returns the kernel will not read that memory again.
// Kernels without synchronous cancellation do not get ring sends (`start_sending` says no), and
// sends stay system calls tried first, as on epoll.
//
// The ring is created when first used, i.e. on the thread that runs the loop (a ring set up with
// SINGLE_ISSUER takes submissions from one thread only).
#pragma once

#if defined(__linux__)

#include "corio/backend/poll_selector.hpp"
#include "corio/backend/selector_contract.hpp"
#include "corio/backend/uring_ring.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

namespace corio {

/// io_uring, as a selector: one-shot polls on a ring (see the top of this file).
class UringSelector {
public:
    /// Submissions the ring holds; more are submitted early, in batches of this many.
    static constexpr unsigned ring_entries = 1024;

    /// Provided buffers for receives: how large each is, how many come at a time, and how many
    /// at most (the size of the buffer ring). When all are out, receives fall back to readiness
    /// and heap buffers until some come back.
    static constexpr std::size_t lent_size = 64 * 1024;
    static constexpr unsigned lent_chunk = 128;
    static constexpr unsigned lent_capacity = 4096;

    UringSelector() = default;
    UringSelector(const UringSelector&) = delete;
    UringSelector& operator=(const UringSelector&) = delete;
    ~UringSelector() { stop_lending(); }

    void watch(int fd, Interest before, Interest after) {
        if (before == after) {
            return;
        }
        if (fd < 0) {
            detail::throw_errno(EBADF, "io_uring poll");
        }
        for (const Interest direction : {Interest::read, Interest::write}) {
            if (has(after, direction) && !has(before, direction)) {
                arm(fd, direction);
            } else if (!has(after, direction) && has(before, direction)) {
                disarm(fd, direction);
            }
        }
    }

    template <class OnReady>
    std::size_t wait(int timeout_ms, OnReady&& on_ready) {
        return wait(timeout_ms, on_ready, [](int, std::int32_t, int, bool) {}, [](int, std::int32_t) {});
    }

    template <class OnReady, class OnReceived>
    std::size_t wait(int timeout_ms, OnReady&& on_ready, OnReceived&& on_received) {
        return wait(timeout_ms, on_ready, on_received, [](int, std::int32_t) {});
    }

    // wait() that also hands the completions of receives to on_received(fd, res, buffer id or -1,
    // more: the receive stays armed), and those of sends to on_sent(fd, res).
    template <class OnReady, class OnReceived, class OnSent>
    std::size_t wait(int timeout_ms, OnReady&& on_ready, OnReceived&& on_received, OnSent&& on_sent) {
        detail::UringRing& uring = ring();
        uring.enter(timeout_ms);
        std::size_t reported = 0;
        uring.drain([&](std::uint64_t user_data, std::int32_t res, std::uint32_t flags) {
            const auto kind = static_cast<unsigned>((user_data >> 32) & 7U);
            const auto fd = static_cast<int>(user_data & 0xffffffffU);
            if (kind == send_kind) {
                --sending_;
                if (generation_of(fd, send_kind) == (user_data >> 40)) {
                    bump(fd, send_kind);
                    on_sent(fd, res);
                    ++reported;
                }
                return;
            }
            if (kind == receive_kind) {
                const bool more = (flags & IORING_CQE_F_MORE) != 0;
                receiving_ -= more ? 0 : 1;
                const int buffer = (flags & IORING_CQE_F_BUFFER) != 0
                                       ? static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT)
                                       : -1;
                if (buffer >= 0) {
                    ++buffers_out_;
                }
                if (generation_of(fd, receive_kind) != (user_data >> 40)) {
                    if (buffer >= 0) {
                        recycle(buffer); // a receive taken back that got data after all
                    }
                    return;
                }
                if (!more && ((res == -EINVAL && multishot_) ||
                              (res == -ENOBUFS && (buffers_out_ < buffers_provided_ || add_buffers())))) {
                    multishot_ = multishot_ && res != -EINVAL; // a kernel without multishot receives
                    receive(fd);
                    return;
                }
                on_received(fd, res, buffer, more);
                ++reported;
                return;
            }
            const auto direction = static_cast<Interest>(kind);
            if (direction == Interest::none || generation_of(fd, kind) != (user_data >> 40)) {
                return; // a removal's own completion, or a poll that was taken back
            }
            // An error (EBADF: the fd was closed under the poll) is reported as readiness for
            // both directions, like a hang-up: the waiting task's next system call sees it.
            const Interest ready = res < 0 ? Interest::read_write
                                           : PollSelector::from_poll(static_cast<unsigned>(res));
            bump(fd, kind); // a one-shot poll is over: a late duplicate cannot match
            on_ready(fd, ready, direction);
            ++reported;
        });
        return reported;
    }

    /// The ring, set up on first use.
    detail::UringRing& ring() {
        if (!ring_) {
            ring_.emplace(ring_entries);
        }
        return *ring_;
    }

    /// Sets up the provided buffers, once; false if the kernel has no provided-buffer rings
    /// (Linux < 5.19) or no memory for them: receives then go through readiness.
    bool start_lending() {
        if (lending_state_ == 0) {
            lending_state_ = set_up_buffers() ? 1 : 2;
        }
        return lending_state_ == 1;
    }
    [[nodiscard]] bool lending() const noexcept { return lending_state_ == 1; }

    /// Arms the poll for `direction` on `fd` again (it must be armed): the one armed before may
    /// have fired already, for readiness that is gone by now, and its completion may still wait in
    /// the ring; the new poll looks at the fd as it is when it is armed, and the old one's
    /// completion is dropped. A plain wait asks for this, so that it is told of the fd's state
    /// after it began to wait, as epoll's level-triggered wait tells it.
    void refresh(int fd, Interest direction) {
        disarm(fd, direction);
        arm(fd, direction);
    }

    /// Whether sends may go through the ring: true if the kernel cancels synchronously (Linux
    /// 6.0), which cancel_send needs. Asked once; sets the ring up.
    bool start_sending() {
        if (sending_state_ == 0) {
            // A cancel of a request that does not exist: ENOENT where synchronous cancellation is
            // known, EINVAL where it is not.
            io_uring_sync_cancel_reg probe{};
            probe.addr = std::uint64_t{7} << 32; // kind 7: never submitted
            probe.fd = -1;
            probe.timeout.tv_sec = -1;
            probe.timeout.tv_nsec = -1;
            const int result = ring().register_op(IORING_REGISTER_SYNC_CANCEL, &probe, 1);
            sending_state_ = result == 0 || errno == ENOENT ? 1 : 2;
        }
        return sending_state_ == 1;
    }
    [[nodiscard]] bool sending() const noexcept { return sending_state_ == 1; }
    /// Receives or sends in flight, or submissions queued: a wait may report something.
    [[nodiscard]] bool in_flight() const noexcept {
        return receiving_ > 0 || sending_ > 0 || (ring_ && ring_->queued() > 0);
    }

    /// Submits a send of `size` bytes at `data` on `fd` (start_sending() must have said yes); the
    /// memory must stay until its completion, or until cancel_send(fd) returns. One per fd at a time.
    void send(int fd, const std::byte* data, std::uint32_t size) {
        io_uring_sqe& sqe = ring().next_sqe();
        sqe.opcode = IORING_OP_SEND;
        sqe.fd = fd;
        sqe.addr = reinterpret_cast<std::uint64_t>(data);
        sqe.len = size;
        sqe.msg_flags = MSG_NOSIGNAL; // a reset peer is an EPIPE, never a SIGPIPE
        sqe.user_data = user_data_of(fd, send_kind);
        ++sending_;
    }
    /// Takes back the send in flight on `fd`: when this returns, the kernel no longer reads its
    /// memory, and its completion will be dropped. Gives the send's result if it completed before
    /// the cancel could stop it (a count, or -errno), else nothing (it sent nothing). Throws
    /// std::system_error if the ring fails.
    std::optional<std::int32_t> cancel_send(int fd) {
        const std::uint64_t submitted = user_data_of(fd, send_kind);
        bump(fd, send_kind);
        ring().enter(0); // a send still queued is submitted, so that it can be found
        io_uring_sync_cancel_reg cancel{};
        cancel.addr = submitted;
        cancel.fd = -1;
        cancel.timeout.tv_sec = -1; // no limit: it returns once the send is over
        cancel.timeout.tv_nsec = -1;
        for (;;) {
            const int result = ring().register_op(IORING_REGISTER_SYNC_CANCEL, &cancel, 1);
            if (result == 0 || errno == ENOENT || errno == EALREADY) {
                break; // cancelled, or completed already: either way its completion is there
            }
            if (errno != EINTR) {
                detail::throw_errno(errno, "io_uring synchronous cancel of a send");
            }
        }
        const std::optional<std::int32_t> done = ring().peek_completion(submitted);
        if (done && *done == -ECANCELED) {
            return std::nullopt;
        }
        return done;
    }

    /// Submits a receive on `fd` into a provided buffer (start_lending() must have said yes).
    void receive(int fd) {
        io_uring_sqe& sqe = ring().next_sqe();
        sqe.opcode = IORING_OP_RECV;
        sqe.fd = fd;
        sqe.ioprio = multishot_ ? IORING_RECV_MULTISHOT : 0;
        sqe.flags = IOSQE_BUFFER_SELECT;
        sqe.buf_group = buffer_group;
        sqe.len = static_cast<std::uint32_t>(lent_size);
        sqe.user_data = user_data_of(fd, receive_kind);
        ++receiving_;
    }
    /// Takes back the receive in flight on `fd`: its completions will be dropped.
    void cancel_receive(int fd) { take_back(fd, receive_kind, IORING_OP_ASYNC_CANCEL); }
    /// Stops the receive armed on `fd` without dropping anything: what it brought before the
    /// cancel lands is still handed on, and its last completion (more: false) says it stopped.
    void pause_receive(int fd) { remove_request(user_data_of(fd, receive_kind), IORING_OP_ASYNC_CANCEL); }
    /// Multishot receives are on until the kernel refuses one (before Linux 6.0); then receives
    /// are submitted once per read. A test can turn them off.
    void set_multishot(bool on) noexcept { multishot_ = on; }
    /// The memory of provided buffer `id`.
    [[nodiscard]] std::byte* buffer(int id) const noexcept {
        const auto index = static_cast<std::size_t>(id);
        return chunks_[index / lent_chunk] + (index % lent_chunk) * lent_size;
    }
    /// Gives provided buffer `id` back to the ring.
    void recycle(int id) noexcept {
        --buffers_out_;
        provide(id);
    }

private:
    // The kinds: 1 read poll, 2 write poll, 3 receive, 4 send (0: a removal's own completion).
    static constexpr unsigned receive_kind = 3;
    static constexpr unsigned send_kind = 4;
    static constexpr unsigned kinds = 5;
    static constexpr std::uint16_t buffer_group = 0;

    static constexpr std::size_t ring_bytes = lent_capacity * sizeof(io_uring_buf);
    static constexpr std::size_t chunk_bytes = lent_chunk * lent_size;

    bool set_up_buffers() {
        void* ring_memory = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (ring_memory == MAP_FAILED) {
            return false;
        }
        std::memset(ring_memory, 0, ring_bytes); // resident before the kernel maps it too
        io_uring_buf_reg registration{};
        registration.ring_addr = reinterpret_cast<std::uint64_t>(ring_memory);
        registration.ring_entries = lent_capacity;
        registration.bgid = buffer_group;
        if (ring().register_op(IORING_REGISTER_PBUF_RING, &registration, 1) < 0) {
            ::munmap(ring_memory, ring_bytes);
            return false;
        }
        buffer_ring_ = static_cast<io_uring_buf_ring*>(ring_memory);
        chunks_.reserve(lent_capacity / lent_chunk);
        if (!add_buffers()) {
            (void)ring().register_op(IORING_UNREGISTER_PBUF_RING, &registration, 1);
            ::munmap(ring_memory, ring_bytes);
            buffer_ring_ = nullptr;
            return false;
        }
        return true;
    }

    // Adds a chunk of buffers to the ring; false at lent_capacity, or without memory.
    bool add_buffers() noexcept {
        if (buffers_provided_ >= lent_capacity) {
            return false;
        }
        // Pages of the buffers become resident only where the kernel writes.
        void* memory = ::mmap(nullptr, chunk_bytes, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) {
            return false;
        }
        chunks_.push_back(static_cast<std::byte*>(memory)); // reserved: does not allocate
        for (unsigned i = 0; i < lent_chunk; ++i) {
            provide(static_cast<int>(buffers_provided_++));
        }
        return true;
    }

    void provide(int id) noexcept {
        // Not buffer_ring_->bufs: in C++ the header's flexible-array wrapper holds an empty
        // struct of size 1, which moves `bufs` 8 bytes past where the kernel reads it.
        auto* entries = reinterpret_cast<io_uring_buf*>(static_cast<void*>(buffer_ring_));
        io_uring_buf& slot = entries[buffer_tail_ & (lent_capacity - 1)];
        slot.addr = reinterpret_cast<std::uint64_t>(buffer(id));
        slot.len = static_cast<std::uint32_t>(lent_size);
        slot.bid = static_cast<std::uint16_t>(id);
        ++buffer_tail_;
        std::atomic_ref<std::uint16_t>(buffer_ring_->tail).store(buffer_tail_, std::memory_order_release);
    }

    // Before the buffers go: receives still in flight are cancelled and their completions
    // awaited, so that the kernel cannot write into unmapped (or remapped) memory. If that cannot
    // be done (the loop's thread is gone: EEXIST), the memory is left mapped.
    void stop_lending() noexcept {
        if (!lending()) {
            return;
        }
        bool quiet = receiving_ == 0;
        try {
            if (!quiet) {
                io_uring_sqe& sqe = ring().next_sqe();
                sqe.opcode = IORING_OP_ASYNC_CANCEL;
                sqe.fd = -1;
                sqe.cancel_flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
                sqe.user_data = 0;
                for (int round = 0; round < 100 && receiving_ > 0; ++round) {
                    wait(10, [](int, Interest, Interest) {}, [](int, std::int32_t, int, bool) {},
                         [](int, std::int32_t) {});
                }
                quiet = receiving_ == 0;
            }
        } catch (...) {
            quiet = false;
        }
        if (quiet) {
            for (std::byte* chunk : chunks_) {
                ::munmap(chunk, chunk_bytes);
            }
            ::munmap(buffer_ring_, ring_bytes);
        }
    }

    void arm(int fd, Interest direction) {
        io_uring_sqe& sqe = ring().next_sqe();
        sqe.opcode = IORING_OP_POLL_ADD;
        sqe.fd = fd;
        sqe.poll32_events = direction == Interest::read ? (POLLIN | POLLRDHUP) : POLLOUT;
        sqe.user_data = user_data_of(fd, static_cast<unsigned>(direction));
    }
    void disarm(int fd, Interest direction) {
        take_back(fd, static_cast<unsigned>(direction), IORING_OP_POLL_REMOVE);
    }
    // Removes (POLL_REMOVE) or cancels (ASYNC_CANCEL) the request of `kind` on `fd`; a new
    // generation makes its completion, whenever it comes, one that is dropped.
    void take_back(int fd, unsigned kind, std::uint8_t opcode) {
        const std::uint64_t submitted = user_data_of(fd, kind);
        bump(fd, kind);
        remove_request(submitted, opcode);
    }
    // Submits a POLL_REMOVE or ASYNC_CANCEL of the request submitted with `submitted`.
    void remove_request(std::uint64_t submitted, std::uint8_t opcode) {
        io_uring_sqe& sqe = ring().next_sqe();
        sqe.opcode = opcode;
        sqe.fd = -1;
        sqe.addr = submitted;
        sqe.user_data = 0; // kind 0: the removal's own completion is ignored
    }

    // user_data: the generation (bits 40-47), the kind (32-34), the fd (0-31).
    std::uint64_t user_data_of(int fd, unsigned kind) {
        return (std::uint64_t{generation_of(fd, kind)} << 40) | (std::uint64_t{kind} << 32) |
               static_cast<std::uint32_t>(fd);
    }
    std::uint8_t& slot(int fd, unsigned kind) {
        const std::size_t index = static_cast<std::size_t>(fd) * kinds + kind;
        if (index >= generations_.size()) {
            generations_.resize(index + kinds, 0);
        }
        return generations_[index];
    }
    std::uint8_t generation_of(int fd, unsigned kind) { return fd < 0 ? 0 : slot(fd, kind); }
    void bump(int fd, unsigned kind) { ++slot(fd, kind); }

    std::optional<detail::UringRing> ring_;
    std::vector<std::uint8_t> generations_; // per fd and kind
    io_uring_buf_ring* buffer_ring_ = nullptr;
    std::vector<std::byte*> chunks_; // lent_chunk buffers each
    std::size_t buffers_provided_ = 0;
    std::size_t buffers_out_ = 0; // filled by a receive and not recycled yet
    std::uint16_t buffer_tail_ = 0;
    std::uint8_t lending_state_ = 0; // 0 not tried, 1 lending, 2 refused
    std::size_t receiving_ = 0;      // receives in flight (armed)
    std::size_t sending_ = 0;        // sends in flight
    std::uint8_t sending_state_ = 0; // 0 not asked, 1 sends on the ring, 2 refused
    bool multishot_ = true;
};

} // namespace corio

#endif // __linux__
