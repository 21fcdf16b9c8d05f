// Test support: a value that counts how it is constructed, copied, moved and destroyed, to check
// that frames, parameters and results are destroyed exactly once and moved rather than copied.
#pragma once

#include <cstddef>

namespace corio::test {

class Counted {
public:
    /// The counters. Call reset_counts() at the start of a test that asserts on them.
    static inline std::size_t default_constructions = 0;
    static inline std::size_t value_constructions = 0;
    static inline std::size_t copy_constructions = 0;
    static inline std::size_t move_constructions = 0;
    static inline std::size_t copy_assignments = 0;
    static inline std::size_t move_assignments = 0;
    static inline std::size_t destructions = 0;

    static void reset_counts() noexcept {
        default_constructions = value_constructions = copy_constructions = move_constructions = 0;
        copy_assignments = move_assignments = destructions = 0;
    }
    static std::size_t constructions() noexcept {
        return default_constructions + value_constructions + copy_constructions +
               move_constructions;
    }
    /// Objects alive now (constructed and not yet destroyed).
    static long alive() noexcept {
        return static_cast<long>(constructions()) - static_cast<long>(destructions);
    }

    Counted() noexcept { ++default_constructions; }
    explicit Counted(int value) noexcept : value_(value) { ++value_constructions; }
    Counted(const Counted& other) noexcept : value_(other.value_) { ++copy_constructions; }
    Counted(Counted&& other) noexcept : value_(other.value_) {
        other.value_ = moved_from;
        ++move_constructions;
    }
    Counted& operator=(const Counted& other) noexcept {
        value_ = other.value_;
        ++copy_assignments;
        return *this;
    }
    Counted& operator=(Counted&& other) noexcept {
        value_ = other.value_;
        other.value_ = moved_from;
        ++move_assignments;
        return *this;
    }
    ~Counted() {
        ++destructions;
        value_ = destroyed;
    }

    [[nodiscard]] int value() const noexcept { return value_; }

    static constexpr int moved_from = -1;
    static constexpr int destroyed = -2;

private:
    int value_ = 0;
};

} // namespace corio::test
