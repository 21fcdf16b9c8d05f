// examples/http/response_head.hpp - writing the head of an HTTP/1.1 response into a fixed buffer.
//
// The head is written into the front of the buffer that then carries the start of the body, so
// that a small response leaves in one send(): a head and a body sent apart can meet Nagle's
// algorithm and the client's delayed ACK and wait 40 ms for nothing.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <span>
#include <string_view>

#include "status.hpp"

namespace examples::http {

/// What goes into a response head besides the status.
struct ResponseFields {
    std::string_view content_type = "text/plain; charset=utf-8";
    std::uint64_t content_length = 0;
    bool keep_alive = true;
    bool allow = false; // add "Allow: GET, HEAD" (a 405 must say what is allowed)
};

/// Writes the head into `out` and returns its size, or 0 if it does not fit (it always fits in
/// 512 bytes). Never allocates.
inline std::size_t write_response_head(std::span<char> out, Status status,
                                       const ResponseFields& fields) noexcept {
    std::size_t size = 0;
    bool fits = true;
    const auto put = [&](std::string_view text) {
        if (text.size() > out.size() - size) {
            fits = false;
            return;
        }
        text.copy(out.data() + size, text.size());
        size += text.size();
    };
    const auto put_number = [&](std::uint64_t number) {
        char digits[24];
        const auto result = std::to_chars(std::begin(digits), std::end(digits), number);
        put(std::string_view(digits, static_cast<std::size_t>(result.ptr - digits)));
    };

    put("HTTP/1.1 ");
    put_number(static_cast<std::uint64_t>(status));
    put(" ");
    put(reason(status));
    // A server with a clock must send Date (RFC 9110), in the IMF-fixdate format.
    char date[64];
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    const std::size_t date_size =
        ::gmtime_r(&now, &utc) != nullptr
            ? std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &utc)
            : 0;
    if (date_size > 0) {
        put("\r\nDate: ");
        put(std::string_view(date, date_size));
    }
    put("\r\nServer: corio-http_server\r\nContent-Type: ");
    put(fields.content_type);
    put("\r\nContent-Length: ");
    put_number(fields.content_length);
    // nosniff: a browser trusts our Content-Type instead of guessing (and refuses a script or a
    // stylesheet sent with the wrong one). no-store: each tab really asks us again.
    put("\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store");
    if (fields.allow) {
        put("\r\nAllow: GET, HEAD");
    }
    put(fields.keep_alive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n");
    return fits ? size : 0;
}

} // namespace examples::http
