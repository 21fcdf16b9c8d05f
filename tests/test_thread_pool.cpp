// Tests for corio/thread_pool.hpp on its own (no Scheduler): FIFO order, the bound on threads,
// lazy start, shutdown (running jobs finish, queued ones never run), misuse, and the signal mask
// of the workers. Assertions stay on the main thread: workers only record into shared state.
#include <corio/thread_pool.hpp> // first: the header stands alone

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/catch.hpp"

namespace {

using namespace std::chrono_literals;
using corio::ThreadPool;

// A gate that jobs wait at until the test opens it (bounded: a stuck test fails, never hangs).
class Gate {
public:
    void open() {
        {
            std::lock_guard lock(mutex_);
            open_ = true;
        }
        opened_.notify_all();
    }
    bool pass() {
        std::unique_lock lock(mutex_);
        return opened_.wait_for(lock, 10s, [this] { return open_; });
    }

private:
    std::mutex mutex_;
    std::condition_variable opened_;
    bool open_ = false;
};

// Spins (with sleeps) until `done()` or 10 s; gives whether it got there.
template <class Predicate>
bool eventually(Predicate done) {
    const auto limit = std::chrono::steady_clock::now() + 10s;
    while (!done()) {
        if (std::chrono::steady_clock::now() > limit) {
            return false;
        }
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

} // namespace

TEST_CASE("ThreadPool: one worker runs jobs in the order they were submitted", "[thread_pool]") {
    std::mutex mutex;
    std::vector<int> order;
    {
        ThreadPool pool(1);
        for (int i = 0; i < 100; ++i) {
            pool.submit([&, i]() noexcept {
                std::lock_guard lock(mutex);
                order.push_back(i);
            });
        }
        REQUIRE(eventually([&] {
            std::lock_guard lock(mutex);
            return order.size() == 100;
        }));
    }
    for (int i = 0; i < 100; ++i) {
        CHECK(order[static_cast<std::size_t>(i)] == i);
    }
}

TEST_CASE("ThreadPool: starts no thread before the first job, then never more than its bound",
          "[thread_pool]") {
    ThreadPool pool(3);
    CHECK(pool.max_threads() == 3);
    CHECK(pool.thread_count() == 0);

    Gate gate;
    std::atomic<int> running{0};
    std::atomic<int> most_at_once{0};
    std::atomic<int> finished{0};
    for (int i = 0; i < 10; ++i) {
        pool.submit([&]() noexcept {
            const int now = ++running;
            int seen = most_at_once.load();
            while (now > seen && !most_at_once.compare_exchange_weak(seen, now)) {
            }
            static_cast<void>(gate.pass());
            --running;
            ++finished;
        });
    }
    REQUIRE(eventually([&] { return running.load() == 3; })); // 3 run, 7 wait for a worker
    CHECK(pool.thread_count() == 3);
    CHECK(pool.queued() == 7);
    gate.open();
    REQUIRE(eventually([&] { return finished.load() == 10; }));
    CHECK(most_at_once.load() == 3);
    CHECK(pool.thread_count() == 3);
}

TEST_CASE("ThreadPool: shutdown lets running jobs finish and never runs the queued ones",
          "[thread_pool]") {
    ThreadPool pool(1);
    Gate gate;
    std::atomic<bool> first_started{false};
    std::atomic<bool> first_finished{false};
    std::atomic<int> later_ran{0};
    pool.submit([&]() noexcept {
        first_started = true;
        static_cast<void>(gate.pass());
        first_finished = true;
    });
    for (int i = 0; i < 5; ++i) {
        pool.submit([&]() noexcept { ++later_ran; });
    }
    REQUIRE(eventually([&] { return first_started.load(); }));
    std::thread opener([&] {
        std::this_thread::sleep_for(50ms);
        gate.open();
    });
    pool.shutdown(); // joins: returns only once the running job is done
    opener.join();
    CHECK(first_finished.load());
    CHECK(later_ran.load() == 0);
    CHECK(pool.thread_count() == 0);
    CHECK(pool.queued() == 0);
    pool.shutdown(); // idempotent
}

TEST_CASE("ThreadPool: submit after shutdown and a pool of 0 threads are errors", "[thread_pool]") {
    CHECK_THROWS_AS(ThreadPool(0), std::invalid_argument);
    ThreadPool pool(2);
    pool.shutdown();
    CHECK_THROWS_AS(pool.submit([]() noexcept {}), std::logic_error);
}

TEST_CASE("ThreadPool: the default bound is between 4 and 32", "[thread_pool]") {
    const std::size_t bound = ThreadPool::default_thread_count();
    CHECK(bound >= 4);
    CHECK(bound <= 32);
    CHECK(ThreadPool().max_threads() == bound);
}

TEST_CASE("ThreadPool: workers block every signal, the submitting thread's mask is unchanged",
          "[thread_pool]") {
    sigset_t before;
    ::pthread_sigmask(SIG_SETMASK, nullptr, &before);
    const bool int_blocked_before = ::sigismember(&before, SIGINT) == 1;

    std::atomic<int> blocked{-1}; // in the worker: 1 if SIGINT, SIGTERM and SIGUSR1 are blocked
    {
        ThreadPool pool(1);
        pool.submit([&]() noexcept {
            sigset_t mask;
            ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
            blocked = ::sigismember(&mask, SIGINT) == 1 && ::sigismember(&mask, SIGTERM) == 1 &&
                      ::sigismember(&mask, SIGUSR1) == 1;
        });
        REQUIRE(eventually([&] { return blocked.load() != -1; }));
    }
    CHECK(blocked.load() == 1);

    sigset_t after;
    ::pthread_sigmask(SIG_SETMASK, nullptr, &after);
    CHECK((::sigismember(&after, SIGINT) == 1) == int_blocked_before);
}
