// Model test: which seeds tests/test_model.cpp runs. Set from the command line by
// tests/model/main.cpp (--seed N, --count N), else from the environment (CORIO_MODEL_SEED,
// CORIO_MODEL_COUNT), else the defaults: seeds 1..default_count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

namespace corio::model {

struct SeedRange {
    std::uint64_t first = 1;
    std::size_t count = 0;
    bool replay = false; // a seed was given: print the program, whatever the verdict
};

inline constexpr std::size_t default_count = 3000;

/// What --seed and --count said (main.cpp fills it in before Catch runs).
inline std::optional<std::uint64_t> seed_option;
inline std::optional<std::size_t> count_option;

inline std::uint64_t parse_number(const std::string& text, const char* what) {
    std::size_t used = 0;
    unsigned long long value = 0;
    try {
        value = std::stoull(text, &used, 0);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size() || text[0] == '-') {
        throw std::invalid_argument(std::string(what) + " wants a non-negative number, not '" + text + "'");
    }
    return value;
}

inline std::optional<std::uint64_t> from_environment(const char* name) {
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0') {
        return std::nullopt;
    }
    return parse_number(text, name);
}

/// The seeds to run: --seed N [--count M] replays M seeds from N (1 by default); without a seed,
/// --count M runs seeds 1..M.
inline SeedRange seed_range() {
    const std::optional<std::uint64_t> seed = seed_option ? seed_option : from_environment("CORIO_MODEL_SEED");
    std::optional<std::uint64_t> count = count_option;
    if (!count) {
        count = from_environment("CORIO_MODEL_COUNT");
    }
    SeedRange range;
    range.replay = seed.has_value();
    range.first = seed.value_or(1);
    range.count = static_cast<std::size_t>(count.value_or(seed ? 1 : default_count));
    return range;
}

} // namespace corio::model
