// corio/net/async_socket.hpp - AsyncSocket: a non-blocking stream socket (TCP or Unix) for tasks.
//
// The socket is an AsyncFd (kernel/async_fd.hpp): closing it unregisters the fd from the Scheduler
// it last waited in, it may outlive that Scheduler, and it may wait in another Scheduler of the
// same thread later. Its operations (recv, send, send_all, the waits) are FdOperations, awaited
// without a coroutine frame: see net/socket_operations.hpp, also for why sends keep their order.
#pragma once

#include "corio/detail/posix.hpp"
#include "corio/net/resolve.hpp"
#include "corio/scheduler.hpp"
#include "corio/net/socket_operations.hpp"
#include "corio/net/socket_address.hpp"
#include "corio/syscalls.hpp"
#include "corio/task.hpp"
#include "corio/timeout.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <coroutine>
#include <exception>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace corio {

class AsyncSocket;

/// What AsyncSocket::accept gives: the connected socket and who is on the other end.
struct Accepted;

/// Whether a listener shares its address with other listeners (SO_REUSEPORT): the kernel then
/// spreads incoming connections over them, e.g. one per thread (see run_on_threads.hpp).
enum class ReusePort : bool { no = false, yes = true };

/// RAII over a non-blocking, close-on-exec stream socket (TCP, or Unix-domain: see
/// unix_socket.hpp). Move-only; closing unregisters it first.
class AsyncSocket {
public:
    AsyncSocket() noexcept = default;
    /// Adopts `fd`, which must be a non-blocking socket.
    explicit AsyncSocket(int fd) noexcept : state_(fd) {}
    AsyncSocket(AsyncSocket&& other) noexcept : state_(std::exchange(other.state_, {})) {}
    AsyncSocket& operator=(AsyncSocket&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::exchange(other.state_, {});
        }
        return *this;
    }
    AsyncSocket(const AsyncSocket&) = delete;
    AsyncSocket& operator=(const AsyncSocket&) = delete;
    ~AsyncSocket() { close(); }

    /// A listening socket bound to `host` (numeric IPv4/IPv6) and `port` (0 picks a free one),
    /// with SO_REUSEADDR, and SO_REUSEPORT if asked (ENOPROTOOPT where the system has none).
    static AsyncSocket listen(std::string_view host, std::uint16_t port, int backlog = SOMAXCONN,
                              ReusePort reuse_port = ReusePort::no) {
        return listen(SocketAddress::parse(host, port), backlog, reuse_port);
    }

    /// A listening socket bound to `address`: IP (with SO_REUSEADDR, and SO_REUSEPORT if asked)
    /// or a Unix-domain path, which must not exist yet (EADDRINUSE otherwise: see unix_socket.hpp
    /// for who removes it).
    static AsyncSocket listen(const SocketAddress& address, int backlog = SOMAXCONN,
                              ReusePort reuse_port = ReusePort::no) {
        AsyncSocket socket(detail::open_socket(address.family()));
        int on = 1;
        if (address.family() != AF_UNIX &&
            ::setsockopt(socket.state_.fd(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0) {
            detail::throw_errno(errno, "setsockopt(SO_REUSEADDR)");
        }
        if (reuse_port == ReusePort::yes) {
#if defined(SO_REUSEPORT)
            if (::setsockopt(socket.state_.fd(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) {
                detail::throw_errno(errno, "setsockopt(SO_REUSEPORT)");
            }
#else
            detail::throw_errno(ENOPROTOOPT, "SO_REUSEPORT");
#endif
        }
        if (::bind(socket.state_.fd(), address.data(), address.size()) < 0) {
            detail::throw_errno(errno, "bind to " + address.to_string());
        }
        if (::listen(socket.state_.fd(), backlog) < 0) {
            detail::throw_errno(errno, "listen on " + address.to_string());
        }
        return socket;
    }

    /// Connects to `host` and `port`. A numeric IPv4/IPv6 address is used as it is; a name is
    /// resolved on the thread pool (corio::resolve) and its addresses are tried in turn until one
    /// accepts: the error of the last one is thrown if none does. The host is taken by value: the
    /// Task is lazy and may be awaited after the caller's string is gone.
    static Task<AsyncSocket> connect(std::string host, std::uint16_t port) {
        if (auto numeric = SocketAddress::try_parse(host, port)) {
            co_return co_await connect(*numeric); // no pool, no lookup
        }
        const std::vector<SocketAddress> addresses = co_await resolve(std::move(host), port);
        std::exception_ptr last_error;
        for (const SocketAddress& address : addresses) {
            try {
                co_return co_await connect(address);
            } catch (const TimeoutError&) {
                throw; // a deadline is for the whole connect, not one address
            } catch (const std::system_error&) {
                last_error = std::current_exception();
            }
        }
        std::rethrow_exception(last_error); // resolve gives at least one address
    }

    /// Connects to `address`: IP, or a Unix-domain path (ENOENT if nothing is there,
    /// ECONNREFUSED if nobody listens; EAGAIN if the listener's backlog is full: a Unix connect
    /// does not wait for room). Taken by value, like the host above.
    static Task<AsyncSocket> connect(SocketAddress address) {
        AsyncSocket socket(detail::open_socket(address.family()));
        if (::connect(socket.state_.fd(), address.data(), address.size()) < 0) {
            if (errno != EINPROGRESS && errno != EINTR) { // EINTR: it goes on in the background
                detail::throw_errno(errno, "connect to " + address.to_string());
            }
            co_await socket.wait(Interest::write);
            int error = 0;
            socklen_t size = sizeof error;
            if (::getsockopt(socket.state_.fd(), SOL_SOCKET, SO_ERROR, &error, &size) < 0) {
                error = errno;
            }
            if (error != 0) {
                detail::throw_errno(error, "connect to " + address.to_string());
            }
        }
        co_return socket;
    }

    /// connect(), but throws TimeoutError (std::errc::timed_out) if the connection is not
    /// established within `timeout`; the half-open socket is closed then.
    static Task<AsyncSocket> connect(std::string host, std::uint16_t port,
                                     Scheduler::Clock::duration timeout) {
        return timeout_after(timeout, connect(std::move(host), port));
    }

    /// Waits for a connection. Throws std::system_error on failure. EMFILE/ENFILE (no fd left) is
    /// reported whether or not a connection is queued: a caller that frees an fd to drop the
    /// pending connection must wait with wait_readable() when none is pending, or it spins
    /// (examples/common/acceptor.hpp shows the reserve-fd technique).
    Task<Accepted> accept();
    /// accept(), but throws TimeoutError (std::errc::timed_out) if no connection comes within
    /// `timeout`. The listener stays usable: nothing is left registered.
    Task<Accepted> accept(Scheduler::Clock::duration timeout) {
        return timeout_after(timeout, accept());
    }

    /// `co_await socket.recv(buffer)`: reads up to `buffer.size()` bytes and gives how many; 0
    /// means the peer closed its end (or the buffer is empty). The buffer must live until then.
    /// Any contiguous buffer of std::byte or char (std::array, std::vector, std::span, a C
    /// array...) is taken by reference.
    template <class Buffer>
        requires detail::WritableBytes<Buffer>
    [[nodiscard]] detail::RecvOperation recv(Buffer&& buffer) noexcept {
        return {state_, detail::bytes_of(buffer), std::ranges::size(buffer)};
    }
    [[nodiscard]] detail::RecvOperation recv(std::span<std::byte> buffer) noexcept {
        return {state_, buffer.data(), buffer.size()};
    }
    /// `co_await socket.recv_lent()`: reads as much as has arrived, up to 64 KiB, into a buffer
    /// the Scheduler lends, and gives the bytes as LentBytes, which give the buffer back when
    /// destroyed; empty at the end of the stream. A server that reads this way holds no buffer
    /// per idle connection (see kernel/lent_buffers.hpp). Throws std::system_error like recv.
    [[nodiscard]] detail::LentRecvOperation recv_lent() noexcept { return detail::LentRecvOperation{state_}; }

    /// `co_await socket.send(data)`: writes what the kernel takes now (at least one byte, unless
    /// `data` is empty) and gives how many. Text (anything that converts to std::string_view)
    /// goes without its terminating NUL; other contiguous buffers of std::byte or char go whole.
    template <class Buffer>
        requires detail::ReadableBytes<Buffer>
    [[nodiscard]] detail::SendOperation<false> send(const Buffer& data) noexcept {
        return {state_, detail::const_bytes_of(data), std::ranges::size(data)};
    }
    [[nodiscard]] detail::SendOperation<false> send(std::span<const std::byte> data) noexcept {
        return {state_, data.data(), data.size()};
    }
    [[nodiscard]] detail::SendOperation<false> send(std::string_view data) noexcept {
        return send(std::as_bytes(std::span(data)));
    }

    /// `co_await socket.send_all(data)`: writes all of `data`, waiting while the peer is slow to
    /// read (that is the backpressure). The data must live until then. Takes what send takes.
    template <class Buffer>
        requires detail::ReadableBytes<Buffer>
    [[nodiscard]] detail::SendOperation<true> send_all(const Buffer& data) noexcept {
        return {state_, detail::const_bytes_of(data), std::ranges::size(data)};
    }
    [[nodiscard]] detail::SendOperation<true> send_all(std::span<const std::byte> data) noexcept {
        return {state_, data.data(), data.size()};
    }
    [[nodiscard]] detail::SendOperation<true> send_all(std::string_view data) noexcept {
        return send_all(std::as_bytes(std::span(data)));
    }

    /// Sends FIN: the peer reads end-of-stream; this side can still read.
    void shutdown_write() {
        if (::shutdown(state_.fd(), SHUT_WR) < 0) {
            detail::throw_errno(errno, "shutdown");
        }
    }

    /// Unregisters the fd from the Scheduler it waited in, then closes it. Idempotent.
    void close() noexcept {
        state_.close();
    }

    [[nodiscard]] bool is_open() const noexcept { return state_.fd() >= 0; }
    [[nodiscard]] int fd() const noexcept { return state_.fd(); }

    [[nodiscard]] SocketAddress local_address() const { return address_of(::getsockname, "getsockname"); }
    [[nodiscard]] SocketAddress peer_address() const { return address_of(::getpeername, "getpeername"); }
    [[nodiscard]] std::uint16_t local_port() const { return local_address().port(); }

    /// `co_await socket.wait_readable()`: ReadWait on this socket. Use it rather than
    /// `ReadWait{socket.fd()}`, so that the socket knows to unregister its fd when it closes.
    [[nodiscard]] detail::SocketWait wait_readable() noexcept { return wait(Interest::read); }
    /// `co_await socket.wait_writable()`: WriteWait on this socket (see wait_readable).
    [[nodiscard]] detail::SocketWait wait_writable() noexcept { return wait(Interest::write); }

private:
    friend class UdpSocket; // owns its fd through an AsyncSocket, with datagram operations on it

    detail::SocketWait wait(Interest interest) noexcept { return {state_, interest}; }

    template <class Query>
    SocketAddress address_of(Query query, const char* what) const {
        sockaddr_storage storage{};
        socklen_t size = sizeof storage;
        if (query(state_.fd(), reinterpret_cast<sockaddr*>(&storage), &size) < 0) {
            detail::throw_errno(errno, what);
        }
        return SocketAddress::from_native(storage, size);
    }

    detail::SocketState state_;
};

struct Accepted {
    AsyncSocket socket;
    SocketAddress peer;
};

inline Task<Accepted> AsyncSocket::accept() {
    for (;;) {
        sockaddr_storage storage{};
        socklen_t size = sizeof storage;
        const int fd =
            detail::accept_socket(state_.fd(), reinterpret_cast<sockaddr*>(&storage), &size);
        if (fd >= 0) {
            co_return Accepted{AsyncSocket(fd), SocketAddress::from_native(storage, size)};
        }
        if (errno == EINTR || errno == ECONNABORTED) {
            continue; // a peer that gave up before we accepted it is no error of ours
        }
        if (!detail::would_block(errno)) {
            detail::throw_errno(errno, "accept");
        }
        co_await wait(Interest::read);
    }
}

} // namespace corio
