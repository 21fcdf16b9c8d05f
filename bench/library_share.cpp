// library_share - what corio itself costs per idle connection, apart from the application's buffer.
//
//     library_share [--conns N]
//
// Issue 4's target: "library overhead per idle connection <= 256 B". An idle connection of
// examples/echo_server is one task waiting in recv, and costs corio:
//   * one detail::TaskRecord (the kernel's slot for the task),
//   * one detail::FdWatch (the fd-indexed entry: who waits on the fd, what epoll watches),
//   * the coroutine frame of handle_client, minus the 16 KiB buffer the example chose to put in it.
// Part 1 prints these sizes as compiled: the frame's size is caught by a counting global operator
// new (CORIO_NO_FRAME_POOL is defined below, so a frame is allocated at exactly its size) when
// handle_client is called, before it runs. Besides the echo_server's handle_client (copied below:
// keep it in step with examples/echo_server.cpp), it measures a minimal connection task (a socket,
// the buffer and the recv/send_all loop) to tell the example's own additions from the library's.
//
// Part 2 measures: it serves N connections (socketpairs) with that handle_client in one Scheduler,
// runs until every task waits in recv, and divides the growth of live heap bytes (counted with
// malloc_usable_size) by N: frames, TaskRecords, FdWatches and the containers around them, with
// their real rounding (std::deque blocks, malloc size classes). The buffer is subtracted.
//
// Nothing here is kernel memory (socket buffers, the epoll entry, the fd itself): see idle_conns
// for the server's RSS as a whole.
#define CORIO_NO_FRAME_POOL 1 // frames come straight from operator new, at their exact size

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fcntl.h>
#include <iostream>
#include <malloc.h>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include <corio/corio.hpp>

// ---------------------------------------------------------------------------------------------
// Counting allocator: live bytes (as malloc really sized them) and the size of the last request.

namespace {

std::atomic<std::int64_t> live_bytes{0};
std::atomic<std::size_t> last_request{0};

void* counted_alloc(std::size_t size) {
    last_request.store(size, std::memory_order_relaxed);
    void* memory = std::malloc(size == 0 ? 1 : size);
    if (memory == nullptr) {
        throw std::bad_alloc();
    }
    live_bytes.fetch_add(static_cast<std::int64_t>(::malloc_usable_size(memory)),
                         std::memory_order_relaxed);
    return memory;
}

void counted_free(void* memory) noexcept {
    if (memory != nullptr) {
        live_bytes.fetch_sub(static_cast<std::int64_t>(::malloc_usable_size(memory)),
                             std::memory_order_relaxed);
        std::free(memory);
    }
}

} // namespace

void* operator new(std::size_t size) {
    return counted_alloc(size);
}
void* operator new[](std::size_t size) {
    return counted_alloc(size);
}
void operator delete(void* memory) noexcept {
    counted_free(memory);
}
void operator delete[](void* memory) noexcept {
    counted_free(memory);
}
void operator delete(void* memory, std::size_t) noexcept {
    counted_free(memory);
}
void operator delete[](void* memory, std::size_t) noexcept {
    counted_free(memory);
}

// ---------------------------------------------------------------------------------------------

namespace {

constexpr std::size_t buffer_size = 16384;

// ---- examples/echo_server.cpp's connection task, as it is there (keep in step with it).

class ConnectionLog {
public:
    ConnectionLog(const corio::SocketAddress& peer, bool verbose)
        : peer_(verbose ? std::make_unique<const std::string>(peer.to_string()) : nullptr) {}

    void operator()(std::string_view event) const {
        if (peer_) {
            std::cerr << *peer_ + ": " + std::string(event) + '\n';
        }
    }

private:
    std::unique_ptr<const std::string> peer_;
};

using IdleTimeout = std::optional<corio::Scheduler::Clock::duration>;

corio::Task<> handle_client(corio::AsyncSocket client, ConnectionLog log, IdleTimeout idle) {
    std::array<std::byte, buffer_size> buffer;
    try {
        log("connected");
        for (;;) {
            const std::size_t received =
                idle ? co_await corio::timeout_after(*idle, client.recv(buffer))
                     : co_await client.recv(buffer);
            if (received == 0) {
                break;
            }
            co_await client.send_all(std::span(buffer).first(received));
        }
        log("closed");
    } catch (const corio::TimeoutError&) {
        log("idle for too long: disconnected");
    } catch (const std::exception& error) {
        log(error.what());
    }
}

// ---- The least a connection task can be: the socket, the buffer, the loop.

corio::Task<> minimal_client(corio::AsyncSocket client) {
    std::array<std::byte, buffer_size> buffer;
    try {
        while (const std::size_t received = co_await client.recv(buffer)) {
            co_await client.send_all(std::span(buffer).first(received));
        }
    } catch (const std::exception&) {
    }
}

// Where frame_size_of puts the task: a frame that escapes cannot be elided (Clang elides the
// allocation of a coroutine created and destroyed in one function).
corio::Task<> escaped;

// The size of the frame that calling `make` allocates (the coroutine is created, not run).
template <class Make>
std::size_t frame_size_of(Make make) {
    last_request = 0;
    escaped = make();
    const std::size_t size = last_request.load();
    escaped = {};
    return size;
}

long parse_long(std::string_view text, long min, long max) {
    long value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < min || value > max) {
        std::fprintf(stderr, "library_share: invalid number '%.*s'\n",
                     static_cast<int>(text.size()), text.data());
        std::exit(2);
    }
    return value;
}

