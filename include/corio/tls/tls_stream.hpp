// corio/tls/tls_stream.hpp - TlsStream: TLS over an AsyncSocket, for servers and clients.
//
//     corio::TlsStream stream = co_await corio::TlsStream::accept(context, std::move(socket));
//     std::size_t n = co_await stream.recv(buffer);      // 0: the peer's close_notify
//     co_await stream.send_all(reply);
//     co_await stream.shutdown();                        // our close_notify
//
// OpenSSL never touches the fd. It speaks to a pair of memory BIOs, and corio moves the ciphertext
// between them and the socket with the socket's own operations:
//
//     recv(buffer) <- SSL_read  <- [incoming ring, 24 KiB] <- fill():  socket.recv straight into the ring
//     send(data)   -> SSL_write -> [outgoing ring, 40 KiB] -> flush(): socket.send straight from the ring
//
// So every backend works the same (epoll, poll, io_uring: the socket's operations are corio's),
// and no readiness is hidden: bytes OpenSSL has buffered are read by the next recv, which always
// asks OpenSSL first and waits on the socket only when OpenSSL wants more ciphertext. Before it
// waits it flushes what OpenSSL has to say (a handshake message, a key update): the peer may be
// waiting for it. The rings are OpenSSL's BIO pair (BIO_nwrite0/BIO_nread0 lend their memory, so
// the socket reads and writes in place): allocated once per stream, and nothing is allocated per
// message but what OpenSSL allocates itself.
//
// The outgoing ring holds two records of the largest size (send_all writes two per system call);
// a send flushes it before each record that might not fit, so OpenSSL never finds it full
// (SSL_write's WANT_WRITE, after which the same write would have to be repeated).
//
// Every operation is a Task and may be bounded with timeout_after / timeout_at (a handshake, a
// recv, a send, a shutdown alike). A deadline (or a kill) can only interrupt the socket operation
// under it, and every byte is accounted for before and after each socket operation, so an
// interrupted operation leaves the stream consistent: data OpenSSL took stays queued and goes out
// with the next operation. A send cut short has sent a prefix (as AsyncSocket::send_all).
//
// One recv and one send (or send_all, shutdown) may run at once, from two tasks: a full-duplex
// stream. A second recv, or a second send, while one runs throws std::logic_error, and so does
// anything during a handshake. Two flushes never run at once: a send that must flush while a recv
// flushes waits for it (an Event); a recv that finds a send flushing does not flush (that flush
// takes its bytes too).
//
// Errors: std::system_error with tls_category() and OpenSSL's text (tls/tls_error.hpp). The end of
// the TCP stream without a close_notify is TlsErrc::unexpected_eof, never a clean 0: a peer
// (or an attacker) that cuts the connection cannot pass a truncated stream off as complete.
// After an OpenSSL failure the stream is done: the alert OpenSSL wrote is sent if the socket takes
// it at once, and shutdown() does nothing.
#pragma once

