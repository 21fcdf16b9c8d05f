// Integration tests of examples/http_server: the real process (path from CORIO_HTTP_SERVER_PATH),
// spoken to over 127.0.0.1 with plain blocking sockets that give up after a timeout. The site is a
// temporary directory each test fills; the default site is compared with examples/www
// (CORIO_EXAMPLES_WWW_DIR). Every server listens on --port 0, every child is killed by PID.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "support/catch.hpp"
#include "support/child_process.hpp"
#include "support/fd.hpp"
#include "support/tcp_client.hpp"
#include "support/temporary_directory.hpp"

#ifndef CORIO_HTTP_SERVER_PATH
#error "CORIO_HTTP_SERVER_PATH must name the http_server example (tests/CMakeLists.txt defines it)"
#endif
#ifndef CORIO_EXAMPLES_WWW_DIR
#error "CORIO_EXAMPLES_WWW_DIR must name examples/www (tests/CMakeLists.txt defines it)"
#endif

namespace {

using namespace corio::test; // Child, Server, UniqueFd, connect_to, read_some...
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
    std::ifstream file(path, std::ios::binary);
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
}

void write_file(const fs::path& path, std::string_view content) {
    std::ofstream file(path, std::ios::binary);
    file.write(content.data(), static_cast<std::streamsize>(content.size()));
    REQUIRE(file.good());
}

/// Bytes that repeat with no short period, so that a misplaced piece of a file shows.
std::string pattern(std::size_t size) {
    std::string bytes(size, '\0');
    std::uint32_t state = 2463534242U;
    for (char& byte : bytes) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        byte = static_cast<char>(state >> 24);
    }
    return bytes;
}

// A temporary directory: `site/` is the server's root, `secret.txt` lies beside it (outside).
class TestSite {
public:
    TestSite() {
        fs::create_directory(root());
        fs::create_directory(root() / "sub");
        write_file(top() / "secret.txt", "the secret outside the root\n");
        write_file(root() / "index.html", "<!DOCTYPE html><title>t</title><p>index</p>\n");
        write_file(root() / "a.txt", "alpha\n");
        write_file(root() / "b.css", "p { color: red; }\n");
        write_file(root() / "with space.txt", "spaced\n");
        write_file(root() / "sub" / "c.txt", "charlie\n");
        write_file(root() / "big.bin", big());
    }

    [[nodiscard]] fs::path root() const { return top() / "site"; }
    [[nodiscard]] fs::path top() const { return top_.path(); }
    /// Larger than the server's 16 KiB pieces, and not a multiple of them.
    static const std::string& big() {
        static const std::string bytes = pattern(200 * 1024 + 123);
        return bytes;
    }

private:
    TemporaryDirectory top_{"corio_http_test_"};
};

struct Response {
    int status = 0;
    std::string head; // status line and headers
    std::string body;

    /// A header's value (name matched without case), or nothing.
    [[nodiscard]] std::optional<std::string> header(std::string_view name) const {
        std::istringstream lines(head);
        std::string line;
        while (std::getline(lines, line)) {
            const std::size_t colon = line.find(':');
            if (colon == std::string::npos || colon != name.size()) {
                continue;
            }
            if (std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
                    return std::tolower(static_cast<unsigned char>(a)) ==
                           std::tolower(static_cast<unsigned char>(b));
                })) {
                std::string value = line.substr(colon + 1);
                value.erase(0, value.find_first_not_of(' '));
                if (!value.empty() && value.back() == '\r') {
                    value.pop_back();
                }
                return value;
            }
        }
        return std::nullopt;
    }
};

// One client connection that reads responses one at a time (they may arrive together).
class Connection {
public:
    explicit Connection(std::uint16_t port, int receive_buffer = 0)
        : socket_(connect_to(port, receive_buffer)) {}

    void send(std::string_view request) { send_text(socket_.get(), request); }

