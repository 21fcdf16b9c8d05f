// micro - microbenchmarks of corio's kernel paths, with Asio's equivalents as a reference.
//
//     micro [--benchmark_filter=REGEX] [--benchmark_min_time=SECONDS]   (Google Benchmark)
//
// Built with Google Benchmark when CMake finds it (Debian: libbenchmark-dev), else with the plain
// timer harness in micro_harness.hpp. Only corio's public API is used. Every "per iteration" is
// one of the operations below, driven from inside a corio task (the benchmark loop runs in the
// coroutine: `for (auto _ : state)` in a Task).
//
// corio:
//   Yield                    one task does `co_await Yield{}` in a loop: one full pass of the
//                            loop per iteration (the selector is skipped: no fd is watched)
//   Yield_WatchedFd          the same while another task waits on an idle socket: every pass now
//                            also polls epoll with timeout 0 (what a server's yield costs)
//   SpawnComplete            `co_await NewTask{trivial()}` with a Yield every 256 spawns: frame
//                            allocation, task record, first resume, completion, frame release
//   AddTaskRun               `kernel.add_task(trivial()); kernel.run();` from outside the loop
//   AwaitChild               `co_await child(x)` where the child finishes without suspending
//                            (the common case: a recv that had data): frame alloc + start + free
//   AwaitFinishedTask        `co_await task` on a Task that has already finished: just the value
//   ReadWaitPingPong         two tasks bounce one byte over a socketpair; each waits with
//                            `co_await ReadWait{fd}` then reads: one round trip per iteration
//                            (2 writes, 2 reads, 2 epoll_waits, 2 resumes)
//   TimerArmCancel/N         spawn a task that sleeps for an hour, Yield (it runs and arms its
//                            timer), `co_await KillTask{id}` (timer removed, frame destroyed); N
//                            other timers are armed in the heap meanwhile
//   SpawnYieldKill_NoTimer   the same without the timer (the victim yields forever instead): the
//                            difference to TimerArmCancel/0 is the cost of arm + cancel itself
//   SleepExpire              `co_await Sleep{1ns}` in a loop: the timer is armed, already past
//                            when the loop looks, expires and wakes the task (two clock reads)
//   Yield_On, SpawnComplete_On  Yield and SpawnComplete with the optional introspection on:
//                            `record_wait_times(true)` (a clock read each time a task begins to
//                            wait) and `warn_of_stalls(1s)` (two clock reads per resumption; 1 s
//                            is never reached here, so nothing is reported): what turning them on
//                            costs, against the plain ones in the same binary
//   Yield_WaitTimes, Yield_StallWatch  Yield with only one of the two on
// Asio (when found), the same shapes:
//   Asio_PostRoundTrip       a handler that posts itself again (plain callbacks, no coroutine)
//   Asio_CoPostYield         `co_await asio::post(ex, use_awaitable)` in a loop (Yield's equivalent)
//   Asio_CoSpawn             `co_spawn(ex, trivial(), detached)`, a post every 256 spawns
//   Asio_AwaitChild          `co_await child(x)` on an asio::awaitable<int>
//   Asio_WaitPingPong        socketpair ping-pong with `async_wait(wait_read)` (ReadWait's equivalent)
//   Asio_TimerArmCancel      steady_timer: expires_after(1h), async_wait, cancel, run the handler
#include <corio/corio.hpp>

#if defined(CORIO_BENCH_NO_GBENCH)
#include "micro_harness.hpp"
#else
#include <benchmark/benchmark.h>
#endif

#if defined(CORIO_BENCH_HAVE_ASIO)
#include <asio.hpp>
#endif

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------
// helpers

// A non-blocking AF_UNIX socketpair, closed when it goes out of scope.
class SocketPair {
public:
    SocketPair() {
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds_) < 0) {
            throw std::system_error(errno, std::system_category(), "socketpair");
        }
    }
    SocketPair(const SocketPair&) = delete;
    SocketPair& operator=(const SocketPair&) = delete;
    ~SocketPair() {
        ::close(fds_[0]);
        ::close(fds_[1]);
    }
    [[nodiscard]] int first() const noexcept { return fds_[0]; }
    [[nodiscard]] int second() const noexcept { return fds_[1]; }

