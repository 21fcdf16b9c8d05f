// The selectors (epoll and poll) driven directly, in one binary whatever CORIO_FORCE_POLL says,
// and the Scheduler's lazy use of the selector it was built with.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <set>
#include <string>
#include <sys/socket.h>
#include <sys/time.h>
#include <system_error>
#include <time.h>
#include <unistd.h>
#include <vector>

#include <corio/scheduler.hpp>
#include <corio/backend/selector.hpp>
#include <corio/syscalls.hpp>
#include <corio/task.hpp>

#include "support/catch.hpp"
#include "support/epoll_info.hpp"
#include "support/fd.hpp"
#include "support/helpers.hpp"
#include "support/leak_check.hpp"

namespace Catch {
template <>
struct StringMaker<corio::Interest> {
    static std::string convert(corio::Interest interest) {
        switch (interest) {
        case corio::Interest::none:
            return "Interest::none";
        case corio::Interest::read:
            return "Interest::read";
        case corio::Interest::write:
            return "Interest::write";
        case corio::Interest::read_write:
            return "Interest::read_write";
        }
        return "Interest(" + std::to_string(static_cast<int>(interest)) + ")";
    }
};
} // namespace Catch

// One test case per backend, named after it ("... - corio::EpollSelector"). TestType is the
// selector.
#if defined(__linux__)
#define SELECTOR_TEST_CASE(name)                                                                   \
    TEMPLATE_TEST_CASE(name, "[selector]", corio::EpollSelector, corio::PollSelector, corio::UringSelector)
#else
#define SELECTOR_TEST_CASE(name) TEMPLATE_TEST_CASE(name, "[selector]", corio::PollSelector)
#endif

namespace {

using namespace std::chrono_literals;
using corio::Interest;
using corio::test::FdPair;
using corio::test::UniqueFd;
using Clock = std::chrono::steady_clock;

// Generous bound for a wait that should end because an fd is ready: a bug fails, it does not hang.
constexpr int ready_timeout_ms = 2000;

struct Event {
    int fd;
    Interest ready;
};

// One Event per fd. A one-shot backend (io_uring) reports each direction on its own and disarms
// it: its reports for one fd are merged, and what they disarmed is armed again, as the kernel's
// fd watches do, so that every backend is held to the same level-triggered expectations.
template <class Selector>
std::vector<Event> wait_events(Selector& selector, int timeout_ms) {
    std::vector<Event> events;
    std::vector<std::pair<int, Interest>> disarmed;
    const std::size_t count = selector.wait(timeout_ms, [&](int fd, Interest ready, Interest used_up) {
        if (used_up != Interest::none) {
            disarmed.emplace_back(fd, used_up);
        }
        for (Event& event : events) {
            if (event.fd == fd) {
                event.ready = event.ready | ready;
                return;
            }
        }
        events.push_back(Event{fd, ready});
    });
    CHECK(count >= events.size());
    for (auto [fd, direction] : disarmed) {
        selector.watch(fd, Interest::none, direction);
    }
    return events;
}

// What the events say about `fd` (Interest::none if nothing); an fd must appear at most once.
Interest ready_of(const std::vector<Event>& events, int fd) {
    Interest ready = Interest::none;
    int seen = 0;
    for (const Event& event : events) {
        if (event.fd == fd) {
            ready = event.ready;
            ++seen;
        }
    }
    CHECK(seen <= 1);
    return ready;
}

void write_byte(int fd) {
    const char byte = 'x';
    corio::test::write_all(fd, &byte, 1);
}

// Watches `fd` for `interest` and checks that nothing is reported yet, closes `other_end` and
// checks that the hang-up is reported as both readable and writable; then stops watching `fd`.
template <class Selector>
void check_hang_up(Selector& selector, int fd, Interest interest, UniqueFd& other_end) {
    selector.watch(fd, Interest::none, interest);
    CHECK(wait_events(selector, 0).empty());
    other_end.reset();
    CHECK(ready_of(wait_events(selector, ready_timeout_ms), fd) == Interest::read_write);
    selector.watch(fd, interest, Interest::none);
}

// ---- signals for the EINTR tests -------------------------------------------------------------

std::atomic<int> alarm_count{0};
std::atomic<int> alarm_write_fd{-1};

void on_alarm(int /*signal*/) {
    alarm_count.fetch_add(1);
    const int fd = alarm_write_fd.load();
    if (fd >= 0) {
        const char byte = 'a';
        [[maybe_unused]] const ssize_t written = ::write(fd, &byte, 1); // async-signal-safe
    }
}

// Installs a no-op-ish SIGALRM handler without SA_RESTART and fires it once after `delay`;
// restores everything on destruction.
class OneAlarm {
public:
    explicit OneAlarm(std::chrono::microseconds delay) {
        alarm_count.store(0);
        struct sigaction action {};
        action.sa_handler = &on_alarm;
        sigemptyset(&action.sa_mask);
        action.sa_flags = 0; // no SA_RESTART: the wait must see EINTR
        REQUIRE(::sigaction(SIGALRM, &action, &old_action_) == 0);
        itimerval timer{};
        timer.it_value.tv_sec = static_cast<time_t>(delay.count() / 1000000);
        timer.it_value.tv_usec = static_cast<suseconds_t>(delay.count() % 1000000);
        REQUIRE(::setitimer(ITIMER_REAL, &timer, nullptr) == 0);
    }
    OneAlarm(const OneAlarm&) = delete;
    OneAlarm& operator=(const OneAlarm&) = delete;
    ~OneAlarm() {
        itimerval off{};
        ::setitimer(ITIMER_REAL, &off, nullptr);
        ::sigaction(SIGALRM, &old_action_, nullptr);
        alarm_write_fd.store(-1);
    }

private:
    struct sigaction old_action_ {};
};

template <class Duration>
long long as_ms(Duration duration) {
    return static_cast<long long>(
        std::chrono::duration_cast<std::chrono::microseconds>(duration).count() / 1000);
}

} // namespace

