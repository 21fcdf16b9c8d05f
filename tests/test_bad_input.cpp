// Bad input to the library: addresses that are not addresses, fds that are not open, a closed
// socket, and buffers far bigger than anything the kernel moves at once. Each gets a clear error
// (std::system_error with errno) or a correct result, never a hang, a crash or a runaway
// allocation, and the kernel goes on working afterwards.
#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

#include <corio/net/async_socket.hpp>
#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>

#include "support/catch.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::AsyncSocket;

constexpr std::size_t kib = 1024;
constexpr std::size_t mib = 1024 * kib;

/// The errno of the std::system_error that `call` throws, or 0 if it returns.
template <class Call>
int error_of_call(Call&& call) {
    try {
        call();
    } catch (const std::system_error& e) {
        return e.code().value();
    }
    return 0;
}

/// Runs `task` with a time limit and gives its value.
template <class T>
T run_for_value(Scheduler& kernel, Task<T> task) {
    T value{};
    auto store = [](Task<T> inner, T& out) -> Task<> { out = co_await std::move(inner); };
    REQUIRE(run_until_ended(kernel, {kernel.add_task(store(std::move(task), value))}));
    return value;
}

/// This process's resident memory, in KiB.
long resident_kib() {
    std::ifstream status("/proc/self/status");
    std::string word;
    while (status >> word) {
        if (word == "VmRSS:") {
            long value = 0;
            status >> value;
            return value;
        }
    }
    return 0;
}

const std::string_view invalid_hosts[] = {
    "999.1.1.1", "", "::ffff:garbage", "256.256.256.256", "1.1.1.1.", "::1::1", "[::1", "0x7f.0.0.1",
    "127.0.0.1 ", "localhost",
};

} // namespace

TEST_CASE("bad input: listen on an invalid address throws EINVAL, connect to one fails",
          "[bad_input]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    for (const std::string_view host : invalid_hosts) {
        INFO("host \"" << std::string(host) << "\"");
        CHECK(error_of_call([host] { (void)AsyncSocket::listen(host, 0); }) == EINVAL);
        CHECK(error_of_call([host] { (void)AsyncSocket::listen(host, 65535); }) == EINVAL);
        // connect takes names too: what is not a numeric address is resolved, and fails to (an
        // error of resolve_category(), or EINVAL for the empty name) - except "localhost" and
        // "0x7f.0.0.1", which getaddrinfo reads the way inet_aton does: 127.0.0.1.
        const int expected_for_localhost = ECONNREFUSED; // nobody listens on port 1
        const int plain = run_for_value(kernel, error_of(AsyncSocket::connect(std::string(host), 1)));
        const int bounded =
            run_for_value(kernel, error_of(AsyncSocket::connect(std::string(host), 1, 1s)));
        if (host == "localhost" || host == "0x7f.0.0.1") {
            CHECK(plain == expected_for_localhost);
            CHECK(bounded == expected_for_localhost);
        } else {
            CHECK(plain != 0);
            CHECK(bounded != 0);
            CHECK(plain != ECONNREFUSED);
        }
    }
    // Ports are std::uint16_t: -1 and 65536 cannot be passed. Port 0 is "any" for listen, and
    // nothing for connect.
    CHECK(run_for_value(kernel, error_of(AsyncSocket::connect("127.0.0.1", 0))) == ECONNREFUSED);
    require_empty(kernel);
}

namespace {

template <class Wait>
Task<int> wait_error(int fd) {
    co_return co_await error_of(Wait{fd});
}

} // namespace

