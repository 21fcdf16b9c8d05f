// http_server - serves files over HTTP/1.1 to browsers, any number of connections at once.
//
//     http_server [--host H] [--port P] [--backlog N] [--root DIR | --file PATH]
//                 [--idle-timeout SECONDS] [--tls CERT KEY] [--monitor PATH] [--verbose]
//
// By default it serves the small site in `www/` beside the executable (the build copies
// examples/www there) on 127.0.0.1:8000: open http://127.0.0.1:8000/ in a browser, in as many tabs
// as you like. It prints `listening on HOST:PORT` when ready (--port 0 picks a free port), runs
// until SIGINT or SIGTERM and then exits with status 0; a bad command line exits with status 2,
// a root it cannot open with status 1.
//
// The last server of the course notes corio grew from: one task per connection, written as if it
// blocked, reading requests and writing responses in a loop. What it takes from HTTP/1.1:
//   * keep-alive: a connection carries any number of requests; `Connection: close` ends it after
//     the response, and HTTP/1.0 ends it unless the client asked for keep-alive.
//   * pipelining: requests sent back to back are answered in order, from one buffer.
//   * GET and HEAD (the same head, no body); another method HTTP defines is a 405 with
//     `Allow: GET, HEAD`, a method it does not define a 501.
//   * 400 for a malformed request line or header (http/request.hpp is strict on purpose: a
//     missing, repeated or invalid Host too), 404 for what is not a regular file of the site, 400
//     for a path written to leave it (`..`, `//`, an encoded slash...: see http/site.hpp, which
//     also keeps symbolic links from leading out, with openat2 or a walk with O_NOFOLLOW).
//   * limits: a request target over 4 KiB is a 414, a request head over 8 KiB a 431, a body over
//     64 KiB a 413, a chunked body a 501; all four close the connection. Smaller bodies are read
//     and dropped (nothing is uploaded).
//   * `Expect: 100-continue` (RFC 9110 §10.1.1): when the answer keeps the connection, the server
//     reads the body (to drop it), so it first sends `100 Continue`, unless the body has begun to
//     arrive anyway; when the answer closes the connection (413 and the other errors above), the
//     final status goes at once and the body is never read. Any other expectation: 417, close.
//   * --idle-timeout (default 10 s): a connection gets that long to send each whole request head,
//     so a client that sends half a request and stalls is closed (after a 408), and no slow
//     client can hold the others up (each connection is its own task). Sending a response also
//     fails if the client takes none of it for that long.
//   * memory: each connection owns an 8 KiB request buffer and a 16 KiB response buffer: the head
//     and the first piece of a file leave in one send; on Linux, sendfile(2) sends the rest of a
//     larger file straight from the page cache (one system call per socketful: a 1 MiB file costs
//     a handful, where a loop of pread() and send() took 130), so a large file costs no more memory
//     than a small one. Requests are parsed in place; per request, the only allocations are the
//     frames of the coroutines it awaits.
//   * --tls CERT KEY (PEM files; a build with OpenSSL): HTTPS, the same server inside a
//     corio::TlsStream: the handshake gets the idle timeout, files go through the outbox (no
//     sendfile under TLS), and a connection ends with a close_notify before the FIN. Try
//     `curl --cacert CERT https://localhost:8000/`.
//   * files are read on the loop's thread (pread(), sendfile()): fine for a local disk; a server of
//     large files on slow disks would hand that to a thread pool.
//   * --monitor PATH (off by default): corio's task monitor (corio/diag/monitor.hpp) on a Unix
//     socket PATH or a loopback HOST:PORT: `echo ps | nc -U PATH` lists the tasks (the listener,
//     one serve_connection per connection, and what each waits on), `where N` shows where task N
//     waits (e.g. a connection stuck in send_file), `kill N` ends it. The server then prints
//     `monitor on ADDRESS` after its `listening on` line, and removes the socket file when it
//     exits. A path that exists already, or an address that is not loopback, is a bad command line.
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <system_error>
#include <type_traits>
#include <unistd.h>
#include <utility>
#ifdef __linux__
#include <sys/sendfile.h>
#endif

#include <corio/corio.hpp>

#include "common/acceptor.hpp"
#include "common/monitor_option.hpp"
#include "common/options.hpp"
#include "common/server.hpp"
#include "common/tls_option.hpp"
#include "http/request.hpp"
#include "http/response_head.hpp"
#include "http/site.hpp"