// ---- the selector contract, for every backend ------------------------------------------------

SELECTOR_TEST_CASE("selector: read readiness on a socket pair") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;
    FdPair pair = corio::test::socket_pair();
    const int a = pair.first.get();
    selector.watch(a, Interest::none, Interest::read);

    CHECK(wait_events(selector, 0).empty()); // nothing written yet

    write_byte(pair.second.get());
    auto events = wait_events(selector, ready_timeout_ms);
    REQUIRE(events.size() == 1);
    CHECK(events[0].fd == a);
    CHECK(events[0].ready == Interest::read);

    // Level-triggered: unread data is reported again.
    events = wait_events(selector, ready_timeout_ms);
    REQUIRE(events.size() == 1);
    CHECK(ready_of(events, a) == Interest::read);

    CHECK(corio::test::drain(a) == 1);
    CHECK(wait_events(selector, 0).empty());
    selector.watch(a, Interest::read, Interest::none);
}

SELECTOR_TEST_CASE("selector: write readiness follows the send buffer") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;
    FdPair pair = corio::test::socket_pair();
    const int a = pair.first.get();
    selector.watch(a, Interest::none, Interest::write);

    auto events = wait_events(selector, ready_timeout_ms); // a fresh socket has room
    REQUIRE(events.size() == 1);
    CHECK(events[0].fd == a);
    CHECK(events[0].ready == Interest::write);

    CHECK(corio::test::fill_send_buffer(a) > 0);
    CHECK(wait_events(selector, 0).empty()); // full: not writable

    CHECK(corio::test::drain(pair.second.get()) > 0);
    events = wait_events(selector, ready_timeout_ms);
    REQUIRE(events.size() == 1);
    CHECK(ready_of(events, a) == Interest::write);
    selector.watch(a, Interest::write, Interest::none);
}

SELECTOR_TEST_CASE("selector: changing the interest takes effect") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;
    FdPair pair = corio::test::socket_pair();
    const int a = pair.first.get();
    write_byte(pair.second.get()); // `a` is now both readable and writable

    selector.watch(a, Interest::none, Interest::read);
    CHECK(ready_of(wait_events(selector, ready_timeout_ms), a) == Interest::read);

    selector.watch(a, Interest::read, Interest::read_write);
    CHECK(ready_of(wait_events(selector, ready_timeout_ms), a) == Interest::read_write);

    selector.watch(a, Interest::read_write, Interest::write);
    CHECK(ready_of(wait_events(selector, ready_timeout_ms), a) == Interest::write);

    selector.watch(a, Interest::write, Interest::none);
    CHECK(wait_events(selector, 0).empty()); // removed: no more events
    CHECK(wait_events(selector, 20).empty());

    // Watching again after a removal works like the first time.
    selector.watch(a, Interest::none, Interest::read);
    CHECK(ready_of(wait_events(selector, ready_timeout_ms), a) == Interest::read);
    selector.watch(a, Interest::read, Interest::none);
    CHECK(wait_events(selector, 0).empty());
}