#include "corio/net/async_socket.hpp"
#include "corio/net/socket_address.hpp"
#include "corio/net/socket_operations.hpp"
#include "corio/sync/event.hpp"
#include "corio/task.hpp"
#include "corio/timeout.hpp"
#include "corio/tls/tls_context.hpp"
#include "corio/tls/tls_error.hpp"

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace corio {

namespace detail {

// The state of one TLS connection, on the heap so that a TlsStream can move (even while one of
// its operations is suspended: they belong to this object, not to the handle).
class TlsSession {
public:
    static constexpr std::size_t incoming_buffer_size = 24 * 1024;
    static constexpr std::size_t outgoing_buffer_size = 40 * 1024;
    // The largest record a peer may send: 2^14 bytes of plaintext, 2048 of expansion, a 5-byte header.
    static constexpr std::size_t max_record_size = 16384 + 2048 + 5;
    static_assert(outgoing_buffer_size >= 2 * max_record_size);

    TlsSession(TlsContext context, AsyncSocket socket, bool server)
        : context_(std::move(context)), socket_(std::move(socket)) {
        ClearedErrorQueue cleared;
        ssl_.reset(SSL_new(context_.native_handle()));
        if (!ssl_) {
            throw_tls_error("corio: SSL_new");
        }
        BIO* inner = nullptr;
        BIO* network = nullptr;
        if (BIO_new_bio_pair(&inner, outgoing_buffer_size, &network, incoming_buffer_size) != 1) {
            throw_tls_error("corio: BIO_new_bio_pair");
        }
        network_.reset(network);
        SSL_set_bio(ssl_.get(), inner, inner); // the SSL owns its end of the pair
        if (server) {
            SSL_set_accept_state(ssl_.get());
        } else {
            SSL_set_connect_state(ssl_.get());
        }
    }

    // Client: the server's name, sent as SNI (unless it is an IP address: RFC 6066 has no place
    // for those) and checked against its certificate when the context verifies.
    void expect_host(const std::string& host) {
        const bool is_address = SocketAddress::try_parse(host, 0).has_value();
        ClearedErrorQueue cleared;
        if (!host.empty() && !is_address && SSL_set_tlsext_host_name(ssl_.get(), host.c_str()) != 1) {
            throw_tls_error("corio: TLS server name '" + host + "'");
        }
        if (!context_.verifies_peer()) {
            return;
        }
        if (host.empty()) {
            throw std::invalid_argument("corio: a TLS client that verifies needs the server's host name "
                                        "(or TlsContext::insecure_skip_verification)");
        }
        X509_VERIFY_PARAM* parameters = SSL_get0_param(ssl_.get());
        X509_VERIFY_PARAM_set_hostflags(parameters, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        const int set = is_address ? X509_VERIFY_PARAM_set1_ip_asc(parameters, host.c_str())
                                   : X509_VERIFY_PARAM_set1_host(parameters, host.c_str(), 0);
        if (set != 1) {
            throw_tls_error("corio: TLS host name to verify '" + host + "'");
        }
    }

    Task<> handshake() {
        Busy as_reader(reading_, "a handshake or a recv");
        Busy as_writer(writing_, "a handshake or a send");
        while (!handshake_done_) {
            ClearedErrorQueue cleared;
            const int result = SSL_do_handshake(ssl_.get());
            switch (progress_of(result)) {
            case Progress::done:
                handshake_done_ = true;
                break;
            case Progress::want_read:
                co_await wait_for_peer();
                break;
            case Progress::want_write:
                co_await flush();
                break;
            case Progress::closed:
            case Progress::failed:
                co_await fail(failure("corio: TLS handshake", result));
            }
        }
        co_await flush(); // our last flight (a client's Finished, a server's session tickets)
    }

    Task<std::size_t> recv(std::span<std::byte> buffer) {
        Busy as_reader(reading_, "a recv");
        require_handshake();
        if (buffer.empty()) {
            co_return 0;
        }
        for (;;) {
            ClearedErrorQueue cleared;
            std::size_t received = 0;
            const int result = SSL_read_ex(ssl_.get(), buffer.data(), buffer.size(), &received);
            switch (progress_of(result)) {
            case Progress::done:
                co_return received;
            case Progress::closed: // the peer's close_notify: a clean end of its stream
                co_return 0;
            case Progress::want_read:
                co_await wait_for_peer();
                break;
            case Progress::want_write:
                co_await flush();
                break;
            case Progress::failed:
                co_await fail(failure("corio: TLS recv", result));
            }
        }
    }

    // send (All = false: at most one record, as much of `data` as it holds; gives how much) and
    // send_all (All = true: everything).
    template <bool All>
    Task<std::conditional_t<All, void, std::size_t>> send(std::span<const std::byte> data) {
        Busy as_writer(writing_, "a send");
        require_handshake();
        std::size_t sent = 0;
        while (sent < data.size()) {
            if (BIO_ctrl_get_write_guarantee(SSL_get_wbio(ssl_.get())) < max_record_size) {
                co_await flush(); // room for the record, so that SSL_write never finds the ring full
            }
            ClearedErrorQueue cleared;
            std::size_t written = 0;
            const int result = SSL_write_ex(ssl_.get(), data.data() + sent, data.size() - sent, &written);
            switch (progress_of(result)) {
            case Progress::done:
                sent += written;
                if constexpr (!All) {
                    co_await flush();
                    co_return sent;
                }
                break;
            case Progress::want_write:
                co_await flush();
                break;
            case Progress::want_read: // renegotiation is off: no TLS 1.2 or 1.3 write reads
            case Progress::closed:
            case Progress::failed:
                co_await fail(failure("corio: TLS send", result));
            }
        }
        co_await flush();
        if constexpr (!All) {
            co_return sent; // 0: `data` was empty
        }
    }

    Task<> shutdown() {
        Busy as_writer(writing_, "a send or a shutdown");
        if (failed_ || !handshake_done_ || close_notify_sent_) {
            co_return; // nothing to close cleanly, or done already
        }
        for (;;) {
            if (BIO_ctrl_get_write_guarantee(SSL_get_wbio(ssl_.get())) < max_record_size) {
                co_await flush();
            }
            ClearedErrorQueue cleared;
            const int result = SSL_shutdown(ssl_.get()); // 0: sent; 1: the peer's came earlier
            if (result >= 0) {
                break;
            }
            if (progress_of(result) == Progress::want_write) {
                co_await flush();
                continue;
            }
            co_await fail(failure("corio: TLS shutdown", result));
        }
        close_notify_sent_ = true;
        co_await flush();
    }

    [[nodiscard]] std::string_view alpn_protocol() const noexcept {
        const unsigned char* name = nullptr;
        unsigned int size = 0;
        SSL_get0_alpn_selected(ssl_.get(), &name, &size);
        return name == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(name), size);
    }
    [[nodiscard]] std::string_view server_name() const noexcept {
        const char* name = SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name);
        return name == nullptr ? std::string_view() : std::string_view(name);
    }
    [[nodiscard]] std::string_view protocol_version() const noexcept { return SSL_get_version(ssl_.get()); }
    [[nodiscard]] bool handshake_done() const noexcept { return handshake_done_; }
    [[nodiscard]] bool failed() const noexcept { return failed_; }
    [[nodiscard]] SSL* native_handle() const noexcept { return ssl_.get(); }
    [[nodiscard]] AsyncSocket& socket() noexcept { return socket_; }

private:
    struct FreeSsl {
        void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
    };
    struct FreeBio {
        void operator()(BIO* bio) const noexcept { BIO_free(bio); }
    };

    // Marks a direction taken for as long as an operation runs, however its frame ends.
    class Busy {
    public:
        Busy(bool& flag, const char* what) : flag_(flag) {
            if (flag_) {
                throw std::logic_error(std::string("corio: TlsStream: ") + what +
                                       " is already running on this stream");
            }
            flag_ = true;
        }
        Busy(const Busy&) = delete;
        Busy& operator=(const Busy&) = delete;
        ~Busy() { flag_ = false; }

    private:
        bool& flag_;
    };

    // Ends a flush however its frame ends, and lets a send waiting for it go on.
    class Flushing {
    public:
        explicit Flushing(TlsSession& session) noexcept : session_(session) {
            session_.flushing_ = true;
            session_.flushed_.clear();
        }
        Flushing(const Flushing&) = delete;
        Flushing& operator=(const Flushing&) = delete;
        ~Flushing() {
            session_.flushing_ = false;
            session_.flushed_.set();
        }

    private:
        TlsSession& session_;
    };

    enum class Progress { done, want_read, want_write, closed, failed };

    // What an SSL call's result means (read before any other OpenSSL call: SSL_get_error looks at
    // this thread's error queue).
    Progress progress_of(int result) const noexcept {
        if (result > 0) {
            return Progress::done;
        }
        switch (SSL_get_error(ssl_.get(), result)) {
        case SSL_ERROR_WANT_READ:
            return Progress::want_read;
        case SSL_ERROR_WANT_WRITE:
            return Progress::want_write;
        case SSL_ERROR_ZERO_RETURN:
            return Progress::closed;
        default:
            return Progress::failed;
        }
    }

    void require_handshake() const {
        if (!handshake_done_) {
            throw std::logic_error("corio: TlsStream: the handshake has not been done (handshake(), or "
                                   "TlsStream::accept / TlsStream::connect)");
        }
    }

    bool has_pending() const noexcept { return BIO_ctrl_pending(network_.get()) > 0; }

    // OpenSSL needs more ciphertext: first send what it has to say (the peer may be waiting for
    // it; a send flushing now sends it too), then receive.
    Task<> wait_for_peer() {
        if (!flushing_ && has_pending()) {
            co_await flush();
        }
        co_await fill();
    }

    // Receives ciphertext from the socket straight into the incoming ring. At the end of the TCP
    // stream OpenSSL is told (BIO_shutdown_wr): it decides whether that end was clean.
    Task<> fill() {
        if (eof_) { // OpenSSL saw the end and still wants more: it is no clean end
            throw std::system_error(TlsErrc::unexpected_eof, "corio: TLS");
        }
        char* space = nullptr;
        const int room = BIO_nwrite0(network_.get(), &space);
        if (room <= 0) {
            throw std::logic_error("corio: TlsStream: OpenSSL wants more ciphertext but holds a full ring");
        }
        const std::size_t received =
            co_await socket_.recv(std::span<std::byte>(reinterpret_cast<std::byte*>(space), static_cast<std::size_t>(room)));
        if (received == 0) {
            eof_ = true;
            BIO_shutdown_wr(network_.get());
        } else {
            BIO_nwrite(network_.get(), &space, static_cast<int>(received));
        }
    }

    // Sends all the ciphertext OpenSSL has written, straight from the outgoing ring; what the
    // socket takes leaves the ring, so an interrupted flush loses and repeats nothing.
    Task<> flush() {
        while (flushing_) { // another task's flush: wait for it, then send what is left
            co_await flushed_.wait();
        }
        if (!has_pending()) {
            co_return;
        }
        Flushing flushing(*this);
        char* data = nullptr;
        for (int size = 0; (size = BIO_nread0(network_.get(), &data)) > 0;) {
            const std::size_t taken = co_await socket_.send(
                std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), static_cast<std::size_t>(size)));
            BIO_nread(network_.get(), &data, static_cast<int>(taken));
        }
    }

    // The exception for a failed SSL call (drains the error queue), and the stream is done.
    std::exception_ptr failure(const std::string& what, int result) {
        failed_ = true;
        const int kind = SSL_get_error(ssl_.get(), result);
        std::string detail;
        if (ERR_peek_error() == static_cast<unsigned long>(TlsErrc::certificate_verify_failed)) {
            detail = X509_verify_cert_error_string(SSL_get_verify_result(ssl_.get()));
        }
        const std::error_code fallback = kind == SSL_ERROR_SYSCALL || kind == SSL_ERROR_ZERO_RETURN
                                             ? make_error_code(TlsErrc::unexpected_eof)
                                             : std::make_error_code(std::errc::protocol_error);
        try {
            throw_tls_error(what, detail, fallback);
        } catch (const std::system_error&) {
            return std::current_exception();
        }
    }

    // Sends the alert OpenSSL wrote, if the socket takes it now (never waits: the peer may be
    // gone or stalled), then throws `error`.
    Task<> fail(std::exception_ptr error) {
        if (!flushing_ && has_pending()) {
            try {
                co_await ignore_after(std::chrono::nanoseconds(0), flush());
            } catch (const std::system_error&) { // the peer is gone: it will not read the alert
            }
        }
        std::rethrow_exception(error);
    }

    TlsContext context_; // keeps the SSL_CTX (and its ALPN list) alive
    AsyncSocket socket_;
    std::unique_ptr<SSL, FreeSsl> ssl_;
    std::unique_ptr<BIO, FreeBio> network_; // our end of the pair
    Event flushed_;                          // set when a flush ends (for a send waiting on it)
    bool reading_ = false;
    bool writing_ = false;
    bool flushing_ = false;
    bool handshake_done_ = false;
    bool close_notify_sent_ = false;
    bool eof_ = false;
    bool failed_ = false;
};

} // namespace detail

