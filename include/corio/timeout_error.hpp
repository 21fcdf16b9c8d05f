// corio/timeout_error.hpp - what a task gets when a deadline set by timeout_after passes.
#pragma once

#include <cerrno>
#include <system_error>

namespace corio {

namespace detail {
struct TimeoutScope;
class DeadlineScopes;
} // namespace detail

/// Thrown by `co_await timeout_after(...)` when its deadline passes first.
///
/// It is a std::system_error with ETIMEDOUT (std::errc::timed_out) rather than a type of its own
/// alone: a timeout is one more way for an I/O operation to fail, and code that already handles
/// the std::system_error of a socket (logging `what()`, closing the connection) handles it too.
/// Catch TimeoutError where a timeout must be told apart from other failures.
class TimeoutError : public std::system_error {
public:
    /// A timeout with ETIMEDOUT in the generic category, and what() "corio: timed out".
    TimeoutError() : std::system_error(ETIMEDOUT, std::generic_category(), "corio: timed out") {}

    /// The deadline scope this timeout belongs to while it travels to its timeout_after; null once
    /// that timeout_after has turned it into its own result. Other scopes let it pass.
    [[nodiscard]] const detail::TimeoutScope* scope() const noexcept { return scope_; }

private:
    friend class detail::DeadlineScopes; // throws it for a scope whose deadline passed
    explicit TimeoutError(const detail::TimeoutScope* scope) : TimeoutError() { scope_ = scope; }

    const detail::TimeoutScope* scope_ = nullptr;
};

} // namespace corio
