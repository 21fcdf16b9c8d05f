// corio/net/udp_socket.hpp - UdpSocket: a non-blocking UDP (datagram) socket for tasks.
//
//     corio::UdpSocket socket = corio::UdpSocket::bind("::1", 0);
//     corio::Datagram got = co_await socket.recv_from(buffer);          // one datagram
//     co_await socket.send_to(std::span(buffer).first(got.size), got.peer);
//
// Built like AsyncSocket, on its pieces (async_socket.hpp): each operation is an FdOperation that
// tries the system call first and waits for readiness only on EAGAIN; the operations are
// awaitables without a coroutine frame and copy nothing to the heap, so a datagram costs no
// allocation. The fd is owned by an AsyncSocket inside (whose stream operations are not exposed),
// so it is non-blocking, close-on-exec, and unregistered from its Scheduler before it is closed.
// Unlike a stream's short read, a short datagram says nothing about the receive queue, so every
// receive tries the system call first (no "drained" hint as AsyncSocket's recv keeps).
//
// Rules (truncation, empty datagrams, connect, dual stack): docs/guide.md#udpsocket.
#pragma once

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/uio.h>

#include "corio/detail/posix.hpp"
#include "corio/net/async_socket.hpp"
#include "corio/scheduler.hpp"
#include "corio/net/socket_address.hpp"

namespace corio {

/// One datagram, as UdpSocket::recv_from and recv give it.
struct Datagram {
    std::size_t size = 0;   ///< bytes stored in the buffer
    SocketAddress peer;     ///< who sent it
    bool truncated = false; ///< it was longer than the buffer: the rest of it is lost
};

namespace detail {

// Tries `call` (a send/recv-like system call) until no signal interrupts it. True when the
// attempt is over: `result` holds the count or -errno; false when the kernel said EAGAIN.
template <class Call>
bool attempt_io(std::int32_t& result, Call call) noexcept {
    for (;;) {
        const ssize_t count = call();
        if (count >= 0 || errno != EINTR) {
            if (count < 0 && would_block(errno)) {
                return false;
            }
            result = static_cast<std::int32_t>(count >= 0 ? count : -errno);
            return true;
        }
    }
}

// Receives one datagram and who sent it (recvmsg, for the MSG_TRUNC flag it reports).
class [[nodiscard]] RecvFromOperation : public FdAwaiter<RecvFromOperation> {
public:
    RecvFromOperation(SocketState& socket, std::byte* data, std::size_t size) noexcept
        : FdAwaiter(socket, Kind::receive_from, Interest::read), buffer_{data, clamp_count(size)} {}

    static bool wait_first() noexcept { return false; }
    bool try_now() noexcept {
        return attempt_io(result_, [this] {
            msghdr message{};
            message.msg_name = &peer_;
            message.msg_namelen = sizeof peer_;
            message.msg_iov = &buffer_;
            message.msg_iovlen = 1;
            const ssize_t count = ::recvmsg(target().fd(), &message, 0);
            peer_size_ = message.msg_namelen;
            truncated_ = (message.msg_flags & MSG_TRUNC) != 0;
            return count;
        });
    }
    bool done() const noexcept { return result_ != pending; }
    Datagram outcome() const {
        if (result_ < 0) {
            throw_errno(-result_, name());
        }
        return {static_cast<std::size_t>(result_), SocketAddress::from_native(peer_, peer_size_),
                truncated_};
    }
    static const char* name() noexcept { return "recv_from"; }

private:
    iovec buffer_;
    sockaddr_storage peer_{};
    socklen_t peer_size_ = 0;
    bool truncated_ = false;
};

// Sends one datagram, to `peer` or (null) to the connected peer. All of it or nothing: a datagram
// is never split, so the count is the size unless the call fails.
class [[nodiscard]] SendToOperation : public FdAwaiter<SendToOperation> {
public:
    SendToOperation(SocketState& socket, const std::byte* data, std::size_t size,
                    const SocketAddress* peer) noexcept
        : FdAwaiter(socket, Kind::send_to, Interest::write), data_(data), size_(size), peer_(peer) {}

    static bool wait_first() noexcept { return false; }
    bool try_now() noexcept {
        return attempt_io(result_, [this] {
            return ::sendto(target().fd(), data_, size_, send_flags,
                            peer_ != nullptr ? peer_->data() : nullptr,
                            peer_ != nullptr ? peer_->size() : 0);
        });
    }
    bool done() const noexcept { return result_ != pending; }
    std::size_t outcome() const {
        if (result_ < 0) {
            // The peer's name only now, on the error path: the message allocates.
            throw_errno(-result_,
                        peer_ != nullptr ? "send_to " + peer_->to_string() : std::string("send"));
        }
        return static_cast<std::size_t>(result_);
    }
    static const char* name() noexcept { return "send_to"; }

private:
    const std::byte* data_;
    std::size_t size_;
    const SocketAddress* peer_;
};

} // namespace detail

/// RAII over a non-blocking, close-on-exec UDP socket. Move-only; closing unregisters it first.
class UdpSocket {
public:
    UdpSocket() noexcept = default;
    /// Adopts `fd`, which must be a non-blocking datagram socket.
    explicit UdpSocket(int fd) noexcept : socket_(fd) {}