// No fd is open at these numbers. The table of fds grows to the highest number waited on: before
// the Scheduler checked, a billion took gigabytes before the selector said EBADF (and poll said
// "ready": POLLNVAL).
TEST_CASE("bad input: waiting on an fd that is not open throws EBADF and allocates nothing",
          "[bad_input]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    const long rss_before = resident_kib();
    for (const int fd : {-1, -2, INT_MIN, 1'000'000'000, INT_MAX, 4'000'000}) {
        INFO("fd " << fd);
        CHECK(run_for_value(kernel, wait_error<corio::ReadWait>(fd)) == EBADF);
        CHECK(run_for_value(kernel, wait_error<corio::WriteWait>(fd)) == EBADF);
    }
    const long grown = resident_kib() - rss_before;
    INFO("resident memory grew by " << grown << " KiB");
    CHECK(grown < static_cast<long>(8 * mib / kib));

    // The kernel goes on working.
    FdPair pair = socket_pair();
    write_all(pair.second.get(), "x", 1);
    CHECK(run_for_value(kernel, wait_error<corio::ReadWait>(pair.first.get())) == 0);
    kernel.forget_fd(pair.first.get());
    require_empty(kernel);
}

namespace {

Task<int> closed_socket_errors() {
    AsyncSocket closed; // never opened (fd -1)
    std::array<std::byte, 16> buffer{};
    int errors = 0;
    errors += co_await error_of(closed.recv(buffer)) == EBADF ? 1 : 0;
    errors += co_await error_of(closed.send("abc")) == EBADF ? 1 : 0;
    errors += co_await error_of(closed.send_all("abc")) == EBADF ? 1 : 0;
    errors += co_await error_of(closed.accept()) == EBADF ? 1 : 0;
    errors += co_await error_of(closed.wait_readable()) == EBADF ? 1 : 0;
    errors += co_await error_of(closed.wait_writable()) == EBADF ? 1 : 0;
    co_return errors;
}

} // namespace

TEST_CASE("bad input: every operation on a closed socket throws EBADF at once", "[bad_input]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    CHECK(run_for_value(kernel, closed_socket_errors()) == 6);
    AsyncSocket closed;
    CHECK(error_of_call([&closed] { closed.shutdown_write(); }) == EBADF);
    CHECK(error_of_call([&closed] { (void)closed.local_port(); }) == EBADF);
    CHECK(error_of_call([&closed] { (void)closed.peer_address(); }) == EBADF);
    require_empty(kernel);
}

// ---- huge buffers -----------------------------------------------------------------------------------

namespace {

constexpr std::size_t huge = 64 * mib;

std::byte pattern_at(std::size_t index) {
    return static_cast<std::byte>((static_cast<std::uint32_t>(index) * 2654435761U) >> 24);
}

struct HugeTransfer {
    std::size_t first_send = 0;   // what one send of 64 MiB took from a peer that does not read
    std::size_t small_recv = 0;   // what one recv into 64 MiB gave while 3 bytes were waiting
    std::size_t received = 0;     // what the reader got of send_all's 64 MiB, into a 64 MiB buffer
    std::size_t mismatches = 0;   // bytes that differ from what was sent
    std::size_t recv_calls = 0;
};

Task<> receive_into_huge_buffer(AsyncSocket& socket, std::vector<std::byte>& buffer,
                                HugeTransfer& out) {
    while (out.received < buffer.size()) {
        const std::size_t count =
            co_await socket.recv(std::span(buffer).subspan(out.received));
        ++out.recv_calls;
        if (count == 0) {
            break;
        }
        out.received += count;
    }
}

Task<> huge_transfer(HugeTransfer& out) {
    AsyncSocket listener = AsyncSocket::listen("127.0.0.1", 0);
    AsyncSocket client = co_await AsyncSocket::connect("127.0.0.1", listener.local_port());
    corio::Accepted accepted = co_await listener.accept();
    AsyncSocket& server = accepted.socket;

    std::vector<std::byte> data(huge);
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] = pattern_at(i);
    }
    std::vector<std::byte> received(huge);

    // recv into 64 MiB with 3 bytes waiting: gives the 3.
    co_await client.send_all("abc");
    out.small_recv = co_await server.recv(received);

    // One send of 64 MiB to a peer that reads nothing: takes what fits, at least a byte.
    out.first_send = co_await client.send(std::span<const std::byte>(data));

    // send_all of the whole 64 MiB (from where send stopped) while a reader fills one 64 MiB
    // buffer with recv: every byte arrives, in order.
    const TaskId reader = co_await corio::NewTask(receive_into_huge_buffer(server, received, out));
    co_await client.send_all(std::span<const std::byte>(data).subspan(out.first_send));
    const corio::TaskExit exit = co_await corio::WaitTask{reader};
    exit.rethrow_if_failed();
    for (std::size_t i = 0; i < out.received; ++i) {
        out.mismatches += received[i] != data[i] ? 1 : 0;
    }
}

} // namespace

TEST_CASE("bad input: 64 MiB buffers for recv, send and send_all", "[bad_input]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    HugeTransfer result;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(huge_transfer(result))}, 20s));
    CHECK(result.small_recv == 3);
    CHECK(result.first_send > 0);
    CHECK(result.first_send < huge); // no kernel buffers 64 MiB for a peer that does not read
    CHECK(result.received == huge);
    CHECK(result.mismatches == 0);
    CHECK(result.recv_calls > 1);
    require_empty(kernel);
}
