// alloc_count - heap allocations per echoed message in steady state, in one process.
//
//     alloc_count [--conns N] [--size S] [--messages M] [--warmup W] [--max-per-message X]
//
// Replaces the global operator new/delete with counting versions, then runs, in one Scheduler:
//   * an echo server task: accepts N connections and serves each with a task that does what
//     examples/echo_server's connection task does (recv into a 16 KiB buffer in its frame, then
//     send_all of what came, until recv gives 0), through corio::AsyncSocket;
//   * N client tasks over loopback: each sends one message of S bytes, waits for the whole echo,
//     checks it, and goes again, W + M times.
// The clients use raw non-blocking syscalls and only ReadWait/WriteWait (system calls, which
// allocate nothing), so whatever is counted in the window comes from the server's path and the
// kernel. The window opens when every connection has done W messages in total (N*W) and closes at
// the last echo; the report gives allocations, deallocations and bytes per message, and the sizes
// that were allocated (a coroutine frame shows up as its size: recv, send_all, send ...).
//
// Exit status 0 after a clean run (whatever it counted); 1 if an echo was wrong, or if
// --max-per-message X was given and more than X allocations per message were counted.
#include <corio/corio.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

// ---------------------------------------------------------------------------------------------
// Counting allocator (relaxed atomics: the program has one thread, but stay correct anyway).

namespace {

std::atomic<std::uint64_t> allocation_count{0};
std::atomic<std::uint64_t> deallocation_count{0};
std::atomic<std::uint64_t> allocated_bytes{0};
std::atomic<bool> recording_sizes{false};

// The sizes allocated while recording, in a fixed table (recording must not allocate).
struct SizeCount {
    std::size_t size;
    std::uint64_t count;
};
std::array<SizeCount, 64> size_table{};
std::size_t size_table_used = 0;
std::uint64_t size_table_overflow = 0;

void record_size(std::size_t size) noexcept {
    for (std::size_t i = 0; i < size_table_used; ++i) {
        if (size_table[i].size == size) {
            ++size_table[i].count;
            return;
        }
    }
    if (size_table_used < size_table.size()) {
        size_table[size_table_used++] = {size, 1};
    } else {
        ++size_table_overflow;
    }
}

void* counted_alloc(std::size_t size, std::size_t alignment, bool nothrow) {
    allocation_count.fetch_add(1, std::memory_order_relaxed);
    allocated_bytes.fetch_add(size, std::memory_order_relaxed);
    if (recording_sizes.load(std::memory_order_relaxed)) {
        record_size(size);
    }
    if (size == 0) {
        size = 1;
    }
    void* memory = nullptr;
    if (alignment <= alignof(std::max_align_t)) {
        memory = std::malloc(size);
    } else {
        memory = std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
    }
    if (memory == nullptr && !nothrow) {
        throw std::bad_alloc();
    }
    return memory;
}

void counted_free(void* memory) noexcept {
    if (memory != nullptr) {
        deallocation_count.fetch_add(1, std::memory_order_relaxed);
        std::free(memory);
    }
}

} // namespace

void* operator new(std::size_t size) { return counted_alloc(size, 0, false); }
void* operator new[](std::size_t size) { return counted_alloc(size, 0, false); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size, 0, true); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size, 0, true); }
void* operator new(std::size_t size, std::align_val_t align) {
    return counted_alloc(size, static_cast<std::size_t>(align), false);
}
void* operator new[](std::size_t size, std::align_val_t align) {
    return counted_alloc(size, static_cast<std::size_t>(align), false);
}
void* operator new(std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
    return counted_alloc(size, static_cast<std::size_t>(align), true);
}
void* operator new[](std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
    return counted_alloc(size, static_cast<std::size_t>(align), true);
}
void operator delete(void* memory) noexcept { counted_free(memory); }
void operator delete[](void* memory) noexcept { counted_free(memory); }
void operator delete(void* memory, std::size_t) noexcept { counted_free(memory); }
void operator delete[](void* memory, std::size_t) noexcept { counted_free(memory); }
void operator delete(void* memory, const std::nothrow_t&) noexcept { counted_free(memory); }
void operator delete[](void* memory, const std::nothrow_t&) noexcept { counted_free(memory); }
void operator delete(void* memory, std::align_val_t) noexcept { counted_free(memory); }
void operator delete[](void* memory, std::align_val_t) noexcept { counted_free(memory); }
void operator delete(void* memory, std::size_t, std::align_val_t) noexcept { counted_free(memory); }
void operator delete[](void* memory, std::size_t, std::align_val_t) noexcept { counted_free(memory); }
void operator delete(void* memory, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(memory); }
void operator delete[](void* memory, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(memory); }