SELECTOR_TEST_CASE("selector: same interest again is a no-op") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;
    FdPair pair = corio::test::socket_pair();
    const int a = pair.first.get();
    write_byte(pair.second.get());
    selector.watch(a, Interest::none, Interest::read);
    selector.watch(a, Interest::read, Interest::read);
    selector.watch(a, Interest::none, Interest::none); // nothing to do, must not throw
    auto events = wait_events(selector, ready_timeout_ms);
    REQUIRE(events.size() == 1);
    CHECK(ready_of(events, a) == Interest::read);
    selector.watch(a, Interest::read, Interest::none);
    CHECK(wait_events(selector, 0).empty());
}

SELECTOR_TEST_CASE("selector: removing one fd leaves the others watched") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;
    std::vector<FdPair> pairs;
    for (int i = 0; i < 4; ++i) {
        pairs.push_back(corio::test::socket_pair());
        write_byte(pairs.back().second.get());
        selector.watch(pairs.back().first.get(), Interest::none, Interest::read);
    }
    // Remove the first (a swap-remove in a dense array moves the last one into its place), then a
    // middle one, then the last one, checking after each that exactly the others are reported.
    std::set<int> watched;
    for (const FdPair& pair : pairs) {
        watched.insert(pair.first.get());
    }
    for (std::size_t index : {std::size_t{0}, std::size_t{2}, std::size_t{3}}) {
        const int removed = pairs[index].first.get();
        selector.watch(removed, Interest::read, Interest::none);
        watched.erase(removed);
        const auto events = wait_events(selector, ready_timeout_ms);
        std::set<int> reported;
        for (const Event& event : events) {
            CHECK(event.ready == Interest::read);
            reported.insert(event.fd);
        }
        CHECK(events.size() == reported.size());
        CHECK(reported == watched);
    }
    selector.watch(pairs[1].first.get(), Interest::read, Interest::none);
    CHECK(wait_events(selector, 0).empty());
}

SELECTOR_TEST_CASE("selector: hang-up is reported for both directions") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;

    SECTION("socket watched for read, peer closed") {
        FdPair pair = corio::test::socket_pair();
        check_hang_up(selector, pair.first.get(), Interest::read, pair.second);
    }
    SECTION("socket watched for write only, send buffer full, peer closed") {
        FdPair pair = corio::test::socket_pair();
        corio::test::fill_send_buffer(pair.first.get());
        check_hang_up(selector, pair.first.get(), Interest::write, pair.second);
    }
    SECTION("pipe read end, writer closed") {
        FdPair pipe = corio::test::make_pipe();
        check_hang_up(selector, pipe.first.get(), Interest::read, pipe.second);
    }
    SECTION("pipe write end, reader closed") {
        FdPair pipe = corio::test::make_pipe();
        corio::test::fill_send_buffer(pipe.second.get());
        check_hang_up(selector, pipe.second.get(), Interest::write, pipe.first);
    }
    CHECK(wait_events(selector, 0).empty());
}

SELECTOR_TEST_CASE("selector: a timeout with nothing ready is waited in full") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;

    SECTION("nothing watched") {
        const auto start = Clock::now();
        CHECK(wait_events(selector, 50).empty());
        CHECK(Clock::now() - start >= 50ms);
    }
    SECTION("an fd watched that does not become ready") {
        FdPair pair = corio::test::socket_pair();
        selector.watch(pair.first.get(), Interest::none, Interest::read);
        const auto start = Clock::now();
        CHECK(wait_events(selector, 50).empty());
        CHECK(Clock::now() - start >= 50ms);
        selector.watch(pair.first.get(), Interest::read, Interest::none);
    }
}

