// corio/diag/monitor.hpp - a monitor a person talks to with `nc`, served by the loop it watches,
// in the spirit of curio's: `ps`, `pstree`, `where N`, `kill N`, `stats`, `help`.
//
//     kernel.add_task(corio::serve_monitor(kernel, corio::monitor_listener("/tmp/app.monitor")));
//     $ echo 'where 7' | nc -U /tmp/app.monitor
//
// Opt-in, and never on a public address: monitor_listener takes a Unix socket path, or a TCP
// address that must be loopback (127.0.0.0/8, ::1); anything else is refused. Whoever can open the
// socket can kill tasks, so a path's directory and mode decide who that is.
//
// Each connection is a task of its own ("monitor client"), reading commands a line at a time. A
// line longer than max_line, or with a byte that is not printable text, is answered with an error
// and the connection is closed: garbage costs the loop nothing but that. (Closed cleanly: the
// error, then the end of the stream; what the peer still sends is dropped first, a bounded amount
// for a bounded time, since a socket closed with bytes unread resets the connection and the
// error can be lost with it.) A peer that goes away, even in the middle of an answer, ends its
// connection and nothing else: the client task never fails. At most max_clients connections are
// served at once; more are told so and closed. While it serves, the monitor records since when
// each task waits (Scheduler::record_wait_times: a clock read per wait).
#pragma once

#include "corio/diag/task_listing.hpp"
#include "corio/net/async_socket.hpp"
#include "corio/net/socket_address.hpp"
#include "corio/scheduler.hpp"
#include "corio/syscalls.hpp"
#include "corio/timeout.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace corio {

/// What a monitor allows (the defaults suit a person with `nc`).
struct MonitorLimits {
    std::size_t max_line = 256;  ///< longest command line, newline excluded
    std::size_t max_clients = 8; ///< connections served at once
};

namespace detail {

// True if the text after the command is one decimal task number.
inline bool parse_serial(std::string_view text, std::uint64_t& serial) {
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1);
    }
    while (!text.empty() && text.back() == ' ') {
        text.remove_suffix(1);
    }
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), serial);
    return error == std::errc{} && end == text.data() + text.size() && !text.empty();
}

inline bool is_loopback(const SocketAddress& address) {
    const sockaddr* native = address.data();
    if (native->sa_family == AF_INET) {
        sockaddr_in ipv4{};
        std::memcpy(&ipv4, native, sizeof ipv4);
        return (ntohl(ipv4.sin_addr.s_addr) >> 24) == 127;
    }
    if (native->sa_family == AF_INET6) {
        sockaddr_in6 ipv6{};
        std::memcpy(&ipv6, native, sizeof ipv6);
        return IN6_IS_ADDR_LOOPBACK(&ipv6.sin6_addr) != 0;
    }
    return false;
}

inline constexpr std::string_view monitor_help =
    "commands:\n"
    "  ps        every task: id, spawner, state, time waited and left, name, what it waits on\n"
    "  pstree    the same, each task under the task that spawned it\n"
    "  where N   task N's frames, innermost first (an async stack)\n"
    "  kill N    kill task N\n"
    "  stats     what the Scheduler holds, and its backend\n"
    "  help      this\n";

} // namespace detail

/// The answer to one monitor command line (see the top of this file); errors start with "error: ".
inline std::string answer_monitor_command(Scheduler& kernel, std::string_view line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
        line.remove_suffix(1);
    }
    while (!line.empty() && line.front() == ' ') {
        line.remove_prefix(1);
    }
    const std::size_t space = line.find(' ');
    const std::string_view command = line.substr(0, space);
    const std::string_view argument = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
    if (command == "ps" && argument.empty()) {
        return format_ps(kernel.snapshot());
    }
    if (command == "pstree" && argument.empty()) {
        return format_pstree(kernel.snapshot());
    }
    if (command == "stats" && argument.empty()) {
        return format_stats(kernel);
    }
    if ((command == "help" || command.empty()) && argument.empty()) {
        return std::string(detail::monitor_help);
    }
    if (command == "where" || command == "kill") {
        std::uint64_t serial = 0;
        if (!detail::parse_serial(argument, serial)) {
            return "error: " + std::string(command) + " takes a task number\n";
        }
        const TaskId id = kernel.find_task(serial);
        if (!id) {
            return "error: no task " + std::to_string(serial) + "\n";
        }
        if (command == "kill") {
            if (!kernel.kill(id)) {
                return "error: task " + std::to_string(serial) + " is ending already\n";
            }
            return "killed " + std::to_string(serial) + "\n";
        }
        for (const TaskInfo& task : kernel.snapshot()) {
            if (task.id == id) {
                return format_where(task);
            }
        }
        return "error: no task " + std::to_string(serial) + "\n";
    }
    return "error: unknown command (try help)\n";
}

