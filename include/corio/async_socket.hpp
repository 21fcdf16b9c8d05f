// corio/async_socket.hpp - AsyncSocket: a non-blocking TCP socket for tasks.
//
// Every operation first tries the system call; only when the kernel answers EAGAIN does the task
// wait, with ReadWait/WriteWait, and then try again. Readiness is a hint, the system call is the
// truth. The socket remembers the Scheduler it first waited in, so that closing it unregisters the
// fd there before the fd is closed (a socket must not outlive that Scheduler while open).
#pragma once

#include "corio/scheduler.hpp"
#include "corio/socket_address.hpp"
#include "corio/syscalls.hpp"
#include "corio/task.hpp"
#include "corio/timeout.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace corio {

class AsyncSocket;

/// What AsyncSocket::accept gives: the connected socket and who is on the other end.
struct Accepted;

namespace detail {

[[noreturn]] inline void throw_errno(int error, const std::string& what) {
    throw std::system_error(error, std::system_category(), "corio: " + what);
}

// Waits until the socket's fd is ready for `interest`, and tells the socket which kernel that is.
struct SocketWait {
    SocketWait(int waited_fd, Interest direction, Scheduler*& kernel_slot) noexcept
        : fd(waited_fd), interest(direction), kernel(&kernel_slot) {}

    int fd;
    Interest interest;
    Scheduler** kernel;

    bool handle(Scheduler& scheduler, TaskId /*caller*/) {
        *kernel = &scheduler;
        if (interest == Interest::read) {
            scheduler.wait_for_read(fd);
        } else {
            scheduler.wait_for_write(fd);
        }
        return true;
    }
    void result() const noexcept {}
};

inline bool would_block(int error) noexcept { return error == EAGAIN || error == EWOULDBLOCK; }

inline int open_socket(int family) {
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw_errno(errno, "socket");
    }
#else
    int fd = ::socket(family, SOCK_STREAM, 0);
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

#if defined(MSG_NOSIGNAL)
inline constexpr int send_flags = MSG_NOSIGNAL; // a reset peer is an EPIPE, never a SIGPIPE
#else
inline constexpr int send_flags = 0; // SO_NOSIGPIPE is set on the socket instead
#endif

} // namespace detail

/// RAII over a non-blocking, close-on-exec TCP socket. Move-only; closing unregisters it first.
class AsyncSocket {
public:
    AsyncSocket() noexcept = default;
    /// Adopts `fd`, which must be a non-blocking socket.
    explicit AsyncSocket(int fd) noexcept : fd_(fd) {}
    AsyncSocket(AsyncSocket&& other) noexcept
        : fd_(std::exchange(other.fd_, -1)), kernel_(std::exchange(other.kernel_, nullptr)) {}
    AsyncSocket& operator=(AsyncSocket&& other) noexcept {
        if (this != &other) {
            close();
            fd_ = std::exchange(other.fd_, -1);
            kernel_ = std::exchange(other.kernel_, nullptr);
        }
        return *this;
    }
    AsyncSocket(const AsyncSocket&) = delete;
    AsyncSocket& operator=(const AsyncSocket&) = delete;
    ~AsyncSocket() { close(); }

