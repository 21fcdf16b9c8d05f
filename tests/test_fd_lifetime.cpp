// The lifetime of an fd in the Scheduler, from a waiting task's point of view: closing a socket
// (AsyncSocket::close, or Scheduler::forget_fd before a plain close) while a task waits on it; a
// new socket that gets the same fd number; a socket that waits in one Scheduler, then another, or
// outlives them; error conditions; and signals that interrupt the loop while it waits in the
// selector.
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <fcntl.h>
#include <memory>
#include <pthread.h>
#include <set>
#include <string>
#include <sys/socket.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include <netinet/in.h>

#include <corio/net/async_socket.hpp>
#include <corio/scheduler.hpp>
#include <corio/sync/stop_event.hpp>
#include <corio/syscalls.hpp>

#include "support/catch.hpp"
#include "support/epoll_info.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"
#include "support/run_bounded.hpp"

namespace {

using namespace std::chrono_literals;
using namespace corio::test;
using corio::AsyncSocket;
using Clock = std::chrono::steady_clock;

// ---- closing a socket that a task waits on -------------------------------------------------------

struct ClosedUnderReader {
    int reader_error = 0;
    bool reader_returned = false;
    std::size_t waiting_before = 0;
    std::size_t waiting_after = 0;
    std::size_t watched_after = 0;
};

Task<> recv_once(AsyncSocket& socket, int& error, bool& returned, Log* log = nullptr) {
    std::array<char, 64> buffer{};
    try {
        const std::size_t count = co_await socket.recv(buffer);
        returned = true;
        if (log != nullptr) {
            log->push_back("old reader: " + std::string(buffer.data(), count));
        }
    } catch (const std::system_error& e) {
        error = e.code().value();
        if (log != nullptr) {
            log->push_back("old reader: error " + std::to_string(error));
        }
    }
}

Task<> close_under_reader(Scheduler& kernel, AsyncSocket& socket, ClosedUnderReader& out) {
    const TaskId reader =
        co_await corio::NewTask(recv_once(socket, out.reader_error, out.reader_returned));
    co_await corio::Yield{}; // the reader runs, finds nothing to read and waits
    out.waiting_before = kernel.stats().waiting_on_fds;
    socket.close();
    out.waiting_after = kernel.stats().waiting_on_fds;
    out.watched_after = kernel.stats().watched_fds;
    (void)co_await corio::WaitTask{reader};
}

} // namespace

// With a second fd on the same open file description (a dup), closing the socket's fd does not
// end the description: had close() come before the deregistration, epoll would still hold the
// registration (and report events for a number nobody owns); the kernel's own list shows it.
TEST_CASE("fd lifetime: AsyncSocket::close wakes a waiting reader with EBADF and deregisters "
          "before it closes",
          "[fd_lifetime]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    FdPair pair = socket_pair();
    const int fd = pair.first.get();
    AsyncSocket socket(pair.first.release());
    const UniqueFd alias(::dup(fd)); // keeps the open file description alive after close()
    REQUIRE(alias);

    ClosedUnderReader result;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(close_under_reader(kernel, socket, result))}));
    CHECK(result.waiting_before == 1);
    CHECK(result.waiting_after == 0); // woken by close() itself, before any readiness
    CHECK(result.watched_after == 0);
    CHECK_FALSE(result.reader_returned);
    CHECK(result.reader_error == EBADF);
    if (const auto targets = kernel_epoll_targets()) {
        CHECK(targets->count(fd) == 0); // the kernel's view: deregistered while fd was still open
    }

    // The description is readable now, through the alias: nobody hears of it.
    const char byte = 'x';
    write_all(pair.second.get(), &byte, 1);
    REQUIRE(run_until_ended(kernel, {kernel.add_task(sleep_for(10ms))}));
    require_empty(kernel);
}