/// A listening socket for serve_monitor: `where` is a Unix socket path (it must not exist yet;
/// corio never removes it), or "HOST:PORT" / "[HOST]:PORT" with a loopback HOST (port 0 picks
/// one). Throws std::invalid_argument for an address that is not loopback, std::system_error if
/// it cannot listen.
inline AsyncSocket monitor_listener(std::string_view where) {
    const std::size_t colon = where.rfind(':');
    if (!where.empty() && where.front() != '/' && where.front() != '.' && colon != std::string_view::npos) {
        std::string_view host = where.substr(0, colon);
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
            host = host.substr(1, host.size() - 2);
        }
        std::uint16_t port = 0;
        const std::string_view digits = where.substr(colon + 1);
        const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
        if (error != std::errc{} || end != digits.data() + digits.size()) {
            throw std::invalid_argument("corio: monitor address '" + std::string(where) + "': bad port");
        }
        const SocketAddress address = SocketAddress::parse(host, port);
        if (!detail::is_loopback(address)) {
            throw std::invalid_argument("corio: the monitor only listens on loopback or a Unix socket, not " +
                                        address.to_string());
        }
        return AsyncSocket::listen(address, 16);
    }
    return AsyncSocket::listen(SocketAddress::from_path(where), 16);
}

namespace detail {

// A place among MonitorLimits::max_clients, held by a client task's frame. A parameter of the
// coroutine, so that the place comes back whenever the frame goes: also when the task is killed
// before it first runs, which a count kept by the coroutine's body would miss (the place would be
// lost for good, and after max_clients such kills nobody would be served).
class MonitorPlace {
public:
    explicit MonitorPlace(std::shared_ptr<std::size_t> clients) noexcept : clients_(std::move(clients)) {
        ++*clients_;
    }
    MonitorPlace(MonitorPlace&& other) noexcept = default; // leaves `other` empty
    MonitorPlace(const MonitorPlace&) = delete;
    MonitorPlace& operator=(const MonitorPlace&) = delete;
    MonitorPlace& operator=(MonitorPlace&&) = delete;
    ~MonitorPlace() {
        if (clients_) {
            --*clients_;
        }
    }

private:
    std::shared_ptr<std::size_t> clients_;
};

// Ends a connection the monitor will not serve further: `error`, then our end of the stream, then
// what the peer still sends is read and dropped (at most 1 MiB, for at most a second) before the
// socket closes. A socket closed with bytes unread resets the connection (TCP sends a RST that
// may destroy the error before the peer reads it; a Unix peer reads ECONNRESET, not the end).
inline Task<> refuse_client(Scheduler& kernel, AsyncSocket& client, std::string_view error,
                            std::vector<char>& buffer) {
    co_await client.send_all(error);
    client.shutdown_write();
    const Scheduler::Clock::time_point until = kernel.deadline_after(std::chrono::seconds(1));
    std::size_t dropped = 0;
    while (dropped < (std::size_t{1} << 20)) {
        const std::optional<std::size_t> received = co_await ignore_at(until, client.recv(buffer));
        if (!received || *received == 0) {
            co_return;
        }
        dropped += *received;
    }
}

// Refuses a connection beyond max_clients without a task for it: the error, our end of the
// stream, and what the peer sent already is dropped without waiting (see refuse_client: it makes
// a reset less likely, though a peer that sends later may still get one).
inline void refuse_at_once(const AsyncSocket& socket) noexcept {
    constexpr std::string_view refusal = "error: too many monitor clients\n";
    static_cast<void>(::send(socket.fd(), refusal.data(), refusal.size(), MSG_NOSIGNAL));
    static_cast<void>(::shutdown(socket.fd(), SHUT_WR));
    char dropped[512];
    for (int i = 0; i < 128 && ::recv(socket.fd(), dropped, sizeof dropped, MSG_DONTWAIT) > 0; ++i) {
    }
}

// One monitor connection: commands a line at a time until the peer closes, or sends garbage.
inline Task<> serve_monitor_client(Scheduler& kernel, AsyncSocket client, MonitorLimits limits,
                                   [[maybe_unused]] MonitorPlace place) {
    co_await NameTask{"monitor client"};
    std::vector<char> buffer(512);
    try {
        std::string pending;
        for (;;) {
            std::size_t newline = 0;
            while ((newline = pending.find('\n')) == std::string::npos) {
                if (pending.size() > limits.max_line) {
                    co_await refuse_client(kernel, client, "error: line too long\n", buffer);
                    co_return;
                }
                const std::size_t received = co_await client.recv(buffer);
                if (received == 0) {
                    co_return;
                }
                pending.append(buffer.data(), received);
            }
            const std::string line = pending.substr(0, newline);
            pending.erase(0, newline + 1);
            if (line.size() > limits.max_line) {
                co_await refuse_client(kernel, client, "error: line too long\n", buffer);
                co_return;
            }
            bool text = true;
            for (const char c : line) {
                const auto byte = static_cast<unsigned char>(c);
                text = text && (byte == '\r' || byte == '\t' || (byte >= 0x20 && byte < 0x7f));
            }
            if (!text) {
                co_await refuse_client(kernel, client, "error: not a text command\n", buffer);
                co_return;
            }
            const std::string answer = answer_monitor_command(kernel, line);
            co_await client.send_all(std::string_view(answer));
        }
    } catch (const std::system_error&) {
        // The peer went away (a reset, a broken pipe): this connection ends, and nothing else.
        // Its failure must not reach the Scheduler's exception handler: a program may take any
        // task's failure as fatal (the example servers do), and a monitor must not be a way to
        // stop the program it watches.
    }
}

} // namespace detail