SELECTOR_TEST_CASE("selector: a wait interrupted by a signal goes on") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;
    FdPair pair = corio::test::socket_pair();
    selector.watch(pair.first.get(), Interest::none, Interest::read);

    SECTION("with nothing ready it still waits about its whole timeout") {
        constexpr int timeout_ms = 200;
        std::vector<Event> events;
        Clock::duration elapsed{};
        {
            OneAlarm alarm(20ms);
            const auto start = Clock::now();
            REQUIRE_NOTHROW(events = wait_events(selector, timeout_ms));
            elapsed = Clock::now() - start;
        }
        INFO("waited " << as_ms(elapsed) << " ms");
        REQUIRE(alarm_count.load() == 1); // the signal did arrive during the wait
        CHECK(events.empty());
        // Lower bound only; one millisecond of slack for the rounding of the remaining time.
        CHECK(elapsed >= std::chrono::milliseconds(timeout_ms - 1));
    }
    SECTION("an fd that becomes ready during the interruption is reported") {
        std::vector<Event> events;
        Clock::duration elapsed{};
        {
            alarm_write_fd.store(pair.second.get()); // the handler makes `first` readable
            OneAlarm alarm(20ms);
            const auto start = Clock::now();
            REQUIRE_NOTHROW(events = wait_events(selector, 10000));
            elapsed = Clock::now() - start;
        }
        REQUIRE(alarm_count.load() == 1);
        CHECK(elapsed >= 15ms);
        CHECK(elapsed < 5s);
        REQUIRE(events.size() == 1);
        CHECK(events[0].fd == pair.first.get());
        CHECK(events[0].ready == Interest::read);
    }
    selector.watch(pair.first.get(), Interest::read, Interest::none);
}

// The contract says an interrupted wait is retried with "the time that remains": a wait must not
// end before its timeout just because a signal came in between.
SELECTOR_TEST_CASE("selector: an interrupted wait never ends before its timeout") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;
    FdPair pair = corio::test::socket_pair();
    selector.watch(pair.first.get(), Interest::none, Interest::read);
    constexpr int timeout_ms = 100;
    int early = 0;
    Clock::duration shortest = Clock::duration::max();
    for (int attempt = 0; attempt < 5; ++attempt) {
        // Interrupt half-way through a millisecond, where rounding down the remaining time shows.
        OneAlarm alarm(20ms + 500us);
        const auto start = Clock::now();
        CHECK(wait_events(selector, timeout_ms).empty());
        const auto elapsed = Clock::now() - start;
        REQUIRE(alarm_count.load() == 1);
        shortest = std::min(shortest, elapsed);
        early += elapsed < std::chrono::milliseconds(timeout_ms) ? 1 : 0;
    }
    INFO(
        "shortest wait: " << std::chrono::duration_cast<std::chrono::microseconds>(shortest).count()
                          << " us of " << timeout_ms << " ms");
    CHECK(early == 0);
    selector.watch(pair.first.get(), Interest::read, Interest::none);
}

// The budget a selector waits with: what it hands to epoll_wait/poll must not make a wait end
// before its timeout (a wait that ends early makes the Scheduler spin until its timer is due).
TEST_CASE("WaitBudget: the remaining time never undercuts the timeout", "[selector]") {
    corio::test::FrameLeakCheck leaks;
    for (int timeout_ms : {1, 2, 50, 1000}) {
        INFO("timeout " << timeout_ms << " ms");
        const auto before = Clock::now();
        const corio::detail::WaitBudget budget(timeout_ms);
        const int remaining = budget.remaining_ms();
        const auto after = Clock::now();
        // A wait of `remaining` ms that starts at `after` must not end before `before + timeout`.
        const auto shortfall = std::chrono::duration_cast<std::chrono::nanoseconds>(
            (before + std::chrono::milliseconds(timeout_ms)) -
            (after + std::chrono::milliseconds(remaining)));
        INFO("remaining_ms() = " << remaining << " right after construction");
        CHECK(shortfall.count() <= 0);
        CHECK(remaining <= timeout_ms);
    }
    CHECK(corio::detail::WaitBudget(0).remaining_ms() == 0);   // a poll stays a poll
    CHECK(corio::detail::WaitBudget(-1).remaining_ms() == -1); // unbounded stays unbounded

    const corio::detail::WaitBudget spent(1);
    const auto start = Clock::now();
    while (Clock::now() - start < 3ms) { // bounded busy wait: the budget is used up
    }
    CHECK(spent.remaining_ms() == 0);
}

