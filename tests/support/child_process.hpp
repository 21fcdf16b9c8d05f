// Test support: the example programs as child processes of a test. A Child is started with
// posix_spawn, its stdout read through a pipe, its stderr kept in a temporary file, and it is killed
// (SIGKILL, by PID) and reaped by its destructor. A Server is a Child that listens on --port 0 and
// says where.
//
// Rules that keep the tests that use them from hanging or leaking: every wait has a timeout, and
// every child process is killed and reaped by its RAII owner.
#pragma once

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <optional>
#include <poll.h>
#include <spawn.h>
#include <sstream>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include "support/catch.hpp"
#include "support/fd.hpp"

extern char** environ; // NOLINT: POSIX; handed to posix_spawn

namespace corio::test {

using ProcessClock = std::chrono::steady_clock;

// The test process writes to sockets and pipes whose other end may be gone: that must be an error
// code, never a SIGPIPE that ends the test run. (Children get the default disposition back.)
inline const bool sigpipe_ignored = [] {
    std::signal(SIGPIPE, SIG_IGN);
    return true;
}();

inline std::string errno_text(int error) {
    return std::strerror(error);
}

/// Writes all of `data` to the blocking `fd` (a pipe to a child); a failure fails the test.
inline void write_fully(int fd, std::string_view data, const char* what) {
    while (!data.empty()) {
        const ssize_t written = ::write(fd, data.data(), data.size());
        if (written < 0 && errno == EINTR) {
            continue;
        }
        INFO("write to " << what << ": " << errno_text(errno));
        REQUIRE(written > 0);
        data.remove_prefix(static_cast<std::size_t>(written));
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// An fd of the test handed to a child as fd number `in_child` (e.g. a pipe as its fd 3).
struct InheritedFd {
    int in_parent;
    int in_child;
};

// A program started with posix_spawn: stdout is a pipe we read, stderr goes to a temporary file
// (so the child never blocks on it), stdin is /dev/null or a pipe we write; `inherited` fds are
// passed on under the numbers given. The destructor kills the child (SIGKILL, by PID) unless it
// was already reaped, and reaps it.
class Child {
public:
    Child(const std::string& path, const std::vector<std::string>& arguments,
          bool stdin_pipe = false, const std::vector<InheritedFd>& inherited = {}) {
        char error_template[] = "/tmp/corio_test_stderr_XXXXXX";
        const int error_fd = ::mkstemp(error_template);
        REQUIRE(error_fd >= 0);
        ::close(error_fd);
        stderr_path_ = error_template;

        int out[2] = {-1, -1};
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        stdout_ = UniqueFd(out[0]);
        UniqueFd out_write(out[1]);
        UniqueFd in_read;
        if (stdin_pipe) {
            int in[2] = {-1, -1};
            REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
            in_read = UniqueFd(in[0]);
            stdin_ = UniqueFd(in[1]);
        }

        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        if (stdin_pipe) {
            posix_spawn_file_actions_adddup2(&actions, in_read.get(), 0);
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        }
        posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
        posix_spawn_file_actions_addopen(&actions, 2, stderr_path_.c_str(), O_WRONLY | O_TRUNC, 0);
        // Copies above every child number first: a dup2 onto its own number would keep the
        // close-on-exec flag, and one inherited fd could overwrite the source of the next.
        std::vector<UniqueFd> copies;
        for (const InheritedFd& fd : inherited) {
            copies.emplace_back(::fcntl(fd.in_parent, F_DUPFD_CLOEXEC, 64));
            REQUIRE(copies.back().get() >= 0);
            posix_spawn_file_actions_adddup2(&actions, copies.back().get(), fd.in_child);
        }

        // The child starts with default signal dispositions (we ignore SIGPIPE) and no blocked
        // signals, whatever the test framework did to this process.
        posix_spawnattr_t attributes;
        posix_spawnattr_init(&attributes);
        sigset_t defaults;
        sigemptyset(&defaults);
        for (const int number : {SIGPIPE, SIGINT, SIGTERM}) {
            sigaddset(&defaults, number);
        }
        sigset_t no_mask;
        sigemptyset(&no_mask);
        posix_spawnattr_setsigdefault(&attributes, &defaults);
        posix_spawnattr_setsigmask(&attributes, &no_mask);
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

        std::vector<std::string> all{path};
        all.insert(all.end(), arguments.begin(), arguments.end());
        std::vector<char*> argv;
        argv.reserve(all.size() + 1);
        for (std::string& argument : all) {
            argv.push_back(argument.data());
        }
        argv.push_back(nullptr);

        const int error =
            ::posix_spawn(&pid_, path.c_str(), &actions, &attributes, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attributes);
        INFO("posix_spawn " << path << ": " << errno_text(error));
        REQUIRE(error == 0);
    }

    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    ~Child() {
        if (pid_ > 0 && !status_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
        }
        std::error_code ignored;
        std::filesystem::remove(stderr_path_, ignored);
    }

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }

    /// The next line of the child's stdout, without the newline; nothing on EOF or timeout.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
        const auto deadline = ProcessClock::now() + timeout;
        for (;;) {
            if (const auto newline = stdout_buffer_.find('\n'); newline != std::string::npos) {
                std::string line = stdout_buffer_.substr(0, newline);
                stdout_buffer_.erase(0, newline + 1);
                return line;
            }
            if (!read_stdout_chunk(deadline)) {
                return std::nullopt;
            }
        }
    }

    /// Everything the child writes to stdout until it closes it (or the timeout).
    std::string read_stdout_to_end(std::chrono::milliseconds timeout) {
        const auto deadline = ProcessClock::now() + timeout;
        while (read_stdout_chunk(deadline)) {
        }
        return std::exchange(stdout_buffer_, {});
    }

    /// What the child wrote to stderr so far.
    [[nodiscard]] std::string stderr_text() const {
        std::ifstream file(stderr_path_);
        std::ostringstream text;
        text << file.rdbuf();
        return text.str();
    }

    void write_stdin(std::string_view data) {
        REQUIRE(stdin_.get() >= 0);
        write_fully(stdin_.get(), data, "the child's stdin");
    }
    void close_stdin() { stdin_.reset(); }

    void send_signal(int number) const { REQUIRE(::kill(pid_, number) == 0); }

    /// Waits up to `timeout` for the child to end; its wait status, or nothing if still running.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
        const auto deadline = ProcessClock::now() + timeout;
        while (!status_) {
            int status = 0;
            const pid_t result = ::waitpid(pid_, &status, WNOHANG);
            if (result == pid_) {
                status_ = status;
            } else if (result < 0 && errno != EINTR) {
                FAIL("waitpid: " << errno_text(errno));
            } else if (ProcessClock::now() >= deadline) {
                break;
            } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
        }
        return status_;
    }

