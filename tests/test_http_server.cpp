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
    explicit Connection(std::uint16_t port) : socket_(connect_to(port)) {}

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

TEST_CASE("http_server answers 405 with Allow to other methods", "[http_server]") {
    TestSite site;
    Server server = start_server(site);
    Connection client(server.port);
    for (const std::string_view request :
         {"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
          "PUT /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
          "DELETE /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
          "get /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"}) { // methods are case-sensitive
        INFO(request);
        const Response response = client.exchange(request);
        CHECK(response.status == 405);
        CHECK(response.header("Allow") == "GET, HEAD");
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
        Connection client(server.port);
        const Response response =
            client.exchange("POST /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                            "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        CHECK(response.status == 501);
        CHECK(client.closed_by_server(3s));
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