private:
    int fds_[2] = {-1, -1};
};

void write_byte(int fd) {
    const char byte = 'x';
    while (::write(fd, &byte, 1) != 1) {
        if (errno != EINTR) {
            throw std::system_error(errno, std::system_category(), "write");
        }
    }
}

// 1 if a byte was read, 0 at end of stream, -1 if none is there yet.
int read_byte(int fd) {
    char byte = 0;
    for (;;) {
        const ssize_t n = ::read(fd, &byte, 1);
        if (n >= 0) {
            return static_cast<int>(n);
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return -1;
        }
        if (errno != EINTR) {
            throw std::system_error(errno, std::system_category(), "read");
        }
    }
}

corio::Task<> trivial() { co_return; }

corio::Task<int> child_value(int x) { co_return x + 1; }

corio::Task<> wait_forever(int fd) {
    for (;;) {
        co_await corio::ReadWait{fd};
    }
}

corio::Task<> sleep_an_hour() { co_await corio::Sleep{std::chrono::hours(1)}; }

corio::Task<> yield_forever() {
    for (;;) {
        co_await corio::Yield{};
    }
}

// ---------------------------------------------------------------------------------------------
// corio

corio::Task<> yield_loop(benchmark::State& state) {
    for (auto _ : state) {
        co_await corio::Yield{};
    }
}

void Yield(benchmark::State& state) {
    corio::Scheduler kernel;
    kernel.run_until_complete(yield_loop(state));
}
BENCHMARK(Yield);

// The optional introspection of corio::Scheduler, both parts on (off by default).
void introspection_on(corio::Scheduler& kernel) {
    kernel.record_wait_times(true);
    kernel.warn_of_stalls(std::chrono::seconds(1));
}

void Yield_On(benchmark::State& state) {
    corio::Scheduler kernel;
    introspection_on(kernel);
    kernel.run_until_complete(yield_loop(state));
}
BENCHMARK(Yield_On);

void Yield_WaitTimes(benchmark::State& state) {
    corio::Scheduler kernel;
    kernel.record_wait_times(true);
    kernel.run_until_complete(yield_loop(state));
}
BENCHMARK(Yield_WaitTimes);

void Yield_StallWatch(benchmark::State& state) {
    corio::Scheduler kernel;
    kernel.warn_of_stalls(std::chrono::seconds(1));
    kernel.run_until_complete(yield_loop(state));
}
BENCHMARK(Yield_StallWatch);

void Yield_WatchedFd(benchmark::State& state) {
    SocketPair pair; // outlives the kernel
    corio::Scheduler kernel;
    kernel.add_task(wait_forever(pair.first()));
    kernel.run_until_complete(yield_loop(state));
    kernel.forget_fd(pair.first());
}
BENCHMARK(Yield_WatchedFd);

corio::Task<> spawn_loop(benchmark::State& state) {
    std::uint32_t spawned = 0;
    for (auto _ : state) {
        co_await corio::NewTask{trivial()};
        if (++spawned % 256 == 0) {
            co_await corio::Yield{}; // the children run (and complete) in the next pass
        }
    }
    co_await corio::Yield{};
}

void SpawnComplete(benchmark::State& state) {
    corio::Scheduler kernel;
    kernel.run_until_complete(spawn_loop(state));
    if (kernel.task_count() != 0) {
        state.SkipWithError("tasks left over");
    }
}
BENCHMARK(SpawnComplete);

void SpawnComplete_On(benchmark::State& state) {
    corio::Scheduler kernel;
    introspection_on(kernel);
    kernel.run_until_complete(spawn_loop(state));
    if (kernel.task_count() != 0) {
        state.SkipWithError("tasks left over");
    }
}
BENCHMARK(SpawnComplete_On);

void AddTaskRun(benchmark::State& state) {
    corio::Scheduler kernel;
    for (auto _ : state) {
        kernel.add_task(trivial());
        kernel.run();
    }
}
BENCHMARK(AddTaskRun);