    /// True while the child runs (it has not exited, been killed, or been reaped).
    bool running() { return !wait_exit(std::chrono::milliseconds(0)).has_value(); }

private:
    // Appends what stdout has now, waiting until `deadline`. False on EOF, error or timeout.
    bool read_stdout_chunk(ProcessClock::time_point deadline) {
        for (;;) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - ProcessClock::now());
            if (left.count() <= 0) {
                return false;
            }
            pollfd watched{stdout_.get(), POLLIN, 0};
            const int ready = ::poll(&watched, 1, static_cast<int>(left.count()));
            if (ready < 0 && errno == EINTR) {
                continue;
            }
            if (ready <= 0) {
                return false;
            }
            char chunk[4096];
            const ssize_t count = ::read(stdout_.get(), chunk, sizeof chunk);
            if (count < 0 && errno == EINTR) {
                continue;
            }
            if (count <= 0) {
                return false;
            }
            stdout_buffer_.append(chunk, static_cast<std::size_t>(count));
            return true;
        }
    }

    pid_t pid_ = -1;
    std::optional<int> status_;
    UniqueFd stdout_;
    UniqueFd stdin_;
    std::string stdout_buffer_;
    std::string stderr_path_;
};

inline bool exited_with(const std::optional<int>& status, int code) {
    return status && WIFEXITED(*status) && WEXITSTATUS(*status) == code;
}

inline std::string describe_status(const std::optional<int>& status) {
    if (!status) {
        return "still running";
    }
    if (WIFEXITED(*status)) {
        return "exited with status " + std::to_string(WEXITSTATUS(*status));
    }
    if (WIFSIGNALED(*status)) {
        return "killed by signal " + std::to_string(WTERMSIG(*status));
    }
    return "wait status " + std::to_string(*status);
}

/// A command line's arguments as they are shown in messages: " 'a' 'b'".
inline std::string quoted(const std::vector<std::string>& arguments) {
    std::string shown;
    for (const auto& argument : arguments) {
        shown += " '" + argument + "'";
    }
    return shown;
}

/// Reads the "listening on HOST:PORT" line a server prints when it is ready; gives the port.
inline std::uint16_t listening_port(Child& server) {
    const std::optional<std::string> line = server.read_line(std::chrono::seconds(5));
    INFO("server stderr: " << server.stderr_text());
    REQUIRE(line.has_value());
    INFO("server said: " << *line);
    REQUIRE(line->starts_with("listening on 127.0.0.1:"));
    const int port = std::stoi(line->substr(line->rfind(':') + 1));
    REQUIRE(port > 0);
    REQUIRE(port < 65536);
    return static_cast<std::uint16_t>(port);
}

// A server child and its port, started with --port 0 and the given extra arguments.
struct Server {
    explicit Server(const std::string& path, std::vector<std::string> arguments = {})
        : process(path, with_port_zero(std::move(arguments))), port(listening_port(process)) {}

    static std::vector<std::string> with_port_zero(std::vector<std::string> arguments) {
        arguments.insert(arguments.begin(), {"--port", "0"});
        return arguments;
    }

    Child process;
    std::uint16_t port;
};

} // namespace corio::test