// ---------------------------------------------------------------------------------------------

namespace {

struct Config {
    long conns = 1;
    long size = 64;
    long messages = 100000; // per connection, measured
    long warmup = 1000;     // per connection, before the window
    double max_per_message = -1; // < 0: no limit
};

struct Snapshot {
    std::uint64_t allocations = 0, deallocations = 0, bytes = 0;
    static Snapshot now() {
        return {allocation_count.load(), deallocation_count.load(), allocated_bytes.load()};
    }
};

// Shared by the client tasks: opens and closes the measured window.
struct Window {
    std::uint64_t echoed = 0; // messages echoed so far, all connections
    std::uint64_t open_at = 0;
    std::uint64_t close_at = 0;
    Snapshot begin, end;
    bool failed = false;

    void count_one() {
        ++echoed;
        if (echoed == open_at) {
            begin = Snapshot::now();
            recording_sizes = true;
        }
        if (echoed == close_at) {
            recording_sizes = false;
            end = Snapshot::now();
        }
    }
};

// The connection task of examples/echo_server, without its logging.
corio::Task<> handle_client(corio::AsyncSocket client) {
    std::array<std::byte, 16 * 1024> buffer;
    try {
        while (const std::size_t received = co_await client.recv(buffer)) {
            co_await client.send_all(std::span(buffer).first(received));
        }
    } catch (const std::exception& error) {
        std::fprintf(stderr, "alloc_count: server connection: %s\n", error.what());
    }
}

corio::Task<> echo_server(corio::AsyncSocket listener, long conns) {
    for (long i = 0; i < conns; ++i) {
        corio::Accepted accepted = co_await listener.accept();
        co_await corio::NewTask{handle_client(std::move(accepted.socket))};
    }
}

unsigned char pattern_byte(long conn, long message, long index) {
    return static_cast<unsigned char>(conn * 131 + message * 7 + index * 13 + (index >> 8));
}

// One client: W + M messages, each sent whole and then read back whole, with raw syscalls.
corio::Task<> client(corio::Scheduler& kernel, std::uint16_t port, long id, Config config,
                     Window& window) {
    corio::AsyncSocket socket = co_await corio::AsyncSocket::connect("127.0.0.1", port);
    const int fd = socket.fd();
    std::vector<unsigned char> message(static_cast<std::size_t>(config.size));
    std::vector<unsigned char> reply(static_cast<std::size_t>(config.size));
    const long total = config.warmup + config.messages;
    for (long m = 0; m < total && !window.failed; ++m) {
        for (long i = 0; i < config.size; ++i) {
            message[static_cast<std::size_t>(i)] = pattern_byte(id, m, i);
        }
        std::size_t sent = 0;
        while (sent < message.size()) {
            const ssize_t n = ::send(fd, message.data() + sent, message.size() - sent, MSG_NOSIGNAL);
            if (n > 0) {
                sent += static_cast<std::size_t>(n);
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                co_await corio::WriteWait{fd};
            } else if (n < 0 && errno != EINTR) {
                throw std::system_error(errno, std::system_category(), "client send");
            }
        }
        std::size_t got = 0;
        while (got < reply.size()) {
            const ssize_t n = ::recv(fd, reply.data() + got, reply.size() - got, 0);
            if (n > 0) {
                got += static_cast<std::size_t>(n);
            } else if (n == 0) {
                throw std::runtime_error("the server closed the connection early");
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                co_await corio::ReadWait{fd};
            } else if (errno != EINTR) {
                throw std::system_error(errno, std::system_category(), "client recv");
            }
        }
        if (reply != message) {
            std::fprintf(stderr, "alloc_count: connection %ld: echo of message %ld differs\n", id, m);
            window.failed = true;
        }
        window.count_one();
    }
    kernel.forget_fd(fd); // we waited on it with ReadWait/WriteWait: unregister before it closes
}

corio::Task<> run_clients(corio::Scheduler& kernel, std::uint16_t port, Config config,
                          Window& window) {
    std::vector<corio::TaskId> ids;
    for (long i = 0; i < config.conns; ++i) {
        ids.push_back(co_await corio::NewTask{client(kernel, port, i, config, window)});
    }
    for (const corio::TaskId id : ids) {
        const corio::TaskExit exit = co_await corio::WaitTask{id};
        if (exit.failed()) {
            std::rethrow_exception(exit.error);
        }
    }
}

long parse_long(std::string_view name, std::string_view text, long min, long max) {
    long value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < min || value > max) {
        std::fprintf(stderr, "alloc_count: invalid value '%.*s' for %.*s\n",
                     static_cast<int>(text.size()), text.data(), static_cast<int>(name.size()),
                     name.data());
        std::exit(2);
    }
    return value;
}

} // namespace