namespace {

Task<> read_wait_then_read(int fd, Log& log) {
    co_await corio::ReadWait{fd};
    char byte = 0;
    const ssize_t count = ::read(fd, &byte, 1);
    log.push_back(count < 0 ? "reader: errno " + std::to_string(errno) : "reader: read");
}

Task<> write_wait_then_write(int fd, Log& log) {
    co_await corio::WriteWait{fd};
    const char byte = 'y';
    const ssize_t count = ::send(fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    log.push_back(count < 0 ? "writer: errno " + std::to_string(errno) : "writer: wrote");
}

Task<> forget_then_close(Scheduler& kernel, UniqueFd& socket, Log& log) {
    const int fd = socket.get();
    const TaskId reader = co_await corio::NewTask(read_wait_then_read(fd, log));
    const TaskId writer = co_await corio::NewTask(write_wait_then_write(fd, log));
    co_await corio::Yield{}; // both wait: nothing to read, no room to write
    log.push_back("waiting: " + std::to_string(kernel.stats().waiting_on_fds));
    kernel.forget_fd(fd);
    socket.reset(); // closed before the woken tasks run: their next system call sees EBADF
    log.push_back("closed, waiting: " + std::to_string(kernel.stats().waiting_on_fds) +
                  ", watched: " + std::to_string(kernel.stats().watched_fds));
    (void)co_await corio::WaitTask{reader};
    (void)co_await corio::WaitTask{writer};
}

} // namespace

TEST_CASE("fd lifetime: forget_fd wakes the reader and the writer, whose next call sees EBADF",
          "[fd_lifetime]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    FdPair pair = socket_pair();
    fill_send_buffer(pair.first.get());
    Log log;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(forget_then_close(kernel, pair.first, log))}));
    const std::string ebadf = std::to_string(EBADF);
    CHECK(log == Log{"waiting: 2", "closed, waiting: 0, watched: 0", "reader: errno " + ebadf,
                     "writer: errno " + ebadf});
    if (const auto targets = kernel_epoll_targets()) {
        CHECK(targets->empty());
    }
    require_empty(kernel);
}

// ---- a new socket with the number of a closed one -------------------------------------------------

namespace {

Task<> recv_into_log(AsyncSocket& socket, Log& log, std::string who) {
    std::array<char, 64> buffer{};
    const std::size_t count = co_await socket.recv(buffer);
    log.push_back(who + ": " + std::string(buffer.data(), count));
}

// The old reader waits on `old_socket`; it is closed, and a new socket pair created at once takes
// the same number (the lowest free one) and has data waiting. The old reader must end with EBADF
// in the pass after the close, before the new data exists, and the new data must all reach the
// new socket's reader.
Task<> reuse_after_close(AsyncSocket& old_socket, Log& log, int& reused_number) {
    const int number = old_socket.fd();
    int error = 0;
    bool returned = false;
    const TaskId old_reader = co_await corio::NewTask(recv_once(old_socket, error, returned, &log));
    co_await corio::Yield{}; // the old reader waits now
    old_socket.close();
    FdPair fresh = socket_pair();
    reused_number = fresh.first.get() == number ? fresh.first.get() : fresh.second.get();
    if (reused_number != number) {
        log.push_back("the number was not reused");
        co_return;
    }
    UniqueFd& new_end = fresh.first.get() == number ? fresh.first : fresh.second;
    UniqueFd& new_peer = fresh.first.get() == number ? fresh.second : fresh.first;
    co_await corio::Yield{}; // the old reader, woken by close(), runs now
    write_all(new_peer.get(), "new data", 8);
    log.emplace_back("new data written");
    AsyncSocket new_socket(new_end.release());
    const TaskId new_reader = co_await corio::NewTask(recv_into_log(new_socket, log, "new reader"));
    (void)co_await corio::WaitTask{new_reader};
    (void)co_await corio::WaitTask{old_reader};
}

} // namespace

TEST_CASE("fd lifetime: a socket that reuses a closed socket's number never wakes the old reader",
          "[fd_lifetime]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    FdPair pair = socket_pair();
    AsyncSocket old_socket(pair.first.release());
    Log log;
    int reused_number = -1;
    REQUIRE(run_until_ended(kernel,
                            {kernel.add_task(reuse_after_close(old_socket, log, reused_number))}));
    CHECK(log == Log{"old reader: error " + std::to_string(EBADF), "new data written",
                     "new reader: new data"});
    require_empty(kernel);
}

