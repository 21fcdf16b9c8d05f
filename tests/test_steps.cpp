// Smoke tests of the step programs of docs/how-it-works.md (examples/steps/, built into
// CORIO_STEPS_DIR), so that the document's examples cannot rot: each is started on port 0, spoken
// to over 127.0.0.1, and stopped by its PID.
//
// Every wait is bounded (poll timeouts, SO_RCVTIMEO/SO_SNDTIMEO); every child is killed and reaped
// by its RAII owner. The only wall-clock assertions are lower bounds, and "no answer within
// 300 ms" from a server that is provably blocked elsewhere.
#include <arpa/inet.h>
#include <csignal>
#include <cstdint>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/catch.hpp"
#include "support/fd.hpp"

#ifndef CORIO_STEPS_DIR
#error "CORIO_STEPS_DIR must name the directory of the step programs (tests/CMakeLists.txt defines it)"
#endif

extern char** environ; // NOLINT: POSIX; handed to posix_spawn

namespace {

using corio::test::UniqueFd;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view hello = "Hello world\n";

std::string step_path(std::string_view name) {
    return std::string(CORIO_STEPS_DIR) + "/" + std::string(name);
}

// A step program running as a child process; its stdout is a pipe we read. The destructor kills
// it by PID (SIGKILL) unless it has been reaped already, and reaps it.
class StepProcess {
public:
    StepProcess(std::string_view name, std::vector<std::string> arguments) {
        int out[2] = {-1, -1};
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        stdout_ = UniqueFd(out[0]);
        const UniqueFd write_end(out[1]);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
        arguments.insert(arguments.begin(), step_path(name));
        std::vector<char*> argv;
        for (std::string& argument : arguments) {
            argv.push_back(argument.data());
        }
        argv.push_back(nullptr);
        const int error =
            ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        INFO("posix_spawn " << argv[0] << ": " << std::strerror(error));
        REQUIRE(error == 0);
    }
    StepProcess(const StepProcess&) = delete;
    StepProcess& operator=(const StepProcess&) = delete;
    ~StepProcess() {
        if (!status_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
        }
    }

    /// Everything the child writes to stdout until `timeout` passes or it closes stdout.
    std::string read_stdout(std::chrono::milliseconds timeout, std::string_view until = "\n") {
        const auto deadline = Clock::now() + timeout;
        while (output_.find(until) == std::string::npos) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
            pollfd watched{stdout_.get(), POLLIN, 0};
            if (left.count() <= 0 || ::poll(&watched, 1, static_cast<int>(left.count())) <= 0) {
                break; // timeout (or EINTR: this is a bounded read, the caller checks what came)
            }
            char chunk[512];
            const ssize_t count = ::read(stdout_.get(), chunk, sizeof chunk);
            if (count <= 0) {
                break;
            }
            output_.append(chunk, static_cast<std::size_t>(count));
        }
        return output_;
    }

    /// Waits up to `timeout` for the child to end; its wait status, or nothing while it runs.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
        const auto deadline = Clock::now() + timeout;
        while (!status_) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                status_ = status;
            } else if (Clock::now() >= deadline) {
                break;
            } else {
                std::this_thread::sleep_for(5ms);
            }
        }
        return status_;
    }

    /// Stops the child with SIGTERM, by PID. It must still be running (a step server never ends
    /// on its own) and end from the signal.
    void stop() {
        REQUIRE_FALSE(wait_exit(0ms).has_value());
        REQUIRE(::kill(pid_, SIGTERM) == 0);
        const std::optional<int> status = wait_exit(5s);
        REQUIRE(status.has_value());
        CHECK(WIFSIGNALED(*status));
        CHECK(WTERMSIG(*status) == SIGTERM);
    }

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
    UniqueFd stdout_;
    std::string output_;
};

// A step server started on port 0, and the port it says it listens on.
struct StepServer {
    explicit StepServer(std::string_view name, std::vector<std::string> more_arguments = {})
        : process(name, with_port_zero(std::move(more_arguments))) {
        const std::string line = process.read_stdout(5s);
        INFO(name << " said: " << line);
        const std::string_view prefix = "listening on 127.0.0.1:";
        REQUIRE(line.starts_with(prefix));
        const int number = std::stoi(line.substr(prefix.size()));
        REQUIRE(number > 0);
        REQUIRE(number < 65536);
        port = static_cast<std::uint16_t>(number);
    }
    static std::vector<std::string> with_port_zero(std::vector<std::string> arguments) {
        arguments.insert(arguments.begin(), "0");
        return arguments;
    }

    StepProcess process;
    std::uint16_t port = 0;
};

