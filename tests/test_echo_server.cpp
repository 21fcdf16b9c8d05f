// Integration tests of the example programs: the real echo_server, hello_server and echo_client
// processes (paths from CORIO_ECHO_SERVER_PATH, CORIO_HELLO_SERVER_PATH, CORIO_ECHO_CLIENT_PATH),
// spoken to over 127.0.0.1 with plain POSIX sockets.
//
// Rules that keep these tests from hanging or leaking: every server listens on --port 0 and tells
// us its port; every wait has a timeout (poll, SO_RCVTIMEO/SO_SNDTIMEO, deadlines); every loop is
// bounded in count and time; every child process is killed and reaped by its RAII owner, by PID.
#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <poll.h>
#include <spawn.h>
#include <sstream>
#include <string>
#include <string_view>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include "support/catch.hpp"
#include "support/child_process.hpp"
#include "support/fd.hpp"
#include "support/tcp_client.hpp"

#ifndef CORIO_ECHO_SERVER_PATH
#error "CORIO_ECHO_SERVER_PATH must name the echo_server example (tests/CMakeLists.txt defines it)"
#endif

namespace {

using namespace corio::test; // Child, Server, UniqueFd, connect_to, read_some...
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t kib = 1024;
constexpr std::size_t mib = 1024 * kib;

/// Runs the program at `path` with each of the command lines, and checks that it rejects each
/// one with exit status 2 and a message on stderr.
void check_usage_errors(const std::string& path,
                        const std::vector<std::vector<std::string>>& command_lines) {
    for (const auto& arguments : command_lines) {
        Child program(path, arguments);
        const auto status = program.wait_exit(5s);
        INFO(arguments.front() << ": " << describe_status(status));
        CHECK(exited_with(status, 2));
        CHECK_FALSE(program.stderr_text().empty());
    }
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

/// Resident memory of a process, in KiB (VmRSS in /proc/PID/status).
long resident_kib(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("VmRSS:")) {
            return std::stol(line.substr(6));
        }
    }
    FAIL("no VmRSS in /proc/" << pid << "/status");
    return 0;
}

