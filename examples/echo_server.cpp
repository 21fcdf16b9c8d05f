// echo_server - sends every byte it receives back to whoever sent it, to any number of clients.
//
//     echo_server [--host H] [--port P] [--backlog N] [--threads N] [--idle-timeout SECONDS]
//                 [--tls CERT KEY] [--monitor PATH] [--verbose]
//
// Once it accepts connections it prints `listening on HOST:PORT` (with --port 0 the kernel picks
// the port, and that line says which). It runs until SIGINT or SIGTERM and then exits with status
// 0; a bad command line exits with status 2. Try it with `echo_client` or `nc 127.0.0.1 5001`.
//
// This is the echo server of the course notes corio grew from (a `server` task that accepts and
// spawns one `handle_client` task per connection, which echoes until it reads nothing), made
// robust enough to leave running:
//   * memory: a connection holds no buffer of its own: each read borrows one from the Scheduler
//     (recv_lent) and gives it back once its bytes are echoed. While a client is slow to read our
//     echo, send_all waits and we stop reading from it, so it is the client's own writes that
//     slow down (backpressure), never our memory that grows (one borrowed buffer per such client).
//   * half-close: a client may shut down its sending side and still read everything back; we close
//     only after the last echo was sent.
//   * a client that resets its connection ends that connection only, quietly.
//   * out of file descriptors: the Acceptor (common/acceptor.hpp) neither spins nor gives up.
//   * SIGINT/SIGTERM: a task waits for them (corio::SignalWait), then every Scheduler stops, the
//     listeners and connections close, and the program exits with status 0 (common/server.hpp).
//   * --threads N (default 1): N threads, each a Scheduler with its own listener on the same
//     address (SO_REUSEPORT): the kernel spreads the connections, the threads share nothing.
//   * --idle-timeout SECONDS (e.g. 0.2 or 30; off by default): a client that sends nothing for
//     that long is disconnected, so silent connections cannot pile up.
//   * --tls CERT KEY (PEM files; needs a build with OpenSSL): the same echo inside TLS
//     (corio::TlsStream). A client has the idle timeout, or 10 s, to finish its handshake; the
//     echo ends with a close_notify each way, and a client that leaves without one is logged as
//     the truncation it is. Try `openssl s_client -connect 127.0.0.1:5001`.
//   * --monitor PATH (off by default): corio's task monitor (corio/diag/monitor.hpp) on a Unix
//     socket PATH, or on a loopback HOST:PORT (e.g. 127.0.0.1:0): `echo ps | nc -U PATH` lists
//     the tasks, `where N` shows where task N waits, `kill N` kills it. Once listening, the server
//     prints `monitor on ADDRESS` after its `listening on` line, and removes the socket file when
//     it exits. A path that exists already, or an address that is not loopback, is a bad command
//     line (status 2). With --threads N, the monitor watches the first thread's Scheduler only.
#include <chrono>
#include <cstddef>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <array>

#include <corio/corio.hpp>

#include "common/acceptor.hpp"
#include "common/monitor_option.hpp"
#include "common/options.hpp"
#include "common/server.hpp"
#include "common/tls_option.hpp"

namespace {

// One line on stderr per connection event, only with --verbose ("PEER: event", and with several
// threads "PEER on thread N: event"). Without it, it holds a null pointer and no more: every idle
// connection carries one in its frame.
class ConnectionLog {
public:
    ConnectionLog(const corio::SocketAddress& peer, bool verbose, const std::string& thread)
        : peer_(verbose ? std::make_unique<const std::string>(peer.to_string() + thread) : nullptr) {}

