// examples/common/options.hpp - the command line of corio's example programs.
//
// Each program lists its options and parse_command_line does the rest:
//
//     std::string host = "127.0.0.1";
//     std::uint16_t port = 5001;
//     if (auto status = examples::parse_command_line(argc, argv, "echo_client", "Sends lines ...",
//                                                   {examples::host_option(host),
//                                                    examples::port_option(port, 1)})) {
//         return *status; // --help was shown, or the command line was bad
//     }
//
// Options are written `--name VALUE` or `--name=VALUE`; flags are just `--name`; an option of two
// values (`--tls CERT KEY`) takes the next two arguments. `--help` (or
// `-h`) prints the usage to stdout and exits with status 0. Anything wrong (an unknown option, a
// missing or malformed value, a stray argument) prints one clear line to stderr and exits with
// status 2, the convention of command-line tools for "you called me wrongly".
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <functional>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <system_error>
#include <vector>

#include <corio/net/socket_address.hpp>

namespace examples {

/// A bad command line. parse_command_line prints it and makes the program exit with status 2.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// One option: `--name VALUE` when `value_name` is set, a flag `--name` when it is empty.
struct Option {
    std::string_view name;                             // "--port"
    std::string_view value_name;                       // "P" in the usage; empty for a flag
    std::string help;                                  // one line for --help
    std::function<void(std::string_view value)> apply; // stores the value; throws UsageError
    // For an option of two values instead of `apply` (value_name names both: "CERT KEY").
    std::function<void(std::string_view first, std::string_view second)> apply_pair = {};
};

/// Parses a whole decimal number in [min, max]: no sign, no spaces, nothing after the digits.
inline long long parse_number(std::string_view option, std::string_view text, long long min,
                              long long max) {
    long long value = 0;
    const char* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, value);
    if (text.empty() || text.front() == '-' || error != std::errc{} || stop != end || value < min ||
        value > max) {
        throw UsageError("invalid value '" + std::string(text) + "' for " + std::string(option) +
                         " (expected a number from " + std::to_string(min) + " to " +
                         std::to_string(max) + ")");
    }
    return value;
}

/// `--host H`: a numeric IPv4 or IPv6 address, checked now so that a typo is a usage error.
inline Option host_option(std::string& host) {
    return {"--host", "H", "numeric IPv4 or IPv6 address (default " + host + ")",
            [&host](std::string_view text) {
                try {
                    (void)corio::SocketAddress::parse(text, 0);
                } catch (const std::system_error&) {
                    throw UsageError("invalid value '" + std::string(text) +
                                     "' for --host (expected a numeric IPv4 or IPv6 address)");
                }
                host = text;
            }};
}

/// `--port P`. A server passes lowest = 0 (the kernel then picks a free port), a client 1.
inline Option port_option(std::uint16_t& port, int lowest = 0, std::string_view protocol = "TCP") {
    std::string help = std::string(protocol) + " port (default " + std::to_string(port) + ")";
    if (lowest == 0) {
        help = std::string(protocol) + " port (default " + std::to_string(port) +
               "; 0 picks a free port)";
    }
    return {"--port", "P", help, [&port, lowest](std::string_view text) {
                port = static_cast<std::uint16_t>(parse_number("--port", text, lowest, 65535));
            }};
}

/// `--backlog N`: how many connections the kernel may queue before we accept them.
inline Option backlog_option(int& backlog) {
    return {"--backlog", "N", "length of the queue of pending connections (default SOMAXCONN)",
            [&backlog](std::string_view text) {
                backlog = static_cast<int>(parse_number("--backlog", text, 1, INT_MAX));
            }};
}

/// `--threads N`: how many threads (each with a Scheduler and a listener of its own) serve.
inline Option threads_option(unsigned& threads) {
    return {"--threads", "N",
            "threads serving, each with its own listener on the address (default " +
                std::to_string(threads) + ")",
            [&threads](std::string_view text) {
                threads = static_cast<unsigned>(parse_number("--threads", text, 1, 1024));
            }};
}

/// Parses a positive number of seconds, with an optional fraction ("30", "0.2", "1.25"): digits, at
/// most one '.', at most 9 digits after it (nanoseconds), no sign or exponent; at most
/// `max_seconds`.
inline std::chrono::nanoseconds parse_seconds(std::string_view option, std::string_view text,
                                              long long max_seconds) {
    const auto fail = [&]() -> UsageError {
        return UsageError("invalid value '" + std::string(text) + "' for " + std::string(option) +
                          " (expected seconds greater than 0 and at most " +
                          std::to_string(max_seconds) + ", e.g. 0.2 or 30)");
    };
    const std::size_t dot = text.find('.');
    const std::string_view whole = text.substr(0, dot);
    const std::string_view fraction =
        dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
    const auto all_digits = [](std::string_view digits) {
        return digits.find_first_not_of("0123456789") == std::string_view::npos;
    };
    if (whole.empty() || !all_digits(whole) || !all_digits(fraction) || fraction.size() > 9 ||
        (dot != std::string_view::npos && fraction.empty())) {
        throw fail();
    }
    long long seconds = 0;
    const auto [stop, error] = std::from_chars(whole.data(), whole.data() + whole.size(), seconds);
    if (error != std::errc{} || stop != whole.data() + whole.size() || seconds > max_seconds) {
        throw fail();
    }
    long long nanoseconds = 0;
    for (std::size_t i = 0; i < 9; ++i) {
        nanoseconds = nanoseconds * 10 + (i < fraction.size() ? fraction[i] - '0' : 0);
    }
    const std::chrono::nanoseconds value =
        std::chrono::seconds(seconds) + std::chrono::nanoseconds(nanoseconds);
    if (value <= std::chrono::nanoseconds::zero() || value > std::chrono::seconds(max_seconds)) {
        throw fail();
    }
    return value;
}

