// Test support: a CA and a server certificate it signed (for localhost and 127.0.0.1, EC P-256,
// valid for a day), made with the `openssl` tool in a temporary directory that lives as long as
// the object. A test that needs them fails with the tool's output if it cannot make them; where
// the tool is not installed at all it says "SKIPPED: no openssl tool", which ctest reports as a
// skip (SKIP_MESSAGE in tests/CMakeLists.txt; CI installs it and fails on that skip).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "support/catch.hpp"
#include "support/temporary_directory.hpp"

namespace corio::test {

class TestCertificates {
public:
    TestCertificates() : directory_("corio_tls_") {
        if (std::system("openssl version >/dev/null 2>&1") != 0) {
            FAIL("SKIPPED: no openssl tool: the test certificates need it (apt-get install openssl)");
        }
        const std::string dir = directory_.path().string();
        ca = dir + "/ca.pem";
        ca_key = dir + "/ca.key";
        certificate = dir + "/cert.pem";
        private_key = dir + "/key.pem";
        std::ofstream(dir + "/server.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                              "extendedKeyUsage=serverAuth\n"
                                              "basicConstraints=critical,CA:FALSE\n";
        const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        run("openssl req -x509" + ec + " -keyout " + ca_key + " -out " + ca +
            " -days 1 -subj /CN=corio-test-ca -addext basicConstraints=critical,CA:TRUE"
            " -addext keyUsage=critical,keyCertSign,cRLSign");
        run("openssl req" + ec + " -keyout " + private_key + " -out " + dir + "/server.csr -subj /CN=localhost");
        run("openssl x509 -req -in " + dir + "/server.csr -CA " + ca + " -CAkey " + ca_key +
            " -CAcreateserial -days 1 -extfile " + dir + "/server.ext -out " + certificate);
    }
    TestCertificates(const TestCertificates&) = delete;
    TestCertificates& operator=(const TestCertificates&) = delete;

    std::string ca;          // the CA's certificate (PEM): what a client trusts
    std::string ca_key;      // the CA's key (a key that does not match `certificate`)
    std::string certificate; // the server's certificate (PEM), signed by the CA
    std::string private_key; // the server's key (PEM)

private:
    void run(const std::string& command) const {
        const std::string log = directory_.path().string() + "/openssl.log";
        const int status = std::system((command + " >" + log + " 2>&1").c_str());
        std::ifstream file(log);
        const std::string output((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        INFO(command << ":\n" << output);
        REQUIRE(status == 0);
    }

    TemporaryDirectory directory_;
};

} // namespace corio::test
