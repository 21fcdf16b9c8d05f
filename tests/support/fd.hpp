// Test support: RAII over raw fds, and the socket pairs and pipes the tests poke at directly.
#pragma once

#include <array>
#include <cerrno>
#include <cstddef>
#include <fcntl.h>
#include <stdexcept>
#include <sys/socket.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace corio::test {

/// Owns one fd and closes it. Move-only. Call `kernel.forget_fd(fd)` before it closes an fd that
/// tasks waited on.
class UniqueFd {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) {
            reset(std::exchange(other.fd_, -1));
        }
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
    /// Gives up ownership without closing.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    /// Closes the fd held now (if any) and takes `fd`.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

[[noreturn]] inline void throw_errno(const char* what) {
    throw std::system_error(errno, std::generic_category(), what);
}

/// Two connected sockets (or the two ends of a pipe).
struct FdPair {
    UniqueFd first;
    UniqueFd second;
};

/// A connected AF_UNIX SOCK_STREAM pair, both ends non-blocking and close-on-exec.
inline FdPair socket_pair() {
    int fds[2] = {-1, -1};
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
        throw_errno("socketpair");
    }
#else
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) {
        throw_errno("socketpair");
    }
    for (int fd : fds) {
        if (::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || ::fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
            const int error = errno;
            ::close(fds[0]);
            ::close(fds[1]);
            throw std::system_error(error, std::generic_category(), "fcntl");
        }
    }
#endif
    return FdPair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

/// A pipe: `first` is the read end, `second` the write end; both non-blocking and close-on-exec.
inline FdPair make_pipe() {
    int fds[2] = {-1, -1};
    if (::pipe(fds) < 0) {
        throw_errno("pipe");
    }
    FdPair pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
    for (int fd : fds) {
        if (::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || ::fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
            throw_errno("fcntl");
        }
    }
    return pair;
}

// One non-blocking write; a socket never raises SIGPIPE here. Returns -1 with errno set on failure.
inline ssize_t write_some(int fd, const void* data, std::size_t size) {
#if defined(MSG_NOSIGNAL)
    const ssize_t count = ::send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (count >= 0 || errno != ENOTSOCK) {
        return count;
    }
#endif
    return ::write(fd, data, size);
}

/// Writes to the non-blocking `fd` until the kernel takes not even one more byte (EAGAIN), so the
/// fd is no longer writable. Returns how many bytes it wrote. Throws on any other error, or if the
/// fd takes more than `limit` bytes (it would not be a bounded buffer).
inline std::size_t fill_send_buffer(int fd, std::size_t limit = std::size_t{256} << 20) {
    static const std::array<char, 65536> chunk{};
    std::size_t total = 0;
    std::size_t size = chunk.size();
    while (size > 0) {
        const ssize_t count = write_some(fd, chunk.data(), size);
        if (count > 0) {
            total += static_cast<std::size_t>(count);
            if (total > limit) {
                throw std::runtime_error("fill_send_buffer: the fd takes data without limit");
            }
        } else if (count < 0 && errno == EINTR) {
            continue;
        } else if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            size /= 2; // full for this size: try smaller writes down to one byte
        } else {
            throw_errno("fill_send_buffer");
        }
    }
    return total;
}

/// Reads from the non-blocking `fd` until EAGAIN or end-of-file. Returns how many bytes it read.
inline std::size_t drain(int fd, std::size_t limit = std::size_t{256} << 20) {
    std::array<char, 65536> buffer{};
    std::size_t total = 0;
    for (;;) {
        const ssize_t count = ::read(fd, buffer.data(), buffer.size());
        if (count > 0) {
            total += static_cast<std::size_t>(count);
            if (total > limit) {
                throw std::runtime_error("drain: the fd gives data without limit");
            }
        } else if (count == 0) {
            return total;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return total;
        } else {
            throw_errno("drain");
        }
    }
}

/// Writes all of `size` bytes to the non-blocking `fd`, which must have room for them.
inline void write_all(int fd, const void* data, std::size_t size) {
    const char* bytes = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t count = write_some(fd, bytes, size);
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw_errno("write_all");
        }
        bytes += count;
        size -= static_cast<std::size_t>(count);
    }
}

} // namespace corio::test