/// CPU time a process has used (user + system), in seconds, from /proc/PID/stat.
double cpu_seconds(pid_t pid) {
    std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    const auto name_end = stat.rfind(')'); // the command name may contain spaces
    REQUIRE(name_end != std::string::npos);
    std::istringstream fields(stat.substr(name_end + 2));
    std::vector<std::string> field;
    std::string value;
    while (fields >> value && field.size() < 13) {
        field.push_back(value);
    }
    REQUIRE(field.size() == 13);
    // field[0] is stat's field 3 (state); utime and stime are fields 14 and 15.
    const double ticks = std::stod(field[11]) + std::stod(field[12]);
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// How many fds a process has open with a number below `limit` (it may have inherited others).
std::size_t open_fds_below(pid_t pid, std::size_t limit) {
    std::size_t count = 0;
    for (const auto& entry :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
        count += std::stoul(entry.path().filename().string()) < limit ? 1 : 0;
    }
    return count;
}

// ---------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------


/// Sends `message` and checks that the same bytes come back.
void check_round_trip(int fd, const std::string& message) {
    send_text(fd, message);
    CHECK(read_exactly(fd, message.size()) == message);
}


// ---------------------------------------------------------------------------------------------
// Streams of checkable data
// ---------------------------------------------------------------------------------------------

/// Pseudo-random bytes that repeat with a prime period (so they never line up with buffer sizes),
/// different for each seed: every byte a client receives can be checked against its offset.
class Pattern {
public:
    static constexpr std::size_t period = 65521;

    explicit Pattern(std::uint32_t seed) : bytes_(2 * period, '\0') {
        std::uint32_t state = seed * 2654435761U + 1;
        for (std::size_t i = 0; i < period; ++i) {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            bytes_[i] = bytes_[i + period] = static_cast<char>(state >> 24);
        }
    }

    /// The bytes at `offset` (at most `size` of them, and at most one period).
    [[nodiscard]] std::string_view at(std::uint64_t offset, std::size_t size) const {
        return std::string_view(bytes_).substr(offset % period, std::min(size, period));
    }

    /// True if `data` is what the stream holds at `offset`.
    [[nodiscard]] bool matches(std::uint64_t offset, std::string_view data) const {
        while (!data.empty()) {
            const std::string_view expected = at(offset, data.size());
            if (data.substr(0, expected.size()) != expected) {
                return false;
            }
            data.remove_prefix(expected.size());
            offset += expected.size();
        }
        return true;
    }

private:
    std::string bytes_;
};

/// How a client reads: how much at a time, and how long it dawdles after each read.
struct Pacing {
    std::size_t read_chunk = 256 * kib;
    std::chrono::microseconds pause_after_read{0};
};

/// One client's side of an echo, driven by poll: it sends `total` bytes of its pattern and checks
/// every byte that comes back. With `half_close` it shuts down its sending side after the last
/// byte and then expects the server to close after echoing everything.
class EchoStream {
public:
    EchoStream(UniqueFd socket, std::uint32_t seed, std::uint64_t total, bool half_close,
               Pacing pacing = {})
        : socket_(std::move(socket)), pattern_(seed), total_(total), half_close_(half_close),
          pacing_(pacing), buffer_(pacing.read_chunk) {
        REQUIRE(::fcntl(socket_.get(), F_SETFL, O_NONBLOCK) == 0);
    }

    [[nodiscard]] int fd() const noexcept { return socket_.get(); }
    [[nodiscard]] bool finished() const noexcept {
        return !failure_.empty() || end_of_stream_ || (!half_close_ && received_ == total_);
    }
    [[nodiscard]] bool succeeded() const noexcept {
        return failure_.empty() && received_ == total_ && end_of_stream_ == half_close_;
    }
    [[nodiscard]] std::uint64_t sent() const noexcept { return sent_; }
    [[nodiscard]] std::uint64_t received() const noexcept { return received_; }
    [[nodiscard]] std::string describe() const {
        return "sent " + std::to_string(sent_) + " of " + std::to_string(total_) + ", received " +
               std::to_string(received_) + (end_of_stream_ ? ", end-of-stream" : "") +
               (failure_.empty() ? "" : ", " + failure_);
    }

    [[nodiscard]] short wanted_events() const noexcept {
        if (finished()) {
            return 0;
        }
        return static_cast<short>(POLLIN | (sent_ < total_ ? POLLOUT : 0));
    }

    void on_ready(short events) {
        if ((events & POLLOUT) != 0) {
            send_some();
        }
        if ((events & (POLLIN | POLLHUP | POLLERR)) != 0) {
            receive_some();
        }
    }

private:
    void send_some() {
        for (int round = 0; round < 16 && sent_ < total_ && failure_.empty(); ++round) {
            const std::string_view chunk = pattern_.at(
                sent_,
                static_cast<std::size_t>(std::min<std::uint64_t>(total_ - sent_, Pattern::period)));
            const ssize_t count = ::send(fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
            if (count < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    failure_ = "send: " + errno_text(errno);
                }
                return;
            }
            sent_ += static_cast<std::uint64_t>(count);
        }
        if (sent_ == total_ && half_close_ && !shut_down_) {
            shut_down_ = true;
            if (::shutdown(fd(), SHUT_WR) < 0) {
                failure_ = "shutdown: " + errno_text(errno);
            }
        }
    }

    void receive_some() {
        const ssize_t count = ::recv(fd(), buffer_.data(), buffer_.size(), 0);
        if (count < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                failure_ = "recv: " + errno_text(errno);
            }
            return;
        }
        if (count == 0) {
            end_of_stream_ = true;
            if (received_ != total_) {
                failure_ = "end-of-stream before the whole echo";
            }
            return;
        }
        const std::string_view data(buffer_.data(), static_cast<std::size_t>(count));
        if (received_ + data.size() > total_) {
            failure_ = "more bytes came back than were sent";
        } else if (!pattern_.matches(received_, data)) {
            failure_ = "wrong bytes came back near offset " + std::to_string(received_);
        }
        received_ += data.size();
        if (pacing_.pause_after_read.count() > 0) {
            std::this_thread::sleep_for(pacing_.pause_after_read);
        }
    }

    UniqueFd socket_;
    Pattern pattern_;
    std::uint64_t total_;
    bool half_close_;
    Pacing pacing_;
    std::vector<char> buffer_;
    std::uint64_t sent_ = 0;
    std::uint64_t received_ = 0;
    bool shut_down_ = false;
    bool end_of_stream_ = false;
    std::string failure_;
};

/// Drives the streams until all are finished or the deadline passes; calls `tick` as it goes.
/// True if all finished in time.
bool run_streams(std::vector<EchoStream>& streams, Clock::time_point deadline,
                 const std::function<void()>& tick = {}) {
    std::vector<pollfd> watched;
    std::vector<EchoStream*> owners;
    while (Clock::now() < deadline) {
        watched.clear();
        owners.clear();
        for (EchoStream& stream : streams) {
            if (const short events = stream.wanted_events(); events != 0) {
                watched.push_back(pollfd{stream.fd(), events, 0});
                owners.push_back(&stream);
            }
        }
        if (watched.empty()) {
            return true;
        }
        const int ready = ::poll(watched.data(), watched.size(), 20);
        if (ready < 0 && errno != EINTR) {
            FAIL("poll: " << errno_text(errno));
        }
        for (std::size_t i = 0; ready > 0 && i < watched.size(); ++i) {
            if (watched[i].revents != 0) {
                owners[i]->on_ready(watched[i].revents);
            }
        }
        if (tick) {
            tick();
        }
    }
    return std::all_of(streams.begin(), streams.end(),
                       [](const EchoStream& stream) { return stream.finished(); });
}

/// Sends pattern bytes without reading the echo until the server stops taking them: the server is
/// then blocked writing its echo to us, since our receive buffer is full. Gives how much was sent.
std::uint64_t fill_until_server_blocks(int fd, std::uint64_t limit = 32 * mib) {
    const Pattern pattern(99);
    const auto deadline = Clock::now() + 5s;
    std::uint64_t sent = 0;
    while (sent < limit && Clock::now() < deadline) {
        const std::string_view chunk = pattern.at(sent, Pattern::period);
        const ssize_t count = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (count > 0) {
            sent += static_cast<std::uint64_t>(count);
            continue;
        }
        REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
        pollfd watched{fd, POLLOUT, 0};
        if (::poll(&watched, 1, 200) == 0) {
            break; // nobody takes our bytes any more: every buffer on the way is full
        }
    }
    return sent;
}

