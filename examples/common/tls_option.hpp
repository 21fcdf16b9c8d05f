// examples/common/tls_option.hpp - `--tls CERT KEY`: serve TLS with that certificate chain and key.
//
// The files are loaded while the command line is parsed, so a missing or bad file is a usage error
// (status 2) with OpenSSL's reason, like any other bad option. In a build without OpenSSL
// (CORIO_EXAMPLES_TLS undefined) the option is still listed, and using it says why it cannot work.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "options.hpp"

#if CORIO_EXAMPLES_TLS
#include <corio/tls.hpp>
#endif

namespace examples {

#if CORIO_EXAMPLES_TLS
using ServerTls = std::optional<corio::TlsContext>; // empty: plain TCP
#else
struct NoTls {};
using ServerTls = std::optional<NoTls>; // always empty
#endif

inline Option tls_option(ServerTls& tls, std::string help) {
    return {"--tls", "CERT KEY", std::move(help), {},
            [&tls](std::string_view certificate, std::string_view key) {
#if CORIO_EXAMPLES_TLS
                try {
                    tls = corio::TlsContext::server(std::string(certificate), std::string(key));
                } catch (const std::system_error& error) {
                    throw UsageError(std::string("--tls: ") + error.what());
                }
#else
                (void)tls;
                (void)certificate;
                (void)key;
                throw UsageError("--tls: this build has no TLS (OpenSSL 3 was not found when it was built)");
#endif
            }};
}

} // namespace examples
