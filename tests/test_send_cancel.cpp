// A send that ends before its bytes are all out (its task killed, a deadline, its socket closed
// under it) must leave nothing behind that still reads the caller's memory. On io_uring a send is
// submitted to the ring from that memory (kernel/fd_watches.hpp); these tests free the memory's
// contents right after the send ends (they overwrite it with 'Z') and then let the peer read
// everything: a single 'Z' means the kernel went on sending from memory it no longer had. They
// run on every backend; on epoll and poll nothing is in flight between system calls.
//
// The socket buffers are fixed and small, so that 1 MiB cannot fit and the send is in flight
// (waiting for room) when it is ended. The peer is a plain blocking socket read after the loop.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/utsname.h>

#include <corio/net/async_socket.hpp>
#include <corio/scheduler.hpp>
#include <corio/syscalls.hpp>
#include <corio/timeout.hpp>

#include "support/catch.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"
#include "support/tcp_client.hpp"

namespace {

using namespace corio::test;
using namespace std::chrono_literals;
using corio::AsyncSocket;

constexpr std::size_t payload = 1024 * 1024;
constexpr int small_buffer = 16 * 1024;

// A loopback TCP connection: `sender` for the Scheduler's tasks, `reader` a blocking fd read on a
// thread once the test says so (bounded in time).
struct SmallPipe {
    SmallPipe() {
        AsyncSocket listener = AsyncSocket::listen("127.0.0.1", 0);
        reader = connect_to(listener.local_port(), small_buffer); // reads give up after 5 s
        // On loopback the connection is in the listener's queue once connect() returns.
        const int accepted = ::accept4(listener.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        REQUIRE(accepted >= 0);
        REQUIRE(::setsockopt(accepted, SOL_SOCKET, SO_SNDBUF, &small_buffer, sizeof small_buffer) == 0);
        sender = AsyncSocket(accepted);
    }

    // Reads everything until the end of the stream on a thread, from when start() is called.
    void read_later() {
        thread = std::thread([this] {
            for (int naps = 0; naps < 10000 && !go.load(); ++naps) {
                std::this_thread::sleep_for(1ms);
            }
            received = read_exactly(reader.get(), 2 * payload, 10s); // stops at the end
        });
    }
    void start() { go.store(true); }
    std::string join() {
        start();
        thread.join();
        return received;
    }

    AsyncSocket sender;
    UniqueFd reader;
    std::thread thread;
    std::atomic<bool> go{false};
    std::string received;
};

// The memory a send reads from, filled with `fill`.
std::vector<std::byte> memory_of(char fill, std::size_t size = payload) {
    return std::vector<std::byte>(size, static_cast<std::byte>(fill));
}
void overwrite(std::vector<std::byte>& memory) { std::fill(memory.begin(), memory.end(), std::byte{'Z'}); }

// The number of bytes of `received` before the first one that is not `fill`.
std::size_t run_of(const std::string& received, char fill, std::size_t from = 0) {
    std::size_t at = from;
    while (at < received.size() && received[at] == fill) {
        ++at;
    }
    return at - from;
}

bool kernel_at_least(int major, int minor) {
    utsname name{};
    int found_major = 0;
    int found_minor = 0;
    return ::uname(&name) == 0 && std::sscanf(name.release, "%d.%d", &found_major, &found_minor) == 2 &&
           (found_major > major || (found_major == major && found_minor >= minor));
}

Task<> send_all(AsyncSocket& socket, const std::vector<std::byte>& memory) {
    co_await socket.send_all(memory);
}

} // namespace

TEST_CASE("Send cancel: a task killed in send_all leaves the kernel nothing of its memory to read, "
          "and the next send on the socket goes",
          "[send_cancel]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    SmallPipe pipe;
    std::vector<std::byte> killed_memory = memory_of('A');
    const std::vector<std::byte> next_memory = memory_of('B', 64 * 1024);
    bool was_waiting = false;
    pipe.read_later();
    auto test = [&]() -> Task<> {
        const TaskId killed = co_await corio::NewTask(send_all(pipe.sender, killed_memory));
        const TaskId next = co_await corio::NewTask(send_all(pipe.sender, next_memory));
        co_await corio::Sleep{50ms};
        was_waiting = kernel.stats().waiting_on_fds == 2;
        co_await corio::KillTask(killed);
        overwrite(killed_memory); // as if freed and used again
        pipe.start(); // the reader makes room: only the next send's bytes may use it
        co_await corio::WaitTask(next);
        pipe.sender.shutdown_write();
    };
    const bool ended = run_until_ended(kernel, {kernel.add_task(test())}, 10s);
    pipe.sender.close();
    const std::string received = pipe.join();
    REQUIRE(ended);
    if (kernel.backend() == corio::Backend::io_uring && kernel_at_least(6, 0)) {
        CHECK(kernel.sends_on_ring());
    }
    CHECK(was_waiting);
    const std::size_t prefix = run_of(received, 'A');
    INFO("received " << received.size() << " bytes, " << prefix << " of them 'A' first");
    CHECK(prefix < payload);
    CHECK(run_of(received, 'B', prefix) == next_memory.size());
    CHECK(received.size() == prefix + next_memory.size());
    CHECK(received.find('Z') == std::string::npos);
    require_empty(kernel);
}

TEST_CASE("Send cancel: a send_all ended by its deadline no longer reads its memory", "[send_cancel]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    SmallPipe pipe;
    std::vector<std::byte> memory = memory_of('A');
    bool timed_out = false;
    pipe.read_later();
    auto test = [&]() -> Task<> {
        try {
            co_await corio::timeout_after(50ms, pipe.sender.send_all(memory));
        } catch (const corio::TimeoutError&) {
            timed_out = true;
        }
        overwrite(memory); // the task goes on, and uses its memory again
        pipe.start();      // room in the socket, for a send that would still be there
        co_await corio::Sleep{100ms};
        pipe.sender.shutdown_write();
    };
    const bool ended = run_until_ended(kernel, {kernel.add_task(test())}, 10s);
    pipe.sender.close();
    const std::string received = pipe.join();
    REQUIRE(ended);
    CHECK(timed_out);
    INFO("received " << received.size() << " bytes");
    CHECK(received.size() < payload);
    CHECK(run_of(received, 'A') == received.size());
    require_empty(kernel);
}

TEST_CASE("Send cancel: a socket closed under a waiting send_all fails it, and its memory is not "
          "read after",
          "[send_cancel]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    SmallPipe pipe;
    std::vector<std::byte> memory = memory_of('A');
    std::string failure;
    pipe.read_later();
    auto sender = [&]() -> Task<> {
        try {
            co_await pipe.sender.send_all(memory);
        } catch (const std::system_error& error) {
            failure = error.what();
        }
        overwrite(memory);
        pipe.start(); // room in the socket, for a send that would still be there
    };
    auto closer = [&]() -> Task<> {
        co_await corio::Sleep{50ms};
        pipe.sender.close();
    };
    const bool ended = run_until_ended(kernel, {kernel.add_task(sender()), kernel.add_task(closer())}, 10s);
    const std::string received = pipe.join();
    REQUIRE(ended);
    CHECK_FALSE(failure.empty());
    INFO("received " << received.size() << " bytes");
    CHECK(received.size() < payload);
    CHECK(run_of(received, 'A') == received.size());
    require_empty(kernel);
}
