// Unix-domain stream sockets through AsyncSocket: listen on a path in a fresh temporary directory,
// accept, connect, echo; the errors of a missing path, of nobody listening, of a path too long
// and of a path already taken; abstract names (Linux); unix_socket_pair.
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>

#include <corio/net/async_socket.hpp>
#include <corio/scheduler.hpp>
#include <corio/net/socket_address.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>
#include <corio/net/unix_socket.hpp>

#include "support/catch.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace corio::test;
using namespace std::chrono_literals;
using corio::AsyncSocket;
using corio::SocketAddress;

// A directory made by mkdtemp, removed with everything in it when the test is done.
class TempDir {
public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "corio-unix-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp");
        }
        path_ = pattern;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }

    [[nodiscard]] std::string file(std::string_view name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

// Echoes one connection until end-of-stream.
Task<> echo_one(AsyncSocket& listener, std::string& peer_name) {
    auto [client, peer] = co_await listener.accept();
    peer_name = peer.to_string();
    std::array<char, 4096> buffer{};
    while (const std::size_t received = co_await client.recv(buffer)) {
        co_await client.send_all(std::span(buffer).first(received));
    }
}

// Connects to `address`, sends `count` lines one at a time, reads each echo back, then half-closes.
Task<> talk(SocketAddress address, int count, std::string& heard) {
    AsyncSocket socket = co_await AsyncSocket::connect(address);
    std::array<char, 64> buffer{};
    for (int i = 0; i < count; ++i) {
        const std::string line = "line " + std::to_string(i) + "\n";
        co_await socket.send_all(line);
        std::size_t got = 0;
        while (got < line.size()) {
            const std::size_t received =
                co_await socket.recv(std::span(buffer).first(line.size() - got));
            if (received == 0) {
                co_return;
            }
            heard.append(buffer.data(), received);
            got += received;
        }
    }
    socket.shutdown_write();
}

std::string expected_lines(int count) {
    std::string text;
    for (int i = 0; i < count; ++i) {
        text += "line " + std::to_string(i) + "\n";
    }
    return text;
}

// How the two ends of a connection name each other.
struct Names {
    std::string local; // the listener's own address
    std::string peer;  // the connecting client, as accept gives it
};

// Listens on `address`, connects to what the listener is bound to, echoes 200 lines through the
// connection and checks them. Gives the names the two ends saw.
Names echo_round_trip(const SocketAddress& address) {
    FrameLeakCheck leaks;
    Scheduler kernel;
    AsyncSocket listener = AsyncSocket::listen(address);
    const SocketAddress local = listener.local_address();
    constexpr int lines = 200;
    Names names{local.to_string(), {}};
    std::string heard;
    const TaskId serving = kernel.add_task(echo_one(listener, names.peer));
    const TaskId talking = kernel.add_task(talk(local, lines, heard));
    REQUIRE(run_until_ended(kernel, {serving, talking}));
    CHECK(heard == expected_lines(lines));
    listener.close();
    require_empty(kernel);
    return names;
}

TEST_CASE("Unix socket: echo round trip over a path in a temporary directory", "[unix_socket]") {
    TempDir directory;
    const std::string path = directory.file("echo.sock");
    const Names names = echo_round_trip(SocketAddress::from_path(path));
    CHECK(names.local == path);
    CHECK(names.peer == "(unnamed)"); // a connecting Unix socket is not bound to a name
    // corio leaves the file where it was (see unix_socket.hpp): the program removes it.
    struct stat status {};
    REQUIRE(::lstat(path.c_str(), &status) == 0);
    CHECK(S_ISSOCK(status.st_mode));
}

#if defined(__linux__)
TEST_CASE("Unix socket: echo round trip over a Linux abstract name", "[unix_socket]") {
    const std::string name = "corio-test-" + std::to_string(::getpid());
    const Names names = echo_round_trip(SocketAddress::abstract_name(name));
    CHECK(names.local == "@" + name);
    CHECK(names.peer == "(unnamed)");
}
#endif

TEST_CASE("AsyncSocket: listen and connect by SocketAddress over IPv6 ::1", "[unix_socket]") {
    // The overloads the Unix paths use serve IP as well.
    const Names names = echo_round_trip(SocketAddress::parse("::1", 0));
    CHECK(names.local.rfind("[::1]:", 0) == 0);
    CHECK(names.local != "[::1]:0");
    CHECK(names.peer.rfind("[::1]:", 0) == 0);
}

int connect_error(Scheduler& kernel, const SocketAddress& address) {
    int error = -1;
    auto attempt = [](SocketAddress to, int& out) -> Task<> {
        out = co_await error_of(AsyncSocket::connect(to));
    };
    REQUIRE(run_until_ended(kernel, {kernel.add_task(attempt(address, error))}));
    return error;
}

TEST_CASE("Unix socket: connect to a missing path fails with ENOENT", "[unix_socket]") {
    FrameLeakCheck leaks;
    TempDir directory;
    Scheduler kernel;
    CHECK(connect_error(kernel, SocketAddress::from_path(directory.file("nobody.sock"))) == ENOENT);
    require_empty(kernel);
}

TEST_CASE("Unix socket: connect to a path nobody listens on fails with ECONNREFUSED",
          "[unix_socket]") {
    FrameLeakCheck leaks;
    TempDir directory;
    Scheduler kernel;
    const SocketAddress address = SocketAddress::from_path(directory.file("closed.sock"));
    AsyncSocket::listen(address).close(); // the file stays, with nobody behind it
    CHECK(connect_error(kernel, address) == ECONNREFUSED);
    require_empty(kernel);
}

TEST_CASE("Unix socket: connect to a full backlog fails with EAGAIN instead of waiting",
          "[unix_socket]") {
    FrameLeakCheck leaks;
    TempDir directory;
    Scheduler kernel;
    const SocketAddress address = SocketAddress::from_path(directory.file("full.sock"));
    AsyncSocket listener = AsyncSocket::listen(address, 0); // room for one pending connection
    int first = -1;
    int second = -1;
    auto attempt = [](SocketAddress to, int& out, AsyncSocket& kept) -> Task<> {
        try {
            kept = co_await AsyncSocket::connect(to);
            out = 0;
        } catch (const std::system_error& e) {
            out = e.code().value();
        }
    };
    AsyncSocket queued;
    AsyncSocket refused;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(attempt(address, first, queued)),
                                     kernel.add_task(attempt(address, second, refused))}));
    CHECK(first == 0);
    CHECK(second == EAGAIN);
    queued.close();
    listener.close();
    require_empty(kernel);
}