corio::Task<> await_child_loop(benchmark::State& state) {
    int sum = 0;
    for (auto _ : state) {
        sum = co_await child_value(sum);
    }
    benchmark::DoNotOptimize(sum);
}

void AwaitChild(benchmark::State& state) {
    corio::Scheduler kernel;
    kernel.run_until_complete(await_child_loop(state));
}
BENCHMARK(AwaitChild);

corio::Task<> await_finished_loop(benchmark::State& state) {
    corio::Task<int> finished = child_value(41);
    int value = co_await finished; // runs it
    for (auto _ : state) {
        value = co_await finished; // already done: await_ready is true
        benchmark::DoNotOptimize(value);
    }
}

void AwaitFinishedTask(benchmark::State& state) {
    corio::Scheduler kernel;
    kernel.run_until_complete(await_finished_loop(state));
}
BENCHMARK(AwaitFinishedTask);

corio::Task<> pong(int fd) {
    for (;;) {
        co_await corio::ReadWait{fd};
        const int got = read_byte(fd);
        if (got == 0) {
            co_return; // the pinger shut its end
        }
        if (got == 1) {
            write_byte(fd);
        }
    }
}

corio::Task<> ping(benchmark::State& state, int fd, int peer_fd) {
    const corio::TaskId ponger = co_await corio::NewTask{pong(peer_fd)};
    for (auto _ : state) {
        write_byte(fd);
        do {
            co_await corio::ReadWait{fd};
        } while (read_byte(fd) != 1);
    }
    ::shutdown(fd, SHUT_WR);
    co_await corio::WaitTask{ponger};
}

void ReadWaitPingPong(benchmark::State& state) {
    SocketPair pair;
    corio::Scheduler kernel;
    kernel.run_until_complete(ping(state, pair.first(), pair.second()));
    kernel.forget_fd(pair.first());
    kernel.forget_fd(pair.second());
}
BENCHMARK(ReadWaitPingPong);

corio::Task<> arm_cancel_loop(benchmark::State& state) {
    for (auto _ : state) {
        const corio::TaskId sleeper = co_await corio::NewTask{sleep_an_hour()};
        co_await corio::Yield{}; // the sleeper runs first and arms its timer
        co_await corio::KillTask{sleeper};
    }
}

void TimerArmCancel(benchmark::State& state) {
    corio::Scheduler kernel;
    for (std::int64_t i = 0; i < state.range(0); ++i) {
        kernel.add_task(sleep_an_hour()); // background timers, armed in the first pass
    }
    kernel.run_until_complete(arm_cancel_loop(state));
}
BENCHMARK(TimerArmCancel)->Arg(0)->Arg(1000);

corio::Task<> spawn_yield_kill_loop(benchmark::State& state) {
    for (auto _ : state) {
        const corio::TaskId victim = co_await corio::NewTask{yield_forever()};
        co_await corio::Yield{};
        co_await corio::KillTask{victim};
    }
}

void SpawnYieldKill_NoTimer(benchmark::State& state) {
    corio::Scheduler kernel;
    kernel.run_until_complete(spawn_yield_kill_loop(state));
}
BENCHMARK(SpawnYieldKill_NoTimer);

corio::Task<> sleep_expire_loop(benchmark::State& state) {
    for (auto _ : state) {
        co_await corio::Sleep{std::chrono::nanoseconds(1)};
    }
}

void SleepExpire(benchmark::State& state) {
    corio::Scheduler kernel;
    kernel.run_until_complete(sleep_expire_loop(state));
}
BENCHMARK(SleepExpire);

// ---------------------------------------------------------------------------------------------
// Asio, the same shapes

#if defined(CORIO_BENCH_HAVE_ASIO)

struct Reposter {
    asio::io_context* context;
    benchmark::State* state;
    void operator()() const {
        if (state->KeepRunning()) {
            asio::post(*context, *this);
        }
    }
};

void Asio_PostRoundTrip(benchmark::State& state) {
    asio::io_context context(1);
    asio::post(context, Reposter{&context, &state});
    context.run();
}
BENCHMARK(Asio_PostRoundTrip);

asio::awaitable<void> asio_yield_loop(benchmark::State& state) {
    auto executor = co_await asio::this_coro::executor;
    for (auto _ : state) {
        co_await asio::post(executor, asio::use_awaitable);
    }
}

