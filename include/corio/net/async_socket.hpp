// corio/net/async_socket.hpp - AsyncSocket: a non-blocking stream socket (TCP or Unix) for tasks.
//
// Every operation first tries the system call; only when the kernel answers EAGAIN does the task
// wait, and then try again. Readiness is a hint, the system call is the truth.
//
// recv, send, send_all and the waits are FdOperations (kernel/fd_awaiter.hpp): no coroutine frame,
// no allocation per call, and a task resumes only with its operation done. The socket is an
// AsyncFd (kernel/async_fd.hpp): closing it unregisters the fd from the Scheduler it last waited
// in, it may outlive that Scheduler, and it may wait in another Scheduler of the same thread later.
//
// Sends keep their order. Two tasks that send on one socket at once (send_all, send, in any mix)
// never interleave their bytes: a send that finds another one waiting for room queues behind it,
// and the data goes out in the order the sends began (FIFO), each whole before the next (a
// send_all ended early by a deadline or a kill has sent a prefix of its data; the next one
// follows it). The queue costs no memory: it is the order of the sends among the fd's waiting
// writers in the kernel, plus a flag in the socket's padding (see SendOperation).
#pragma once

#include "corio/net/resolve.hpp"
#include "corio/scheduler.hpp"
#include "corio/kernel/async_fd.hpp"
#include "corio/kernel/fd_awaiter.hpp"
#include "corio/net/socket_address.hpp"
#include "corio/syscalls.hpp"
#include "corio/task.hpp"
#include "corio/timeout.hpp"

#include <fcntl.h>
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

namespace detail {

[[noreturn]] inline void throw_errno(int error, const std::string& what) {
    throw std::system_error(error, std::system_category(), "corio: " + what);
}

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
        queued_ = true;
        return Base::await_suspend(caller);
    }
    decltype(auto) await_resume() {
        queued_ = false; // woken without completing (the fd was forgotten): the next try is its own
        return Base::await_resume();
    }

    bool wait_first() const noexcept {
        SocketState& state = socket();
        if (!state.send_waited || size_ == 0) [[likely]] {
            return false;
        }
        const Kernel* kernel = state.kernel();
        if (kernel != nullptr &&
            kernel->first_operation(state.fd(), Interest::write, Kind::send) != nullptr) {
            return true; // behind the sends that wait
        }
        state.send_waited = false;
        return false;
    }
    bool try_now() noexcept {
        if (queued_ && !first_in_line()) {
            return false; // an earlier send is not done: its bytes go first
        }
        while (sent_ < size_) {
            const ssize_t count =
                ::send(socket().fd(), data_ + sent_, size_ - sent_, send_flags);
            if (count >= 0) {
                sent_ += static_cast<std::size_t>(count);
                if (!All) {
                    return done_ = true;
                }
            } else if (errno != EINTR) {
                error_ = errno;
                return done_ = !would_block(error_);
            }
        }
        return done_ = true;
    }
    bool done() const noexcept { return done_; }
    auto outcome() {
        if (error_ != 0 && !would_block(error_) && (All || sent_ == 0)) {
            throw_errno(error_, "send");
        }
        if constexpr (!All) {
            return sent_;
        }
    }
    static const char* name() noexcept { return "send"; }

private:
    SocketState& socket() const noexcept { return static_cast<SocketState&>(this->target()); }
    bool first_in_line() const noexcept {
        const Kernel* kernel = socket().kernel();
        return kernel == nullptr ||
               kernel->first_operation(socket().fd(), Interest::write, Kind::send) == this;
    }

    const std::byte* data_;
    std::size_t size_;
    std::size_t sent_ = 0;
    int error_ = 0;
    bool done_ = false;
    bool queued_ = false; // suspended: it tries only when first in line
};

inline int open_socket(int family, int type = SOCK_STREAM) {
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    int fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw_errno(errno, "socket");
    }
#else
    int fd = ::socket(family, type, 0);
    if (fd < 0) {
        throw_errno(errno, "socket");
    }
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || ::fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        int error = errno;
        ::close(fd);
        throw_errno(error, "fcntl");
    }
#endif
#if defined(SO_NOSIGPIPE)
    int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
    return fd;
}

} // namespace detail

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
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
        const int fd = ::accept4(state_.fd(), reinterpret_cast<sockaddr*>(&storage), &size,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        const int fd = ::accept(state_.fd(), reinterpret_cast<sockaddr*>(&storage), &size);
        if (fd >= 0 && (::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || ::fcntl(fd, F_SETFL, O_NONBLOCK) < 0)) {
            const int error = errno;
            ::close(fd);
            detail::throw_errno(error, "fcntl");
        }
#endif
        if (fd >= 0) {
#if defined(SO_NOSIGPIPE)
            int on = 1;
            ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
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