    /// The next whole response; nothing if the connection ends or 5 s pass first. A response to
    /// HEAD has no body whatever its Content-Length says.
    std::optional<Response> read_response(bool to_head = false) {
        const auto deadline = Clock::now() + 5s;
        std::size_t head_end = std::string::npos;
        while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
            if (!fill(deadline)) {
                return std::nullopt;
            }
        }
        Response response;
        response.head = buffer_.substr(0, head_end + 2);
        buffer_.erase(0, head_end + 4);
        if (!response.head.starts_with("HTTP/1.1 ") || response.head.size() < 12) {
            FAIL("not an HTTP/1.1 status line: " << response.head);
        }
        response.status = std::stoi(response.head.substr(9, 3));
        if (response.status < 200) { // an interim response (100 Continue) is a head alone
            return response;
        }
        const std::optional<std::string> length = response.header("Content-Length");
        REQUIRE(length.has_value());
        const std::size_t body_size = to_head ? 0 : std::stoul(*length);
        while (buffer_.size() < body_size) {
            if (!fill(deadline)) {
                return std::nullopt;
            }
        }
        response.body = buffer_.substr(0, body_size);
        buffer_.erase(0, body_size);
        return response;
    }

    /// Sends a request and reads its response, which must come.
    Response exchange(std::string_view request, bool to_head = false) {
        send(request);
        std::optional<Response> response = read_response(to_head);
        INFO("request: " << request);
        REQUIRE(response.has_value());
        return *response;
    }

    /// True if the server closed the connection within `timeout`, having sent nothing more.
    bool closed_by_server(std::chrono::milliseconds timeout) {
        return buffer_.empty() && closed_by_peer(socket_.get(), timeout);
    }

    [[nodiscard]] int fd() const noexcept { return socket_.get(); }

private:
    bool fill(Clock::time_point deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            return false;
        }
        Reading reading = read_some(socket_.get(), left);
        if (reading.kind != Reading::Kind::data) {
            return false;
        }
        buffer_ += reading.data;
        return true;
    }

    UniqueFd socket_;
    std::string buffer_;
};

std::string get(std::string_view target, std::string_view extra_headers = "") {
    return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" +
           std::string(extra_headers) + "\r\n";
}

Server start_server(const TestSite& site, std::vector<std::string> arguments = {}) {
    arguments.insert(arguments.begin(), {"--root", site.root().string()});
    return Server(CORIO_HTTP_SERVER_PATH, std::move(arguments));
}

// Sets an environment variable for the servers started while it lives (Child hands `environ` to
// posix_spawn), then removes it. Tests run on one thread, so nobody reads it meanwhile.
class ScopedEnvironment {
public:
    ScopedEnvironment(const char* name, const char* value) : name_(name) {
        REQUIRE(::setenv(name, value, 1) == 0);
    }
    ScopedEnvironment(const ScopedEnvironment&) = delete;
    ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;
    ~ScopedEnvironment() { ::unsetenv(name_); }

private:
    const char* name_;
};

// How the server keeps a path below its root: it says so on stderr with --verbose, at startup.
enum class Opener { openat2, walk };

// A server with --verbose, made to use the component-by-component walk when `force_walk` (the
// environment variable that http_server reads for its tests), and the opener it says it uses.
struct ConfinedServer {
    ConfinedServer(const TestSite& site, bool force_walk)
        : server(start(site, force_walk)), opener(said_opener(server)) {}

    static Server start(const TestSite& site, bool force_walk) {
        std::optional<ScopedEnvironment> no_openat2;
        if (force_walk) {
            no_openat2.emplace("CORIO_HTTP_SERVER_NO_OPENAT2", "1");
        }
        return start_server(site, {"--verbose"});
    }
    static Opener said_opener(const Server& server) {
        const std::string said = server.process.stderr_text();
        INFO("stderr: " << said);
        const bool openat2 = said.find("openat2(RESOLVE_BENEATH)") != std::string::npos;
        const bool walk = said.find("O_NOFOLLOW") != std::string::npos;
        REQUIRE(openat2 != walk);
        return openat2 ? Opener::openat2 : Opener::walk;
    }

    Server server;
    Opener opener;
};

// Checks that the answer to GET `target` is the error `status` with its one-line text, and holds
// nothing of the files outside the root.
void check_refused(std::uint16_t port, const std::string& target, int status) {
    INFO("GET " << target);
    Connection client(port);
    const Response response = client.exchange(get(target));
    CHECK(response.status == status);
    CHECK(response.body == (status == 400 ? "400 Bad Request\n" : "404 Not Found\n"));
    for (const std::string_view secret : {"the secret outside the root", "root:", "daemon:"}) {
        CHECK(response.head.find(secret) == std::string::npos);
        CHECK(response.body.find(secret) == std::string::npos);
    }
}

// Sends `request` on a connection of its own: the answer must be `status` with "Connection:
// close", and the server must then close the connection.
void check_answer_then_close(std::uint16_t port, std::string_view request, int status) {
    INFO("request: " << request);
    Connection client(port);
    const Response response = client.exchange(request);
    CHECK(response.status == status);
    CHECK(response.header("Connection") == "close");
    CHECK(client.closed_by_server(3s));
}

// One field of /proc/<pid>/io ("syscr": read-like system calls, sendfile included).
std::uint64_t io_counter(pid_t pid, std::string_view name) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/io");
    std::string line;
    while (std::getline(file, line)) {
        if (line.starts_with(name) && line.size() > name.size() && line[name.size()] == ':') {
            return std::stoull(line.substr(name.size() + 1));
        }
    }
    FAIL("no " << name << " in /proc/" << pid << "/io");
    return 0;
}

} // namespace

