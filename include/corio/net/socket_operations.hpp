// corio/net/socket_operations.hpp - what AsyncSocket's recv, send, send_all and waits are: FdOperations
// on the socket's state, awaited without a coroutine frame (no allocation per call).
//
// Every operation first tries the system call; only when the kernel answers EAGAIN does the task
// wait, and then try again. Readiness is a hint, the system call is the truth.
//
// Sends keep their order. Two tasks that send on one socket at once (send_all, send, in any mix)
// never interleave their bytes: a send that finds another one waiting for room queues behind it,
// and the data goes out in the order the sends began (FIFO), each whole before the next (a
// send_all ended early by a deadline or a kill has sent a prefix of its data; the next one
// follows it). The queue costs no memory: it is the order of the sends among the fd's waiting
// writers in the kernel, plus a flag in the socket's padding (see SendOperation).
#pragma once

#include "corio/backend/selector.hpp"
#include "corio/detail/posix.hpp"
#include "corio/kernel/async_fd.hpp"
#include "corio/kernel/fd_awaiter.hpp"
#include "corio/kernel/kernel.hpp"
#include "corio/kernel/lent_buffers.hpp"

#include <sys/socket.h>
#include <sys/types.h>

#include <cerrno>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <string_view>
#include <type_traits>
#include <utility>

namespace corio::detail {

// What an AsyncSocket holds: its fd (an AsyncFd: closing unregisters it from the Scheduler it
// waited in first) and two flags, in the AsyncFd's padding. Its operations point at it rather than
// copy it: they live in the awaiting frame (twice, with GCC 12: the operand and the awaiter).
struct SocketState : AsyncFd {
    using AsyncFd::AsyncFd;
    bool drained = false; // the last recv emptied the receive queue: the next one waits first
    bool send_waited = false; // a send waited, and none was seen done since (see SendOperation)
};
static_assert(sizeof(void*) != 8 || sizeof(SocketState) <= 32, "corio: SocketState grew");

// `co_await socket.wait_readable()` / wait_writable(): readiness is the result.
class [[nodiscard]] SocketWait : public FdAwaiter<SocketWait> {
public:
    SocketWait(SocketState& socket, Interest direction) noexcept
        : FdAwaiter(socket, Kind::wait, direction) {}

    bool wait_first() const noexcept { return true; }
    bool try_now() noexcept { return true; }
    bool done() const noexcept { return true; } // woken by readiness, or by a close: both end it
    void outcome() const noexcept {}
    static const char* name() noexcept { return "wait"; }
};

inline bool would_block(int error) noexcept { return error == EAGAIN || error == EWOULDBLOCK; }

// At most INT32_MAX bytes per system call, so that a count fits an FdOperation's result (Linux
// moves at most INT_MAX & PAGE_MASK bytes per call anyway).
inline std::size_t clamp_count(std::size_t size) noexcept {
    return size < static_cast<std::size_t>(INT32_MAX) ? size : static_cast<std::size_t>(INT32_MAX);
}

// A byte buffer a socket operation takes by reference (no temporary span in the awaiting frame).
template <class Buffer>
using ByteOf = std::remove_cv_t<std::ranges::range_value_t<Buffer>>;
template <class Buffer, class Byte>
concept ByteRange = std::ranges::contiguous_range<Buffer> && std::ranges::sized_range<Buffer> &&
                    (std::same_as<ByteOf<Buffer>, std::byte> || std::same_as<ByteOf<Buffer>, char>) &&
                    std::convertible_to<std::ranges::range_reference_t<Buffer>, Byte&>;
template <class Buffer>
concept WritableBytes = ByteRange<Buffer, ByteOf<Buffer>> &&
                        std::ranges::borrowed_range<Buffer>; // not a temporary container
template <class Buffer>
concept ReadableBytes = ByteRange<Buffer, const ByteOf<Buffer>> &&
                        !std::convertible_to<Buffer, std::string_view>; // text: send(string_view)

template <class Buffer>
std::byte* bytes_of(Buffer& buffer) noexcept {
    return reinterpret_cast<std::byte*>(std::ranges::data(buffer));
}
template <class Buffer>
const std::byte* const_bytes_of(const Buffer& buffer) noexcept {
    return reinterpret_cast<const std::byte*>(std::ranges::data(buffer));
}

// `co_await socket.recv(buffer)`. After a read that returned less than the buffer could take, the
// socket's receive queue was empty, so the next recv waits for readiness before it tries (the
// EAGAIN it would get costs a system call per message).
class [[nodiscard]] RecvOperation : public FdAwaiter<RecvOperation> {
public:
    RecvOperation(SocketState& socket, std::byte* data, std::size_t size) noexcept
        : FdAwaiter(socket, Kind::recv, Interest::read), data_(data), size_(size) {}

