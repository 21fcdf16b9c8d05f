// corio/tls/tls_context.hpp - TlsContext: what a TLS server or client is configured with (an
// OpenSSL SSL_CTX), shared by all its connections.
//
//     auto server = corio::TlsContext::server("cert.pem", "key.pem").alpn_protocols({"http/1.1"});
//     auto client = corio::TlsContext::client().trust_file("ca.pem");   // + the system's CAs
//
// Safe by default, because a default is what most programs keep: a client verifies the server's
// certificate against the system's trust store and the host name it connects to (TlsStream sets
// it per connection), and both sides refuse anything older than TLS 1.2 and renegotiation.
// Turning verification off takes a call that says what it does, insecure_skip_verification().
//
// A TlsContext is a handle: copies share one SSL_CTX (and its ALPN list), and every TlsStream
// keeps its context alive, so a context may go before its streams. Configure it before the first
// stream is made, on one thread; after that it is only read, and threads may share it (each
// thread of run_on_threads making streams from one context is fine: OpenSSL locks the SSL_CTX).
#pragma once

#include "corio/tls/tls_error.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace corio {

namespace detail {

// What the handles of one context share. The ALPN list lives here because OpenSSL's selection
// callback gets a pointer to it: it must outlive the SSL_CTX's last handshake, which the shared
// ownership (streams hold the state) guarantees.
struct TlsContextState {
    TlsContextState(SSL_CTX* native_context, bool server) noexcept
        : context(native_context), is_server(server) {}
    TlsContextState(const TlsContextState&) = delete;
    TlsContextState& operator=(const TlsContextState&) = delete;
    ~TlsContextState() { SSL_CTX_free(context); }

    SSL_CTX* context;
    bool is_server;
    bool verifies_peer = false;
    std::string alpn_wire; // the protocols, each prefixed by its length (RFC 7301's format)
};

} // namespace detail