/// A TLS connection over an AsyncSocket (see the top of this file for how it moves the bytes).
/// Move-only. Destroying it (or close()) closes the socket without a close_notify: call
/// shutdown() first for a clean end. Must not be destroyed while one of its operations runs.
class TlsStream {
public:
    /// Plaintext bytes at most per record (TLS's limit): a send() sends at most this many.
    static constexpr std::size_t max_record_plaintext = 16384;

    /// An empty stream (is_open() is false).
    TlsStream() noexcept = default;

    /// The server side of `socket` (accepted). The handshake is yet to be done: handshake(), or
    /// TlsStream::accept to do both. Throws std::invalid_argument for a client context.
    static TlsStream server(TlsContext context, AsyncSocket socket) {
        if (!context.is_server()) {
            throw std::invalid_argument("corio: TlsStream::server needs a server context (TlsContext::server)");
        }
        return TlsStream(std::make_unique<detail::TlsSession>(std::move(context), std::move(socket), true));
    }

    /// The client side of `socket` (connected) to `host`: a DNS name, sent as SNI, or an IP
    /// address; the server's certificate must name it (unless the context skips verification).
    /// The handshake is yet to be done: handshake(), or TlsStream::connect to do all. Throws
    /// std::invalid_argument for a server context, or an empty host with a verifying context.
    static TlsStream client(TlsContext context, AsyncSocket socket, const std::string& host) {
        if (context.is_server()) {
            throw std::invalid_argument("corio: TlsStream::client needs a client context (TlsContext::client)");
        }
        TlsStream stream(std::make_unique<detail::TlsSession>(std::move(context), std::move(socket), false));
        stream.session_->expect_host(host);
        return stream;
    }

