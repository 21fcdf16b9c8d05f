// The TLS examples against real TLS clients: `echo_server --tls` with `openssl s_client`, and
// `http_server --tls` with `curl --cacert`, both verifying the certificate (made at test time,
// see support/tls_certificates.hpp) and the host name. Without the tool, a case says so and ctest
// reports it as skipped (SKIP_MESSAGE in tests/CMakeLists.txt); CI installs both (.ci/run).
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/catch.hpp"
#include "support/child_process.hpp"
#include "support/tls_certificates.hpp"

#ifndef CORIO_ECHO_SERVER_PATH
#error "CORIO_ECHO_SERVER_PATH must name the echo_server example (tests/CMakeLists.txt defines it)"
#endif

namespace {

using namespace corio::test;
using namespace std::chrono_literals;

bool installed(const std::string& tool) {
    return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0;
}

TEST_CASE("echo_server --tls echoes to openssl s_client, which verifies it", "[tls][echo_server]") {
    if (!installed("openssl")) {
        WARN("SKIPPED: no TLS client tool: openssl is not installed (apt-get install openssl)");
        return;
    }
    const TestCertificates certificates;
    Server server(CORIO_ECHO_SERVER_PATH,
                  {"--tls", certificates.certificate, certificates.private_key, "--verbose"});
    Child client("/usr/bin/env",
                 {"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(server.port),
                  "-servername", "localhost", "-verify_hostname", "localhost", "-verify_return_error",
                  "-CAfile", certificates.ca, "-quiet", "-no_ign_eof"},
                 true);
    client.write_stdin("ping over TLS\n");
    const std::optional<std::string> echoed = client.read_line(5s);
    client.close_stdin(); // s_client sends its close_notify and leaves
    const auto status = client.wait_exit(5s);
    INFO("s_client stderr: " << client.stderr_text());
    INFO("server stderr: " << server.process.stderr_text());
    REQUIRE(echoed.has_value());
    CHECK(*echoed == "ping over TLS");
    CHECK(exited_with(status, 0));
    CHECK(server.process.running());
}

TEST_CASE("echo_server --tls rejects a missing or bad file with status 2", "[tls][echo_server][options]") {
    const TestCertificates certificates;
    for (const std::vector<std::string>& arguments :
         {std::vector<std::string>{"--tls", "/nonexistent/cert.pem", certificates.private_key},
          std::vector<std::string>{"--tls", certificates.private_key, certificates.private_key},
          std::vector<std::string>{"--tls", certificates.certificate}}) {
        Child program(CORIO_ECHO_SERVER_PATH, arguments);
        const auto status = program.wait_exit(5s);
        INFO(quoted(arguments) << ": " << describe_status(status) << ", stderr: " << program.stderr_text());
        CHECK(exited_with(status, 2));
        CHECK(program.stderr_text().find("--tls") != std::string::npos);
    }
}

TEST_CASE("http_server --tls serves HTTPS to curl --cacert", "[tls][http_server]") {
    if (!installed("curl")) {
        WARN("SKIPPED: no TLS client tool: curl is not installed (apt-get install curl)");
        return;
    }
    const TestCertificates certificates;
    Server server(CORIO_HTTP_SERVER_PATH, {"--tls", certificates.certificate, certificates.private_key});
    const std::string url = "https://localhost:" + std::to_string(server.port) + "/";
    Child curl("/usr/bin/env", {"curl", "--silent", "--show-error", "--max-time", "5", "--cacert",
                                certificates.ca, url, url + "style.css"});
    const std::string body = curl.read_stdout_to_end(10s);
    const auto status = curl.wait_exit(5s);
    INFO("curl stderr: " << curl.stderr_text());
    CHECK(exited_with(status, 0));
    CHECK(body.find("<!DOCTYPE html>") != std::string::npos);
    // Without the CA, curl refuses the certificate: the server is verified, not just reached.
    Child untrusting("/usr/bin/env", {"curl", "--silent", "--max-time", "5", url});
    CHECK_FALSE(exited_with(untrusting.wait_exit(10s), 0));
    CHECK(server.process.running());
}

} // namespace