/// Closes `socket` so that the peer gets a reset (RST) rather than an orderly end-of-stream.
void close_with_reset(UniqueFd& socket) {
    const linger abort_on_close{1, 0};
    REQUIRE(::setsockopt(socket.get(), SOL_SOCKET, SO_LINGER, &abort_on_close,
                         sizeof abort_on_close) == 0);
    socket.reset();
}

/// A port that nothing listens on (bound once by us, then released).
std::uint16_t unused_port() {
    UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(socket.get() >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
    socklen_t size = sizeof address;
    REQUIRE(::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &size) == 0);
    return ntohs(address.sin_port);
}

/// Checks that the server still runs and echoes for a new client.
void check_still_serving(Server& server) {
    INFO("server: " << describe_status(server.process.wait_exit(0ms)));
    REQUIRE(server.process.running());
    const UniqueFd client = connect_to(server.port);
    check_round_trip(client.get(), "still there?\n");
}

/// Stops a server with SIGTERM and checks that it exited with status 0 within 2 s.
void check_clean_exit(Child& server, int signal_number = SIGTERM) {
    server.send_signal(signal_number);
    const auto status = server.wait_exit(2s);
    INFO("server " << describe_status(status) << "; stderr: " << server.stderr_text());
    CHECK(exited_with(status, 0));
}

} // namespace

// =============================================================================================
// echo_server
// =============================================================================================

TEST_CASE("echo_server echoes what a client sends", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    const UniqueFd client = connect_to(server.port);
    check_round_trip(client.get(), "hello\n");
    check_round_trip(client.get(), "a second message, a little longer than the first one\n");
    check_round_trip(client.get(), std::string(1, '\0') + "binary\xff\x01 bytes too");
    check_round_trip(client.get(), std::string(100 * kib, 'x')); // more than one 16 KiB buffer

    // Closing our end makes the server close its end.
    REQUIRE(::shutdown(client.get(), SHUT_WR) == 0);
    CHECK(closed_by_peer(client.get(), 2s));

    check_clean_exit(server.process);
    CHECK(server.process.stderr_text().empty()); // quiet without --verbose
}

TEST_CASE("echo_server serves 50 concurrent clients, each its own data", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    constexpr int clients = 50;
    std::vector<EchoStream> streams;
    streams.reserve(clients);
    for (int i = 0; i < clients; ++i) { // all connected before anyone sends: really concurrent
        streams.emplace_back(connect_to(server.port), static_cast<std::uint32_t>(i + 1),
                             200 * kib + static_cast<std::uint64_t>(i) * 1000, i % 2 == 0);
    }
    CHECK(run_streams(streams, Clock::now() + 10s));
    for (const EchoStream& stream : streams) {
        INFO(stream.describe());
        CHECK(stream.succeeded());
    }
    check_still_serving(server);
}

TEST_CASE("echo_server survives peers that reset while it writes to them", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    const UniqueFd bystander = connect_to(server.port); // connected before, used after the resets
    check_round_trip(bystander.get(), "before\n");

    for (int round = 0; round < 5; ++round) {
        UniqueFd rude = connect_to(server.port);
        CHECK(fill_until_server_blocks(rude.get()) > 0); // the server is stuck in send_all to us
        close_with_reset(rude);
    }

    check_round_trip(bystander.get(), "after\n"); // the others are still served
    check_still_serving(server);
    CHECK(server.process.stderr_text().empty()); // a reset ends a connection quietly
}

TEST_CASE("echo_server survives peers that close while it writes (no SIGPIPE)", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    for (int round = 0; round < 10; ++round) {
        std::vector<UniqueFd> leaving;
        for (int i = 0; i < 5; ++i) {
            UniqueFd client = connect_to(server.port);
            fill_until_server_blocks(client.get(), 4 * mib);
            (void)read_some(client.get(), 100ms); // take a little, so the server writes again
            leaving.push_back(std::move(client));
        }
        leaving.clear(); // plain close() while the server is in the middle of writing
        std::this_thread::sleep_for(20ms);
        INFO("round " << round << ": server " << describe_status(server.process.wait_exit(0ms)));
        REQUIRE(server.process.running()); // a SIGPIPE would have killed it
    }
    check_still_serving(server);
    CHECK(server.process.stderr_text().empty());
}

TEST_CASE("echo_server echoes everything after a half-close", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    std::vector<EchoStream> streams;
    // The client sends 1 MiB, shuts down its sending side (SHUT_WR), and must still read every
    // byte back, then end-of-stream: the server closes only after the last echo.
    streams.emplace_back(connect_to(server.port), 7, 1 * mib, true);
    CHECK(run_streams(streams, Clock::now() + 10s));
    INFO(streams.front().describe());
    CHECK(streams.front().succeeded());
}