namespace {

// A raw-fd waiter: it waits once on `fd`, then sleeps; the kernel must never resume it from that
// sleep through the fd (the sleep is long: only a kill ends it).
Task<> wait_once_then_sleep(int fd, Log& log) {
    co_await corio::ReadWait{fd};
    log.emplace_back("old waiter woke");
    co_await corio::Sleep{long_sleep};
    log.emplace_back("old waiter's sleep ended");
}

Task<> raw_reuse(Scheduler& kernel, UniqueFd& old_fd, Log& log) {
    const int number = old_fd.get();
    const TaskId old_waiter = co_await corio::NewTask(wait_once_then_sleep(number, log));
    co_await corio::Yield{};
    kernel.forget_fd(number);
    old_fd.reset();
    co_await corio::Yield{}; // the old waiter, woken by forget_fd, goes to sleep
    FdPair fresh = socket_pair();
    UniqueFd& new_end = fresh.first.get() == number ? fresh.first : fresh.second;
    if (new_end.get() != number) {
        log.emplace_back("the number was not reused");
        kernel.kill(old_waiter);
        co_return;
    }
    UniqueFd& new_peer = fresh.first.get() == number ? fresh.second : fresh.first;
    Log new_log;
    const TaskId new_waiter = co_await corio::NewTask(read_wait_then_read(number, new_log));
    co_await corio::Yield{}; // the new waiter waits on the same number
    write_all(new_peer.get(), "z", 1);
    log.emplace_back("new data written");
    (void)co_await corio::WaitTask{new_waiter};
    log.insert(log.end(), new_log.begin(), new_log.end());
    co_await corio::Sleep{10ms}; // time for a wrong wake-up of the old waiter to show
    kernel.forget_fd(number);
    kernel.kill(old_waiter);
}

} // namespace

TEST_CASE("fd lifetime: a raw ReadWait woken by forget_fd is not woken again through a reused "
          "number",
          "[fd_lifetime]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    FdPair pair = socket_pair();
    Log log;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(raw_reuse(kernel, pair.first, log))}));
    CHECK(log == Log{"old waiter woke", "new data written", "reader: read"});
    require_empty(kernel);
}

// ---- a socket and more than one Scheduler ---------------------------------------------------

namespace {

Task<> write_after_yield(int fd, std::string text) {
    co_await corio::Yield{}; // the reader waits first
    write_all(fd, text.data(), text.size());
}

// Receives one message on `socket` after waiting for it in this task's Scheduler (the writer runs
// only once the reader waits).
Task<> wait_and_recv(AsyncSocket& socket, int peer, std::string text, std::string& got) {
    const TaskId writer = co_await corio::NewTask(write_after_yield(peer, std::move(text)));
    std::array<char, 64> buffer{};
    const std::size_t count = co_await socket.recv(buffer);
    got.assign(buffer.data(), count);
    (void)co_await corio::WaitTask{writer};
}

// Waits for `stop` inside a task whose frame the caller owns: the frame outlives whoever awaits it.
Task<> wait_for_stop(const corio::StopEvent& stop, bool& woke) {
    co_await stop.wait();
    woke = true;
}

Task<> await_owned_elsewhere(Task<>& task) {
    co_await task; // an lvalue: `task`, not this frame, owns the awaited frame
}

} // namespace