namespace {

namespace http = examples::http;
using Clock = corio::Scheduler::Clock;
using http::Status;

constexpr std::size_t head_limit = 8 * 1024;      // a longer request head: 431
constexpr std::uint64_t body_limit = 64 * 1024;   // a longer request body: 413
constexpr std::size_t response_chunk = 16 * 1024; // head + file data, sent a piece at a time
// sendfile() sends as long as the socket takes bytes: after this many, other tasks get a turn.
constexpr std::uint64_t sendfile_turn = 1024 * 1024;
constexpr std::string_view continue_response = "HTTP/1.1 100 Continue\r\n\r\n";

struct Settings {
    const http::Site& site;
    Clock::duration idle;
    bool verbose;
};

// The bytes a connection received and has not used yet: the next request(s).
class Inbox {
public:
    [[nodiscard]] std::string_view view() const noexcept { return {bytes_.data(), size_}; }
    [[nodiscard]] bool full() const noexcept { return size_ == bytes_.size(); }
    [[nodiscard]] std::span<char> free_space() noexcept { return std::span(bytes_).subspan(size_); }
    void add(std::size_t count) noexcept { size_ += count; }
    // Drops the first `count` bytes; what follows (a pipelined request) moves to the front.
    void consume(std::size_t count) noexcept {
        count = std::min(count, size_);
        std::memmove(bytes_.data(), bytes_.data() + count, size_ - count);
        size_ -= count;
    }

private:
    std::array<char, head_limit> bytes_; // not zeroed: only bytes received are read
    std::size_t size_ = 0;
};

using Outbox = std::array<char, response_chunk>;

// What to answer: a status, and for a 200 the file. Decided before the request's bytes leave the
// inbox (the request's fields are views into it).
struct Answer {
    Status status = Status::ok;
    bool keep_alive = false;
    bool head_only = false;
    http::Lookup file; // open for a 200
};

Answer decide(const http::ParsedRequest& parsed, const http::Site& site) {
    const http::Request& request = parsed.request;
    Answer answer;
    if (parsed.error != Status::ok) {
        answer.status = parsed.error; // we cannot trust where this request ends: close
    } else if (request.has_transfer_encoding) {
        answer.status = Status::not_implemented; // chunked bodies: we cannot find the end
    } else if (request.content_length > body_limit) {
        answer.status = Status::content_too_large;
    } else {
        answer.keep_alive = request.keep_alive;
        answer.head_only = request.method == "HEAD";
        if (!http::is_known_method(request.method)) {
            answer.status = Status::not_implemented;
        } else if (request.method != "GET" && request.method != "HEAD") {
            answer.status = Status::method_not_allowed;
        } else {
            answer.file = site.open(request.target);
            answer.status = answer.file.status;
        }
    }
    return answer;
}

// The TCP socket under a connection, plain or TLS.
corio::AsyncSocket& raw_socket(corio::AsyncSocket& client) {
    return client;
}
#if CORIO_EXAMPLES_TLS
corio::AsyncSocket& raw_socket(corio::TlsStream& client) {
    return client.socket();
}
#endif

// Reads and drops `length` body bytes, first those already in the inbox. False if the client
// closed first.
template <class Stream>
corio::Task<bool> skip_body(Stream& client, Inbox& inbox, Outbox& scratch,
                            std::uint64_t length, Clock::time_point deadline) {
    const std::size_t buffered =
        static_cast<std::size_t>(std::min<std::uint64_t>(length, inbox.view().size()));
    inbox.consume(buffered);
    length -= buffered;
    while (length > 0) {
        const std::size_t wanted =
            static_cast<std::size_t>(std::min<std::uint64_t>(length, scratch.size()));
        const std::size_t received =
            co_await corio::timeout_at(deadline, client.recv(std::span(scratch).first(wanted)));
        if (received == 0) {
            co_return false;
        }
        length -= received;
    }
    co_return true;
}

#ifdef __linux__
// Sends bytes [offset, end) of `file` with sendfile(2): the kernel copies them from the page cache
// to the socket, without passing through our memory, as many as the socket takes per call. When it
// takes none (EAGAIN: the socket is non-blocking) the task waits until it is writable, for at most
// `idle` like send_all, so a slow reader holds up nobody. (sendfile has no MSG_NOSIGNAL: a reset
// peer is an EPIPE only because run_server ignores SIGPIPE.)
corio::Task<> send_file(corio::AsyncSocket& client, int file, std::uint64_t offset,
                        std::uint64_t end, Clock::duration idle) {
    std::uint64_t this_turn = 0;
    while (offset < end) {
        auto position = static_cast<off_t>(offset);
        const ssize_t count = ::sendfile(client.fd(), file, &position,
                                         static_cast<std::size_t>(std::min<std::uint64_t>(
                                             end - offset, std::uint64_t{1} << 30)));
        const int error = errno;
        if (count > 0) {
            offset += static_cast<std::uint64_t>(count);
            this_turn += static_cast<std::uint64_t>(count);
            if (this_turn >= sendfile_turn) { // a fast reader must not keep the loop to itself
                this_turn = 0;
                co_await corio::Yield{};
            }
        } else if (count == 0) { // the file shrank: the promised length cannot be kept
            throw std::runtime_error("the file could not be read to its end; connection closed");
        } else if (error == EAGAIN || error == EWOULDBLOCK) {
            this_turn = 0;
            co_await corio::timeout_after(idle, client.wait_writable());
        } else if (error != EINTR) {
            throw std::system_error(error, std::generic_category(), "sendfile");
        }
    }
}
#endif

// Sends the answer: head, then the file (GET) or a one-line text (errors), in pieces of the
// outbox; on Linux, what of a file does not fit in the first piece goes by sendfile. The head and
// the start of the body leave in one send.
template <class Stream>
corio::Task<> send_answer(Stream& client, Outbox& outbox, const Answer& answer,
                          Clock::duration idle) {
    std::array<char, 48> error_text{}; // "404 Not Found\n"
    std::size_t error_size = 0;
    http::ResponseFields fields;
    fields.keep_alive = answer.keep_alive;
    fields.allow = answer.status == Status::method_not_allowed;
    if (answer.status == Status::ok) {
        fields.content_type = answer.file.content_type;
        fields.content_length = answer.file.size;
    } else {
        const std::string_view reason = http::reason(answer.status);
        const auto code = std::to_chars(error_text.data(), error_text.data() + 3,
                                        static_cast<int>(answer.status));
        error_size = static_cast<std::size_t>(code.ptr - error_text.data());
        error_text[error_size++] = ' ';
        error_size +=
            reason.copy(error_text.data() + error_size, error_text.size() - error_size - 1);
        error_text[error_size++] = '\n';
        fields.content_length = error_size;
    }
    std::size_t used = http::write_response_head(outbox, answer.status, fields);
    if (used == 0) {
        throw std::logic_error("response head larger than the outbox");
    }
    const std::uint64_t body_size = answer.head_only ? 0 : fields.content_length;
    std::uint64_t offset = 0;
    for (;;) {
        // Fill the rest of the outbox with the next piece of the body.
        while (offset < body_size && used < outbox.size()) {
            const std::size_t room = static_cast<std::size_t>(
                std::min<std::uint64_t>(outbox.size() - used, body_size - offset));
            if (answer.status != Status::ok) {
                std::memcpy(outbox.data() + used, error_text.data() + offset, room);
                used += room;
                offset += room;
                continue;
            }
            const ssize_t count = ::pread(answer.file.file.get(), outbox.data() + used, room,
                                          static_cast<off_t>(offset));
            if (count < 0 && errno == EINTR) {
                continue;
            }
            if (count <= 0) { // an error, or the file shrank: the promised length cannot be kept
                throw std::runtime_error(
                    "the file could not be read to its end; connection closed");
            }
            used += static_cast<std::size_t>(count);
            offset += static_cast<std::uint64_t>(count);
        }
        if (used == 0) {
            co_return;
        }
        // A client that takes nothing for `idle` is dropped (TimeoutError ends the connection).
        co_await corio::timeout_after(idle, client.send_all(std::span(outbox).first(used)));
        used = 0;
#ifdef __linux__
        // sendfile needs the plain socket: over TLS the file goes through the outbox (and OpenSSL).
        if constexpr (std::is_same_v<Stream, corio::AsyncSocket>) {
            if (answer.status == Status::ok && offset < body_size) {
                co_await send_file(client, answer.file.file.get(), offset, body_size, idle);
                co_return;
            }
        }
#endif
    }
}

// Closes the way clients can read our last answer: a close() with unread request bytes still
// in our receive buffer sends a reset, which can destroy the answer before the client reads it.
// So: send FIN, read and drop what the client still sends (a bounded amount, for a bounded time),
// then close.
// Over TLS the end is our close_notify first (then the FIN), so that the client knows the answer
// is whole.
template <class Stream>
corio::Task<> close_gracefully(Stream& client, Outbox& scratch) {
    try {
        if constexpr (!std::is_same_v<Stream, corio::AsyncSocket>) {
            co_await corio::timeout_after(std::chrono::seconds(2), client.shutdown());
        }
        raw_socket(client).shutdown_write();
        std::size_t dropped = 0;
        const auto until = Clock::now() + std::chrono::seconds(2);
        while (dropped < 1024 * 1024) {
            const std::optional<std::size_t> received =
                co_await corio::ignore_at(until, client.recv(scratch));
            if (!received || *received == 0) {
                break;
            }
            dropped += *received;
        }
    } catch (const std::system_error&) { // the client already left: nothing more to do
    }
    client.close();
}

void log_request(const Settings& settings, std::string_view head, Status status) {
    if (settings.verbose) {
        const std::string_view request_line = head.substr(0, head.find_first_of("\r\n"));
        std::cerr << std::string(request_line) + " -> " + std::to_string(static_cast<int>(status)) +
                         '\n';
    }
}

// One connection: requests and answers, in order, until one side closes or the client is idle.
template <class Stream>
corio::Task<> serve_connection(Stream client, const Settings& settings) {
    Inbox inbox;
    Outbox outbox; // not zeroed: only written bytes are sent
    const int on = 1;
    ::setsockopt(raw_socket(client).fd(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on); // answers leave at once
    try {
        for (;;) {
            // 1. A whole request head, within the idle timeout.
            const Clock::time_point deadline = Clock::now() + settings.idle;
            std::size_t head_size = std::string_view::npos;
            for (;;) {
                inbox.consume(http::leading_empty_lines(inbox.view()));
                head_size = http::find_head_end(inbox.view());
                if (head_size != std::string_view::npos) {
                    break;
                }
                if (inbox.full()) {
                    Answer too_large;
                    // A request line that has not ended in 8 KiB holds a target far too long.
                    too_large.status = inbox.view().find('\n') == std::string_view::npos
                                           ? Status::uri_too_long
                                           : Status::header_fields_too_large;
                    log_request(settings, inbox.view(), too_large.status);
                    co_await send_answer(client, outbox, too_large, settings.idle);
                    co_await close_gracefully(client, outbox);
                    co_return;
                }
                const std::optional<std::size_t> received =
                    co_await corio::ignore_at(deadline, client.recv(inbox.free_space()));
                if (!received && !inbox.view().empty()) { // half a request, then silence
                    Answer timed_out;
                    timed_out.status = Status::request_timeout;
                    co_await send_answer(client, outbox, timed_out, settings.idle);
                    co_await close_gracefully(client, outbox);
                    co_return;
                }
                if (!received || *received == 0) { // idle between requests, or the client left
                    co_return;
                }
                inbox.add(*received);
            }

            // 2. What to answer (the request's fields point into the inbox until step 3).
            const http::ParsedRequest parsed =
                http::parse_request(inbox.view().substr(0, head_size));
            const Answer answer = decide(parsed, settings.site);
            log_request(settings, inbox.view(), answer.status);

            // 3. Drop the request, its body too, so that the next one is at the front.
            // A client that asked whether to send its body, and sent none yet, is told to go on.
            inbox.consume(head_size);
            const http::Request& request = parsed.request;
            if (answer.keep_alive && request.expects_continue && request.content_length > 0 &&
                inbox.view().empty()) {
                co_await corio::timeout_after(settings.idle, client.send_all(continue_response));
            }
            if (answer.keep_alive &&
                !co_await skip_body(client, inbox, outbox, request.content_length, deadline)) {
                co_return; // the client left in the middle of its body
            }

            // 4. Answer; keep the connection if both sides want to.
            co_await send_answer(client, outbox, answer, settings.idle);
            if (!answer.keep_alive) {
                co_await close_gracefully(client, outbox);
                co_return;
            }
        }
    } catch (const std::exception& error) { // a reset, a timeout while sending: this client only
        if (settings.verbose) {
            std::cerr << std::string("connection ended: ") + error.what() + '\n';
        }
    }
} // the socket closes here

#if CORIO_EXAMPLES_TLS
// HTTPS: the handshake (within the idle timeout), then the same HTTP/1.1 inside the TlsStream.
corio::Task<> serve_tls_connection(corio::AsyncSocket socket, corio::TlsContext context,
                                   const Settings& settings) {
    try {
        corio::TlsStream client = co_await corio::timeout_after(
            settings.idle, corio::TlsStream::accept(std::move(context), std::move(socket)));
        co_await serve_connection(std::move(client), settings);
    } catch (const std::exception& error) { // a failed handshake: this client only
        if (settings.verbose) {
            std::cerr << std::string("TLS handshake failed: ") + error.what() + '\n';
        }
    }
}
#endif

corio::Task<> http_server(corio::AsyncSocket listener, const Settings& settings,
                          [[maybe_unused]] examples::ServerTls tls, // unused without OpenSSL
                          std::optional<corio::AsyncSocket> monitor) {
    // Its root coroutine is run_on_threads' (run_root): a name says what it is in the monitor.
    co_await corio::NameTask{"accept loop"};
    co_await examples::serve_monitor_from_here(std::move(monitor));
    examples::Acceptor acceptor(std::move(listener), settings.verbose);
    for (;;) {
        corio::Accepted accepted = co_await acceptor.accept();
#if CORIO_EXAMPLES_TLS
        if (tls) {
            co_await corio::NewTask{serve_tls_connection(std::move(accepted.socket), *tls, settings)};
            continue;
        }
#endif
        co_await corio::NewTask{serve_connection(std::move(accepted.socket), settings)};
    }
}

// `www` beside the executable, where the build copies examples/www.
std::string default_root(const char* argv0) {
    std::error_code error;
    std::filesystem::path executable = std::filesystem::read_symlink("/proc/self/exe", error);
    if (error) {
        executable = argv0;
    }
    return (executable.parent_path() / "www").string();
}

examples::Option text_option(std::string_view name, std::string_view value_name, std::string help,
                             std::string& value) {
    return {name, value_name, std::move(help), [name, &value](std::string_view text) {
                if (text.empty()) {
                    throw examples::UsageError("empty value for " + std::string(name));
                }
                value = text;
            }};
}

} // namespace

int main(int argc, char* argv[]) {
    examples::ServerOptions server;
    server.port = 8000;
    std::string root;
    std::string file;
    std::optional<std::chrono::nanoseconds> idle_timeout;
    bool verbose = false;
    examples::ServerTls tls;
    examples::MonitorOption monitor; // removes its socket file when main returns
    // For the tests of the fallback (see http/site.hpp): no openat2, even where the kernel has it.
    const char* no_openat2 = std::getenv("CORIO_HTTP_SERVER_NO_OPENAT2");
    const http::Confinement wanted = no_openat2 != nullptr && std::string_view(no_openat2) == "1"
                                         ? http::Confinement::walk
                                         : http::Confinement::openat2;
    if (const auto status = examples::parse_command_line(
            argc, argv, "http_server", "Serves files over HTTP/1.1.",
            {examples::host_option(server.host), examples::port_option(server.port),
             examples::backlog_option(server.backlog),
             text_option("--root", "DIR", "serve the files below DIR (default: www beside me)",
                         root),
             text_option("--file", "PATH", "serve only this file, at / and /NAME", file),
             examples::seconds_option(
                 "--idle-timeout", "time a client has for each request (default 10)", idle_timeout),
             examples::tls_option(tls, "serve HTTPS with this certificate chain and key (PEM)"),
             monitor.option(),
             examples::flag_option("--verbose", "log each request to stderr", verbose)})) {
        return *status; // --help, or a bad command line
    }
    if (!root.empty() && !file.empty()) {
        std::cerr << "http_server: --root and --file exclude each other\n"
                     "Try 'http_server --help' for more information.\n";
        return 2;
    }
    try {
        // The site lives in main, so it outlives the Scheduler and every connection task.
        const http::Site site =
            !file.empty()  ? http::Site::single_file(file)
            : root.empty() ? http::Site::directory(default_root(argv[0]),
                                                   "no site beside the executable (the build "
                                                   "copies examples/www there; or give --root)",
                                                   wanted)
                           : http::Site::directory(root, "--root", wanted);
        if (verbose && file.empty()) {
            std::cerr << (site.confinement() == http::Confinement::openat2
                              ? "http_server: files opened with openat2(RESOLVE_BENEATH)\n"
                              : "http_server: files opened by a walk with O_NOFOLLOW (no "
                                "openat2, or CORIO_HTTP_SERVER_NO_OPENAT2=1)\n");
        }
        const Settings settings{site,
                                std::chrono::duration_cast<Clock::duration>(
                                    idle_timeout.value_or(std::chrono::seconds(10))),
                                verbose};
        return examples::run_server("http_server", server,
                                    [&settings, &tls, &monitor](corio::AsyncSocket listener) {
                                        return http_server(std::move(listener), settings, tls,
                                                           monitor.take());
                                    });
    } catch (const std::system_error& error) { // the site cannot be opened
        std::cerr << "http_server: " << error.what() << '\n';
        return 1;
    }
}
