// corio/tls/tls_error.hpp - OpenSSL's errors as std::system_error, in a category of their own.
//
// OpenSSL reports a failure by pushing entries onto an error queue that belongs to the thread. A
// Scheduler runs many connections on one thread, so an entry left behind by one connection would
// be read as the cause of the next failure of another. Two habits prevent that: the queue is
// cleared before every call whose failure is read from it (ClearedErrorQueue), and a failure
// drains the whole queue into the exception it throws (throw_tls_error).
//
// The error code is the first entry (the root cause: the later ones say what failed because of
// it), as OpenSSL packs it (library and reason, which fits an int since OpenSSL 3.0). An entry
// from the system library (fopen of a missing file, say) is an errno: it becomes a code in
// std::generic_category(), so `code() == std::errc::no_such_file_or_directory` works. what()
// carries every entry's text, and the detail OpenSSL attached to it (a verification error
// string, a file name).
#pragma once

#include <openssl/err.h>
#include <openssl/opensslv.h>
#include <openssl/ssl.h>

#include <string>
#include <system_error>
#include <type_traits>

#if OPENSSL_VERSION_MAJOR < 3
#error "corio/tls needs OpenSSL 3.0 or later"
#endif

namespace corio {

/// The OpenSSL errors a program may want to tell apart (compare with `error.code()`). Their values
/// are OpenSSL's packed error codes, as ERR_get_error() gives them.
enum class TlsErrc : int {
    /// The peer closed the connection without a close_notify: the data may have been cut short
    /// (a truncation attack, or a peer that crashed). Never reported as a clean end.
    unexpected_eof = static_cast<int>(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNEXPECTED_EOF_WHILE_READING)),
    /// The peer's certificate did not verify (untrusted, expired, wrong host name...); what()
    /// says why.
    certificate_verify_failed = static_cast<int>(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_CERTIFICATE_VERIFY_FAILED)),
};

namespace detail {

class TlsCategory final : public std::error_category {
public:
    [[nodiscard]] const char* name() const noexcept override { return "openssl"; }
    [[nodiscard]] std::string message(int value) const override {
        // Loads OpenSSL's reason strings once (a no-op after the first TLS context).
        OPENSSL_init_ssl(0, nullptr);
        char text[256] = {};
        ERR_error_string_n(static_cast<unsigned long>(value), text, sizeof text);
        return text;
    }
};

} // namespace detail

/// The category of OpenSSL's error codes: message() is OpenSSL's own text for the code
/// (ERR_error_string_n: "error:0A000126:SSL routines::unexpected eof while reading").
inline const std::error_category& tls_category() noexcept {
    static const detail::TlsCategory category;
    return category;
}

inline std::error_code make_error_code(TlsErrc error) noexcept {
    return {static_cast<int>(error), tls_category()};
}

namespace detail {

/// Empties this thread's OpenSSL error queue when made: what a call pushes afterwards is its own.
struct ClearedErrorQueue {
    ClearedErrorQueue() noexcept { ERR_clear_error(); }
};

/// Throws a std::system_error for the entries of this thread's error queue, and leaves the queue
/// empty. The code is the first entry's (or `fallback` if the queue is empty, e.g.
/// TlsErrc::unexpected_eof); what() reads "WHAT (DETAIL; the first entry's data; the later
/// entries): the first entry's text", the last part added by std::system_error itself.
[[noreturn]] inline void throw_tls_error(const std::string& what, const std::string& detail = {},
                                         std::error_code fallback = make_error_code(TlsErrc::unexpected_eof)) {
    std::error_code code;
    std::string notes = detail;
    const auto note = [&notes](const std::string& text) {
        notes += (notes.empty() ? "" : "; ") + text;
    };
    const char* data = nullptr;
    int flags = 0;
    while (const unsigned long entry = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
        if (!code) {
            code = ERR_SYSTEM_ERROR(entry)
                       ? std::error_code(static_cast<int>(ERR_GET_REASON(entry)), std::generic_category())
                       : std::error_code(static_cast<int>(entry), tls_category());
        } else {
            char entry_text[256] = {};
            ERR_error_string_n(entry, entry_text, sizeof entry_text);
            note(entry_text);
        }
        if (data != nullptr && (flags & ERR_TXT_STRING) != 0 && *data != '\0') {
            note(data);
        }
    }
    if (!code) {
        code = fallback;
    }
    throw std::system_error(code, notes.empty() ? what : what + " (" + notes + ")");
}

} // namespace detail

} // namespace corio

template <>
struct std::is_error_code_enum<corio::TlsErrc> : std::true_type {};