    /// A socket bound to `host` (numeric IPv4/IPv6) and `port` (0 picks a free one).
    static UdpSocket bind(std::string_view host, std::uint16_t port) {
        return bind(SocketAddress::parse(host, port));
    }
    /// A socket bound to `local`.
    static UdpSocket bind(const SocketAddress& local) {
        UdpSocket socket(detail::open_socket(local.family(), SOCK_DGRAM));
        if (::bind(socket.fd(), local.data(), local.size()) < 0) {
            detail::throw_errno(errno, "bind to " + local.to_string());
        }
        return socket;
    }

    /// Makes `peer` the default destination, and the only source recv/recv_from take datagrams
    /// from. Nothing is sent: it does not wait. Errors the peer reports later (ECONNREFUSED when
    /// nobody listens there) come out of a following send or recv.
    void connect(const SocketAddress& peer) {
        if (::connect(fd(), peer.data(), peer.size()) < 0) {
            detail::throw_errno(errno, "connect to " + peer.to_string());
        }
    }
    void connect(std::string_view host, std::uint16_t port) {
        connect(SocketAddress::parse(host, port));
    }
    /// Forgets the connected peer: datagrams from anyone are received again.
    void disconnect() {
        sockaddr unspecified{};
        unspecified.sa_family = AF_UNSPEC;
        if (::connect(fd(), &unspecified, sizeof unspecified) < 0 && errno != EAFNOSUPPORT) {
            detail::throw_errno(errno, "disconnect"); // (some systems answer EAFNOSUPPORT, done)
        }
    }

    /// `co_await socket.recv_from(buffer)` -> Datagram: waits for one datagram and stores as much
    /// of it as fits (docs/guide.md#udpsocket). The buffer must live until then; it is taken by
    /// reference like AsyncSocket::recv's.
    template <class Buffer>
    requires detail::WritableBytes<Buffer>
    [[nodiscard]] detail::RecvFromOperation recv_from(Buffer&& buffer) noexcept {
        return {socket_.state_, detail::bytes_of(buffer), std::ranges::size(buffer)};
    }
    [[nodiscard]] detail::RecvFromOperation recv_from(std::span<std::byte> buffer) noexcept {
        return {socket_.state_, buffer.data(), buffer.size()};
    }
    /// recv_from on a connected socket (the peer is the connected one): the same Datagram.
    template <class Buffer>
    requires detail::WritableBytes<Buffer>
    [[nodiscard]] detail::RecvFromOperation recv(Buffer&& buffer) noexcept {
        return recv_from(std::forward<Buffer>(buffer));
    }
    [[nodiscard]] detail::RecvFromOperation recv(std::span<std::byte> buffer) noexcept {
        return recv_from(buffer);
    }

    /// `co_await socket.send_to(data, peer)` -> bytes sent (all of `data`: one datagram). `data`
    /// and `peer` must live until then. Throws EMSGSIZE for a datagram too large to send.
    template <class Buffer>
    requires detail::ReadableBytes<Buffer>
    [[nodiscard]] detail::SendToOperation send_to(const Buffer& data,
                                                  const SocketAddress& peer) noexcept {
        return {socket_.state_, detail::const_bytes_of(data), std::ranges::size(data), &peer};
    }
    [[nodiscard]] detail::SendToOperation send_to(std::span<const std::byte> data,
                                                  const SocketAddress& peer) noexcept {
        return {socket_.state_, data.data(), data.size(), &peer};
    }
    [[nodiscard]] detail::SendToOperation send_to(std::string_view data,
                                                  const SocketAddress& peer) noexcept {
        return send_to(std::as_bytes(std::span(data)), peer);
    }
    /// send_to the connected peer (ENOTCONN/EDESTADDRREQ without one).
    template <class Buffer>
    requires detail::ReadableBytes<Buffer>
    [[nodiscard]] detail::SendToOperation send(const Buffer& data) noexcept {
        return {socket_.state_, detail::const_bytes_of(data), std::ranges::size(data), nullptr};
    }
    [[nodiscard]] detail::SendToOperation send(std::span<const std::byte> data) noexcept {
        return {socket_.state_, data.data(), data.size(), nullptr};
    }
    [[nodiscard]] detail::SendToOperation send(std::string_view data) noexcept {
        return send(std::as_bytes(std::span(data)));
    }

    /// Unregisters the fd from the Scheduler it waited in, then closes it. Idempotent.
    void close() noexcept { socket_.close(); }
    [[nodiscard]] bool is_open() const noexcept { return socket_.is_open(); }
    [[nodiscard]] int fd() const noexcept { return socket_.fd(); }

    [[nodiscard]] SocketAddress local_address() const { return socket_.local_address(); }
    /// The connected peer (ENOTCONN if there is none).
    [[nodiscard]] SocketAddress peer_address() const { return socket_.peer_address(); }
    [[nodiscard]] std::uint16_t local_port() const { return socket_.local_port(); }

    /// `co_await socket.wait_readable()`: waits until a datagram (or an error) is pending.
    [[nodiscard]] detail::SocketWait wait_readable() noexcept { return socket_.wait_readable(); }
    /// `co_await socket.wait_writable()`: waits until a datagram can be sent.
    [[nodiscard]] detail::SocketWait wait_writable() noexcept { return socket_.wait_writable(); }

private:
    AsyncSocket socket_; // the fd's owner; its stream operations are not exposed here
};

} // namespace corio