SELECTOR_TEST_CASE("selector: many fds, each reported once") {
    corio::test::FrameLeakCheck leaks;
    constexpr std::size_t count = 200;
    TestType selector;
    std::vector<FdPair> pairs;
    pairs.reserve(count);
    std::map<int, int> reports; // fd -> how many times it was reported
    for (std::size_t i = 0; i < count; ++i) {
        pairs.push_back(corio::test::socket_pair());
        write_byte(pairs.back().second.get());
        selector.watch(pairs.back().first.get(), Interest::none, Interest::read);
        reports[pairs.back().first.get()] = 0;
    }
    REQUIRE(reports.size() == count);

    // A backend may hand them out in batches: stop watching each fd as soon as it is reported, so
    // that a level-triggered backend has no reason to report it twice.
    std::set<int> unwatched;
    for (int round = 0; round < 64 && unwatched.size() < count; ++round) {
        const auto events = wait_events(selector, ready_timeout_ms);
        REQUIRE_FALSE(events.empty());
        for (const Event& event : events) {
            auto found = reports.find(event.fd);
            REQUIRE(found != reports.end());
            CHECK(event.ready == Interest::read);
            ++found->second;
        }
        for (const Event& event : events) {
            if (unwatched.insert(event.fd).second) {
                selector.watch(event.fd, Interest::read, Interest::none);
            }
        }
    }
    CHECK(unwatched.size() == count);
    for (const auto& [fd, times] : reports) {
        INFO("fd " << fd);
        CHECK(times == 1);
    }
    CHECK(wait_events(selector, 0).empty());
}

SELECTOR_TEST_CASE("selector: watching a negative fd throws") {
    corio::test::FrameLeakCheck leaks;
    TestType selector;
    try {
        selector.watch(-1, Interest::none, Interest::read);
        FAIL("watch(-1) did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::bad_file_descriptor);
    }
    CHECK(wait_events(selector, 0).empty()); // and it left nothing behind
}

#if defined(__linux__)
TEST_CASE("EpollSelector: watching a regular file throws EPERM", "[selector]") {
    corio::test::FrameLeakCheck leaks;
    corio::EpollSelector selector;
    std::FILE* file = std::tmpfile();
    REQUIRE(file != nullptr);
    try {
        selector.watch(::fileno(file), Interest::none, Interest::read);
        FAIL("epoll accepted a regular file");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::operation_not_permitted);
    }
    std::fclose(file);
    CHECK(wait_events(selector, 0).empty());
}

TEST_CASE("EpollSelector: recovers when its idea of an fd is stale", "[selector]") {
    corio::test::FrameLeakCheck leaks;
    corio::EpollSelector selector;

    SECTION("added twice (EEXIST): the second call modifies") {
        FdPair pair = corio::test::socket_pair();
        const int a = pair.first.get();
        write_byte(pair.second.get());
        selector.watch(a, Interest::none, Interest::read);
        REQUIRE_NOTHROW(selector.watch(a, Interest::none, Interest::write));
        CHECK(ready_of(wait_events(selector, ready_timeout_ms), a) == Interest::write);
        selector.watch(a, Interest::write, Interest::none);
    }
    SECTION("closed behind its back and the number reused (ENOENT): modify becomes add") {
        FdPair old_pair = corio::test::socket_pair();
        const int number = old_pair.first.get();
        selector.watch(number, Interest::none, Interest::read);
        old_pair = FdPair{}; // closing drops it from the epoll set
        FdPair pair = corio::test::socket_pair();
        const int reused = pair.first.get() == number ? pair.first.get() : pair.second.get();
        REQUIRE(reused == number); // the lowest free numbers come back
        const int peer = reused == pair.first.get() ? pair.second.get() : pair.first.get();
        write_byte(peer);
        REQUIRE_NOTHROW(selector.watch(number, Interest::read, Interest::read_write));
        CHECK(ready_of(wait_events(selector, ready_timeout_ms), number) == Interest::read_write);
        selector.watch(number, Interest::read_write, Interest::none);
    }
    SECTION("removing an fd that was closed already is fine") {
        FdPair pair = corio::test::socket_pair();
        const int a = pair.first.get();
        selector.watch(a, Interest::none, Interest::read);
        pair.first.reset();
        REQUIRE_NOTHROW(selector.watch(a, Interest::read, Interest::none));
    }
    CHECK(wait_events(selector, 0).empty());
}
#endif

