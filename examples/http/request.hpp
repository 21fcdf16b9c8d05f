// examples/http/request.hpp - reading the head of an HTTP/1.x request (RFC 9112), strictly.
//
// Example code, not corio's API: just enough HTTP for a file server, and no more lenient than it
// has to be. A request head is a request line and header lines, each ending in CRLF, then an empty
// line. The parser only looks at bytes the connection already holds and never allocates: every
// field it gives is a view into the connection's buffer. What it does not like is a 400 (or 505
// for an HTTP major version other than 1, 414 for a target over 4 KiB, 417 for an expectation
// other than 100-continue), because a server that guesses what a malformed request meant is a
// server that two parties can read two different ways (request smuggling).
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "status.hpp"

namespace examples::http {

/// The parts of a request head the file server acts on. Views into the buffer given to parse().
struct Request {
    std::string_view method;
    std::string_view target; // as sent: "/a%20b.html?x=1"
    int minor_version = 1;   // HTTP/1.<minor_version>
    bool keep_alive = true;  // what the client asked for (Connection header and version)
    std::uint64_t content_length = 0;
    bool has_transfer_encoding = false; // a body whose end we cannot find: answer, then close
    bool expects_continue = false;      // "Expect: 100-continue" in HTTP/1.1: see http_server.cpp
};

/// The longest request target accepted; a longer one is a 414.
inline constexpr std::size_t max_target = 4096;

/// What parse() found: a request, or the status to answer a malformed one with.
struct ParsedRequest {
    Request request;
    Status error = Status::ok; // ok: `request` is valid
};

namespace detail {

constexpr bool is_token_char(char c) noexcept {
    // RFC 9110's tchar: letters, digits and these symbols.
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

constexpr bool is_token(std::string_view text) noexcept {
    if (text.empty()) {
        return false;
    }
    for (const char c : text) {
        if (!is_token_char(c)) {
            return false;
        }
    }
    return true;
}

// A header value may hold visible characters, spaces, tabs and bytes >= 0x80; no other controls.
constexpr bool is_field_value(std::string_view text) noexcept {
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if ((byte < 0x20 && c != '\t') || byte == 0x7f) {
            return false;
        }
    }
    return true;
}

constexpr char lower(char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr bool equals_ignoring_case(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

constexpr std::string_view trim(std::string_view text) noexcept {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    return text;
}

// Cuts the next line (without its CRLF) off the front of `head`. False if the line does not end in
// CRLF: a bare LF or a CR inside a line is malformed.
constexpr bool next_line(std::string_view& head, std::string_view& line) noexcept {
    const std::size_t newline = head.find('\n');
    if (newline == std::string_view::npos || newline == 0 || head[newline - 1] != '\r') {
        return false;
    }
    line = head.substr(0, newline - 1);
    head.remove_prefix(newline + 1);
    return line.find('\r') == std::string_view::npos;
}

// Calls `visit` with each member of a header's comma-separated list, trimmed; empty ones skipped.
template <class Visit>
constexpr void for_each_member(std::string_view value, Visit visit) {
    while (!value.empty()) {
        const std::size_t comma = value.find(',');
        const std::string_view member = trim(value.substr(0, comma));
        if (!member.empty()) {
            visit(member);
        }
        value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    }
}

// "close" and "keep-alive" in a Connection header's list.
struct ConnectionOptions {
    bool close = false;
    bool keep_alive = false;
};

constexpr void read_connection_options(std::string_view value,
                                       ConnectionOptions& options) noexcept {
    for_each_member(value, [&options](std::string_view option) {
        options.close = options.close || equals_ignoring_case(option, "close");
        options.keep_alive = options.keep_alive || equals_ignoring_case(option, "keep-alive");
    });
}

// What an Expect header's list asks for: 100-continue is the only expectation HTTP defines.
struct Expectations {
    bool continue_first = false;
    bool unknown = false;
};

constexpr void read_expectations(std::string_view value, Expectations& expectations) noexcept {
    for_each_member(value, [&expectations](std::string_view expectation) {
        if (equals_ignoring_case(expectation, "100-continue")) {
            expectations.continue_first = true;
        } else {
            expectations.unknown = true;
        }
    });
}

constexpr int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// A Host value (RFC 9112 §3.2): RFC 3986's host, then an optional ":" port. The host is an IPv6
// literal in brackets, or a name (an IPv4 address is one) of letters, digits, "-._~", the
// sub-delims "!$&'()*+,;=" and %XX escapes; the port at most five digits, at most 65535. Empty is
// valid: it says the target has no authority.
constexpr bool is_valid_host(std::string_view host) noexcept {
    std::string_view port; // with its ':'
    if (host.starts_with('[')) {
        const std::size_t close = host.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        const std::string_view literal = host.substr(1, close - 1);
        if (literal.find(':') == std::string_view::npos ||
            literal.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos) {
            return false;
        }
        port = host.substr(close + 1);
    } else {
        const std::size_t colon = host.find(':');
        const std::string_view name = host.substr(0, colon);
        port = colon == std::string_view::npos ? std::string_view() : host.substr(colon);
        for (std::size_t i = 0; i < name.size(); ++i) {
            const char c = name[i];
            if (c == '%') {
                if (i + 2 >= name.size() || hex_value(name[i + 1]) < 0 ||
                    hex_value(name[i + 2]) < 0) {
                    return false;
                }
                i += 2;
            } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') ||
                         std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos)) {
                return false;
            }
        }
    }
    if (port.empty()) {
        return true;
    }
    if (port.front() != ':' || port.size() > 6 ||
        port.find_first_not_of("0123456789", 1) != std::string_view::npos) {
        return false;
    }
    unsigned number = 0;
    for (const char digit : port.substr(1)) {
        number = number * 10 + static_cast<unsigned>(digit - '0');
    }
    return number <= 65535; // an empty port (host ":") is allowed too
}

// "HTTP/1.1" -> 1; a malformed version is a 400, another major version a 505.
constexpr Status read_version(std::string_view text, int& minor) noexcept {
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (text.size() != 8 || !text.starts_with("HTTP/") || !digit(text[5]) || text[6] != '.' ||
        !digit(text[7])) {
        return Status::bad_request;
    }
    if (text[5] != '1') {
        return Status::version_not_supported;
    }
    minor = text[7] - '0';
    return Status::ok;
}

} // namespace detail

/// Whether HTTP defines `method` (RFC 9110 §9, and PATCH): one the server knows but does not allow
/// is a 405, one it does not know a 501. Methods are case-sensitive.
constexpr bool is_known_method(std::string_view method) noexcept {
    for (const std::string_view known :
         {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}) {
        if (method == known) {
            return true;
        }
    }
    return false;
}

/// How many bytes at the front of `data` are empty lines (CRLF) that may precede a request line;
/// RFC 9112 asks servers to ignore them (some clients send one after a request body).
constexpr std::size_t leading_empty_lines(std::string_view data) noexcept {
    std::size_t skipped = 0;
    while (data.substr(skipped, 2) == "\r\n") {
        skipped += 2;
    }
    return skipped;
}

/// Where the head at the front of `data` ends: the size of the head including its empty line, or
/// npos while the head is incomplete. Any line with nothing but an optional CR ends it, so that a
/// client that ends its lines in a bare LF gets a prompt 400 from parse() rather than a wait.
constexpr std::size_t find_head_end(std::string_view data) noexcept {
    std::size_t line_start = 0;
    for (;;) {
        const std::size_t newline = data.find('\n', line_start);
        if (newline == std::string_view::npos) {
            return std::string_view::npos;
        }
        const std::size_t length = newline - line_start;
        if (length == 0 || (length == 1 && data[line_start] == '\r')) {
            return newline + 1;
        }
        line_start = newline + 1;
    }
}

/// Parses a complete head as find_head_end() delimited it.
constexpr ParsedRequest parse_request(std::string_view head) noexcept {
    ParsedRequest parsed;
    Request& request = parsed.request;
    const auto fail = [&parsed](Status status) {
        parsed.error = status;
        return parsed;
    };

    // Request line: METHOD SP TARGET SP HTTP/1.x, single spaces only.
    std::string_view line;
    if (!detail::next_line(head, line)) {
        return fail(Status::bad_request);
    }
    const std::size_t first_space = line.find(' ');
    const std::size_t second_space =
        first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
    if (second_space == std::string_view::npos) {
        return fail(Status::bad_request);
    }
    request.method = line.substr(0, first_space);
    request.target = line.substr(first_space + 1, second_space - first_space - 1);
    if (!detail::is_token(request.method) || request.target.empty()) {
        return fail(Status::bad_request);
    }
    for (const char c : request.target) { // visible ASCII only: no spaces, controls or >= 0x80
        const auto byte = static_cast<unsigned char>(c);
        if (byte <= 0x20 || byte >= 0x7f) {
            return fail(Status::bad_request);
        }
    }
    if (request.target.size() > max_target) {
        return fail(Status::uri_too_long);
    }
    if (const Status version =
            detail::read_version(line.substr(second_space + 1), request.minor_version);
        version != Status::ok) {
        return fail(version);
    }

    // Header lines: NAME ":" OWS VALUE OWS, until the empty line.
    int hosts = 0;
    bool has_content_length = false;
    detail::ConnectionOptions connection;
    detail::Expectations expectations;
    for (;;) {
        if (!detail::next_line(head, line)) {
            return fail(Status::bad_request);
        }
        if (line.empty()) {
            break;
        }
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
            return fail(Status::bad_request);
        }
        // No space before the colon and no line folding (a line that starts with a space).
        const std::string_view name = line.substr(0, colon);
        const std::string_view value = detail::trim(line.substr(colon + 1));
        if (!detail::is_token(name) || !detail::is_field_value(value)) {
            return fail(Status::bad_request);
        }
        if (detail::equals_ignoring_case(name, "host")) {
            ++hosts;
            if (!detail::is_valid_host(value)) {
                return fail(Status::bad_request);
            }
        } else if (detail::equals_ignoring_case(name, "content-length")) {
            // Digits only; a second Content-Length is refused even if equal (no guessing).
            std::uint64_t length = 0;
            const char* end = value.data() + value.size();
            const auto [stop, error] = std::from_chars(value.data(), end, length);
            if (has_content_length || value.empty() || value.front() == '+' ||
                error != std::errc{} || stop != end) {
                return fail(Status::bad_request);
            }
            has_content_length = true;
            request.content_length = length;
        } else if (detail::equals_ignoring_case(name, "transfer-encoding")) {
            request.has_transfer_encoding = true;
        } else if (detail::equals_ignoring_case(name, "connection")) {
            detail::read_connection_options(value, connection);
        } else if (detail::equals_ignoring_case(name, "expect")) {
            detail::read_expectations(value, expectations);
        }
    }
    // HTTP/1.1 requires exactly one Host; both body framings at once is the smuggling classic.
    if (hosts > 1 || (hosts == 0 && request.minor_version >= 1) ||
        (has_content_length && request.has_transfer_encoding)) {
        return fail(Status::bad_request);
    }
    // HTTP/1.0 knows no expectations: a server must ignore them (RFC 9110 §10.1.1).
    if (request.minor_version >= 1) {
        if (expectations.unknown) {
            return fail(Status::expectation_failed);
        }
        request.expects_continue = expectations.continue_first;
    }
    // HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
    request.keep_alive = !connection.close && (request.minor_version >= 1 || connection.keep_alive);
    return parsed;
}

} // namespace examples::http
