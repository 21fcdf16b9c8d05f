// Test support: a plain blocking TCP client for the integration tests of the example servers
// (127.0.0.1 only), whose every read and write gives up after a timeout.
#pragma once

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/time.h>

#include "support/catch.hpp"
#include "support/child_process.hpp"
#include "support/fd.hpp"

namespace corio::test {

inline void set_timeouts(int fd, std::chrono::milliseconds timeout) {
    timeval value{};
    value.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    value.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, sizeof value) == 0);
    REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, sizeof value) == 0);
}

/// A blocking TCP connection to 127.0.0.1:port whose reads and writes give up after 5 s. A
/// `receive_buffer` above 0 sets SO_RCVBUF before connecting (the window is agreed on then): a
/// small one makes a slow reader, whose server soon finds its sends blocked.
inline UniqueFd connect_to(std::uint16_t port, int receive_buffer = 0) {
    UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(socket.get() >= 0);
    if (receive_buffer > 0) {
        REQUIRE(::setsockopt(socket.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer,
                             sizeof receive_buffer) == 0);
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    set_timeouts(socket.get(), std::chrono::seconds(5)); // SO_SNDTIMEO bounds connect() too
    int result = 0;
    do {
        result =
            ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
    } while (result < 0 && errno == EINTR);
    INFO("connect to port " << port << ": " << errno_text(errno));
    REQUIRE(result == 0);
    const int on = 1;
    ::setsockopt(socket.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    return socket;
}

inline void send_text(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) {
            continue;
        }
        INFO("send: " << errno_text(errno));
        REQUIRE(sent > 0);
        data.remove_prefix(static_cast<std::size_t>(sent));
    }
}

/// What one read from a peer brought.
struct Reading {
    enum class Kind { data, end_of_stream, reset, timeout } kind;
    std::string data;
};

/// Waits up to `timeout` for data, end-of-stream or an error on `fd`.
inline Reading read_some(int fd, std::chrono::milliseconds timeout) {
    pollfd watched{fd, POLLIN, 0};
    int ready = 0;
    do {
        ready = ::poll(&watched, 1, static_cast<int>(timeout.count()));
    } while (ready < 0 && errno == EINTR);
    if (ready <= 0) {
        return {Reading::Kind::timeout, {}};
    }
    char chunk[64 * 1024];
    const ssize_t count = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (count > 0) {
        return {Reading::Kind::data, std::string(chunk, static_cast<std::size_t>(count))};
    }
    if (count == 0) {
        return {Reading::Kind::end_of_stream, {}};
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return {Reading::Kind::timeout, {}}; // spurious wake-up: treat as nothing yet
    }
    return {Reading::Kind::reset, {}};
}

/// Reads exactly `size` bytes (fewer only on end-of-stream, error or timeout).
inline std::string read_exactly(int fd, std::size_t size, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = ProcessClock::now() + timeout;
    std::string received;
    while (received.size() < size && ProcessClock::now() < deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - ProcessClock::now());
        Reading reading = read_some(fd, left);
        if (reading.kind != Reading::Kind::data) {
            break;
        }
        received += reading.data;
    }
    return received;
}

/// True once the peer closed the connection (end-of-stream or reset) within `timeout`; data that
/// arrives first is skipped.
inline bool closed_by_peer(int fd, std::chrono::milliseconds timeout) {
    const auto deadline = ProcessClock::now() + timeout;
    while (ProcessClock::now() < deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - ProcessClock::now());
        const Reading reading = read_some(fd, left);
        if (reading.kind == Reading::Kind::end_of_stream || reading.kind == Reading::Kind::reset) {
            return true;
        }
        if (reading.kind == Reading::Kind::timeout) {
            return false;
        }
    }
    return false;
}

} // namespace corio::test