/// Serves the monitor on `listener` (from monitor_listener) until the task is killed; each
/// connection is a task of its own (see the top of this file). Turns on
/// Scheduler::record_wait_times, so that `ps` says how long each task has waited.
inline Task<> serve_monitor(Scheduler& kernel, AsyncSocket listener, MonitorLimits limits = {}) {
    co_await NameTask{"monitor"};
    kernel.record_wait_times(true);
    auto clients = std::make_shared<std::size_t>(0);
    for (;;) {
        std::optional<Accepted> accepted;
        try {
            accepted.emplace(co_await listener.accept());
        } catch (const std::system_error&) {
            // No fd left (EMFILE, ENFILE) or no memory: the monitor waits and tries again rather
            // than end; the connection waits in the backlog meanwhile.
        }
        if (!accepted) {
            co_await Sleep{std::chrono::milliseconds(100)};
            continue;
        }
        if (*clients >= limits.max_clients) {
            detail::refuse_at_once(accepted->socket);
            continue; // closed as it goes out of scope
        }
        // Made before the co_await: no temporary with a destructor in a co_await's operand (GCC 12).
        Task<> served = detail::serve_monitor_client(kernel, std::move(accepted->socket), limits,
                                                     detail::MonitorPlace(clients));
        co_await NewTask{std::move(served)};
    }
}

namespace detail {
// `Scheduler& kernel = co_await ThisScheduler{};`: the Scheduler the calling task runs on.
struct [[nodiscard]] ThisScheduler {
    [[nodiscard]] ThisScheduler() noexcept = default;
    Scheduler* kernel = nullptr;
    bool handle(Scheduler& running, TaskId /*caller*/) noexcept {
        kernel = &running;
        return false;
    }
    [[nodiscard]] Scheduler& result() const noexcept { return *kernel; }
};
} // namespace detail

/// serve_monitor on the Scheduler the task runs on: `co_await NewTask{serve_monitor(listener)}`
/// from any task, with no Scheduler at hand.
inline Task<> serve_monitor(AsyncSocket listener, MonitorLimits limits = {}) {
    Scheduler& kernel = co_await detail::ThisScheduler{};
    co_await serve_monitor(kernel, std::move(listener), limits);
}

} // namespace corio