TEST_CASE("http_server serves its default page and files byte for byte", "[http_server]") {
    Server server(CORIO_HTTP_SERVER_PATH); // the www/ the build copied beside it
    Connection client(server.port);
    const fs::path www = CORIO_EXAMPLES_WWW_DIR;
    const struct {
        std::string_view target;
        std::string_view file;
        std::string_view type;
    } pages[] = {{"/", "index.html", "text/html; charset=utf-8"},
                 {"/index.html", "index.html", "text/html; charset=utf-8"},
                 {"/style.css", "style.css", "text/css; charset=utf-8"},
                 {"/app.js", "app.js", "text/javascript; charset=utf-8"}};
    for (const auto& page : pages) {
        INFO("GET " << page.target);
        const Response response = client.exchange(get(page.target));
        CHECK(response.status == 200);
        CHECK(response.header("Content-Type") == std::string(page.type));
        const std::string expected = read_file(www / page.file);
        CHECK(response.header("Content-Length") == std::to_string(expected.size()));
        CHECK(response.body == expected);
        CHECK(response.header("Date").has_value());
    }

    TestSite site;
    Server own(CORIO_HTTP_SERVER_PATH, {"--root", site.root().string()});
    Connection other(own.port);
    const Response big = other.exchange(get("/big.bin"));
    CHECK(big.status == 200);
    CHECK(big.header("Content-Type") == "application/octet-stream");
    CHECK(big.body.size() == TestSite::big().size());
    CHECK(big.body == TestSite::big());
    CHECK(other.exchange(get("/with%20space.txt")).body == "spaced\n");
    CHECK(other.exchange(get("/sub/c.txt?query=ignored")).body == "charlie\n");
    CHECK(other.exchange(get("http://test/a.txt")).body == "alpha\n"); // absolute form
}

TEST_CASE("http_server keeps a connection alive for many requests", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    Connection client(server.port);
    for (int round = 0; round < 20; ++round) {
        INFO("round " << round);
        const Response response = client.exchange(get(round % 2 == 0 ? "/a.txt" : "/b.css"));
        CHECK(response.status == 200);
        CHECK(response.header("Connection") == "keep-alive");
        CHECK(response.body == (round % 2 == 0 ? "alpha\n" : "p { color: red; }\n"));
    }
    const Response last = client.exchange(get("/a.txt", "Connection: close\r\n"));
    CHECK(last.status == 200);
    CHECK(last.header("Connection") == "close");
    CHECK(last.body == "alpha\n");
    CHECK(client.closed_by_server(2s));
}