// Part 2: N idle connections in one Scheduler; gives live heap bytes per connection.
double measured_bytes_per_connection(long conns) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    std::vector<int> peers; // the other ends: kept open, silent
    peers.reserve(static_cast<std::size_t>(conns) + 1);
    corio::Scheduler kernel;
    const corio::SocketAddress nowhere = corio::SocketAddress::parse("127.0.0.1", 0);
    // Warm the Scheduler's containers with one connection, so that the first one's fixed costs
    // (the epoll set's event array, the first deque blocks) are not counted as per-connection.
    auto spawn = [&](long count) {
        for (long i = 0; i < count; ++i) {
            int ends[2];
            if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ends) < 0) {
                std::perror("library_share: socketpair");
                std::exit(1);
            }
            // The peer end moves to a high number, so the served ends are numbered 3, 4, 5...
            // as in a real server (the kernel's FdWatch table is indexed by fd).
            const int peer = ::fcntl(ends[1], F_DUPFD_CLOEXEC, static_cast<int>(conns) + 64);
            if (peer < 0) {
                std::perror("library_share: fcntl(F_DUPFD)");
                std::exit(1);
            }
            ::close(ends[1]);
            peers.push_back(peer);
            kernel.add_task(handle_client(corio::AsyncSocket(ends[0]),
                                          ConnectionLog(nowhere, false), IdleTimeout{}));
        }
        kernel.run_until_complete(
            []() -> corio::Task<> { co_await corio::Sleep{std::chrono::seconds(0)}; }());
    };
    spawn(1);
    const std::int64_t before = live_bytes.load();
    const std::size_t peers_capacity = peers.capacity(); // reserved up front: not in the delta
    spawn(conns);
    const std::int64_t after = live_bytes.load();
    if (kernel.stats().waiting_on_fds != static_cast<std::size_t>(conns + 1) ||
        peers.capacity() != peers_capacity) {
        std::fprintf(stderr, "library_share: %zu tasks wait on fds, expected %ld\n",
                     kernel.stats().waiting_on_fds, conns + 1);
        std::exit(1);
    }
    for (int fd : peers) {
        ::close(fd);
    }
    return static_cast<double>(after - before) / static_cast<double>(conns);
}

} // namespace

int main(int argc, char* argv[]) {
    long conns = 1000;
    for (int i = 1; i < argc; ++i) {
        const std::string_view option = argv[i];
        if (option == "--help") {
            std::puts("usage: library_share [--conns N]");
            return 0;
        }
        if (option == "--conns" && i + 1 < argc) {
            conns = parse_long(argv[++i], 1, 100000);
        } else {
            std::fprintf(stderr, "library_share: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }

    const corio::SocketAddress peer = corio::SocketAddress::parse("127.0.0.1", 0);
    const std::size_t echo_frame = frame_size_of([&] {
        return handle_client(corio::AsyncSocket(), ConnectionLog(peer, false), IdleTimeout{});
    });
    const std::size_t minimal_frame =
        frame_size_of([] { return minimal_client(corio::AsyncSocket()); });
    constexpr std::size_t record = sizeof(corio::detail::TaskRecord);
    constexpr std::size_t watch = sizeof(corio::detail::FdWatch);
    const std::size_t echo_share = record + watch + (echo_frame - buffer_size);
    const std::size_t minimal_share = record + watch + (minimal_frame - buffer_size);

    std::printf("corio's own memory per idle connection (compiler: %s)\n\n", __VERSION__);
    std::printf("  sizeof(detail::TaskRecord)                         %5zu B\n", record);
    std::printf("  sizeof(detail::FdWatch)                            %5zu B\n", watch);
    std::printf("  sizeof(detail::PromiseBase)                        %5zu B (in every frame)\n",
                sizeof(corio::detail::PromiseBase));
    std::printf("  sizeof(AsyncSocket)                                %5zu B\n",
                sizeof(corio::AsyncSocket));
    std::printf("  sizeof(detail::RecvOperation)                      %5zu B\n",
                sizeof(corio::detail::RecvOperation));
    std::printf("  sizeof(detail::SendOperation<true>)                %5zu B\n",
                sizeof(corio::detail::SendOperation<true>));
    std::printf(
        "  echo_server's handle_client frame                  %5zu B = %zu B buffer + %zu B\n",
        echo_frame, buffer_size, echo_frame - buffer_size);
    std::printf(
        "  minimal connection task frame                      %5zu B = %zu B buffer + %zu B\n",
        minimal_frame, buffer_size, minimal_frame - buffer_size);
    std::printf("\n  share, echo_server (record + watch + frame - buffer) %5zu B\n", echo_share);
    std::printf("  share, minimal task (record + watch + frame - buffer) %4zu B\n", minimal_share);
    std::printf("  target                                                 256 B\n");
    std::fflush(stdout);

    const double measured = measured_bytes_per_connection(conns);
    std::printf(
        "\nmeasured: %ld idle echo_server connections in one Scheduler: %.0f B of live heap per "
        "connection,\n  %.0f B without the buffer (frames, records, watches and their containers, "
        "as malloc sized them)\n",
        conns, measured, measured - static_cast<double>(buffer_size));
    return 0;
}