    bool wait_first() const noexcept { return socket().drained && size_ != 0; }
    bool try_now() noexcept {
        if (size_ == 0) {
            result_ = 0; // 0 at once: the kernel would answer EAGAIN while nothing is pending
            return true;
        }
        if (Kernel* kernel = socket().kernel(); kernel != nullptr && kernel->lends_natively())
            [[unlikely]] { // bytes a lent receive brought come first, and only they while it runs
            if (kernel->received_stash().copy(socket().fd(), data_, size_, result_, kernel->lent_buffers())) {
                return true;
            }
            if (kernel->receiving(socket().fd())) {
                return false;
            }
        }
        for (;;) {
            const ssize_t count = ::recv(socket().fd(), data_, clamp_count(size_), 0);
            if (count >= 0) {
                result_ = static_cast<std::int32_t>(count);
                return true;
            }
            if (errno != EINTR) {
                if (would_block(errno)) {
                    return false;
                }
                result_ = -errno;
                return true;
            }
        }
    }
    bool done() const noexcept { return result_ != pending; }
    std::size_t outcome() {
        if (result_ < 0) {
            throw_errno(-result_, "recv");
        }
        const auto received = static_cast<std::size_t>(result_);
        socket().drained = received > 0 && received < size_;
        return received;
    }
    static const char* name() noexcept { return "recv"; }

private:
    SocketState& socket() const noexcept { return static_cast<SocketState&>(target()); }

    std::byte* data_;
    std::size_t size_;
};

// `co_await socket.recv_lent()`: reads as much as has arrived (up to LentBuffers::buffer_size)
// into a buffer the Scheduler lends, and gives it as LentBytes (empty at the end of the stream).
// Like recv, after a read that did not fill the buffer the next one waits for readiness first;
// so does the first read of a socket that never waited (the kernel, whose buffers it borrows, is
// known only once it has).
class [[nodiscard]] LentRecvOperation : public FdAwaiter<LentRecvOperation> {
public:
    explicit LentRecvOperation(SocketState& socket) noexcept
        : FdAwaiter(socket, Kind::recv_lent, Interest::read) {}

    // On io_uring the read is a receive the kernel completes (see kernel/fd_watches.hpp): it is
    // not tried first, unless an earlier receive left bytes in the stash.
    bool wait_first() const noexcept {
        Kernel* kernel = socket().kernel();
        if (kernel == nullptr) {
            return true;
        }
        if (kernel->lends_natively()) {
            return !kernel->received_stash().holds(socket().fd());
        }
        return socket().drained;
    }
    bool try_now() noexcept {
        if (socket().kernel() == nullptr) { // closed (AsyncFd::forget) after its wait ended
            result_ = -EBADF;
            return true;
        }
        Kernel& kernel = *socket().kernel();
        LentBuffers& buffers = kernel.lent_buffers();
        if (kernel.lends_natively()) { // io_uring: what the receives brought, and only that while one runs
            if (kernel.received_stash().take(socket().fd(), loan_, result_, buffers)) {
                return true;
            }
            if (kernel.receiving(socket().fd())) {
                return false;
            }
        }
        std::byte* buffer = nullptr;
        try {
            buffer = buffers.take_heap();
        } catch (...) {
            result_ = -ENOMEM;
            return true;
        }
        for (;;) {
            const ssize_t count = ::recv(socket().fd(), buffer, LentBuffers::buffer_size, 0);
            if (count > 0) {
                result_ = static_cast<std::int32_t>(count);
                loan_ = buffers.lend(buffer, static_cast<std::size_t>(count), -1);
                return true;
            }
            if (count == 0 || errno != EINTR) {
                buffers.give_back_heap(buffer);
                if (count == 0) {
                    result_ = 0;
                    return true;
                }
                if (would_block(errno)) {
                    return false;
                }
                result_ = -errno;
                return true;
            }
        }
    }
    bool done() const noexcept { return result_ != pending; }
    LentBytes outcome() {
        if (result_ < 0) {
            throw_errno(-result_, "recv");
        }
        socket().drained = result_ > 0 && static_cast<std::size_t>(result_) < LentBuffers::buffer_size;
        return std::move(loan_);
    }
    static const char* name() noexcept { return "recv_lent"; }

private:
    SocketState& socket() const noexcept { return static_cast<SocketState&>(target()); }