// epoll: the Scheduler a socket last waited in kept its fd watched after the socket moved on, so
// a new socket with the same number was never registered there and never woke (a silent hang).
TEST_CASE("fd lifetime: a socket that waited in two Schedulers leaves no stale watch in the first",
          "[fd_lifetime]") {
    FrameLeakCheck leaks;
    Scheduler first;
    Scheduler second;
    FdPair pair = socket_pair();
    AsyncSocket socket(pair.first.release());
    const int number = socket.fd();
    std::string got;
    REQUIRE(run_until_ended(
        first, {first.add_task(wait_and_recv(socket, pair.second.get(), "one", got))}, 5s));
    CHECK(got == "one");
    REQUIRE(run_until_ended(
        second, {second.add_task(wait_and_recv(socket, pair.second.get(), "two", got))}, 5s));
    CHECK(got == "two");
    CHECK(first.stats().watched_fds == 0); // the first forgot the fd when the socket moved on
    socket.close();
    pair.second.reset();
    CHECK(second.stats().watched_fds == 0);

    FdPair fresh = socket_pair(); // the lowest free numbers: one end gets the closed one's
    UniqueFd& reused_end = fresh.first.get() == number ? fresh.first : fresh.second;
    UniqueFd& peer = fresh.first.get() == number ? fresh.second : fresh.first;
    REQUIRE(reused_end.get() == number);
    AsyncSocket reused(reused_end.release());
    got.clear();
    const bool ended = run_until_ended(
        first, {first.add_task(wait_and_recv(reused, peer.get(), "three", got))}, 2s);
    CHECK(ended);
    CHECK(got == "three");
    reused.close();
    require_empty(first);
    require_empty(second);
}

TEST_CASE("fd lifetime: a socket that outlives the Scheduler it waited in closes safely",
          "[fd_lifetime]") {
    FrameLeakCheck leaks;
    FdPair pair = socket_pair();
    AsyncSocket socket(pair.first.release());
    const int number = socket.fd();
    {
        auto kernel = std::make_unique<Scheduler>();
        std::string got;
        REQUIRE(run_until_ended(
            *kernel, {kernel->add_task(wait_and_recv(socket, pair.second.get(), "x", got))}, 5s));
        CHECK(got == "x");
    } // the Scheduler is gone; the socket, still open, must not reach into it
    CHECK(socket.is_open());
    socket.close();
    CHECK(::fcntl(number, F_GETFD) < 0);
}

TEST_CASE("fd lifetime: a StopEvent wait whose frame outlives its Scheduler is destroyed safely",
          "[fd_lifetime]") {
    FrameLeakCheck leaks;
    corio::StopEvent stop;
    bool woke = false;
    Task<> waiter = wait_for_stop(stop, woke);
    {
        auto kernel = std::make_unique<Scheduler>();
        kernel->add_task(await_owned_elsewhere(waiter));
        REQUIRE(run_until_ended(*kernel, {kernel->add_task(sleep_for(20ms))}, 1s));
        CHECK(kernel->stats().waiting_on_fds == 1); // the wait is registered in this Scheduler
    } // killed with the Scheduler: the awaiting task's frame goes, `waiter`'s frame stays
    waiter = Task<>(); // destroys the frame and its wait, which must not reach into the Scheduler
    CHECK_FALSE(woke);
}

// ---- error conditions ------------------------------------------------------------------------------

