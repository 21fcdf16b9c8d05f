// corio/tls.hpp - TLS for servers and clients over corio's sockets (OpenSSL 3): TlsContext,
// TlsStream, and OpenSSL's errors as std::system_error. Optional: link corio::tls (built when
// CMake finds OpenSSL); corio/corio.hpp does not include it.
#pragma once

#include "corio/tls/tls_context.hpp"
#include "corio/tls/tls_error.hpp"
#include "corio/tls/tls_stream.hpp"