    /// `co_await TlsStream::accept(context, std::move(socket))`: server(), then the handshake.
    /// Bound it with timeout_after: a client that stalls mid-handshake holds its task until then.
    static Task<TlsStream> accept(TlsContext context, AsyncSocket socket) {
        TlsStream stream = server(std::move(context), std::move(socket));
        co_await stream.handshake();
        co_return stream;
    }

    /// `co_await TlsStream::connect(context, host, port)`: connects to `host` (see
    /// AsyncSocket::connect), then client() and the handshake, verifying `host`.
    static Task<TlsStream> connect(TlsContext context, std::string host, std::uint16_t port) {
        AsyncSocket socket = co_await AsyncSocket::connect(host, port);
        TlsStream stream = client(std::move(context), std::move(socket), host);
        co_await stream.handshake();
        co_return stream;
    }

    /// `co_await stream.handshake()`: the TLS handshake (nothing if done). Throws std::system_error
    /// (tls_category(), OpenSSL's text; TlsErrc::certificate_verify_failed with the reason when
    /// the peer's certificate is refused; TlsErrc::unexpected_eof when the peer leaves).
    [[nodiscard]] Task<> handshake() { return session().handshake(); }

    /// `co_await stream.recv(buffer)`: decrypts up to `buffer.size()` bytes and gives how many;
    /// 0 once the peer sent its close_notify (or for an empty buffer). The end of the TCP stream
    /// without a close_notify throws std::system_error with TlsErrc::unexpected_eof. Takes what
    /// AsyncSocket::recv takes; the buffer must live until the recv is done.
    template <class Buffer>
        requires detail::WritableBytes<Buffer>
    [[nodiscard]] Task<std::size_t> recv(Buffer&& buffer) {
        return session().recv(std::span<std::byte>(detail::bytes_of(buffer), std::ranges::size(buffer)));
    }
    [[nodiscard]] Task<std::size_t> recv(std::span<std::byte> buffer) { return session().recv(buffer); }

