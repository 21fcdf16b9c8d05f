// corio/net/resolve.hpp - name resolution: `co_await corio::resolve("localhost", 8000)`.
//
// getaddrinfo blocks (it may ask a DNS server and wait seconds for the answer), so it runs on the
// Scheduler's thread pool (run_in_thread.hpp) while the loop serves the other tasks. A numeric
// address ("127.0.0.1", "::1", "[::1]") is parsed on the spot, without the pool.
//
// It asks for stream sockets, IPv4 and IPv6 alike (AF_UNSPEC). AI_ADDRCONFIG is not used: it would
// drop ::1 for "localhost" on a machine with no IPv6 address other than loopback, while a connect()
// that tries each address in turn (AsyncSocket::connect) only pays one quick failure for an
// unusable family.
//
// Rules (order, errors): docs/guide.md#addresses-and-name-resolution.
#pragma once

#include "corio/detail/posix.hpp"
#include "corio/run_in_thread.hpp"
#include "corio/net/socket_address.hpp"
#include "corio/task.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace corio {

/// The error category of getaddrinfo's EAI_* codes (their messages are gai_strerror's).
inline const std::error_category& resolve_category() noexcept {
    class ResolveCategory final : public std::error_category {
    public:
        [[nodiscard]] const char* name() const noexcept override { return "corio.resolve"; }
        [[nodiscard]] std::string message(int code) const override { return ::gai_strerror(code); }
    };
    static const ResolveCategory category;
    return category;
}

namespace detail {

// getaddrinfo for `host`, every address given `port`. Blocks: runs on the pool.
inline std::vector<SocketAddress> resolve_blocking(const std::string& host, std::uint16_t port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM; // one entry per address rather than one per socket type
    addrinfo* found = nullptr;
    const int status = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
    if (status != 0) {
        const int error = errno; // EAI_SYSTEM's errno, read before anything can change it
        const std::string what = "resolve '" + host + "'";
        if (status == EAI_SYSTEM) {
            throw_errno(error, what);
        }
        throw std::system_error(status, resolve_category(), "corio: " + what);
    }
    const std::unique_ptr<addrinfo, void (*)(addrinfo*)> owned(found, ::freeaddrinfo);
    std::vector<SocketAddress> addresses;
    for (const addrinfo* entry = found; entry != nullptr; entry = entry->ai_next) {
        if ((entry->ai_family != AF_INET && entry->ai_family != AF_INET6) ||
            entry->ai_addrlen > sizeof(sockaddr_storage)) {
            continue;
        }
        sockaddr_storage storage{};
        std::memcpy(&storage, entry->ai_addr, entry->ai_addrlen);
        if (entry->ai_family == AF_INET) {
            reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
        } else {
            reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
        }
        addresses.push_back(SocketAddress::from_native(storage, entry->ai_addrlen));
    }
    if (addresses.empty()) {
        throw std::system_error(EAI_NONAME, resolve_category(),
                                "corio: resolve '" + host + "': no IPv4 or IPv6 address");
    }
    return addresses;
}

} // namespace detail

/// The IPv4 and IPv6 addresses of `host` with `port`, best first; a numeric address gives itself
/// at once. Throws std::system_error (docs/guide.md#addresses-and-name-resolution). The host is taken by value: the
/// Task is lazy.
inline Task<std::vector<SocketAddress>> resolve(std::string host, std::uint16_t port) {
    if (host.empty() || host.find('\0') != std::string::npos) {
        throw std::system_error(EINVAL, std::generic_category(),
                                "corio: resolve needs a host name without NUL characters");
    }
    if (auto numeric = SocketAddress::try_parse(host, port)) {
        co_return std::vector<SocketAddress>{*numeric};
    }
    co_return co_await run_in_thread(detail::resolve_blocking, std::move(host), port);
}

} // namespace corio