TEST_CASE("echo_server keeps its memory bounded for a slow reader", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    std::vector<EchoStream> streams;
    // The client writes as fast as the server takes its bytes, and reads back slowly (16 KiB, then
    // a pause). The server must stop reading while its echo waits (backpressure) instead of
    // buffering the difference.
    streams.emplace_back(connect_to(server.port), 11, 64 * mib, true, Pacing{16 * kib, 100us});
    const long baseline = resident_kib(server.process.pid());
    long peak = baseline;
    auto next_sample = Clock::now();
    const auto started = Clock::now();
    const bool finished = run_streams(streams, started + 20s, [&] {
        if (Clock::now() >= next_sample) {
            peak = std::max(peak, resident_kib(server.process.pid()));
            next_sample = Clock::now() + 20ms;
        }
    });
    const auto seconds = std::chrono::duration<double>(Clock::now() - started).count();
    peak = std::max(peak, resident_kib(server.process.pid()));
    INFO(streams.front().describe() << " in " << seconds << " s; server RSS " << baseline
                                    << " KiB at first, " << peak << " KiB at most");
    CHECK(finished);
    CHECK(streams.front().succeeded());
    CHECK(peak - baseline < static_cast<long>(16 * mib / kib));
}

TEST_CASE("echo_server serves others promptly while clients stay silent", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    std::vector<UniqueFd> silent;
    silent.reserve(10);
    for (int i = 0; i < 10; ++i) {
        silent.push_back(connect_to(server.port)); // connects, never sends
    }
    const UniqueFd client = connect_to(server.port);
    const auto started = Clock::now();
    check_round_trip(client.get(), "anyone home?\n");
    CHECK(Clock::now() - started < 1s);
    for (const UniqueFd& quiet : silent) { // and the silent ones are neither served nor dropped
        CHECK(read_some(quiet.get(), 0ms).kind == Reading::Kind::timeout);
    }
}

TEST_CASE("echo_server neither spins nor gives up when it runs out of fds", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    const pid_t pid = server.process.pid();

    // Lower the server's limit of open files (posix_spawn cannot; prlimit works on a running
    // process).
    constexpr rlim_t limit = 24;
    rlimit old_limit{};
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, nullptr, &old_limit) == 0);
    const rlimit low{limit, old_limit.rlim_max};
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &low, nullptr) == 0);

    // Once it has served one client, it is surely in its accept loop with every fd of its own
    // open: the free fd numbers below the limit are how many more connections it can hold.
    std::vector<UniqueFd> served;
    served.push_back(connect_to(server.port));
    check_round_trip(served.back().get(), "first\n");
    const std::size_t open_now = open_fds_below(pid, limit);
    REQUIRE(open_now < limit);
    const std::size_t capacity = 1 + (limit - open_now);

    // Connect one client at a time: they are echoed until the server holds `capacity`; after that
    // it has no fd left, and closes each new connection at once instead of leaving it hanging.
    int closed_at_once = 0;
    for (std::size_t i = served.size(); i < capacity + 10; ++i) {
        UniqueFd client = connect_to(server.port);
        send_text(client.get(), "probe\n");
        const Reading reading = read_some(client.get(), 2s);
        INFO("connection " << i << " of capacity " << capacity);
        if (reading.kind == Reading::Kind::data) {
            CHECK(closed_at_once == 0); // once full, it stays full while nobody leaves
            CHECK(reading.data + read_exactly(client.get(), 6 - reading.data.size()) == "probe\n");
            served.push_back(std::move(client));
        } else if (reading.kind != Reading::Kind::timeout) {
            ++closed_at_once; // end-of-stream or reset
        } else {
            FAIL_CHECK("the connection hangs: neither served nor closed");
            break; // the rest would hang too: don't wait for each
        }
    }
    CHECK(served.size() == capacity);
    CHECK(closed_at_once == 10);

    // More clients arrive while it is full. The server must not spin on them.
    std::vector<UniqueFd> waiting;
    waiting.reserve(10);
    for (int i = 0; i < 10; ++i) {
        waiting.push_back(connect_to(server.port));
    }
    const double cpu_before = cpu_seconds(pid);
    std::this_thread::sleep_for(500ms);
    const double cpu_used = cpu_seconds(pid) - cpu_before;
    INFO("CPU time used in 0.5 s while out of fds: " << cpu_used << " s");
    CHECK(cpu_used < 0.1);
    const auto closing_deadline = Clock::now() + 2s; // they were closed at once, not left hanging
    for (const UniqueFd& client : waiting) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::max(closing_deadline - Clock::now(), Clock::duration::zero()));
        CHECK(closed_by_peer(client.get(), left));
    }
    REQUIRE(server.process.running());

    // Once connections close, it serves again, as many as before.
    served.clear();
    std::vector<UniqueFd> again;
    const auto deadline = Clock::now() + 3s;
    while (again.empty() && Clock::now() < deadline) {
        UniqueFd client = connect_to(server.port);
        send_text(client.get(), "back?\n");
        if (read_exactly(client.get(), 6, 1s) == "back?\n") {
            again.push_back(std::move(client));
        } else {
            std::this_thread::sleep_for(50ms); // our closes have not all reached it yet
        }
    }
    REQUIRE(again.size() == 1);
    while (again.size() < capacity) {
        again.push_back(connect_to(server.port));
        check_round_trip(again.back().get(), "again\n");
    }
}