    LentBytes loan_;
};

#if defined(MSG_NOSIGNAL)
inline constexpr int send_flags = MSG_NOSIGNAL; // a reset peer is an EPIPE, never a SIGPIPE
#else
inline constexpr int send_flags = 0; // SO_NOSIGPIPE is set on the socket instead
#endif

// send (All = false: what the kernel takes now) and send_all (All = true: everything).
//
// Sends on one socket go out in the order they began (see the top of this file). A waiting send
// tries again only while it is the first send among the fd's waiting writers
// (Kernel::first_operation): the kernel retries the waiting writers in FIFO order, so the
// next one goes only once the one before is done. A new send that finds one waiting queues behind
// it without trying. To know that without a look at the kernel for every send, the socket keeps a
// hint, set when a send suspends and cleared when a look finds none waiting: a socket whose sends
// never waited, or whose last waiting send was seen done, costs one comparison.
//
// On io_uring (Kernel::sends_on_ring) a send that waits is submitted to the ring from this
// operation's memory when its turn comes (kernel/fd_watches.hpp), and the kernel hands it the
// count, which an attempt takes in; a send_all submits what is left until all is taken. A short
// send (up to ring_send_max bytes) on a socket that waited before does not even try the system
// call while other tasks are ready: it waits at once, and the loop's one io_uring_enter after
// them carries it with theirs (a system call saved per send). Alone, or large, it tries the call
// first: a wait that carried only this send would cost an io_uring_enter instead of the send, and
// a large send is best made at once, while its bytes are in the cache (one made after the other
// ready tasks ran measured 10% more CPU per 16 KiB message).
template <bool All>
class [[nodiscard]] SendOperation : public FdAwaiter<SendOperation<All>> {
    using Base = FdAwaiter<SendOperation<All>>;
    using Kind = FdOperation::Kind;

public:
    SendOperation(SocketState& socket, const std::byte* data, std::size_t size) noexcept
        : Base(socket, Kind::send, Interest::write), data_(data), size_(size) {}

    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> caller) {
        socket().send_waited = true;
        return Base::await_suspend(caller);
    }

    bool wait_first() const noexcept {
        SocketState& state = socket();
        const Kernel* kernel = state.kernel();
        if (kernel != nullptr && kernel->sends_on_ring() && size_ != 0 && size_ <= ring_send_max &&
            kernel->others_ready()) [[unlikely]] {
            return true;
        }
        if (!state.send_waited || size_ == 0) [[likely]] {
            return false;
        }
        if (kernel != nullptr &&
            kernel->first_operation(state.fd(), Interest::write, Kind::send) != nullptr) {
            return true; // behind the sends that wait
        }
        state.send_waited = false;
        return false;
    }
    // Sends from data_ on, moving data_ and size_ past what the kernel took (sent_ counts it).
    bool try_now() noexcept {
        if (this->delivered_ != 0) [[unlikely]] { // the ring's send completed: take its count in
            const bool last = this->delivered_ == this->delivered_last;
            this->delivered_ = 0;
            const std::int32_t result = this->result_;
            this->result_ = this->pending;
            if (result > 0) {
                advance(static_cast<std::size_t>(result));
                if (!All || size_ == 0) {
                    this->result_ = 0;
                    return true;
                }
            } else if (result < 0 && !would_block(-result) && result != -EINTR) {
                this->result_ = result;
                return true;
            }
            if (last) {
                return false; // taken back: the rest is not sent
            }
        }
        if (this->suspended_ && !first_in_line()) {
            return false; // an earlier send is not done: its bytes go first
        }
        if (Kernel* kernel = socket().kernel();
            this->suspended_ && kernel != nullptr && kernel->sends_on_ring() && size_ > 0) [[unlikely]] {
            try {
                kernel->submit_send(socket().fd(), data_, static_cast<std::uint32_t>(clamp_count(size_)));
                return false; // waits for its completion
            } catch (...) { // the ring failed (the loop reports it): a system call, then
            }
        }
        while (size_ > 0) {
            const ssize_t count = ::send(socket().fd(), data_, clamp_count(size_), send_flags);
            if (count >= 0) {
                advance(static_cast<std::size_t>(count));
                if (!All) {
                    break;
                }
            } else if (errno != EINTR) {
                if (would_block(errno)) {
                    return false;
                }
                this->result_ = -errno;
                return true;
            }
        }
        this->result_ = 0;
        return true;
    }
    bool done() const noexcept { return this->result_ != this->pending; }
    auto outcome() {
        if (this->result_ < 0 && (All || sent_ == 0)) {
            throw_errno(-this->result_, "send");
        }
        if constexpr (!All) {
            return sent_;
        }
    }
    static const char* name() noexcept { return "send"; }

private:
    SocketState& socket() const noexcept { return static_cast<SocketState&>(this->target()); }
    void advance(std::size_t count) noexcept {
        data_ += count;
        size_ -= count;
        sent_ += count;
    }
    bool first_in_line() const noexcept {
        const Kernel* kernel = socket().kernel();
        return kernel == nullptr ||
               kernel->first_operation(socket().fd(), Interest::write, Kind::send) == this;
    }

    static constexpr std::size_t ring_send_max = 4096;

    const std::byte* data_;
    std::size_t size_; // what is left to send
    std::size_t sent_ = 0;
};

} // namespace corio::detail
