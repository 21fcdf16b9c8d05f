// SocketAddress: numeric IPv4/IPv6 parsing, the port, and the text forms.
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <system_error>

#include <corio/net/socket_address.hpp>

#include "support/catch.hpp"
#include "support/leak_check.hpp"

namespace {

using corio::SocketAddress;

// The errno a parse throws with, or 0 when it does not throw std::system_error.
int parse_error(std::string_view host, std::uint16_t port = 80) {
    try {
        (void)SocketAddress::parse(host, port);
    } catch (const std::system_error& e) {
        return e.code().value();
    }
    return 0;
}

} // namespace

TEST_CASE("SocketAddress: a default address is empty", "[socket_address]") {
    corio::test::FrameLeakCheck leaks;
    const SocketAddress address;
    CHECK(address.family() == AF_UNSPEC);
    CHECK(address.size() == 0);
    CHECK(address.port() == 0);
    CHECK(address.host().empty());
}

TEST_CASE("SocketAddress: parses IPv4", "[socket_address]") {
    corio::test::FrameLeakCheck leaks;
    const SocketAddress address = SocketAddress::parse("127.0.0.1", 80);
    REQUIRE(address.family() == AF_INET);
    CHECK(address.size() == sizeof(sockaddr_in));
    CHECK(address.port() == 80);
    CHECK(address.host() == "127.0.0.1");
    CHECK(address.to_string() == "127.0.0.1:80");

    const auto* native = reinterpret_cast<const sockaddr_in*>(address.data());
    CHECK(native->sin_family == AF_INET);
    CHECK(ntohs(native->sin_port) == 80);
    CHECK(ntohl(native->sin_addr.s_addr) == 0x7f000001U);

    const SocketAddress any = SocketAddress::parse("0.0.0.0", 0);
    CHECK(any.family() == AF_INET);
    CHECK(any.to_string() == "0.0.0.0:0");
    CHECK(SocketAddress::parse("255.255.255.255", 65535).to_string() == "255.255.255.255:65535");
}

TEST_CASE("SocketAddress: parses IPv6 with and without brackets", "[socket_address]") {
    corio::test::FrameLeakCheck leaks;
    for (std::string_view text : {std::string_view("::1"), std::string_view("[::1]")}) {
        INFO("host text: " << text);
        const SocketAddress address = SocketAddress::parse(text, 80);
        REQUIRE(address.family() == AF_INET6);
        CHECK(address.size() == sizeof(sockaddr_in6));
        CHECK(address.port() == 80);
        CHECK(address.host() == "::1");
        CHECK(address.to_string() == "[::1]:80");

        const auto* native = reinterpret_cast<const sockaddr_in6*>(address.data());
        CHECK(native->sin6_family == AF_INET6);
        CHECK(ntohs(native->sin6_port) == 80);
        in6_addr loopback = IN6ADDR_LOOPBACK_INIT;
        CHECK(std::memcmp(&native->sin6_addr, &loopback, sizeof loopback) == 0);
    }
    CHECK(SocketAddress::parse("2001:db8::1", 443).to_string() == "[2001:db8::1]:443");
    CHECK(SocketAddress::parse("::", 0).to_string() == "[::]:0");
    CHECK(SocketAddress::parse("::ffff:127.0.0.1", 7).family() == AF_INET6);
}

TEST_CASE("SocketAddress: the port round-trips in host byte order", "[socket_address]") {
    corio::test::FrameLeakCheck leaks;
    for (std::uint16_t port :
         {std::uint16_t{0}, std::uint16_t{1}, std::uint16_t{80}, std::uint16_t{0x1234},
          std::uint16_t{0xff00}, std::uint16_t{65535}}) {
        INFO("port " << port);
        CHECK(SocketAddress::parse("127.0.0.1", port).port() == port);
        CHECK(SocketAddress::parse("::1", port).port() == port);
        CHECK(SocketAddress::parse("10.0.0.1", port).to_string() ==
              "10.0.0.1:" + std::to_string(port));
        CHECK(SocketAddress::parse("::1", port).to_string() == "[::1]:" + std::to_string(port));
    }
}

TEST_CASE("SocketAddress: from_native adopts what the kernel filled in", "[socket_address]") {
    corio::test::FrameLeakCheck leaks;
    const SocketAddress original = SocketAddress::parse("192.168.1.2", 8080);
    sockaddr_storage storage{};
    std::memcpy(&storage, original.data(), original.size());
    const SocketAddress copy = SocketAddress::from_native(storage, original.size());
    CHECK(copy.family() == AF_INET);
    CHECK(copy.to_string() == "192.168.1.2:8080");

    const SocketAddress v6 = SocketAddress::parse("fe80::1", 9);
    sockaddr_storage storage6{};
    std::memcpy(&storage6, v6.data(), v6.size());
    CHECK(SocketAddress::from_native(storage6, v6.size()).to_string() == "[fe80::1]:9");
}

TEST_CASE("SocketAddress: anything but a numeric address throws EINVAL", "[socket_address]") {
    corio::test::FrameLeakCheck leaks;
    using namespace std::string_view_literals;
    const std::string_view invalid[] = {
        "localhost"sv,    // names are not resolved
        ""sv,             // empty
        "1.2.3"sv,        // too few parts
        "1.2.3.4.5"sv,    // too many
        "256.0.0.1"sv,    // out of range
        "::g"sv,          // not hex
        "127.0.0.1\0x"sv, // an embedded NUL must not cut the text short
        "::1\0garbage"sv, // the same for IPv6
        "[::1"sv,         // unbalanced bracket
        "::1]"sv,         // unbalanced bracket
        "[]"sv,           // empty in brackets
        " 127.0.0.1"sv,   // whitespace
        "127.0.0.1:80"sv, // a port does not belong in the host
    };
    for (std::string_view text : invalid) {
        INFO("host text: \"" << std::string(text) << "\" (" << text.size() << " bytes)");
        CHECK(parse_error(text) == EINVAL);
    }

    try {
        (void)SocketAddress::parse("localhost", 1);
        FAIL("parse(\"localhost\") did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::invalid_argument);
        CHECK(std::string(e.what()).find("localhost") != std::string::npos);
    }
}

// The documentation allows brackets around IPv6 only ("::1", also "[::1]"; EINVAL for anything
// else): a bracketed IPv4 address is not an accepted spelling.
TEST_CASE("SocketAddress: brackets are for IPv6 only", "[socket_address]") {
    corio::test::FrameLeakCheck leaks;
    CHECK(parse_error("[::1]") == 0);
    CHECK(parse_error("[127.0.0.1]") == EINVAL);
}
