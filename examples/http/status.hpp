// examples/http/status.hpp - the HTTP status codes the example file server answers with.
#pragma once

#include <string_view>

namespace examples::http {

enum class Status : int {
    ok = 200,
    bad_request = 400,
    not_found = 404,
    method_not_allowed = 405,
    request_timeout = 408,
    content_too_large = 413,
    uri_too_long = 414,
    expectation_failed = 417,
    header_fields_too_large = 431,
    not_implemented = 501,
    version_not_supported = 505,
};

/// The reason phrase that goes after the code in a status line.
constexpr std::string_view reason(Status status) noexcept {
    switch (status) {
    case Status::ok:
        return "OK";
    case Status::bad_request:
        return "Bad Request";
    case Status::not_found:
        return "Not Found";
    case Status::method_not_allowed:
        return "Method Not Allowed";
    case Status::request_timeout:
        return "Request Timeout";
    case Status::content_too_large:
        return "Content Too Large";
    case Status::uri_too_long:
        return "URI Too Long";
    case Status::expectation_failed:
        return "Expectation Failed";
    case Status::header_fields_too_large:
        return "Request Header Fields Too Large";
    case Status::not_implemented:
        return "Not Implemented";
    case Status::version_not_supported:
        return "HTTP Version Not Supported";
    }
    return "Unknown";
}

} // namespace examples::http