TEST_CASE("PollSelector: a regular file is always ready", "[selector]") {
    corio::test::FrameLeakCheck leaks;
    corio::PollSelector selector;
    std::FILE* file = std::tmpfile();
    REQUIRE(file != nullptr);
    const int fd = ::fileno(file);
    selector.watch(fd, Interest::none, Interest::read_write);
    CHECK(ready_of(wait_events(selector, ready_timeout_ms), fd) == Interest::read_write);
    selector.watch(fd, Interest::read_write, Interest::none);
    std::fclose(file);
    CHECK(wait_events(selector, 0).empty());
}

// ---- the Scheduler's lazy use of its selector ------------------------------------------------

namespace {

corio::Task<> stop_after(corio::Scheduler& kernel, std::chrono::milliseconds limit) {
    co_await corio::Sleep{limit};
    FAIL_CHECK("watchdog: the test did not finish within " << limit.count() << " ms");
    kernel.stop();
}

// Runs `task` to completion, or fails (and stops the loop) after `limit` instead of hanging.
void run_bounded(corio::Scheduler& kernel, corio::Task<> task,
                 std::chrono::milliseconds limit = 10s) {
    const corio::TaskId dog = kernel.add_task(stop_after(kernel, limit));
    try {
        kernel.run_until_complete(std::move(task));
    } catch (...) {
        kernel.kill(dog);
        throw;
    }
    kernel.kill(dog);
}

corio::Task<> read_twice(int fd, int& reads) {
    for (int i = 0; i < 2; ++i) {
        co_await corio::ReadWait{fd};
        char byte = 0;
        const ssize_t count = ::read(fd, &byte, 1);
        CHECK(count == 1);
        reads += count == 1 ? 1 : 0;
    }
}

corio::Task<> write_twice(int fd) {
    for (int i = 0; i < 2; ++i) {
        co_await corio::Sleep{2ms}; // the reader is waiting by now
        write_byte(fd);
    }
}

corio::Task<> read_then_write(int read_fd, int write_fd, int& reads) {
    const corio::TaskId reader = co_await corio::NewTask(read_twice(read_fd, reads));
    const corio::TaskId writer = co_await corio::NewTask(write_twice(write_fd));
    (void)co_await corio::WaitTask(writer);
    const corio::TaskExit exit = co_await corio::WaitTask(reader);
    CHECK(exit.completed());
}

corio::Task<> wait_for_read(int fd, bool& woke) {
    co_await corio::ReadWait{fd};
    woke = true;
}

struct ForgetSeen {
    corio::Scheduler::Stats before{};
    corio::Scheduler::Stats after{};
};

corio::Task<> forget_while_waited(corio::Scheduler& kernel, int fd, bool& woke, ForgetSeen& seen) {
    const corio::TaskId waiter = co_await corio::NewTask(wait_for_read(fd, woke));
    co_await corio::Sleep{2ms}; // the waiter is waiting on fd now
    seen.before = kernel.stats();
    kernel.forget_fd(fd);
    seen.after = kernel.stats();
    const corio::TaskExit exit = co_await corio::WaitTask(waiter);
    CHECK(exit.completed());
}

} // namespace

namespace {
// io_uring's readiness is one-shot: a report uses the fd's watch up (see uring_selector.hpp).
bool one_shot(const corio::Scheduler& kernel) { return kernel.backend() == corio::Backend::io_uring; }
} // namespace