int main(int argc, char* argv[]) {
    Config config;
    for (int i = 1; i < argc; ++i) {
        const std::string_view option = argv[i];
        if (option == "--help") {
            std::puts("usage: alloc_count [--conns N] [--size S] [--messages M] [--warmup W] "
                      "[--max-per-message X]");
            return 0;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "alloc_count: '%s' needs a value or is unknown\n", argv[i]);
            return 2;
        }
        const std::string_view value = argv[++i];
        if (option == "--conns") {
            config.conns = parse_long(option, value, 1, 10000);
        } else if (option == "--size") {
            config.size = parse_long(option, value, 1, 1 << 20);
        } else if (option == "--messages") {
            config.messages = parse_long(option, value, 1, 1L << 40);
        } else if (option == "--warmup") {
            config.warmup = parse_long(option, value, 0, 1L << 40);
        } else if (option == "--max-per-message") {
            config.max_per_message = static_cast<double>(parse_long(option, value, 0, 1000000));
        } else {
            std::fprintf(stderr, "alloc_count: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }

    Window window;
    window.open_at = static_cast<std::uint64_t>(config.conns * config.warmup);
    window.close_at = static_cast<std::uint64_t>(config.conns * (config.warmup + config.messages));
    try {
        corio::Scheduler kernel;
        corio::AsyncSocket listener = corio::AsyncSocket::listen("127.0.0.1", 0);
        const std::uint16_t port = listener.local_port();
        kernel.add_task(echo_server(std::move(listener), config.conns));
        if (window.open_at == 0) {
            window.begin = Snapshot::now();
            recording_sizes = true;
        }
        kernel.run_until_complete(run_clients(kernel, port, config, window));
    } catch (const std::exception& error) {
        std::fprintf(stderr, "alloc_count: %s\n", error.what());
        return 1;
    }
    if (window.failed) {
        return 1;
    }

    const double messages = static_cast<double>(window.close_at - window.open_at);
    const double per_message =
        static_cast<double>(window.end.allocations - window.begin.allocations) / messages;
    const double frees_per_message =
        static_cast<double>(window.end.deallocations - window.begin.deallocations) / messages;
    const double bytes_per_message = static_cast<double>(window.end.bytes - window.begin.bytes) / messages;
    std::printf("alloc_count: %.0f messages of %ld B over %ld connection(s), after %ld warm-up "
                "message(s) per connection, every echo checked\n",
                messages, config.size, config.conns, config.warmup);
    std::printf("heap allocations per echoed message: %.3f\n", per_message);
    std::printf("deallocations per echoed message:    %.3f\n", frees_per_message);
    std::printf("bytes allocated per echoed message:  %.1f\n", bytes_per_message);
    if (size_table_used > 0) {
        std::printf("allocation sizes in the window (per echoed message):\n");
        for (std::size_t i = 0; i < size_table_used; ++i) {
            std::printf("  %6zu B x %.3f\n", size_table[i].size,
                        static_cast<double>(size_table[i].count) / messages);
        }
        if (size_table_overflow > 0) {
            std::printf("  (%llu more of other sizes)\n",
                        static_cast<unsigned long long>(size_table_overflow));
        }
    }
    if (config.max_per_message >= 0 && per_message > config.max_per_message) {
        std::fprintf(stderr, "alloc_count: %.3f allocations per message, more than the %g allowed\n",
                     per_message, config.max_per_message);
        return 1;
    }
    return 0;
}