TEST_CASE("echo_server exits with status 0 on SIGTERM and SIGINT", "[echo_server]") {
    const int signal_number = GENERATE(SIGTERM, SIGINT);
    INFO("signal " << signal_number);
    Server server(CORIO_ECHO_SERVER_PATH);
    const UniqueFd idle = connect_to(server.port);
    const UniqueFd served = connect_to(server.port);
    check_round_trip(served.get(), "hi\n");
    const UniqueFd busy = connect_to(server.port);
    fill_until_server_blocks(busy.get(), 8 * mib); // the server is in the middle of a send_all

    const auto started = Clock::now();
    check_clean_exit(server.process, signal_number);
    CHECK(Clock::now() - started < 2s);
    CHECK(closed_by_peer(idle.get(), 1s)); // its connections were closed
}

/// How many lines of `text` contain `part`.
std::size_t lines_containing(const std::string& text, std::string_view part) {
    std::istringstream lines(text);
    std::size_t count = 0;
    for (std::string line; std::getline(lines, line);) {
        count += line.find(part) != std::string::npos ? 1 : 0;
    }
    return count;
}

TEST_CASE("echo_server --threads 2 serves on both threads and exits with status 0 on a signal",
          "[echo_server][threads]") {
    const int signal_number = GENERATE(SIGTERM, SIGINT);
    INFO("signal " << signal_number);
    Server server(CORIO_ECHO_SERVER_PATH, {"--threads", "2", "--verbose"});

    constexpr int clients = 40; // the kernel spreads them over the two listeners
    std::vector<EchoStream> streams;
    streams.reserve(clients);
    for (int i = 0; i < clients; ++i) {
        streams.emplace_back(connect_to(server.port), static_cast<std::uint32_t>(i + 1),
                             20 * kib, i % 2 == 0);
    }
    CHECK(run_streams(streams, Clock::now() + 10s));
    for (const EchoStream& stream : streams) {
        INFO(stream.describe());
        CHECK(stream.succeeded());
    }
    // --verbose says which thread served each connection: both did.
    std::string log;
    const auto deadline = Clock::now() + 2s;
    while (lines_containing(log, ": connected") < clients && Clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
        log = server.process.stderr_text();
    }
    INFO("stderr: " << log);
    const std::size_t on_0 = lines_containing(log, " on thread 0: connected");
    const std::size_t on_1 = lines_containing(log, " on thread 1: connected");
    CHECK(on_0 + on_1 == clients);
    CHECK(on_0 >= 1);
    CHECK(on_1 >= 1);

    const UniqueFd idle = connect_to(server.port);
    check_round_trip(idle.get(), "still here\n");
    check_clean_exit(server.process, signal_number);
    CHECK(closed_by_peer(idle.get(), 1s));
}

// Many connections at the moment of SIGTERM, in every state: idle, just served, with an echo
// half-way through send_all, with bytes the server has not read yet.
TEST_CASE("echo_server exits with status 0 within 2 s on SIGTERM with 300 connections open",
          "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    std::vector<UniqueFd> clients;
    clients.reserve(300);
    for (int i = 0; i < 300; ++i) {
        clients.push_back(connect_to(server.port));
        if (i % 10 == 0) {
            check_round_trip(clients.back().get(), "served\n");
        } else if (i % 10 == 1) {
            send_text(clients.back().get(), "unread bytes\n");
        }
    }
    for (int i = 0; i < 4; ++i) {
        clients.push_back(connect_to(server.port));
        fill_until_server_blocks(clients.back().get(), 4 * mib); // the server waits in send_all
    }
    check_round_trip(clients.front().get(), "all connected\n"); // it has accepted them all

    const auto started = Clock::now();
    check_clean_exit(server.process); // exit status 0 within 2 s
    CHECK(Clock::now() - started < 2s);
    int still_open = 0;
    for (const UniqueFd& client : clients) {
        // Closed by the server's exit: data first (an unread echo), then end-of-stream or reset.
        still_open += closed_by_peer(client.get(), 1s) ? 0 : 1;
    }
    CHECK(still_open == 0);
}