namespace {

// A UDP socket connected to a loopback port where nothing listens, having sent one datagram: the
// ICMP "port unreachable" that comes back sets a pending error (ECONNREFUSED) and nothing else,
// so a reader is woken by the error condition alone (EPOLLERR / POLLERR), not by data or hang-up.
UniqueFd udp_with_pending_error() {
    UniqueFd unused(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(unused);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(unused.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
    socklen_t size = sizeof address;
    REQUIRE(::getsockname(unused.get(), reinterpret_cast<sockaddr*>(&address), &size) == 0);
    unused.reset(); // now nothing listens on that port

    UniqueFd socket(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    REQUIRE(socket);
    REQUIRE(::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) ==
            0);
    REQUIRE(::send(socket.get(), "?", 1, 0) == 1);
    return socket;
}

Task<> read_wait_then_error(int fd, Log& log) {
    co_await corio::ReadWait{fd};
    int error = 0;
    socklen_t size = sizeof error;
    REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0);
    log.push_back("reader woke, SO_ERROR " + std::to_string(error));
}

} // namespace

TEST_CASE("fd lifetime: an error condition alone wakes a reader", "[fd_lifetime]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    const UniqueFd socket = udp_with_pending_error();
    Log log;
    REQUIRE(run_until_ended(kernel, {kernel.add_task(read_wait_then_error(socket.get(), log))},
                            5s));
    CHECK(log == Log{"reader woke, SO_ERROR " + std::to_string(ECONNREFUSED)});
    kernel.forget_fd(socket.get());
    require_empty(kernel);
}

#if defined(__linux__)
#define ERROR_SELECTOR_TEST_CASE(name)                                                             \
    TEMPLATE_TEST_CASE(name, "[fd_lifetime]", corio::EpollSelector, corio::PollSelector,             \
                       corio::UringSelector)
#else
#define ERROR_SELECTOR_TEST_CASE(name) TEMPLATE_TEST_CASE(name, "[fd_lifetime]", corio::PollSelector)
#endif

ERROR_SELECTOR_TEST_CASE("fd lifetime: a selector reports an error condition for both directions") {
    FrameLeakCheck leaks;
    TestType selector;
    const UniqueFd socket = udp_with_pending_error();
    selector.watch(socket.get(), corio::Interest::none, corio::Interest::read);
    std::vector<corio::Interest> reported;
    const auto deadline = Clock::now() + 2s;
    while (reported.empty() && Clock::now() < deadline) {
        selector.wait(100, [&](int fd, corio::Interest ready, corio::Interest /*disarmed*/) {
            CHECK(fd == socket.get());
            reported.push_back(ready);
        });
    }
    CHECK(reported == std::vector<corio::Interest>{corio::Interest::read_write});
    selector.watch(socket.get(), corio::Interest::read, corio::Interest::none);
}

// ---- signals while the loop waits --------------------------------------------------------------

namespace {

std::atomic<int> signals_handled{0};

void count_signal(int /*signal*/) {
    signals_handled.fetch_add(1);
}

// Installs a SIGUSR1 handler without SA_RESTART (so the selector's wait fails with EINTR) for
// as long as it lives.
class InterruptingHandler {
public:
    InterruptingHandler() {
        signals_handled.store(0);
        struct sigaction action {};
        action.sa_handler = &count_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = 0;
        REQUIRE(::sigaction(SIGUSR1, &action, &old_) == 0);
    }
    InterruptingHandler(const InterruptingHandler&) = delete;
    InterruptingHandler& operator=(const InterruptingHandler&) = delete;
    ~InterruptingHandler() { ::sigaction(SIGUSR1, &old_, nullptr); }

private:
    struct sigaction old_ {};
};

Task<> timed_sleep(Scheduler::Clock::duration length, Clock::duration& slept) {
    const auto start = Clock::now();
    co_await corio::Sleep{length};
    slept = Clock::now() - start;
}

} // namespace

// Signals reach the loop's thread every 40 ms during a 300 ms sleep. A selector that gave up on
// EINTR would only make the loop go round (the timer is checked against the clock), but one that
// retried with the whole timeout again would end the sleep 300 ms after the last signal.
TEST_CASE("fd lifetime: a sleep interrupted by signals neither ends early nor overshoots",
          "[fd_lifetime]") {
    FrameLeakCheck leaks;
    Scheduler kernel;
    const InterruptingHandler handler;
    constexpr auto length = 300ms;
    constexpr int signal_count = 6;
    Clock::duration slept{};
    const TaskId sleeper = kernel.add_task(timed_sleep(length, slept));

    const pthread_t loop_thread = ::pthread_self();
    std::atomic<bool> loop_done{false};
    std::thread interrupter([loop_thread, &loop_done] {
        for (int i = 0; i < signal_count && !loop_done.load(); ++i) {
            std::this_thread::sleep_for(40ms);
            ::pthread_kill(loop_thread, SIGUSR1);
        }
    });
    const bool finished = run_until_ended(kernel, {sleeper}, 5s);
    loop_done.store(true);
    interrupter.join();

    const auto slept_ms = std::chrono::duration_cast<std::chrono::milliseconds>(slept).count();
    INFO("slept " << slept_ms << " ms; " << signals_handled.load() << " signals handled");
    REQUIRE(finished);
    CHECK(signals_handled.load() >= 3); // a starved interrupter thread may come late for the rest
    CHECK(slept >= length);
    CHECK(slept < length + 200ms); // retried with the whole timeout, it would be >= 540 ms
    require_empty(kernel);
}
