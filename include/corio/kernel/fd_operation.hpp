// corio/kernel/fd_operation.hpp - FdOperation: one I/O operation on an fd, as the kernel sees it.
//
// Every fd-backed awaitable (AsyncSocket's recv/send/accept/wait, UdpSocket's datagrams,
// SignalWait, StopEvent's wait) is an FdOperation. It says what it does (its Kind, and the
// buffers of the derived type), on which fd (its AsyncFd) and for which readiness. Readiness
// backends (epoll, poll) treat every kind alike: the awaiter tries the system call first, and when
// it would block, the kernel keeps the operation with the waiting task and calls attempt() on each
// readiness until it is done; only then is the task resumed. A completion backend can instead
// submit the operation itself by its kind and deliver its result, which the next attempt takes in
// (io_uring does this for sends). A plain wait (Kind::wait, no attempt) is done on readiness.
#pragma once

#include "corio/backend/selector_contract.hpp"

#include <climits>
#include <cstdint>

namespace corio {

class AsyncFd;

namespace detail {

class FdOperation {
public:
    // What the operation does.
    enum class Kind : std::uint8_t {
        wait,         // nothing: readiness is the result
        recv,         // receive into a buffer
        recv_lent,    // receive into a buffer the Scheduler lends (kernel/lent_buffers.hpp)
        send,         // send bytes (all of them, or what is taken at once)
        receive_from, // receive a datagram and its sender
        send_to,      // send a datagram to an address
        signal,       // read a signal from a signalfd or a self-pipe (SignalWait)
        check,        // readiness, then a check of the awaiter's own (StopEvent's flag)
    };
    // How a readiness backend tries the operation once (EINTR aside): true when it is over, with
    // a result or an error; false if it would block. Never throws: errors are part of the
    // result. It travels with the waiting task (TaskWait), not in the operation: every awaiting
    // frame holds its operation (twice, with GCC 12), and idle connections count those bytes.
    using Attempt = bool (*)(FdOperation&) noexcept;

    FdOperation(AsyncFd& target, Kind kind, Interest direction) noexcept
        : target_(&target), kind_(kind), direction_(direction) {}
    // Movable only because GCC 12 moves a co_await operand into the frame; never moved once
    // awaited (the kernel holds its address while the task waits).
    FdOperation(FdOperation&&) noexcept = default;
    FdOperation& operator=(FdOperation&&) = delete;

    [[nodiscard]] AsyncFd& target() const noexcept { return *target_; }
    [[nodiscard]] Kind kind() const noexcept { return kind_; }
    [[nodiscard]] Interest direction() const noexcept { return direction_; }

    // What a completion backend did with the operation (a ring send's count, or -errno); the next
    // attempt takes it in (see SendOperation). `last`: the operation was taken back, so that
    // attempt must not submit it again.
    void deliver(std::int32_t result, bool last = false) noexcept {
        result_ = result;
        delivered_ = last ? delivered_last : delivered_more;
    }

protected:
    ~FdOperation() = default;

private:
    AsyncFd* target_;

protected:
    // A count or an fd (>= 0), or -errno: what the system call gave, in the one shape a completion
    // queue gives it too. `pending` until an attempt completes the operation.
    static constexpr std::int32_t pending = INT32_MIN;
    std::int32_t result_ = pending;

private:
    Kind kind_;
    Interest direction_;

protected:
    bool suspended_ = false; // the task waits in the kernel with it (set by FdAwaiter)
    // result_ holds what a completion backend delivered, to take in (see deliver).
    static constexpr std::uint8_t delivered_more = 1;
    static constexpr std::uint8_t delivered_last = 2;
    std::uint8_t delivered_ = 0;
    // The base is 16 bytes on 64-bit targets: no padding is left.
};
static_assert(sizeof(void*) != 8 || sizeof(FdOperation) == 16, "corio: FdOperation grew");

} // namespace detail
} // namespace corio