/// `--name SECONDS`: a duration (see parse_seconds). Left empty when the option is not given.
inline Option seconds_option(std::string_view name, std::string help,
                             std::optional<std::chrono::nanoseconds>& duration,
                             long long max_seconds = 1'000'000) {
    return {name, "SECONDS", std::move(help),
            [name, &duration, max_seconds](std::string_view text) {
                duration = parse_seconds(name, text, max_seconds);
            }};
}

/// A flag: `--name` sets `on`.
inline Option flag_option(std::string_view name, std::string help, bool& on) {
    return {name, "", std::move(help), [&on](std::string_view) { on = true; }};
}

namespace detail {

inline void print_usage(std::ostream& out, std::string_view program, std::string_view summary,
                        const std::vector<Option>& options) {
    out << "usage: " << program;
    for (const Option& option : options) {
        out << " [" << option.name << (option.value_name.empty() ? "" : " ") << option.value_name
            << ']';
    }
    out << "\n\n" << summary << "\n\noptions:\n";
    const auto left_of = [](const Option& option) {
        return std::string(option.name) + (option.value_name.empty() ? "" : " ") +
               std::string(option.value_name);
    };
    std::size_t width = 14; // the help texts line up in one column
    for (const Option& option : options) {
        width = std::max(width, left_of(option).size() + 2);
    }
    for (const Option& option : options) {
        const std::string left = left_of(option);
        out << "  " << left << std::string(width - left.size(), ' ') << option.help << '\n';
    }
    out << "  --help" << std::string(width - 6, ' ') << "show this help and exit\n";
}

inline const Option& find_option(const std::vector<Option>& options, std::string_view name) {
    for (const Option& option : options) {
        if (option.name == name) {
            return option;
        }
    }
    throw UsageError("unknown option '" + std::string(name) + "'");
}

inline void apply_arguments(int argc, char* argv[], const std::vector<Option>& options) {
    for (int i = 1; i < argc; ++i) {
        std::string_view argument = argv[i];
        if (!argument.starts_with("--")) {
            throw UsageError("unexpected argument '" + std::string(argument) + "'");
        }
        std::optional<std::string_view> value; // from `--name=value`
        if (const auto equals = argument.find('='); equals != std::string_view::npos) {
            value = argument.substr(equals + 1);
            argument = argument.substr(0, equals);
        }
        const Option& option = find_option(options, argument);
        if (option.apply_pair) {
            if (value || i + 2 >= argc) {
                throw UsageError("option '" + std::string(option.name) + "' needs two values (" +
                                 std::string(option.name) + " " + std::string(option.value_name) + ")");
            }
            option.apply_pair(argv[i + 1], argv[i + 2]);
            i += 2;
            continue;
        }
        if (option.value_name.empty()) {
            if (value) {
                throw UsageError("option '" + std::string(option.name) + "' takes no value");
            }
        } else if (!value) {
            if (i + 1 == argc) {
                throw UsageError("option '" + std::string(option.name) + "' needs a value (" +
                                 std::string(option.name) + " " + std::string(option.value_name) +
                                 ")");
            }
            value =
                argv[++i]; // taken as it is, even if it starts with '-': "--port -1" is a bad port
        }
        option.apply(value.value_or(""));
    }
}

} // namespace detail

/// Applies the command line to `options`. Returns nothing when the program should go on, or the
/// status it should exit with: 0 after --help, 2 after a bad command line (reported on stderr).
inline std::optional<int> parse_command_line(int argc, char* argv[], std::string_view program,
                                             std::string_view summary,
                                             const std::vector<Option>& options) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view argument = argv[i];
        if (argument == "--help" || argument == "-h") {
            detail::print_usage(std::cout, program, summary, options);
            return 0;
        }
    }
    try {
        detail::apply_arguments(argc, argv, options);
        return std::nullopt;
    } catch (const UsageError& error) {
        std::cerr << program << ": " << error.what() << "\nTry '" << program
                  << " --help' for more information.\n";
        return 2;
    }
}

} // namespace examples