TEST_CASE("http_server closes HTTP/1.0 connections unless asked to keep them", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    Connection plain(server.port);
    const Response first = plain.exchange("GET /a.txt HTTP/1.0\r\n\r\n"); // no Host needed
    CHECK(first.status == 200);
    CHECK(first.header("Connection") == "close");
    CHECK(plain.closed_by_server(2s));

    Connection kept(server.port);
    for (int round = 0; round < 3; ++round) {
        const Response response =
            kept.exchange("GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        CHECK(response.status == 200);
        CHECK(response.header("Connection") == "keep-alive");
    }
    CHECK_FALSE(kept.closed_by_server(100ms));
}

TEST_CASE("http_server answers pipelined requests in order", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    Connection client(server.port);
    // All at once, in one write: the server finds them one after the other in its buffer.
    client.send(get("/a.txt") + get("/missing") + "HEAD /sub/c.txt HTTP/1.1\r\nHost: t\r\n\r\n" +
                "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" +
                get("/big.bin") + "\r\n" + get("/b.css"));
    const auto a = client.read_response();
    const auto missing = client.read_response();
    const auto head = client.read_response(true);
    const auto post = client.read_response();
    const auto big = client.read_response();
    const auto css = client.read_response();
    REQUIRE(a);
    REQUIRE(missing);
    REQUIRE(head);
    REQUIRE(post);
    REQUIRE(big);
    REQUIRE(css);
    CHECK(a->body == "alpha\n");
    CHECK(missing->status == 404);
    CHECK(head->status == 200);
    CHECK(head->header("Content-Length") == "8");
    CHECK(post->status == 405);
    CHECK(big->body == TestSite::big());
    CHECK(css->body == "p { color: red; }\n");
    CHECK_FALSE(client.closed_by_server(100ms)); // and nothing more came
}

TEST_CASE("http_server answers HEAD with the head of GET and no body", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    Connection client(server.port);
    const Response head = client.exchange("HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n", true);
    CHECK(head.status == 200);
    CHECK(head.header("Content-Length") == std::to_string(TestSite::big().size()));
    // Were a body sent after the HEAD head, this GET's response would not parse as one.
    const Response next = client.exchange(get("/a.txt"));
    CHECK(next.status == 200);
    CHECK(next.body == "alpha\n");
    const Response missing = client.exchange("HEAD /nothing HTTP/1.1\r\nHost: t\r\n\r\n", true);
    CHECK(missing.status == 404);
    CHECK(client.exchange(get("/a.txt")).body == "alpha\n");
}

TEST_CASE("http_server answers 404 for what is not a file of the site", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    Connection client(server.port);
    for (const std::string_view target : {"/nothing", "/sub", "/sub/", "/a.txt/", "/A.TXT"}) {
        INFO("GET " << target);
        const Response response = client.exchange(get(target));
        CHECK(response.status == 404);
        CHECK(response.header("Connection") == "keep-alive");
        CHECK(response.body == "404 Not Found\n");
    }
    CHECK(client.exchange(get("/a.txt")).status == 200); // the connection still serves
}

TEST_CASE("http_server answers 405 with Allow to other methods, 501 to unknown ones",
          "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    Connection client(server.port);
    for (const std::string_view request :
         {"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
          "PUT /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
          "DELETE /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
          "PATCH /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", "TRACE /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
          "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n"}) {
        INFO(request);
        const Response response = client.exchange(request);
        CHECK(response.status == 405);
        CHECK(response.header("Allow") == "GET, HEAD");
    }
    // Methods HTTP does not define: 501, and the connection stays (its framing is known).
    for (const std::string_view request :
         {"FOO /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
          "get /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", // methods are case-sensitive
          "BREW /pot HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
          "M-SEARCH * HTTP/1.1\r\nHost: t\r\n\r\n"}) {
        INFO(request);
        const Response response = client.exchange(request);
        CHECK(response.status == 501);
        CHECK(response.body == "501 Not Implemented\n");
        CHECK(response.header("Connection") == "keep-alive");
    }
    // The bodies were skipped: the connection is still in step.
    CHECK(client.exchange(get("/a.txt")).body == "alpha\n");
}

TEST_CASE("http_server answers 400 to malformed requests and closes", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    const std::string_view malformed[] = {
        "GET\r\n\r\n",
        "GET /a.txt\r\nHost: t\r\n\r\n",
        "GET  /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /a.txt HTTP/1.1 \r\nHost: t\r\n\r\n",
        "GET /a.txt HTTQ/1.1\r\nHost: t\r\n\r\n",
        "GET /a.txt HTTP/1.10\r\nHost: t\r\n\r\n",
        "G(T /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /a.txt HTTP/1.1\nHost: t\n\n",
        "GET /a.txt HTTP/1.1\r\nHost: t\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost: t\rX: y\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost t\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost : t\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nX: a\x01z\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /a%00.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /a\x7f.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        "\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\nBad\r\n\r\n", // after ignored empty lines
    };
    for (const std::string_view request : malformed) {
        INFO("request: " << request);
        Connection client(server.port);
        const Response response = client.exchange(request);
        CHECK(response.status == 400);
        CHECK(response.body == "400 Bad Request\n");
        // A 400 for a bad path keeps the (well-framed) connection; the others close it.
        if (!request.starts_with("GET /a%") && !request.starts_with("GET a.txt")) {
            CHECK(response.header("Connection") == "close");
            CHECK(client.closed_by_server(2s));
        }
    }
    Connection version(server.port);
    CHECK(version.exchange("GET /a.txt HTTP/2.0\r\nHost: t\r\n\r\n").status == 505);
    CHECK(version.closed_by_server(2s));
    Connection still(server.port);
    CHECK(still.exchange(get("/a.txt")).status == 200);
}

TEST_CASE("http_server never serves a file outside its root", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    REQUIRE(fs::exists(site.top() / "secret.txt"));
    for (const std::string_view target :
         {"/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt",
          "/..%2fsecret.txt", "/sub/..%2F..%2Fsecret.txt", "/..", "/sub/../a.txt",
          "http://test/../secret.txt"}) {
        INFO("GET " << target);
        Connection client(server.port);
        const Response response = client.exchange(get(target));
        CHECK(response.status == 400);
        CHECK(response.body.find("secret") == std::string::npos);
    }
}

// 400 is for a target refused as written: an empty segment (so no leading slash after decoding),
// a `.` or `..` segment, an encoded slash, a backslash, a NUL or another control byte once
// decoded. 404 is for a well-formed path that names no regular file below the root, which
// includes every symbolic link that would leave it. Each runs with openat2 (where the kernel has
// it) and with the fallback walk.
TEST_CASE("http_server refuses every encoding of a path out of its root", "[http_server]") {
    const bool force_walk = GENERATE(false, true);
    INFO((force_walk ? "fallback walk forced" : "default opener"));
    TestSite site;
    ConfinedServer confined(site, force_walk);
    if (force_walk) {
        CHECK(confined.opener == Opener::walk);
    }
    const std::uint16_t port = confined.server.port;
    const std::string outside = (site.top() / "secret.txt").string(); // "/tmp/.../secret.txt"
    REQUIRE(outside.starts_with('/'));
    const struct {
        std::string target;
        int status;
    } probes[] = {
        // A second slash: an absolute path after the first is cut off.
        {"//etc/passwd", 400},
        {"/" + outside, 400},
        {"///etc/passwd", 400},
        {"/%2fetc%2fshadow", 400},
        {"/%2Fetc%2Fpasswd", 400},
        {"/%2f" + outside.substr(1), 400},
        {"/sub//c.txt", 400},
        {"//", 400},
        // The absolute form, whose path must obey the same rules.
        {"http://x//etc/hostname", 400},
        {"http://x//etc/passwd", 400},
        {"http://x/" + outside, 400},
        {"HTTP://x//etc/passwd", 400},
        {"http://x/%2e%2e/secret.txt", 400},
        {"http://x/%2fetc/passwd", 400},
        // Dot segments, plain, encoded and in mixed case.
        {"/..", 400},
        {"/../secret.txt", 400},
        {"/sub/../../secret.txt", 400},
        {"/%2e%2e/secret.txt", 400},
        {"/%2E%2e/secret.txt", 400},
        {"/.%2e/secret.txt", 400},
        {"/%2e./secret.txt", 400},
        {"/..%2Fsecret.txt", 400},
        {"/sub/..%2f..%2fsecret.txt", 400},
        {"/./a.txt", 400},
        {"/sub/./c.txt", 400},
        {"/%2e/a.txt", 400},
        {"/sub/.", 400},
        // Backslashes, raw and encoded (a separator to some systems, so never a name here).
        {"/..\\secret.txt", 400},
        {"/sub\\..\\..\\secret.txt", 400},
        {"/..%5csecret.txt", 400},
        {"/..%5Csecret.txt", 400},
        {"/%5c%5cetc%5cpasswd", 400},
        // NUL and other control bytes, once decoded.
        {"/..%00/secret.txt", 400},
        {"/a.txt%00.html", 400},
        {"/a%0a.txt", 400},
        {"/a%0d%0aX:%20y", 400},
        // Decoded once only: a double encoding names a file called "%2e%2e" or "%2fetc%2fpasswd".
        {"/%252e%252e/secret.txt", 404},
        {"/%252fetc%252fpasswd", 404},
        {"/%25%32%66etc%25%32%66passwd", 404},
        // Overlong UTF-8 forms of '.' and '/' are bytes of a name, not dots or slashes.
        {"/%c0%ae%c0%ae/secret.txt", 404},
        {"/..%c0%afsecret.txt", 404},
        {"/%e0%80%ae%e0%80%ae/secret.txt", 404},
    };
    for (const auto& probe : probes) {
        check_refused(port, probe.target, probe.status);
    }
    // Still serving, from the root.
    Connection client(port);
    CHECK(client.exchange(get("/sub/c.txt")).body == "charlie\n");
}

TEST_CASE("http_server refuses symbolic links out of its root", "[http_server]") {
    const bool force_walk = GENERATE(false, true);
    INFO((force_walk ? "fallback walk forced" : "default opener"));
    TestSite site;
    const fs::path root = site.root();
    fs::create_symlink(site.top() / "secret.txt", root / "absolute_file");
    fs::create_symlink("../secret.txt", root / "relative_file");
    fs::create_symlink(site.top(), root / "absolute_dir");
    fs::create_symlink("..", root / "relative_dir");
    fs::create_symlink("../../secret.txt", root / "sub" / "deep_file");
    fs::create_symlink("../..", root / "sub" / "deep_dir");
    fs::create_symlink("/etc", root / "etc");
    fs::create_symlink("/etc/passwd", root / "passwd");
    fs::create_symlink("/proc/self/root", root / "magic"); // a "magic link" to /
    fs::create_symlink("a.txt", root / "inside_file");     // stays below the root
    fs::create_symlink("sub", root / "inside_dir");
    ConfinedServer confined(site, force_walk);
    if (force_walk) {
        CHECK(confined.opener == Opener::walk);
    }
    const std::uint16_t port = confined.server.port;
    for (const std::string target :
         {"/absolute_file", "/relative_file", "/absolute_dir/secret.txt",
          "/relative_dir/secret.txt", "/relative_dir/site/a.txt", "/sub/deep_file",
          "/sub/deep_dir/secret.txt", "/etc/passwd", "/etc/hostname", "/passwd",
          "/magic/etc/passwd", "/absolute_dir/site/a.txt"}) {
        check_refused(port, target, 404);
    }
    // A link that stays below the root is the owner's choice: openat2 follows it; the walk, which
    // cannot tell where a link leads without following it, refuses every link.
    Connection client(port);
    const Response inside = client.exchange(get("/inside_file"));
    const Response inside_dir = client.exchange(get("/inside_dir/c.txt"));
    if (confined.opener == Opener::openat2) {
        CHECK(inside.body == "alpha\n");
        CHECK(inside_dir.body == "charlie\n");
    } else {
        CHECK(inside.status == 404);
        CHECK(inside_dir.status == 404);
    }
    CHECK(client.exchange(get("/a.txt")).body == "alpha\n");
}

TEST_CASE("http_server answers Expect: 100-continue", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    SECTION("a body the server reads: 100 Continue first, the final answer after the body") {
        Connection client(server.port);
        client.send("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                    "Expect: 100-Continue\r\n\r\n"); // the token is case-insensitive
        const std::optional<Response> interim = client.read_response();
        REQUIRE(interim);
        CHECK(interim->status == 100);
        CHECK(interim->head == "HTTP/1.1 100 Continue\r\n");
        client.send("hello");
        const std::optional<Response> final_answer = client.read_response();
        REQUIRE(final_answer);
        CHECK(final_answer->status == 405);
        CHECK(final_answer->header("Connection") == "keep-alive");
        CHECK(client.exchange(get("/a.txt")).body == "alpha\n"); // the body was skipped in step
    }
    SECTION("no body, or the body already sent: no 100, just the answer") {
        Connection client(server.port);
        CHECK(client.exchange(get("/a.txt", "Expect: 100-continue\r\n")).status == 200);
        const Response post = client.exchange("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: "
                                              "5\r\nExpect: 100-continue\r\n\r\nhello");
        CHECK(post.status == 405);
        CHECK(client.exchange(get("/a.txt")).body == "alpha\n");
    }
    SECTION("a final status decided from the head: sent without reading the body, then close") {
        check_answer_then_close(server.port,
                                "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n"
                                "Expect: 100-continue\r\n\r\n",
                                413);
    }
    SECTION("an expectation the server does not know: 417, then close") {
        for (const std::string_view expectation : {"bogus", "100-continue, bogus", "200-ok"}) {
            check_answer_then_close(server.port,
                                    "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: "
                                    "5\r\nExpect: " +
                                        std::string(expectation) + "\r\n\r\n",
                                    417);
        }
    }
    SECTION("HTTP/1.0 ignores the expectation") {
        Connection client(server.port);
        const Response response = client.exchange(
            "GET /a.txt HTTP/1.0\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n\r\n");
        CHECK(response.status == 200);
        CHECK(response.body == "alpha\n");
    }
}

TEST_CASE("http_server answers 414 to an over-long target, then closes", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    // 5000: over the 4 KiB a target may have; 9000: the request line alone passes the 8 KiB head.
    for (const std::size_t length : {std::size_t{5000}, std::size_t{9000}}) {
        check_answer_then_close(server.port, get("/" + std::string(length, 'a')), 414);
    }
    Connection client(server.port);
    CHECK(client.exchange(get("/" + std::string(4000, 'a'))).status == 404); // long, not too long
}

TEST_CASE("http_server answers 400 to a missing, repeated or invalid Host", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    const auto with_host = [](std::string_view fields, std::string_view version = "1.1") {
        return "GET /a.txt HTTP/" + std::string(version) + "\r\n" + std::string(fields) + "\r\n";
    };
    std::vector<std::string> refused = {with_host(""), with_host("Host: a\r\nHost: a\r\n"),
                                        with_host("Host: a b\r\n", "1.0")};
    for (const std::string_view host :
         {"a b", "a/b", "user@host", "host:x", "host:99999", "host:1:2", "::1", "[::1", "[::1]x",
          "[zz::1]", "h?q", "h#f", "\"h\"", "<h>", "h\\x", "h%zz", "h\xc3\xa9", "a\tb"}) {
        refused.push_back(with_host("Host: " + std::string(host) + "\r\n"));
    }
    for (const std::string& request : refused) {
        check_answer_then_close(server.port, request, 400);
    }
    Connection client(server.port);
    for (const std::string_view host :
         {"example.com:8080", "EXAMPLE.com", "[::1]:8000", "[::ffff:127.0.0.1]", "127.0.0.1:1",
          "xn--bcher-kva.example", "h%41", "a-b_c~d!$&'()*+,;=", "h:", ""}) {
        INFO("Host: " << host);
        CHECK(client.exchange(with_host("Host: " + std::string(host) + "\r\n")).status == 200);
    }
}

TEST_CASE("http_server sends a large file with few system calls", "[http_server]") {
    TestSite site;
    const std::string mebibyte = pattern(1024 * 1024);
    write_file(site.root() / "mebibyte.bin", mebibyte);
    Server server = start_server(site);
    Connection client(server.port);
    CHECK(client.exchange(get("/mebibyte.bin")).body == mebibyte); // first-use costs aside
    // A loop of 16 KiB pread() and send() costs 64 reads per MiB; sendfile() takes what the
    // socket can hold in one call each (counted as reads in /proc/<pid>/io too).
    constexpr int requests = 4;
    const std::uint64_t before = io_counter(server.process.pid(), "syscr");
    for (int round = 0; round < requests; ++round) {
        const Response response = client.exchange(get("/mebibyte.bin"));
        REQUIRE(response.body.size() == mebibyte.size());
        CHECK(response.body == mebibyte);
    }
    const std::uint64_t reads = io_counter(server.process.pid(), "syscr") - before;
    INFO(reads << " read-like system calls for " << requests << " GETs of 1 MiB");
    CHECK(reads <= 24 * requests);
    // HEAD: the same head and no body, and the connection is still in step.
    const Response head = client.exchange("HEAD /mebibyte.bin HTTP/1.1\r\nHost: t\r\n\r\n", true);
    CHECK(head.header("Content-Length") == std::to_string(mebibyte.size()));
    CHECK(client.exchange(get("/a.txt")).body == "alpha\n");
}

TEST_CASE("http_server serves others while a client reads a large file slowly", "[http_server]") {
    TestSite site;
    const std::string large = pattern(4 * 1024 * 1024 + 7);
    write_file(site.root() / "large.bin", large);
    Server server = start_server(site);
    Connection slow(server.port, 4096);           // a small window: the server's sends soon block
    slow.send(get("/large.bin") + get("/a.txt")); // and a pipelined request behind it
    for (int i = 0; i < 10; ++i) {
        INFO("other client " << i);
        Connection other(server.port);
        CHECK(other.exchange(get("/a.txt")).body == "alpha\n");
        CHECK(other.exchange(get("/big.bin")).body == TestSite::big());
    }
    const std::optional<Response> response = slow.read_response();
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->body.size() == large.size());
    CHECK(response->body == large);
    const std::optional<Response> next = slow.read_response();
    REQUIRE(next);
    CHECK(next->body == "alpha\n");
}

TEST_CASE("http_server limits the size of a request", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    SECTION("a head over 8 KiB: 431, then close") {
        Connection client(server.port);
        const Response response =
            client.exchange(get("/a.txt", "X-Big: " + std::string(9000, 'x') + "\r\n"));
        CHECK(response.status == 431);
        CHECK(response.header("Connection") == "close");
        CHECK(client.closed_by_server(3s));
    }
    SECTION("a head just under the limit is served") {
        Connection client(server.port);
        CHECK(client.exchange(get("/a.txt", "X-Big: " + std::string(8000, 'x') + "\r\n")).status ==
              200);
    }
    SECTION("a body over 64 KiB: 413, then close") {
        Connection client(server.port);
        client.send("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n");
        client.send(std::string(64 * 1024, 'y')); // it keeps sending: the 413 must still arrive
        const std::optional<Response> response = client.read_response();
        REQUIRE(response);
        CHECK(response->status == 413);
        CHECK(response->header("Connection") == "close");
        CHECK(client.closed_by_server(5s));
    }
    SECTION("a chunked body: 501, then close") {
        check_answer_then_close(server.port,
                                "POST /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                                "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                                501);
    }
    Connection after(server.port);
    CHECK(after.exchange(get("/a.txt")).status == 200);
}

TEST_CASE("http_server serves 100 concurrent connections", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    constexpr int clients = 100;
    std::vector<Connection> connections;
    connections.reserve(clients);
    for (int i = 0; i < clients; ++i) {
        connections.emplace_back(server.port);
    }
    // Every request is sent before any response is read: all 100 are in flight at once.
    for (int i = 0; i < clients; ++i) {
        connections[static_cast<std::size_t>(i)].send(get(i % 2 == 0 ? "/" : "/big.bin"));
    }
    int served = 0;
    for (int i = 0; i < clients; ++i) {
        const std::optional<Response> response =
            connections[static_cast<std::size_t>(i)].read_response();
        INFO("client " << i);
        REQUIRE(response);
        CHECK(response->status == 200);
        CHECK(response->body ==
              (i % 2 == 0 ? read_file(site.root() / "index.html") : TestSite::big()));
        served += response->status == 200 ? 1 : 0;
    }
    CHECK(served == clients);
}

TEST_CASE("http_server serves others while a client stalls mid-request", "[http_server]") {
    TestSite site;
    Server server = start_server(site, {"--idle-timeout", "2"});
    Connection stalled(server.port);
    stalled.send("GET /a.txt HTTP/1.1\r\nHo"); // and nothing more
    const auto started = Clock::now();
    for (int i = 0; i < 10; ++i) {
        Connection other(server.port);
        CHECK(other.exchange(get("/a.txt")).body == "alpha\n");
    }
    CHECK(Clock::now() - started < 1900ms); // served while the stalled request was still pending

    // After the idle timeout, the stalled client is told and closed.
    const std::optional<Response> timed_out = stalled.read_response();
    REQUIRE(timed_out);
    CHECK(timed_out->status == 408);
    CHECK(Clock::now() - started >= 1500ms);
    CHECK(stalled.closed_by_server(3s));
}

TEST_CASE("http_server closes a connection idle for --idle-timeout", "[http_server]") {
    TestSite site;
    Server server = start_server(site, {"--idle-timeout", "0.5"});
    Connection client(server.port);
    CHECK(client.exchange(get("/a.txt")).status == 200);
    const auto started = Clock::now();
    CHECK(client.closed_by_server(5s)); // quietly: nothing was pending
    CHECK(Clock::now() - started >= 400ms);
    Connection silent(server.port);
    CHECK(silent.closed_by_server(5s));
}

TEST_CASE("http_server --file serves one file at / and at its name", "[http_server]") {
    TestSite site;
    Server server(CORIO_HTTP_SERVER_PATH, {"--file", (site.root() / "a.txt").string()});
    Connection client(server.port);
    CHECK(client.exchange(get("/")).body == "alpha\n");
    CHECK(client.exchange(get("/")).header("Content-Type") == "text/plain; charset=utf-8");
    CHECK(client.exchange(get("/a.txt")).body == "alpha\n");
    CHECK(client.exchange(get("/b.css")).status == 404);
    CHECK(client.exchange(get("/sub/c.txt")).status == 404);
}

TEST_CASE("http_server exits with status 0 on SIGTERM and SIGINT", "[http_server]") {
    const int signal_number = GENERATE(SIGTERM, SIGINT);
    TestSite site;
    Server server = start_server(site);
    Connection kept(server.port);
    CHECK(kept.exchange(get("/a.txt")).status == 200);
    Connection stalled(server.port);
    stalled.send("GET /a.txt HTTP/1.1\r\n");
    server.process.send_signal(signal_number);
    const auto status = server.process.wait_exit(5s);
    INFO(describe_status(status) << "; stderr: " << server.process.stderr_text());
    CHECK(exited_with(status, 0));
    CHECK(kept.closed_by_server(1s));
}

TEST_CASE("http_server rejects a bad command line", "[http_server][options]") {
    TestSite site;
    const std::vector<std::vector<std::string>> bad_command_lines{
        {"--port", "abc"},
        {"--root"},
        {"--root", ""},
        {"--file", ""},
        {"--root", site.root().string(), "--file", (site.root() / "a.txt").string()},
        {"--idle-timeout", "0"},
        {"--bogus"},
    };
    for (const auto& arguments : bad_command_lines) {
        INFO("http_server" << quoted(arguments));
        Child program(CORIO_HTTP_SERVER_PATH, arguments);
        const auto status = program.wait_exit(5s);
        INFO(describe_status(status));
        CHECK(exited_with(status, 2));
        CHECK_FALSE(program.stderr_text().empty());
    }
    // A site that cannot be opened: status 1, saying which.
    for (const std::vector<std::string>& arguments :
         {std::vector<std::string>{"--root", (site.top() / "none").string()},
          std::vector<std::string>{"--file", (site.root() / "none.txt").string()},
          std::vector<std::string>{"--file", (site.root() / "sub").string()}}) {
        INFO("http_server" << quoted(arguments));
        Child program(CORIO_HTTP_SERVER_PATH, arguments);
        const auto status = program.wait_exit(5s);
        INFO(describe_status(status));
        CHECK(exited_with(status, 1));
        const std::string said = program.stderr_text();
        INFO("stderr: " << said);
        CHECK(said.find(arguments.back()) != std::string::npos); // names what it could not open
    }
}
