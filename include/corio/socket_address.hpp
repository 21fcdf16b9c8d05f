// corio/socket_address.hpp - an IPv4 or IPv6 endpoint (numeric address and port).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace corio {

/// An IPv4 or IPv6 address with a port, as the socket calls take and give it.
class SocketAddress {
public:
    SocketAddress() noexcept = default;

    /// Parses a numeric IPv4 ("127.0.0.1") or IPv6 ("::1", also "[::1]"; brackets only for IPv6)
    /// address.
    /// Throws std::system_error(EINVAL) for anything else (names: see corio::resolve).
    static SocketAddress parse(std::string_view host, std::uint16_t port) {
        if (auto address = try_parse(host, port)) {
            return *address;
        }
        throw std::system_error(EINVAL, std::generic_category(),
                                "corio: not a numeric IPv4 or IPv6 address: '" + std::string(host) + "'");
    }

    /// parse(), with an empty optional instead of the exception (a name to resolve, say).
    static std::optional<SocketAddress> try_parse(std::string_view host, std::uint16_t port) {
        const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
        if (bracketed) {
            host = host.substr(1, host.size() - 2);
        }
        std::string text(host); // inet_pton needs a terminated string
        SocketAddress address;
        if (text.find('\0') != std::string::npos) {
            return std::nullopt;
        }
        auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage_);
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage_);
        if (!bracketed && ::inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(port);
            address.size_ = sizeof(sockaddr_in);
        } else if (::inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(port);
            address.size_ = sizeof(sockaddr_in6);
        } else {
            return std::nullopt;
        }
        return address;
    }

    /// Adopts what accept/getsockname/getpeername filled in.
    static SocketAddress from_native(const sockaddr_storage& storage, socklen_t size) noexcept {
        SocketAddress address;
        address.storage_ = storage;
        address.size_ = size;
        return address;
    }

    [[nodiscard]] int family() const noexcept { return size_ == 0 ? AF_UNSPEC : storage_.ss_family; }
    [[nodiscard]] const sockaddr* data() const noexcept {
        return reinterpret_cast<const sockaddr*>(&storage_);
    }
    [[nodiscard]] socklen_t size() const noexcept { return size_; }

    [[nodiscard]] std::uint16_t port() const noexcept {
        switch (family()) {
        case AF_INET: return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
        case AF_INET6: return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
        default: return 0;
        }
    }

    /// The numeric address without the port: "127.0.0.1", "::1".
    [[nodiscard]] std::string host() const {
        char text[INET6_ADDRSTRLEN] = {};
        const void* raw = nullptr;
        switch (family()) {
        case AF_INET: raw = &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr; break;
        case AF_INET6: raw = &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr; break;
        default: return {};
        }
        return ::inet_ntop(family(), raw, text, sizeof text) != nullptr ? text : "";
    }

    /// "127.0.0.1:5001" or "[::1]:5001".
    [[nodiscard]] std::string to_string() const {
        // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, wrongly) on `"[" + host()`.
        std::string text;
        if (family() == AF_INET6) {
            text += '[';
            text += host();
            text += ']';
        } else {
            text += host();
        }
        text += ':';
        text += std::to_string(port());
        return text;
    }

private:
    sockaddr_storage storage_{};
    socklen_t size_ = 0;
};

} // namespace corio
