// How a Scheduler chooses its backend (backend/selector.hpp): by argument, by CORIO_BACKEND, and by
// falling back to epoll, with one line saying why, where seccomp refuses io_uring as container
// runtimes do (tests/tools/no_io_uring runs the real echo_server under such a filter).
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>

#include "support/catch.hpp"
#include "support/child_process.hpp"
#include "support/leak_check.hpp"
#include "support/tcp_client.hpp"

#ifndef CORIO_ECHO_SERVER_PATH
#error "CORIO_ECHO_SERVER_PATH must be defined"
#endif
#ifndef CORIO_NO_IO_URING_PATH
#error "CORIO_NO_IO_URING_PATH must be defined"
#endif

namespace {

using namespace std::chrono_literals;
using corio::Backend;

// Sets CORIO_BACKEND for as long as it lives (the variable is read when a Scheduler is made).
class BackendVariable {
public:
    explicit BackendVariable(const char* value) {
        if (const char* old = std::getenv("CORIO_BACKEND")) {
            saved_ = old;
            had_ = true;
        }
        ::setenv("CORIO_BACKEND", value, 1);
    }
    BackendVariable(const BackendVariable&) = delete;
    BackendVariable& operator=(const BackendVariable&) = delete;
    ~BackendVariable() {
        if (had_) {
            ::setenv("CORIO_BACKEND", saved_.c_str(), 1);
        } else {
            ::unsetenv("CORIO_BACKEND");
        }
    }

private:
    std::string saved_;
    bool had_ = false;
};

bool io_uring_allowed_here() { return corio::detail::io_uring_refusal().empty(); }

} // namespace

TEST_CASE("backend: a Scheduler runs the backend it is given", "[backend]") {
    corio::test::FrameLeakCheck leaks;
    CHECK(corio::Scheduler(Backend::epoll).backend() == Backend::epoll);
    CHECK(corio::Scheduler(Backend::poll).backend() == Backend::poll);
    const Backend uring = corio::Scheduler(Backend::io_uring).backend();
    CHECK(uring == (io_uring_allowed_here() ? Backend::io_uring : Backend::epoll));
    CHECK(corio::Scheduler().backend() != Backend::automatic);
}

TEST_CASE("backend: CORIO_BACKEND chooses for every Scheduler that is not given one", "[backend]") {
    corio::test::FrameLeakCheck leaks;
    {
        BackendVariable variable("poll");
        CHECK(corio::Scheduler().backend() == Backend::poll);
        CHECK(corio::Scheduler(Backend::epoll).backend() == Backend::epoll); // an argument wins
    }
    {
        BackendVariable variable("epoll");
        CHECK(corio::Scheduler().backend() == Backend::epoll);
    }
    {
        BackendVariable variable("kqueue");
        CHECK_THROWS_AS(corio::Scheduler(), std::invalid_argument);
    }
    CHECK(std::string(corio::to_string(Backend::io_uring)) == "io_uring");
}

TEST_CASE("backend: where seccomp refuses io_uring, echo_server says so once and serves on epoll",
          "[backend]") {
    for (const char* wanted : {"", "io_uring"}) { // the default, and io_uring asked for by name
        INFO("CORIO_BACKEND=" << wanted);
        BackendVariable variable(wanted);
        corio::test::Child server(CORIO_NO_IO_URING_PATH, {CORIO_ECHO_SERVER_PATH, "--port", "0", "--threads", "2"});
        const std::uint16_t port = corio::test::listening_port(server);
        for (int i = 0; i < 3; ++i) {
            corio::test::UniqueFd client = corio::test::connect_to(port);
            corio::test::send_text(client.get(), "through epoll");
            CHECK(corio::test::read_exactly(client.get(), 13) == "through epoll");
        }
        REQUIRE(::kill(server.pid(), SIGTERM) == 0);
        CHECK(corio::test::exited_with(server.wait_exit(5s), 0));
        const std::string errors = server.stderr_text();
        const std::string line = "corio: io_uring is not available (corio: io_uring_setup: Operation not permitted); using epoll\n";
        CHECK(errors == line); // one line for the process, though two Schedulers were made
    }
}

namespace {
corio::Task<> nap() { co_await corio::Sleep{1ms}; }
} // namespace

TEST_CASE("backend: a Scheduler on io_uring run again from another thread says why it cannot",
          "[backend]") {
    corio::test::FrameLeakCheck leaks;
    if (!io_uring_allowed_here()) {
        SUCCEED("io_uring is refused here: " << corio::detail::io_uring_refusal());
        return;
    }
    corio::Scheduler kernel(Backend::io_uring);
    kernel.run_until_complete(nap());
    std::string error;
    std::thread other([&] {
        try {
            kernel.run_until_complete(nap());
        } catch (const std::system_error& failure) {
            error = failure.what();
        }
    });
    other.join();
    CHECK(error.find("thread other than the one that first ran this Scheduler") != std::string::npos);
    // The thread that ran it first still can.
    CHECK_NOTHROW(kernel.run_until_complete(nap()));
}