TEST_CASE("Unix socket: listen on a path that exists fails with EADDRINUSE", "[unix_socket]") {
    TempDir directory;
    const SocketAddress address = SocketAddress::from_path(directory.file("taken.sock"));
    AsyncSocket first = AsyncSocket::listen(address);
    try {
        (void)AsyncSocket::listen(address);
        FAIL("a second listener took the path");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == EADDRINUSE);
        CHECK(std::string(e.what()).find(address.path()) != std::string::npos);
    }
    first.close();
    CHECK_THROWS_AS(AsyncSocket::listen(address), std::system_error); // still there: not removed
    std::filesystem::remove(address.path());
    CHECK(AsyncSocket::listen(address).is_open()); // the program's own removal frees it
}

TEST_CASE("Unix socket: a path too long is refused with ENAMETOOLONG", "[unix_socket]") {
    const std::string longest(SocketAddress::max_unix_path, 'p');
    CHECK(SocketAddress::from_path(longest).path() == longest);
    try {
        (void)SocketAddress::from_path(longest + "p");
        FAIL("a path longer than sockaddr_un holds was taken");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::filename_too_long);
        CHECK(std::string(e.what()).find("longer than " +
                                         std::to_string(SocketAddress::max_unix_path)) !=
              std::string::npos);
    }
#if defined(__linux__)
    CHECK_NOTHROW(SocketAddress::abstract_name(std::string(SocketAddress::max_unix_path - 1, 'a')));
    CHECK_THROWS_AS(SocketAddress::abstract_name(std::string(SocketAddress::max_unix_path, 'a')),
                    std::system_error);
#endif
    for (const std::string_view bad : {std::string_view(), std::string_view("a\0b", 3)}) {
        try {
            (void)SocketAddress::from_path(bad);
            FAIL("an empty path or one with a NUL was taken");
        } catch (const std::system_error& e) {
            CHECK(e.code() == std::errc::invalid_argument);
        }
    }
}

TEST_CASE("Unix socket: addresses of other families have no path", "[unix_socket]") {
    CHECK(SocketAddress::parse("127.0.0.1", 80).path().empty());
    CHECK(SocketAddress().path().empty());
    const SocketAddress address = SocketAddress::from_path("/tmp/x.sock");
    CHECK(address.family() == AF_UNIX);
    CHECK(address.port() == 0);
    CHECK(address.host().empty());
    CHECK(address.to_string() == "/tmp/x.sock");
}

TEST_CASE("Unix socket: unix_socket_pair carries data both ways, non-blocking and close-on-exec",
          "[unix_socket]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    auto [left, right] = corio::unix_socket_pair();
    for (const AsyncSocket* socket : {&left, &right}) {
        CHECK((::fcntl(socket->fd(), F_GETFL) & O_NONBLOCK) != 0);
        CHECK((::fcntl(socket->fd(), F_GETFD) & FD_CLOEXEC) != 0);
    }
    std::string heard_left;
    std::string heard_right;
    auto exchange = [](AsyncSocket& self, std::string_view say, std::string& heard) -> Task<> {
        co_await self.send_all(say);
        self.shutdown_write();
        std::array<char, 256> buffer{};
        while (const std::size_t received = co_await corio::timeout_after(5s, self.recv(buffer))) {
            heard.append(buffer.data(), received);
        }
    };
    const TaskId a = kernel.add_task(exchange(left, "from the left", heard_left));
    const TaskId b = kernel.add_task(exchange(right, "from the right", heard_right));
    REQUIRE(run_until_ended(kernel, {a, b}));
    CHECK(heard_left == "from the right");
    CHECK(heard_right == "from the left");
    left.close();
    right.close();
    require_empty(kernel);
}

TEST_CASE("Unix socket: killing a task waiting in accept leaves nothing registered",
          "[unix_socket]") {
    FrameLeakCheck leaks;
    TempDir directory;
    Scheduler kernel;
    AsyncSocket listener = AsyncSocket::listen(SocketAddress::from_path(directory.file("k.sock")));
    std::string peer_name;
    const TaskId victim = kernel.add_task(echo_one(listener, peer_name));
    auto kill_it = [](Scheduler& k, TaskId id) -> Task<> {
        co_await corio::Yield{};
        CHECK(k.stats().waiting_on_fds == 1);
        const bool existed = co_await corio::KillTask{id};
        CHECK(existed);
        CHECK(k.stats().waiting_on_fds == 0);
    };
    REQUIRE(run_until_ended(kernel, {victim, kernel.add_task(kill_it(kernel, victim))}));
    listener.close();
    require_empty(kernel);
}

} // namespace
