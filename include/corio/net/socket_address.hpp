// corio/net/socket_address.hpp - a socket endpoint: IPv4 or IPv6 (numeric address and port), or a
// Unix-domain socket's path.
//
// One type for every family, rather than a separate UnixAddress: accept(), local_address() and
// peer_address() give whatever the kernel filled in, so the same AsyncSocket serves TCP and Unix
// streams, and a sockaddr_storage holds a sockaddr_un as it holds a sockaddr_in6.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace corio {

/// An IPv4 or IPv6 address with a port, or a Unix-domain socket's path, as the socket calls take
/// and give it.
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

    /// A Unix-domain socket's filesystem path (AF_UNIX). Throws std::system_error: ENAMETOOLONG if
    /// the path does not fit sockaddr_un (max_unix_path bytes at most), EINVAL if it is empty or
    /// holds a NUL. Binding creates the file; corio never removes it (see unix_socket.hpp).
    static SocketAddress from_path(std::string_view path) {
        if (path.empty() || path.find('\0') != std::string_view::npos) {
            throw std::system_error(EINVAL, std::generic_category(),
                                    "corio: not a Unix socket path: '" + std::string(path) + "'");
        }
        return unix_address(path, 0);
    }

#if defined(__linux__)
    /// A Linux abstract Unix-domain socket name: no file, gone with the last socket bound to it.
    /// `name` is without the leading NUL; to_string() shows it as "@name".
    static SocketAddress abstract_name(std::string_view name) { return unix_address(name, 1); }
#endif

    /// The longest path from_path takes (sockaddr_un's sun_path keeps its terminating NUL).
    static constexpr std::size_t max_unix_path = sizeof(sockaddr_un{}.sun_path) - 1;

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

    /// A Unix-domain socket's path ("" for another family or an unnamed socket); an abstract
    /// name comes as "@name".
    [[nodiscard]] std::string path() const {
        constexpr auto offset = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path));
        if (family() != AF_UNIX || size_ <= offset) {
            return {}; // unnamed: a socket that was never bound, like a connecting client
        }
        const char* name = reinterpret_cast<const sockaddr_un*>(&storage_)->sun_path;
        const std::size_t length = size_ - offset;
        if (name[0] == '\0') {
            return "@" + std::string(name + 1, length - 1);
        }
        return {name, ::strnlen(name, length)}; // the kernel may or may not count the NUL
    }

    /// "127.0.0.1:5001", "[::1]:5001", or a Unix socket's path ("(unnamed)" if it has none).
    [[nodiscard]] std::string to_string() const {
        if (family() == AF_UNIX) {
            std::string text = path();
            return text.empty() ? "(unnamed)" : text;
        }
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
    // An AF_UNIX address: `name` at sun_path + `skip` (1 for an abstract name's leading NUL).
    static SocketAddress unix_address(std::string_view name, std::size_t skip) {
        SocketAddress address;
        auto* un = reinterpret_cast<sockaddr_un*>(&address.storage_);
        if (skip + name.size() > max_unix_path) {
            throw std::system_error(ENAMETOOLONG, std::generic_category(),
                                    "corio: Unix socket name longer than " +
                                        std::to_string(max_unix_path) + " bytes: '" +
                                        std::string(name) + "'");
        }
        un->sun_family = AF_UNIX;
        std::memcpy(un->sun_path + skip, name.data(), name.size());
        const std::size_t terminator = skip == 0 ? 1 : 0; // a path counts its NUL, a name does not
        address.size_ =
            static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + skip + name.size() + terminator);
        return address;
    }

    sockaddr_storage storage_{};
    socklen_t size_ = 0;
};

} // namespace corio