TEST_CASE("Scheduler: an fd stays watched between waits and forget_fd drops it", "[selector]") {
    corio::test::FrameLeakCheck leaks;
    corio::Scheduler kernel;
    FdPair pair = corio::test::socket_pair();
    const int fd = pair.first.get();

    int reads = 0;
    run_bounded(kernel, read_then_write(fd, pair.second.get(), reads));
    CHECK(reads == 2);
    // Waited on twice, watched once, and still watched now that nobody waits (lazy). io_uring's
    // polls are one-shot: the report that woke the reader used its watch up (arming costs no
    // system call there).
    CHECK(kernel.stats().watched_fds == (one_shot(kernel) ? 0U : 1U));
    CHECK(kernel.stats().waiting_on_fds == 0);
    if (const auto targets = corio::test::kernel_epoll_targets()) {
        CHECK(*targets == std::set<int>{fd}); // the kernel's view: still in the epoll set
    }

    bool woke = false;
    ForgetSeen seen;
    run_bounded(kernel, forget_while_waited(kernel, fd, woke, seen));
    CHECK(seen.before.watched_fds == 1);
    CHECK(seen.before.waiting_on_fds == 1);
    CHECK(seen.after.watched_fds == 0);
    CHECK(seen.after.waiting_on_fds == 0);
    CHECK(seen.after.ready >= 1); // the waiter was made ready by forget_fd itself
    CHECK(woke);                  // although nothing was ever written
    CHECK(kernel.stats().watched_fds == 0);
    if (const auto targets = corio::test::kernel_epoll_targets()) {
        CHECK(targets->empty());
    }
    corio::test::require_empty(kernel);
}