namespace {

/// The ways the connect/close churn below ends a connection.
enum class Leaving { at_once, after_sending, after_echo, with_reset };

/// Opens `count` connections to the server, in batches of `batch` open at the same time, and ends
/// each in turn in one of the ways above.
void connect_and_close(std::uint16_t port, int count, int batch) {
    std::vector<UniqueFd> open;
    open.reserve(static_cast<std::size_t>(batch));
    int made = 0;
    while (made < count) {
        for (int i = 0; i < batch && made < count; ++i, ++made) {
            open.push_back(connect_to(port));
            switch (static_cast<Leaving>(made % 4)) {
            case Leaving::at_once:
                break;
            case Leaving::after_sending:
                send_text(open.back().get(), "bye\n");
                break;
            case Leaving::after_echo:
                check_round_trip(open.back().get(), "echo\n");
                break;
            case Leaving::with_reset:
                send_text(open.back().get(), "reset\n");
                close_with_reset(open.back());
                break;
            }
        }
        open.clear();
    }
}

/// All the fds a process has open.
std::size_t open_fds(pid_t pid) {
    return open_fds_below(pid, std::numeric_limits<std::size_t>::max());
}

/// Waits up to `timeout` for the process to have `expected` fds open; gives the last count seen.
std::size_t wait_for_fd_count(pid_t pid, std::size_t expected, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::size_t count = open_fds(pid);
    while (count != expected && Clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
        count = open_fds(pid);
    }
    return count;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool memory_is_quarantined = true; // ASan keeps freed memory for a while: RSS grows
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool memory_is_quarantined = true;
#else
constexpr bool memory_is_quarantined = false;
#endif
#else
constexpr bool memory_is_quarantined = false;
#endif

} // namespace

// A leak of one fd or a few hundred bytes per connection shows after thousands of them. The
// warm-up brings the server to its working set (50 connections at once), after which its fds must
// come back to their count exactly, and its memory within 1 MiB.
TEST_CASE("echo_server's fds and memory come back to their baseline after 5000 connect/close "
          "cycles",
          "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    const pid_t pid = server.process.pid();
    UniqueFd first = connect_to(server.port);
    check_round_trip(first.get(), "warm\n"); // echoed: the server holds this connection now
    const std::size_t idle_fds = open_fds(pid) - 1;
    first.reset();
    REQUIRE(wait_for_fd_count(pid, idle_fds, 3s) == idle_fds);
    connect_and_close(server.port, 1000, 50);
    REQUIRE(wait_for_fd_count(pid, idle_fds, 3s) == idle_fds);
    const long baseline_kib = resident_kib(pid);

    const auto started = Clock::now();
    connect_and_close(server.port, 5000, 50);
    const auto seconds = std::chrono::duration<double>(Clock::now() - started).count();
    const std::size_t fds_after = wait_for_fd_count(pid, idle_fds, 3s);
    const long after_kib = resident_kib(pid);
    INFO("5000 cycles in " << seconds << " s; fds " << idle_fds << " before, " << fds_after
                           << " after; RSS " << baseline_kib << " KiB before, " << after_kib
                           << " KiB after");
    CHECK(seconds < 20);
    CHECK(fds_after == idle_fds);
    if (!memory_is_quarantined) {
        CHECK(after_kib - baseline_kib < 1024);
    }
    check_still_serving(server);
    CHECK(server.process.stderr_text().empty());
}

TEST_CASE("echo_server rejects a bad command line with status 2", "[echo_server][options]") {
    const std::vector<std::vector<std::string>> bad_command_lines{
        {"--port", "abc"},
        {"--port", "70000"},
        {"--port", "-1"},
        {"--port", ""},
        {"--port", "80x"},
        {"--port", "+80"},
        {"--port"},
        {"--host"},
        {"--host", "nowhere.invalid"},
        {"--backlog", "many"},
        {"--backlog", "0"},
        {"--bogus"},
        {"stray"},
        {"--verbose=yes"},
        {"-p", "5001"},
        {"--threads", "0"},
        {"--threads", "two"},
        {"--threads", "-1"},
        {"--threads", "1025"},
        {"--threads"},
    };
    for (const auto& arguments : bad_command_lines) {
        INFO("echo_server" << quoted(arguments));
        Child program(CORIO_ECHO_SERVER_PATH, arguments);
        const auto status = program.wait_exit(5s);
        INFO(describe_status(status));
        CHECK(exited_with(status, 2));
        CHECK_FALSE(program.stderr_text().empty());
        CHECK(program.read_stdout_to_end(1s).empty());
    }

    Child help(CORIO_ECHO_SERVER_PATH, {"--help"});
    CHECK(help.read_stdout_to_end(5s).find("--port") != std::string::npos);
    CHECK(exited_with(help.wait_exit(5s), 0));
}

// The same hostile command lines for every example program the tests know: each must say what
// is wrong on stderr and exit with status 2, print nothing on stdout, and never start serving.
TEST_CASE("every example rejects hostile command lines with status 2", "[options]") {
    std::vector<std::string> programs{CORIO_ECHO_SERVER_PATH};
#ifdef CORIO_ECHO_CLIENT_PATH
    programs.emplace_back(CORIO_ECHO_CLIENT_PATH);
#endif
#ifdef CORIO_HELLO_SERVER_PATH
    programs.emplace_back(CORIO_HELLO_SERVER_PATH);
#endif
    const std::vector<std::vector<std::string>> bad_command_lines{
        {""},
        {"-"},
        {"--"},
        {"--bogus"},
        {"--help=yes"},
        {"--port", "-1"},
        {"--port", "65536"},
        {"--port", "99999999999999999999"},
        {"--port", "0x10"},
        {"--port", "1e3"},
        {"--port", ""},
        {"--host", "999.1.1.1"},
        {"--host", "::ffff:garbage"},
        {"--host", ""},
        {"--host", std::string(10000, '1')},
        {"--port", "1", "--bogus"},
        {std::string(100000, 'x')},
    };
    for (const std::string& program : programs) {
        for (const auto& arguments : bad_command_lines) {
            const bool long_argument = std::any_of(arguments.begin(), arguments.end(),
                                                   [](const auto& a) { return a.size() > 100; });
            INFO(program << (long_argument ? " (with a very long argument)" : quoted(arguments)));
            Child child(program, arguments);
            const auto status = child.wait_exit(5s);
            INFO(describe_status(status));
            CHECK(exited_with(status, 2));
            CHECK_FALSE(child.stderr_text().empty());
            CHECK(child.read_stdout_to_end(1s).empty());
        }
    }
}

TEST_CASE("echo_server exits with status 1 when it cannot listen", "[echo_server]") {
    Server first(CORIO_ECHO_SERVER_PATH);
    Child second(CORIO_ECHO_SERVER_PATH, {"--port", std::to_string(first.port)});
    const auto status = second.wait_exit(5s);
    INFO(describe_status(status));
    CHECK(exited_with(status, 1));
    CHECK(second.stderr_text().find("echo_server:") != std::string::npos);
}

TEST_CASE("echo_server --verbose logs each connection to stderr", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH, {"--verbose"});
    {
        const UniqueFd client = connect_to(server.port);
        check_round_trip(client.get(), "log me\n");
    }
    std::string log;
    const auto deadline = Clock::now() + 2s;
    while (log.find("closed") == std::string::npos && Clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
        log = server.process.stderr_text();
    }
    INFO("stderr: " << log);
    CHECK(log.find("127.0.0.1:") != std::string::npos);
    CHECK(log.find("connected") != std::string::npos);
    CHECK(log.find("closed") != std::string::npos);
}