    void operator()(std::string_view event) const {
        if (peer_) {
            std::cerr << *peer_ + ": " + std::string(event) + '\n'; // one write: lines never mix
        }
    }

private:
    std::unique_ptr<const std::string> peer_; // null: not verbose
};

using IdleTimeout = std::optional<corio::Scheduler::Clock::duration>; // empty: no limit

// One connection: echo every byte back until the client closes its end (or stays idle too long).
corio::Task<> handle_client(corio::AsyncSocket client, ConnectionLog log, IdleTimeout idle) {
    try {
        log("connected");
        for (;;) {
            // Reads whatever has arrived into a buffer the Scheduler lends until `received` goes:
            // an idle connection holds no buffer. With an idle timeout, a client that sends
            // nothing for that long throws TimeoutError.
            // (Not `idle ? co_await a : co_await b`: GCC 12 destroys the unused branch's
            // LentBytes temporary too: a double free, seen with this very line.)
            corio::LentBytes received;
            if (idle) {
                received = co_await corio::timeout_after(*idle, client.recv_lent());
            } else {
                received = co_await client.recv_lent();
            }
            if (received.empty()) {
                break;
            }
            co_await client.send_all(received.bytes()); // waits for slow readers
        }
        log("closed"); // recv gave 0: the client sent its last byte and got everything back
    } catch (const corio::TimeoutError&) {
        log("idle for too long: disconnected");
    } catch (const std::exception& error) { // e.g. a reset: it ends this connection, no other
        log(error.what());
    }
} // the socket closes here

#if CORIO_EXAMPLES_TLS
constexpr auto default_handshake_limit = std::chrono::seconds(10);

// One TLS connection: the handshake, then the same echo through the TlsStream. The plaintext
// buffer lives in the frame (TLS needs one to decrypt into; OpenSSL holds its own buffers anyway).
corio::Task<> handle_tls_client(corio::AsyncSocket socket, corio::TlsContext context,
                                ConnectionLog log, IdleTimeout idle) {
    try {
        corio::TlsStream client = co_await corio::timeout_after(
            idle.value_or(default_handshake_limit),
            corio::TlsStream::accept(std::move(context), std::move(socket)));
        log("connected (" + std::string(client.protocol_version()) + ")");
        std::array<std::byte, corio::TlsStream::max_record_plaintext> buffer; // not zeroed
        for (;;) {
            std::size_t received = 0;
            if (idle) {
                received = co_await corio::timeout_after(*idle, client.recv(buffer));
            } else {
                received = co_await client.recv(buffer);
            }
            if (received == 0) {
                break; // the client's close_notify
            }
            co_await client.send_all(std::span(buffer).first(received));
        }
        co_await client.shutdown();
        log("closed");
    } catch (const corio::TimeoutError&) {
        log("idle for too long: disconnected");
    } catch (const std::exception& error) { // a failed handshake, a truncation, a reset...
        log(error.what());
    }
}
#endif

// The listener: accept connections forever, each one served by a task of its own.
// `thread`: "" with one thread, " on thread N" with several (for the log). `monitor`: the
// --monitor listener, on the first thread only.
corio::Task<> echo_server(corio::AsyncSocket listener, bool verbose, IdleTimeout idle,
                          std::string thread, [[maybe_unused]] examples::ServerTls tls,
                          std::optional<corio::AsyncSocket> monitor) {
    // Its root coroutine is run_on_threads' (run_root): a name says what it is in the monitor.
    co_await corio::NameTask{"accept loop"};
    co_await examples::serve_monitor_from_here(std::move(monitor));
    examples::Acceptor acceptor(std::move(listener), verbose); // copes with running out of fds
    for (;;) {
        auto [client, peer] = co_await acceptor.accept();
#if CORIO_EXAMPLES_TLS
        if (tls) {
            co_await corio::NewTask{handle_tls_client(std::move(client), *tls,
                                                      ConnectionLog(peer, verbose, thread), idle)};
            continue;
        }
#endif
        co_await corio::NewTask{
            handle_client(std::move(client), ConnectionLog(peer, verbose, thread), idle)};
    }
}

} // namespace

int main(int argc, char* argv[]) {
    examples::ServerOptions server;
    bool verbose = false;
    std::optional<std::chrono::nanoseconds> idle_timeout;
    examples::ServerTls tls;
    examples::MonitorOption monitor; // removes its socket file when main returns
    if (const auto status = examples::parse_command_line(
            argc, argv, "echo_server", "Sends every byte it receives back to its sender.",
            {examples::host_option(server.host), examples::port_option(server.port),
             examples::backlog_option(server.backlog), examples::threads_option(server.threads),
             examples::seconds_option("--idle-timeout",
                                      "disconnect a client silent for that long (e.g. 0.2)",
                                      idle_timeout),
             examples::tls_option(tls, "echo inside TLS with this certificate chain and key (PEM)"),
             monitor.option("; with --threads, for the first thread"),
             examples::flag_option("--verbose", "log each connection to stderr", verbose)})) {
        return *status; // --help, or a bad command line
    }
    IdleTimeout idle;
    if (idle_timeout) {
        idle = std::chrono::duration_cast<corio::Scheduler::Clock::duration>(*idle_timeout);
    }
    const bool several = server.threads > 1;
    return examples::run_server(
        "echo_server", server,
        // Only the first thread touches `monitor` (it takes it): no two threads share it.
        [verbose, idle, several, &tls, &monitor](corio::AsyncSocket listener, unsigned index) {
            return echo_server(std::move(listener), verbose, idle,
                               several ? " on thread " + std::to_string(index) : "", tls,
                               index == 0 ? monitor.take() : std::nullopt);
        });
}