    /// `co_await stream.send(data)`: encrypts one record of `data` (up to max_record_plaintext
    /// bytes), sends it, and gives how many bytes of `data` it carried. Takes what
    /// AsyncSocket::send takes.
    template <class Buffer>
        requires detail::ReadableBytes<Buffer>
    [[nodiscard]] Task<std::size_t> send(const Buffer& data) {
        return session().send<false>(std::span(detail::const_bytes_of(data), std::ranges::size(data)));
    }
    [[nodiscard]] Task<std::size_t> send(std::span<const std::byte> data) { return session().send<false>(data); }
    [[nodiscard]] Task<std::size_t> send(std::string_view data) { return send(std::as_bytes(std::span(data))); }

    /// `co_await stream.send_all(data)`: sends all of `data`, waiting while the peer is slow to
    /// read. The data must live until then.
    template <class Buffer>
        requires detail::ReadableBytes<Buffer>
    [[nodiscard]] Task<> send_all(const Buffer& data) {
        return session().send<true>(std::span(detail::const_bytes_of(data), std::ranges::size(data)));
    }
    [[nodiscard]] Task<> send_all(std::span<const std::byte> data) { return session().send<true>(data); }
    [[nodiscard]] Task<> send_all(std::string_view data) { return send_all(std::as_bytes(std::span(data))); }