    /// A listening socket bound to `host` (numeric IPv4/IPv6) and `port` (0 picks a free one),
    /// with SO_REUSEADDR.
    static AsyncSocket listen(std::string_view host, std::uint16_t port, int backlog = SOMAXCONN) {
        const SocketAddress address = SocketAddress::parse(host, port);
        AsyncSocket socket(detail::open_socket(address.family()));
        int on = 1;
        if (::setsockopt(socket.fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0) {
            detail::throw_errno(errno, "setsockopt(SO_REUSEADDR)");
        }
        if (::bind(socket.fd_, address.data(), address.size()) < 0) {
            detail::throw_errno(errno, "bind to " + address.to_string());
        }
        if (::listen(socket.fd_, backlog) < 0) {
            detail::throw_errno(errno, "listen on " + address.to_string());
        }
        return socket;
    }

    /// Connects to `host` (numeric IPv4/IPv6) and `port`. The host is taken by value: the Task is
    /// lazy and may be awaited after the caller's string is gone.
    static Task<AsyncSocket> connect(std::string host, std::uint16_t port) {
        const SocketAddress address = SocketAddress::parse(host, port);
        AsyncSocket socket(detail::open_socket(address.family()));
        if (::connect(socket.fd_, address.data(), address.size()) < 0) {
            if (errno != EINPROGRESS && errno != EINTR) { // EINTR: it goes on in the background
                detail::throw_errno(errno, "connect to " + address.to_string());
            }
            co_await socket.wait(Interest::write);
            int error = 0;
            socklen_t size = sizeof error;
            if (::getsockopt(socket.fd_, SOL_SOCKET, SO_ERROR, &error, &size) < 0) {
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

    /// Reads up to `buffer.size()` bytes; 0 means the peer closed its end (or the buffer is empty).
    Task<std::size_t> recv(std::span<std::byte> buffer) {
        if (buffer.empty()) {
            co_return 0; // the kernel would answer EAGAIN while no data is pending
        }
        for (;;) {
            const ssize_t count = ::recv(fd_, buffer.data(), buffer.size(), 0);
            if (count >= 0) {
                co_return static_cast<std::size_t>(count);
            }
            if (errno == EINTR) {
                continue;
            }
            if (!detail::would_block(errno)) {
                detail::throw_errno(errno, "recv");
            }
            co_await wait(Interest::read);
        }
    }
    Task<std::size_t> recv(std::span<char> buffer) { return recv(std::as_writable_bytes(buffer)); }

    /// Writes what the kernel takes now (at least one byte, unless `data` is empty).
    Task<std::size_t> send(std::span<const std::byte> data) {
        for (;;) {
            const ssize_t count = ::send(fd_, data.data(), data.size(), detail::send_flags);
            if (count >= 0) {
                co_return static_cast<std::size_t>(count);
            }
            if (errno == EINTR) {
                continue;
            }
            if (!detail::would_block(errno)) {
                detail::throw_errno(errno, "send");
            }
            co_await wait(Interest::write);
        }
    }
    Task<std::size_t> send(std::string_view data) { return send(std::as_bytes(std::span(data))); }

    /// Writes all of `data`, waiting while the peer is slow to read (that is the backpressure).
    Task<> send_all(std::span<const std::byte> data) {
        while (!data.empty()) {
            data = data.subspan(co_await send(data));
        }
    }
    Task<> send_all(std::string_view data) { return send_all(std::as_bytes(std::span(data))); }

    /// Sends FIN: the peer reads end-of-stream; this side can still read.
    void shutdown_write() {
        if (::shutdown(fd_, SHUT_WR) < 0) {
            detail::throw_errno(errno, "shutdown");
        }
    }

    /// Unregisters the fd from the Scheduler it waited in, then closes it. Idempotent.
    void close() noexcept {
        if (fd_ >= 0) {
            if (kernel_ != nullptr) {
                kernel_->forget_fd(fd_);
            }
            ::close(fd_);
            fd_ = -1;
        }
        kernel_ = nullptr;
    }

    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    [[nodiscard]] int fd() const noexcept { return fd_; }

    [[nodiscard]] SocketAddress local_address() const { return address_of(::getsockname, "getsockname"); }
    [[nodiscard]] SocketAddress peer_address() const { return address_of(::getpeername, "getpeername"); }
    [[nodiscard]] std::uint16_t local_port() const { return local_address().port(); }

    /// `co_await socket.wait_readable()`: ReadWait on this socket. Use it rather than
    /// `ReadWait{socket.fd()}`, so that the socket knows to unregister its fd when it closes.
    [[nodiscard]] detail::SocketWait wait_readable() noexcept { return wait(Interest::read); }
    /// `co_await socket.wait_writable()`: WriteWait on this socket (see wait_readable).
    [[nodiscard]] detail::SocketWait wait_writable() noexcept { return wait(Interest::write); }

private:
    detail::SocketWait wait(Interest interest) noexcept { return {fd_, interest, kernel_}; }

    template <class Query>
    SocketAddress address_of(Query query, const char* what) const {
        sockaddr_storage storage{};
        socklen_t size = sizeof storage;
        if (query(fd_, reinterpret_cast<sockaddr*>(&storage), &size) < 0) {
            detail::throw_errno(errno, what);
        }
        return SocketAddress::from_native(storage, size);
    }

    int fd_ = -1;
    Scheduler* kernel_ = nullptr;
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
        const int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&storage), &size,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        const int fd = ::accept(fd_, reinterpret_cast<sockaddr*>(&storage), &size);
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