/// A TLS configuration for servers or for clients (an OpenSSL SSL_CTX behind a shared handle).
class TlsContext {
public:
    /// A server context with the certificate chain in `certificate_chain_file` (PEM: the
    /// server's certificate first, then the intermediates) and its private key in
    /// `private_key_file` (PEM). Throws std::system_error (a missing file: an errno code; a bad
    /// file or a key that does not match: tls_category()) naming the file.
    static TlsContext server(const std::string& certificate_chain_file, const std::string& private_key_file) {
        TlsContext context(TLS_server_method(), true);
        SSL_CTX* native = context.native_handle();
        detail::ClearedErrorQueue cleared;
        if (SSL_CTX_use_certificate_chain_file(native, certificate_chain_file.c_str()) != 1) {
            detail::throw_tls_error("corio: TLS certificate file '" + certificate_chain_file + "'");
        }
        if (SSL_CTX_use_PrivateKey_file(native, private_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
            detail::throw_tls_error("corio: TLS private key file '" + private_key_file + "'");
        }
        if (SSL_CTX_check_private_key(native) != 1) {
            detail::throw_tls_error("corio: TLS private key '" + private_key_file +
                                    "' does not match the certificate '" + certificate_chain_file + "'");
        }
        return context;
    }

    /// A client context that verifies servers: their certificate must chain to a CA of the
    /// system's trust store (or one added with trust_file) and name the host given to
    /// TlsStream::client / TlsStream::connect. Throws std::system_error if the trust store
    /// cannot be set up.
    static TlsContext client() {
        TlsContext context(TLS_client_method(), false);
        SSL_CTX* native = context.native_handle();
        detail::ClearedErrorQueue cleared;
        if (SSL_CTX_set_default_verify_paths(native) != 1) {
            detail::throw_tls_error("corio: TLS: the system's trust store");
        }
        SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
        context.state_->verifies_peer = true;
        return context;
    }

    /// Client: trusts the CA certificates in `ca_file` (PEM) too, besides the system's. Throws
    /// std::system_error naming the file if it cannot be read.
    TlsContext& trust_file(const std::string& ca_file) {
        require_client("trust_file");
        detail::ClearedErrorQueue cleared;
        if (SSL_CTX_load_verify_file(native_handle(), ca_file.c_str()) != 1) {
            detail::throw_tls_error("corio: TLS trust file '" + ca_file + "'");
        }
        return *this;
    }

    /// Client: accepts any certificate, for any host name: anyone on the path can read and change
    /// the traffic. For tests and for servers identified some other way, never by default.
    TlsContext& insecure_skip_verification() {
        require_client("insecure_skip_verification");
        SSL_CTX_set_verify(native_handle(), SSL_VERIFY_NONE, nullptr);
        state_->verifies_peer = false;
        return *this;
    }

    /// The application protocols (ALPN, e.g. "h2", "http/1.1"). A client offers them; a server
    /// picks the first of its own list that the client offers, and refuses a client that offers
    /// only others (RFC 7301's no_application_protocol alert). A client that offers none gets
    /// none; an empty list turns ALPN off. TlsStream::alpn_protocol() gives the choice. Throws std::invalid_argument for an
    /// empty name or one over 255 bytes.
    TlsContext& alpn_protocols(std::initializer_list<std::string_view> protocols) {
        std::string wire;
        for (const std::string_view protocol : protocols) {
            if (protocol.empty() || protocol.size() > 255) {
                throw std::invalid_argument("corio: an ALPN protocol name has 1 to 255 bytes");
            }
            wire += static_cast<char>(protocol.size());
            wire += protocol;
        }
        state_->alpn_wire = std::move(wire);
        if (state_->is_server) { // an empty list: no ALPN at all
            SSL_CTX_set_alpn_select_cb(native_handle(), state_->alpn_wire.empty() ? nullptr : &select_alpn,
                                       state_.get());
        } else if (SSL_CTX_set_alpn_protos(native_handle(),
                                           reinterpret_cast<const unsigned char*>(state_->alpn_wire.data()),
                                           static_cast<unsigned int>(state_->alpn_wire.size())) != 0) {
            detail::throw_tls_error("corio: TLS ALPN list");
        }
        return *this;
    }

    [[nodiscard]] bool is_server() const noexcept { return state_->is_server; }
    /// Client: whether servers are verified (true unless insecure_skip_verification was called).
    [[nodiscard]] bool verifies_peer() const noexcept { return state_->verifies_peer; }

    /// The SSL_CTX, for what this class does not cover (client certificates, cipher lists, a
    /// session cache...). Change it before the first stream is made, as the setters above.
    [[nodiscard]] SSL_CTX* native_handle() const noexcept { return state_->context; }

private:
    TlsContext(const SSL_METHOD* method, bool server) {
        detail::ClearedErrorQueue cleared;
        SSL_CTX* native = SSL_CTX_new(method);
        if (native == nullptr) {
            detail::throw_tls_error("corio: SSL_CTX_new");
        }
        state_ = std::make_shared<detail::TlsContextState>(native, server); // owns it from here
        SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
        // No renegotiation (TLS 1.2): it is where a write would have to wait for reads.
        SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION);
        // A write returns after each record, and a retried write may pass its data again from
        // elsewhere (TlsStream's send loop): see tls_stream.hpp.
        SSL_CTX_set_mode(native, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }

    void require_client(const char* what) const {
        if (state_->is_server) {
            throw std::logic_error(std::string("corio: TlsContext::") + what + " is for client contexts");
        }
    }

    // Server preference: the first of our protocols that the client offers.
    static int select_alpn(SSL* /*ssl*/, const unsigned char** selected, unsigned char* selected_size,
                           const unsigned char* offered, unsigned int offered_size, void* argument) {
        const auto* state = static_cast<const detail::TlsContextState*>(argument);
        const auto* ours = reinterpret_cast<const unsigned char*>(state->alpn_wire.data());
        unsigned char* choice = nullptr;
        if (SSL_select_next_proto(&choice, selected_size, ours, static_cast<unsigned int>(state->alpn_wire.size()),
                                  offered, offered_size) != OPENSSL_NPN_NEGOTIATED) {
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
        *selected = choice;
        return SSL_TLSEXT_ERR_OK;
    }

    friend class TlsStream;
    std::shared_ptr<detail::TlsContextState> state_;
};

} // namespace corio