    /// `co_await stream.shutdown()`: sends our close_notify (the peer's recv gives 0). This side
    /// can still recv until the peer's close_notify. Nothing happens after a failure (there is no
    /// clean end then), before the handshake, or a second time.
    [[nodiscard]] Task<> shutdown() { return session().shutdown(); }

    /// The protocol ALPN chose ("http/1.1", "h2"...), or empty.
    [[nodiscard]] std::string_view alpn_protocol() const noexcept {
        return session_ ? session_->alpn_protocol() : std::string_view();
    }
    /// The server name (SNI) the client sent (the server's view) or asked for, or empty.
    [[nodiscard]] std::string_view server_name() const noexcept {
        return session_ ? session_->server_name() : std::string_view();
    }
    /// "TLSv1.3", "TLSv1.2" (once the handshake is done).
    [[nodiscard]] std::string_view protocol_version() const noexcept {
        return session_ ? session_->protocol_version() : std::string_view();
    }
    [[nodiscard]] bool handshake_done() const noexcept { return session_ && session_->handshake_done(); }

    [[nodiscard]] bool is_open() const noexcept { return session_ && session_->socket().is_open(); }
    /// The socket underneath. Do not read from or write to it, nor wait for it to be readable:
    /// OpenSSL may hold bytes already received (recv gives them), and the stream's bytes are
    /// its own.
    [[nodiscard]] AsyncSocket& socket() { return session().socket(); }
    /// The SSL object, for what this class does not cover (the peer's certificate, say).
    [[nodiscard]] SSL* native_handle() const noexcept { return session_ ? session_->native_handle() : nullptr; }

    /// Closes the socket (no close_notify: see shutdown). Idempotent.
    void close() noexcept {
        if (session_) {
            session_->socket().close();
        }
    }

private:
    explicit TlsStream(std::unique_ptr<detail::TlsSession> session) noexcept : session_(std::move(session)) {}

    detail::TlsSession& session() const {
        if (!session_) {
            throw std::logic_error("corio: TlsStream: an empty stream (default-constructed or moved from)");
        }
        return *session_;
    }

    std::unique_ptr<detail::TlsSession> session_;
};

} // namespace corio
