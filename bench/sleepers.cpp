// sleepers - N concurrent sleepers (default 1,000,000) in one Scheduler: what arming their timers
// costs when all of them are armed for the first time (the sleep-timer pool grows with them), and
// the whole run until the last one woke.
//
//     sleepers [--count N]
//
// N tasks are added, then run() starts: in its first pass each task runs and arms a Sleep of 0 to
// 100 ms (spread evenly, in a shuffled order), and a task added after them notes the time when all
// of them have armed theirs. "arm" is that first pass divided by N (one resumption plus one arm
// each); "whole run" is run() from start to the last wake-up, so it includes up to 100 ms of
// sleeping when arming is fast. The Scheduler is new, so every timer is a first one.
#include <corio/corio.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

corio::Task<> sleeper(Clock::duration length, std::size_t& woken) {
    co_await corio::Sleep{length};
    ++woken;
}

corio::Task<> note_time(Clock::time_point& at) {
    at = Clock::now();
    co_return;
}

double milliseconds(Clock::duration length) {
    return std::chrono::duration<double, std::milli>(length).count();
}

} // namespace

int main(int argc, char** argv) {
    std::size_t count = 1'000'000;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = std::strtoull(argv[++i], nullptr, 10);
        } else {
            std::fprintf(stderr, "usage: %s [--count N]\n", argv[0]);
            return 2;
        }
    }
    if (count == 0) {
        std::fprintf(stderr, "sleepers: --count must be at least 1\n");
        return 2;
    }

    corio::Scheduler kernel;
    std::size_t woken = 0;
    Clock::time_point first_ran{};
    Clock::time_point all_armed{};
    kernel.add_task(note_time(first_ran));
    constexpr std::uint64_t spread_us = 100'000; // lengths of 0 to 100 ms
    for (std::size_t i = 0; i < count; ++i) {
        // i * a large odd number modulo the spread: every length about equally often, shuffled.
        const std::uint64_t offset_us = (static_cast<std::uint64_t>(i) * 2'654'435'761U) % spread_us;
        kernel.add_task(sleeper(std::chrono::microseconds(offset_us), woken));
    }
    kernel.add_task(note_time(all_armed));

    const Clock::time_point start = Clock::now();
    kernel.run();
    const Clock::duration whole = Clock::now() - start;

    const double arm_ns =
        std::chrono::duration<double, std::nano>(all_armed - first_ran).count() /
        static_cast<double>(count);
    std::printf("sleepers: %zu concurrent sleepers, %zu woke\n", count, woken);
    std::printf("  arm (first pass / N)   %10.1f ns per timer (%.1f ms for all)\n", arm_ns,
                milliseconds(all_armed - first_ran));
    std::printf("  whole run              %10.1f ms\n", milliseconds(whole));
    return woken == count ? 0 : 1;
}
