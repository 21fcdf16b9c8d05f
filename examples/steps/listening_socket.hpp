// examples/steps/listening_socket.hpp - what every step of docs/how-it-works.md needs and none of
// them is about: an fd that closes itself, a TCP socket listening on 127.0.0.1, the command line.
//
// Plain POSIX and C++20, no corio: steps 1 to 3 show what corio replaces, so they must not use it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string_view>
#include <utility>

namespace steps {

/// Reports the failed call with errno's text and ends the program with status 1. The steps are
/// short programs: an error they cannot handle ends them.
[[noreturn]] inline void die(const char* what) {
    std::perror(what);
    std::exit(1);
}

/// Owns an fd and closes it. Move-only.
class Fd {
public:
    Fd() noexcept = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        std::swap(fd_, other.fd_);
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }

    [[nodiscard]] int get() const noexcept { return fd_; }

private:
    int fd_ = -1;
};

/// The port of `program [PORT]`: 5001 (the course notes' port) when absent, 0 to let the system
/// pick a free one. A bad argument ends the program with status 2.
inline std::uint16_t port_argument(int argc, char* argv[]) {
    if (argc < 2) {
        return 5001;
    }
    const std::string_view text = argv[1];
    unsigned port = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (error != std::errc{} || end != text.data() + text.size() || port > 65535) {
        std::cerr << "usage: " << argv[0] << " [PORT]   (0 picks a free port)\n";
        std::exit(2);
    }
    return static_cast<std::uint16_t>(port);
}

/// Turns on O_NONBLOCK: a call that would wait fails with EAGAIN instead.
inline void make_non_blocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        die("fcntl(O_NONBLOCK)");
    }
}

/// A TCP socket listening on 127.0.0.1:`port`. Prints "listening on 127.0.0.1:PORT" with the
/// port really bound (the tests start the steps on port 0 and read it from there).
inline Fd listen_on_loopback(std::uint16_t port) {
    Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (listener.get() < 0) {
        die("socket");
    }
    const int on = 1; // restart at once on the same port, without waiting out TIME_WAIT
    ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) < 0) {
        die("bind");
    }
    if (::listen(listener.get(), SOMAXCONN) < 0) {
        die("listen");
    }
    socklen_t length = sizeof address;
    if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) < 0) {
        die("getsockname");
    }
    std::cout << "listening on 127.0.0.1:" << ntohs(address.sin_port) << std::endl;
    return listener;
}

/// The answer every step gives to every message it receives.
inline constexpr std::string_view hello = "Hello world\n";

} // namespace steps