/// A blocking connection to 127.0.0.1:port whose reads give up after `read_timeout`.
UniqueFd connect_to(std::uint16_t port, std::chrono::milliseconds read_timeout = 5s) {
    UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(socket.get() >= 0);
    const timeval send_limit{5, 0}; // bounds connect() too
    const timeval read_limit{static_cast<time_t>(read_timeout.count() / 1000),
                             static_cast<suseconds_t>(read_timeout.count() % 1000 * 1000)};
    REQUIRE(::setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &send_limit, sizeof send_limit) == 0);
    REQUIRE(::setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &read_limit, sizeof read_limit) == 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int result =
        ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
    INFO("connect to port " << port << ": " << std::strerror(errno));
    REQUIRE(result == 0);
    return socket;
}

void say(const UniqueFd& socket, std::string_view message) {
    REQUIRE(::send(socket.get(), message.data(), message.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(message.size()));
}

/// Reads until `expected.size()` bytes came, the peer closed, or the socket's read timeout
/// passed; gives what came.
std::string hear(const UniqueFd& socket, std::size_t expected = hello.size()) {
    std::string heard;
    char chunk[256];
    while (heard.size() < expected) {
        const ssize_t count = ::recv(socket.get(), chunk, sizeof chunk, 0);
        if (count <= 0) {
            break;
        }
        heard.append(chunk, static_cast<std::size_t>(count));
    }
    return heard;
}

constexpr std::string_view all_steps[] = {"1_blocking_hello", "2_poll_loop_hello",
                                          "3_tiny_coroutine_os", "4_corio_syscalls_hello",
                                          "5_corio_hello"};
constexpr std::string_view concurrent_steps[] = {"2_poll_loop_hello", "3_tiny_coroutine_os",
                                                 "4_corio_syscalls_hello", "5_corio_hello"};

} // namespace

TEST_CASE("every step answers each message with Hello world, to one client after another") {
    for (const std::string_view step : all_steps) {
        INFO("step " << step);
        StepServer server(step);
        for (int client = 0; client < 2; ++client) {
            const UniqueFd socket = connect_to(server.port);
            for (int message = 0; message < 3; ++message) { // one answer per message
                say(socket, "hi\n");
                CHECK(hear(socket) == hello);
            }
        }
        server.process.stop();
    }
}

TEST_CASE("the blocking step keeps a second client waiting until the first leaves") {
    StepServer server("1_blocking_hello");
    const UniqueFd second = [&] {
        const UniqueFd first = connect_to(server.port);
        say(first, "hi\n");
        REQUIRE(hear(first) == hello); // the server now waits in recv() on the first client
        UniqueFd waiting = connect_to(server.port, 300ms); // connects: the kernel's listen queue
        say(waiting, "hi\n");
        CHECK(hear(waiting).empty()); // but nobody answers while the first client stays
        return waiting;
    }(); // the first client leaves here
    timeval patient{5, 0};
    REQUIRE(::setsockopt(second.get(), SOL_SOCKET, SO_RCVTIMEO, &patient, sizeof patient) == 0);
    CHECK(hear(second) == hello);
    server.process.stop();
}

TEST_CASE("the event-loop steps serve a second client while the first stays connected") {
    for (const std::string_view step : concurrent_steps) {
        INFO("step " << step);
        StepServer server(step);
        const UniqueFd first = connect_to(server.port);
        say(first, "hi\n");
        REQUIRE(hear(first) == hello);
        const UniqueFd second = connect_to(server.port);
        say(second, "hi\n");
        CHECK(hear(second) == hello);
        say(first, "again\n");
        CHECK(hear(first) == hello);
        server.process.stop();
    }
}

TEST_CASE("the corio step disconnects a client that stays silent past its idle timeout") {
    StepServer server("5_corio_hello", {"0.2"});
    const UniqueFd talker = connect_to(server.port);
    const auto start = Clock::now();
    const UniqueFd silent = connect_to(server.port);
    say(talker, "hi\n");
    CHECK(hear(talker) == hello);
    CHECK(hear(silent).empty()); // end of stream: the server closed it (a timeout would be 5 s)
    CHECK(Clock::now() - start >= 200ms);
    CHECK(Clock::now() - start < 4s);
    server.process.stop();
}

TEST_CASE("every step rejects a bad command line with exit status 2") {
    for (const std::string_view step : all_steps) {
        INFO("step " << step);
        for (const char* bad : {"port", "65536", "-1", "80x"}) {
            INFO("argument " << bad);
            StepProcess process(step, {bad});
            const std::optional<int> status = process.wait_exit(5s);
            REQUIRE(status.has_value());
            CHECK(WIFEXITED(*status));
            CHECK(WEXITSTATUS(*status) == 2);
        }
    }
    for (const char* bad : {"0", "-1", "soon", "1e9"}) {
        INFO("idle timeout " << bad);
        StepProcess process("5_corio_hello", {"0", bad});
        const std::optional<int> status = process.wait_exit(5s);
        REQUIRE(status.has_value());
        CHECK(WIFEXITED(*status));
        CHECK(WEXITSTATUS(*status) == 2);
    }
}
