// micro_harness.hpp - a plain timer harness with the few pieces of Google Benchmark's API that
// micro.cpp uses, for machines without it (bench/CMakeLists.txt defines CORIO_BENCH_NO_GBENCH).
//
// Each benchmark runs with 1, 10, 100, ... iterations until one run takes at least 0.1 s, then once
// more with enough iterations for about --min-time seconds (default 0.5), and reports the wall
// time per iteration of that last run. `--benchmark_filter=TEXT` runs only the names containing TEXT.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace benchmark {

template <class T>
inline void DoNotOptimize(T&& value) {
    asm volatile("" : : "g"(&value) : "memory");
}
inline void ClobberMemory() { asm volatile("" : : : "memory"); }

class State {
public:
    struct [[maybe_unused]] Value {};

    class Iterator {
    public:
        Iterator(State* state, std::int64_t left) : state_(state), left_(left) {}
        Value operator*() const { return {}; }
        Iterator& operator++() {
            --left_;
            return *this;
        }
        bool operator!=(const Iterator&) {
            if (left_ > 0) {
                return true;
            }
            state_->finish();
            return false;
        }

    private:
        State* state_;
        std::int64_t left_;
    };

    State(std::int64_t iterations, std::vector<std::int64_t> args)
        : iterations_(iterations), args_(std::move(args)) {}

    Iterator begin() {
        start_ = std::chrono::steady_clock::now();
        return Iterator(this, iterations_);
    }
    Iterator end() { return Iterator(this, 0); }

    // The other loop form: `while (state.KeepRunning())`.
    bool KeepRunning() {
        if (!started_) {
            started_ = true;
            start_ = std::chrono::steady_clock::now();
        }
        if (done_ < iterations_) {
            ++done_;
            return true;
        }
        finish();
        return false;
    }

    [[nodiscard]] std::int64_t range(std::size_t index = 0) const { return args_.at(index); }
    [[nodiscard]] std::int64_t iterations() const { return iterations_; }
    void SetLabel(const std::string& label) { label_ = label; }
    void SkipWithError(const char* message) { error_ = message; }

    [[nodiscard]] double seconds() const { return std::chrono::duration<double>(stop_ - start_).count(); }
    [[nodiscard]] const std::string& label() const { return label_; }
    [[nodiscard]] const std::string& error() const { return error_; }

private:
    void finish() {
        if (!finished_) {
            stop_ = std::chrono::steady_clock::now();
            finished_ = true;
        }
    }

    std::int64_t iterations_;
    std::vector<std::int64_t> args_;
    std::chrono::steady_clock::time_point start_{}, stop_{};
    bool finished_ = false;
    bool started_ = false;
    std::int64_t done_ = 0;
    std::string label_, error_;
};

using Function = void (*)(State&);

class Benchmark {
public:
    Benchmark(std::string name, Function function) : name_(std::move(name)), function_(function) {}
    Benchmark* Arg(std::int64_t value) {
        args_.push_back(value);
        return this;
    }
    Benchmark* UseRealTime() { return this; }

    void run(std::string_view filter, double min_time) const {
        if (args_.empty()) {
            run_one(name_, {}, filter, min_time);
        }
        for (std::int64_t arg : args_) {
            run_one(name_ + "/" + std::to_string(arg), {arg}, filter, min_time);
        }
    }

private:
    void run_one(const std::string& name, std::vector<std::int64_t> args, std::string_view filter,
                 double min_time) const {
        if (!filter.empty() && name.find(filter) == std::string::npos) {
            return;
        }
        std::int64_t n = 1;
        for (;;) {
            State state(n, args);
            function_(state);
            if (!state.error().empty()) {
                std::printf("%-44s ERROR: %s\n", name.c_str(), state.error().c_str());
                return;
            }
            const double seconds = state.seconds();
            if (seconds >= 0.1 || n >= (std::int64_t(1) << 40)) {
                const double factor = seconds > 0 ? min_time / seconds : 10.0;
                if (factor > 1.2) {
                    n = static_cast<std::int64_t>(static_cast<double>(n) * factor);
                    State final_state(n, args);
                    function_(final_state);
                    report(name, final_state);
                } else {
                    report(name, state);
                }
                return;
            }
            n *= 10;
        }
    }

    static void report(const std::string& name, const State& state) {
        std::printf("%-44s %12.1f ns %14lld %s\n", name.c_str(),
                    state.seconds() * 1e9 / static_cast<double>(state.iterations()),
                    static_cast<long long>(state.iterations()), state.label().c_str());
    }

    std::string name_;
    Function function_;
    std::vector<std::int64_t> args_;
};

inline std::vector<Benchmark*>& registry() {
    static std::vector<Benchmark*> benchmarks;
    return benchmarks;
}

inline Benchmark* RegisterBenchmark(const char* name, Function function) {
    registry().push_back(new Benchmark(name, function)); // lives as long as the program
    return registry().back();
}

inline int run_all(int argc, char** argv) {
    std::string_view filter;
    double min_time = 0.5;
    for (int i = 1; i < argc; ++i) {
        const std::string_view argument = argv[i];
        if (argument.starts_with("--benchmark_filter=")) {
            filter = argument.substr(std::strlen("--benchmark_filter="));
        } else if (argument.starts_with("--min-time=")) {
            min_time = std::atof(argv[i] + std::strlen("--min-time="));
        } else {
            std::fprintf(stderr, "usage: %s [--benchmark_filter=TEXT] [--min-time=SECONDS]\n", argv[0]);
            return 2;
        }
    }
    std::printf("plain timer harness (Google Benchmark not found); wall time per iteration\n");
    std::printf("%-44s %15s %14s\n", "Benchmark", "Time", "Iterations");
    for (const Benchmark* benchmark : registry()) {
        benchmark->run(filter, min_time);
    }
    return 0;
}

} // namespace benchmark

#define CORIO_HARNESS_CONCAT2(a, b) a##b
#define CORIO_HARNESS_CONCAT(a, b) CORIO_HARNESS_CONCAT2(a, b)
#define BENCHMARK(function)                                                                        \
    [[maybe_unused]] static ::benchmark::Benchmark* CORIO_HARNESS_CONCAT(corio_benchmark_,        \
                                                                         __LINE__) =              \
        ::benchmark::RegisterBenchmark(#function, function)
#define BENCHMARK_MAIN()                                                                           \
    int main(int argc, char** argv) { return ::benchmark::run_all(argc, argv); }