namespace {

corio::Task<> sleep_repeatedly(int times, std::chrono::milliseconds length) {
    for (int i = 0; i < times; ++i) {
        co_await corio::Sleep{length};
    }
}

std::chrono::nanoseconds process_cpu_time() {
    timespec now{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
}

} // namespace

// A sleeping task leaves the loop blocked in the selector: if the selector returned before its
// timeout, the loop would come round with a timeout of 0 and spin until the timer is due.
TEST_CASE("Scheduler: a sleeping task does not make the loop spin", "[selector]") {
    corio::test::FrameLeakCheck leaks;
    corio::Scheduler kernel;
    const auto wall_start = Clock::now();
    const auto cpu_start = process_cpu_time();
    run_bounded(kernel, sleep_repeatedly(100, 1ms));
    const auto cpu = process_cpu_time() - cpu_start;
    const auto wall = Clock::now() - wall_start;
    INFO("100 sleeps of 1 ms: " << as_ms(wall) << " ms of wall time, " << as_ms(cpu)
                                << " ms of CPU time");
    CHECK(wall >= 100ms);
    CHECK(cpu < wall / 4); // mostly asleep, not busy-waiting
    corio::test::require_empty(kernel);
}

TEST_CASE("Scheduler: readiness nobody waits for drops the watch", "[selector]") {
    corio::test::FrameLeakCheck leaks;
    corio::Scheduler kernel;
    FdPair pair = corio::test::socket_pair();
    const int fd = pair.first.get();

    int reads = 0;
    run_bounded(kernel, read_then_write(fd, pair.second.get(), reads));
    REQUIRE(reads == 2);
    REQUIRE(kernel.stats().watched_fds == (one_shot(kernel) ? 0U : 1U));

    // Readable while nobody waits: the next look of the selector drops the interest.
    write_byte(pair.second.get());
    run_bounded(kernel, corio::test::sleep_for(10ms));
    CHECK(kernel.stats().watched_fds == 0);
    if (const auto targets = corio::test::kernel_epoll_targets()) {
        CHECK(targets->empty());
    }

    // And a later wait watches it again.
    bool woke = false;
    run_bounded(kernel, wait_for_read(fd, woke));
    CHECK(woke);
    CHECK(kernel.stats().watched_fds == (one_shot(kernel) ? 0U : 1U));

    kernel.forget_fd(fd);
    corio::test::require_empty(kernel);
}

namespace {

corio::Task<> wait_for_write(int fd, bool& woke) {
    co_await corio::WriteWait{fd};
    woke = true;
}

corio::Task<> hang_up_while_waited(corio::Scheduler& kernel, int fd, UniqueFd& peer, bool& reader,
                                   bool& writer, std::size_t& waiting) {
    const corio::TaskId read_task = co_await corio::NewTask(wait_for_read(fd, reader));
    const corio::TaskId write_task = co_await corio::NewTask(wait_for_write(fd, writer));
    co_await corio::Sleep{5ms}; // both wait now: nothing to read, no room to write
    waiting = kernel.stats().waiting_on_fds;
    peer.reset(); // hang-up
    (void)co_await corio::WaitTask(read_task);
    (void)co_await corio::WaitTask(write_task);
}

corio::Task<> wait_for_read_or_error(int fd, int& error, bool& returned) {
    try {
        co_await corio::ReadWait{fd};
        returned = true;
    } catch (const std::system_error& e) {
        error = e.code().value();
    }
}

} // namespace

TEST_CASE("Scheduler: a hang-up wakes the reader and the writer of an fd", "[selector]") {
    corio::test::FrameLeakCheck leaks;
    corio::Scheduler kernel;
    FdPair pair = corio::test::socket_pair();
    const int fd = pair.first.get();
    corio::test::fill_send_buffer(fd);
    bool reader = false;
    bool writer = false;
    std::size_t waiting = 0;
    run_bounded(kernel, hang_up_while_waited(kernel, fd, pair.second, reader, writer, waiting));
    CHECK(waiting == 2);
    CHECK(reader);
    CHECK(writer);
    CHECK(kernel.stats().waiting_on_fds == 0);
    kernel.forget_fd(fd);
    corio::test::require_empty(kernel);
}

TEST_CASE("Scheduler: an fd the selector refuses fails the waiting task, not the kernel",
          "[selector]") {
    corio::test::FrameLeakCheck leaks;
    corio::Scheduler kernel;
    std::FILE* file = std::tmpfile();
    REQUIRE(file != nullptr);
    const int fd = ::fileno(file);
    int error = 0;
    bool returned = false;
    run_bounded(kernel, wait_for_read_or_error(fd, error, returned));
    if (kernel.backend() == corio::Backend::epoll) {
        CHECK(error == EPERM); // epoll does not take regular files
        CHECK_FALSE(returned);
        CHECK(kernel.stats().watched_fds == 0);
    } else {
        CHECK(error == 0); // poll (and io_uring's poll) say a regular file is always ready
        CHECK(returned);
    }
    CHECK(kernel.stats().waiting_on_fds == 0);
    kernel.forget_fd(fd);
    std::fclose(file);

    // The kernel goes on working.
    FdPair pair = corio::test::socket_pair();
    write_byte(pair.second.get());
    bool woke = false;
    run_bounded(kernel, wait_for_read(pair.first.get(), woke));
    CHECK(woke);
    kernel.forget_fd(pair.first.get());
    corio::test::require_empty(kernel);
}

#if defined(__linux__)
namespace {

struct Received {
    std::int32_t result;
    bool more;
};

// Waits once on `selector`, collecting receive completions (their buffers go back at once).
std::vector<Received> collect_received(corio::UringSelector& selector, int timeout_ms) {
    std::vector<Received> received;
    selector.wait(timeout_ms, [](int, Interest, Interest) {},
                  [&](int, std::int32_t result, int id, bool more) {
                      if (id >= 0) {
                          selector.recycle(id);
                      }
                      received.push_back({result, more});
                  });
    return received;
}

} // namespace

// A multishot receive stays armed: each write brings a completion that says more will come. A
// plain one (what a kernel before 6.0 gets) completes once and is over.
TEST_CASE("UringSelector: a multishot receive completes for each piece, a plain one once",
          "[selector]") {
    const bool multishot = GENERATE(true, false);
    CAPTURE(multishot);
    corio::UringSelector selector;
    selector.set_multishot(multishot);
    REQUIRE(selector.start_lending());
    FdPair pair = corio::test::socket_pair();
    selector.receive(pair.first.get());
    for (const char* piece : {"one", "two"}) {
        REQUIRE(::write(pair.second.get(), piece, 3) == 3);
        const std::vector<Received> received = collect_received(selector, multishot ? ready_timeout_ms : 50);
        if (multishot || std::string(piece) == "one") {
            REQUIRE(received.size() == 1);
            CHECK(received[0].result == 3);
            CHECK(received[0].more == multishot);
        } else {
            CHECK(received.empty()); // nothing armed any more: the bytes wait in the socket
        }
    }
    if (multishot) {
        selector.cancel_receive(pair.first.get());
    }
}
#endif
