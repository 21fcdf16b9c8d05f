// Consumes corio::tls: a client context verifies by default.
#include <corio/tls.hpp>

int main() {
    const corio::TlsContext context = corio::TlsContext::client();
    return context.verifies_peer() ? 0 : 1;
}