// =============================================================================================
// hello_server
// =============================================================================================

#ifdef CORIO_HELLO_SERVER_PATH
TEST_CASE("hello_server answers Hello world to every message", "[hello_server]") {
    Server server(CORIO_HELLO_SERVER_PATH);
    const UniqueFd first = connect_to(server.port);
    const UniqueFd second = connect_to(server.port);
    for (int i = 0; i < 3; ++i) { // one answer per message, for each of two clients at once
        send_text(first.get(), "hi\n");
        CHECK(read_exactly(first.get(), 12) == "Hello world\n");
        send_text(second.get(), "GET / HTTP/1.0\r\n\r\n");
        CHECK(read_exactly(second.get(), 12) == "Hello world\n");
    }
    CHECK(read_some(first.get(), 100ms).kind == Reading::Kind::timeout); // nothing unasked for

    check_clean_exit(server.process, SIGINT);
}

TEST_CASE("hello_server rejects a bad command line with status 2", "[hello_server][options]") {
    check_usage_errors(CORIO_HELLO_SERVER_PATH,
                       {{"--port", "65536"}, {"--verbose"}, {"--host", "localhost"}});
}
#endif

// =============================================================================================
// udp_echo_server
// =============================================================================================

#ifdef CORIO_UDP_ECHO_SERVER_PATH
// Sends `text` as one datagram from the blocking UDP socket `fd` to 127.0.0.1:`port` and gives
// the datagram that comes back within `timeout` ("" if none came).
std::string udp_exchange(int fd, std::uint16_t port, const std::string& text,
                         std::chrono::milliseconds timeout = 5s) {
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(port);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::sendto(fd, text.data(), text.size(), 0, reinterpret_cast<const sockaddr*>(&server),
                     sizeof server) == static_cast<ssize_t>(text.size()));
    set_timeouts(fd, timeout);
    std::string reply(65536, '\0');
    const ssize_t count = ::recv(fd, reply.data(), reply.size(), 0);
    reply.resize(count > 0 ? static_cast<std::size_t>(count) : 0);
    return reply;
}

