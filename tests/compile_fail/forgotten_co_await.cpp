// A forgotten co_await is a warning. tests/forgotten_co_await.cmake compiles this file with
// -Werror and CORIO_CASE=0, which must succeed (every call is awaited), and then once for each
// number n marked `/*n*/`, with CORIO_CASE=n and that call's `co_await /*n*/ ` removed, which must
// fail with a warning that names [[nodiscard]]. To check one more awaitable, add a line with the
// next number.
#include <corio/corio.hpp>

#include <chrono>
#include <csignal>

namespace {

using namespace std::chrono_literals;

corio::Task<> nothing() {
    co_return;
}

} // namespace

// External linkage: no compiler calls it unused.
corio::Task<> every_call(corio::Event& event, corio::Queue<int>& queue, corio::Lock& lock,
                         corio::Semaphore& semaphore, corio::StopEvent& stop,
                         corio::TaskGroup& group, corio::TaskId other, int fd) {
    co_await /*1*/ corio::Sleep{1s};
    co_await /*2*/ corio::Yield{};
    co_await /*3*/ corio::GetTid{};
    co_await /*4*/ corio::NewTask{nothing()};
    co_await /*5*/ corio::KillTask{other};
    co_await /*6*/ corio::WaitTask{other};
    co_await /*7*/ corio::ReadWait{fd};
    co_await /*8*/ corio::WriteWait{fd};
    co_await /*9*/ corio::SleepUntil{corio::Scheduler::Clock::now()};
    co_await /*10*/ corio::Sleep(std::chrono::duration<double>(0.5));
    co_await /*11*/ event.wait();
    co_await /*12*/ corio::Event::Wait{event};
    co_await /*13*/ queue.put(1);
    co_await /*14*/ queue.get();
    co_await /*15*/ corio::Queue<int>::Get{queue};
    // A Guard is [[nodiscard]] too (Clang warns when `co_await lock.acquire();` drops it at once),
    // so the awaited form keeps it and the forgotten one is spelled out.
#if CORIO_CASE == 16
    lock.acquire();
#elif CORIO_CASE == 17
    corio::Lock::Acquire{lock};
#else
    { const corio::Lock::Guard held = co_await /*16*/ /*17*/ lock.acquire(); }
#endif
    co_await /*18*/ semaphore.acquire();
    co_await /*19*/ corio::Semaphore::Acquire{semaphore};
    co_await /*20*/ corio::timeout_after(1s, corio::Yield{});
    co_await /*21*/ corio::ignore_after(1s, nothing());
    co_await /*22*/ corio::timeout_at(corio::Scheduler::Clock::now(), nothing());
    co_await /*23*/ stop.wait();
    co_await /*24*/ corio::StopEvent::Wait{stop};
    co_await /*25*/ corio::SignalWait{SIGUSR1};
    co_await /*26*/ corio::run_in_thread([] { return 1; });
    co_await /*27*/ corio::when_all(nothing(), nothing());
    co_await /*28*/ corio::when_any(nothing(), nothing());
    co_await /*29*/ group.spawn(nothing());
    co_await /*30*/ group.wait();
    co_await /*31*/ nothing();
}