void Asio_CoPostYield(benchmark::State& state) {
    asio::io_context context(1);
    asio::co_spawn(context, asio_yield_loop(state), asio::detached);
    context.run();
}
BENCHMARK(Asio_CoPostYield);

asio::awaitable<void> asio_trivial() { co_return; }

asio::awaitable<void> asio_spawn_loop(benchmark::State& state) {
    auto executor = co_await asio::this_coro::executor;
    std::uint32_t spawned = 0;
    for (auto _ : state) {
        asio::co_spawn(executor, asio_trivial(), asio::detached);
        if (++spawned % 256 == 0) {
            co_await asio::post(executor, asio::use_awaitable);
        }
    }
}

void Asio_CoSpawn(benchmark::State& state) {
    asio::io_context context(1);
    asio::co_spawn(context, asio_spawn_loop(state), asio::detached);
    context.run();
}
BENCHMARK(Asio_CoSpawn);

asio::awaitable<int> asio_child_value(int x) { co_return x + 1; }

asio::awaitable<void> asio_await_child_loop(benchmark::State& state) {
    int sum = 0;
    for (auto _ : state) {
        sum = co_await asio_child_value(sum);
    }
    benchmark::DoNotOptimize(sum);
}

void Asio_AwaitChild(benchmark::State& state) {
    asio::io_context context(1);
    asio::co_spawn(context, asio_await_child_loop(state), asio::detached);
    context.run();
}
BENCHMARK(Asio_AwaitChild);

using LocalSocket = asio::local::stream_protocol::socket;

asio::awaitable<void> asio_pong(LocalSocket& socket) {
    for (;;) {
        co_await socket.async_wait(asio::socket_base::wait_read, asio::use_awaitable);
        const int got = read_byte(socket.native_handle());
        if (got == 0) {
            co_return;
        }
        if (got == 1) {
            write_byte(socket.native_handle());
        }
    }
}

asio::awaitable<void> asio_ping(benchmark::State& state, LocalSocket& socket) {
    for (auto _ : state) {
        write_byte(socket.native_handle());
        do {
            co_await socket.async_wait(asio::socket_base::wait_read, asio::use_awaitable);
        } while (read_byte(socket.native_handle()) != 1);
    }
    ::shutdown(socket.native_handle(), SHUT_WR);
}

void Asio_WaitPingPong(benchmark::State& state) {
    asio::io_context context(1);
    LocalSocket a(context), b(context);
    asio::local::connect_pair(a, b);
    a.non_blocking(true);
    b.non_blocking(true);
    asio::co_spawn(context, asio_pong(b), asio::detached);
    asio::co_spawn(context, asio_ping(state, a), asio::detached);
    context.run();
}
BENCHMARK(Asio_WaitPingPong);

void Asio_TimerArmCancel(benchmark::State& state) {
    asio::io_context context(1);
    auto keep_running = asio::make_work_guard(context); // else poll_one stops once out of work
    asio::steady_timer timer(context);
    std::vector<std::unique_ptr<asio::steady_timer>> background;
    for (std::int64_t i = 0; i < state.range(0); ++i) {
        background.push_back(std::make_unique<asio::steady_timer>(context, std::chrono::hours(1)));
        background.back()->async_wait([](const std::error_code&) {});
    }
    std::uint64_t cancelled = 0;
    for (auto _ : state) {
        timer.expires_after(std::chrono::hours(1));
        timer.async_wait([&cancelled](const std::error_code& error) {
            cancelled += error == asio::error::operation_aborted ? 1 : 0;
        });
        timer.cancel();
        context.poll_one(); // runs the cancelled handler
    }
    for (auto& other : background) {
        other->cancel();
    }
    keep_running.reset();
    context.poll();
    if (cancelled != static_cast<std::uint64_t>(state.iterations())) {
        state.SkipWithError("a cancelled handler did not run");
    }
}
BENCHMARK(Asio_TimerArmCancel)->Arg(0)->Arg(1000);

#endif // CORIO_BENCH_HAVE_ASIO

} // namespace

BENCHMARK_MAIN();