TEST_CASE("udp_echo_server echoes datagrams to each sender, up to 60000 bytes",
          "[udp_echo_server]") {
    Server server(CORIO_UDP_ECHO_SERVER_PATH);
    const UniqueFd first(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const UniqueFd second(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE((first && second));
    for (int i = 0; i < 20; ++i) { // loopback does not drop datagrams sent one at a time
        const std::string text = "datagram " + std::to_string(i);
        CHECK(udp_exchange(first.get(), server.port, text) == text);
        CHECK(udp_exchange(second.get(), server.port, text + " again") == text + " again");
    }
    const std::string large(60000, 'u'); // no truncation: the server's buffer holds any datagram
    CHECK(udp_exchange(first.get(), server.port, large) == large);
    CHECK(udp_exchange(first.get(), server.port, "") == ""); // an empty datagram is echoed too
    REQUIRE(server.process.running());
    ::kill(server.process.pid(), SIGTERM);
    const auto status = server.process.wait_exit(5s);
    INFO(describe_status(status));
    REQUIRE(status.has_value());
    CHECK((WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM));
}

TEST_CASE("udp_echo_server rejects a bad command line with status 2",
          "[udp_echo_server][options]") {
    check_usage_errors(CORIO_UDP_ECHO_SERVER_PATH,
                       {{"--port", "65536"}, {"--backlog", "1"}, {"--host", "localhost"}});
}
#endif

// =============================================================================================
// echo_client
// =============================================================================================

#ifdef CORIO_ECHO_CLIENT_PATH
TEST_CASE("echo_client prints back the lines of its stdin", "[echo_client]") {
    Server server(CORIO_ECHO_SERVER_PATH);
    std::string lines = "alpha\nbeta\n\ngamma with spaces\n";
    for (int i = 0; i < 2000; ++i) {
        lines += "line " + std::to_string(i) + '\n';
    }
    Child client(CORIO_ECHO_CLIENT_PATH, {"--port", std::to_string(server.port)}, true);
    client.write_stdin(lines);
    client.close_stdin(); // end of input: the client finishes and exits
    CHECK(client.read_stdout_to_end(10s) == lines);
    const auto status = client.wait_exit(5s);
    INFO(describe_status(status) << "; stderr: " << client.stderr_text());
    CHECK(exited_with(status, 0));
}

TEST_CASE("echo_client reports a refused connection with status 1", "[echo_client]") {
    Child client(CORIO_ECHO_CLIENT_PATH, {"--port", std::to_string(unused_port())});
    const auto status = client.wait_exit(5s);
    INFO(describe_status(status));
    CHECK(exited_with(status, 1));
    CHECK_FALSE(client.stderr_text().empty());
}

TEST_CASE("echo_client rejects a bad command line with status 2", "[echo_client][options]") {
    for (const auto& arguments : std::vector<std::vector<std::string>>{
             {"--port", "0"}, {"--port", "x"}, {"--host"}, {"--backlog", "5"}}) {
        Child program(CORIO_ECHO_CLIENT_PATH, arguments);
        const auto status = program.wait_exit(5s);
        INFO(arguments.front() << ": " << describe_status(status));
        CHECK(exited_with(status, 2));
        CHECK_FALSE(program.stderr_text().empty());
    }
}
#endif

// =============================================================================================
// echo_server --idle-timeout
// =============================================================================================

TEST_CASE("echo_server --idle-timeout disconnects a client that sends nothing", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH, {"--idle-timeout", "0.2", "--verbose"});
    const auto start = Clock::now(); // before connecting: the server's clock starts after this
    const UniqueFd idle = connect_to(server.port);
    CHECK(closed_by_peer(idle.get(), 5s));
    const auto elapsed = Clock::now() - start;
    INFO("closed after " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                         << " ms");
    CHECK(elapsed >= 200ms);
    CHECK(elapsed < 5s);

    std::string log;
    const auto deadline = Clock::now() + 2s;
    while (log.find("idle for too long") == std::string::npos && Clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
        log = server.process.stderr_text();
    }
    INFO("stderr: " << log);
    CHECK(log.find("idle for too long") != std::string::npos);
    check_still_serving(server); // only that connection ended
}

TEST_CASE("echo_server --idle-timeout keeps a client that keeps sending", "[echo_server]") {
    Server server(CORIO_ECHO_SERVER_PATH, {"--idle-timeout=0.2"});
    const UniqueFd active = connect_to(server.port);
    const auto start = Clock::now();
    auto last_send = start;
    int rounds = 0;
    while (Clock::now() - start < 600ms && rounds < 100) { // every 50 ms for 0.6 s
        last_send = Clock::now();
        check_round_trip(active.get(), "ping " + std::to_string(rounds) + "\n");
        ++rounds;
        std::this_thread::sleep_for(50ms);
    }
    CHECK(rounds >= 5);
    last_send = Clock::now();
    check_round_trip(active.get(), "still here\n"); // 0.6 s and more after it connected
    // Once it goes quiet, it is disconnected too, no sooner than the timeout after its last bytes.
    CHECK(closed_by_peer(active.get(), 5s));
    CHECK(Clock::now() - last_send >= 200ms);
}

TEST_CASE("echo_server accepts fractional and whole seconds for --idle-timeout",
          "[echo_server][options]") {
    for (const std::string value : {"30", "1.25", "0.000000001", "1000000"}) {
        INFO("--idle-timeout " << value);
        Server server(CORIO_ECHO_SERVER_PATH, {"--idle-timeout", value});
        const UniqueFd client = connect_to(server.port);
        if (value != "0.000000001") {
            check_round_trip(client.get(), "hello\n");
        }
        check_clean_exit(server.process);
    }
}

TEST_CASE("echo_server rejects a bad --idle-timeout with status 2", "[echo_server][options]") {
    const std::vector<std::vector<std::string>> bad_command_lines{
        {"--idle-timeout", "abc"},
        {"--idle-timeout", "0"},
        {"--idle-timeout", "0.0"},
        {"--idle-timeout", "-1"},
        {"--idle-timeout", ""},
        {"--idle-timeout", "1e3"},
        {"--idle-timeout", "1."},
        {"--idle-timeout", "1.2.3"},
        {"--idle-timeout", "+1"},
        {"--idle-timeout", " 1"},
        {"--idle-timeout", "1s"},
        {"--idle-timeout", "inf"},
        {"--idle-timeout", "nan"},
        {"--idle-timeout", "0x10"},
        {"--idle-timeout", "1000001"},
        {"--idle-timeout", "0.0000000001"},
        {"--idle-timeout"},
        {"--idle-timeout", "99999999999999999999999"},
    };
    for (const auto& arguments : bad_command_lines) {
        INFO("echo_server" << quoted(arguments));
        Child program(CORIO_ECHO_SERVER_PATH, arguments);
        const auto status = program.wait_exit(5s);
        INFO(describe_status(status));
        CHECK(exited_with(status, 2));
        CHECK(program.stderr_text().find("--idle-timeout") != std::string::npos);
        CHECK(program.read_stdout_to_end(1s).empty());
    }
}
