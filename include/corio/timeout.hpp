// corio/timeout.hpp - bound any wait by a duration or a deadline.
//
//     std::size_t n = co_await corio::timeout_after(2s, socket.recv(buffer)); // or TimeoutError
//     std::optional<std::size_t> m = co_await corio::ignore_after(2s, socket.recv(buffer));
//
// How it works: the operation runs inside a deadline scope of the calling task (a timer kept by
// kernel/deadline_scopes.hpp). If the deadline passes while the task waits, the kernel takes it
// off that wait and the system call it was suspended in throws a TimeoutError that belongs to the
// scope. It unwinds the operation's frames like any exception (their destructors run) up to the
// scope that owns it, which turns it into its own result: a plain TimeoutError from timeout_*, an
// empty optional from ignore_*; other scopes let it pass. Scopes nest with the awaits, and
// ScopeExit leaves a scope (cancelling its timer) however its frame ends.
//
// Rules (passed deadlines, yields, nesting): README.md#timeouts, README.md#cancellation and
// docs/guide.md#timeouts.
#pragma once

#include "corio/scheduler.hpp"
#include "corio/syscall_concept.hpp"
#include "corio/task.hpp"
#include "corio/timeout_error.hpp"

#include <chrono>
#include <optional>
#include <type_traits>
#include <utility>

namespace corio {

namespace detail {

// What `co_await operation` gives, for the awaitables timeouts accept.
template <class Awaitable>
struct AwaitResult {
    using type = decltype(std::declval<Awaitable&>().await_resume());
};
template <class T>
struct AwaitResult<Task<T>> {
    using type = T;
};
template <class Call>
    requires SystemCall<Call>
struct AwaitResult<Call> {
    using type = decltype(std::declval<Call&>().result());
};
template <class Awaitable>
using await_result_t = typename AwaitResult<std::remove_cvref_t<Awaitable>>::type;

// When a scope's deadline is: an absolute time, or a delay from when the scope is entered.
struct DeadlineSpec {
    std::optional<Scheduler::Clock::time_point> at;
    Scheduler::Clock::duration after{};
};

// The system call that enters a deadline scope (it never suspends).
struct [[nodiscard]] EnterScope {
    [[nodiscard]] EnterScope(TimeoutScope& entered, DeadlineSpec when) noexcept : scope(&entered), spec(when) {}

    TimeoutScope* scope;
    DeadlineSpec spec;

    bool handle(Scheduler& kernel, TaskId /*caller*/) {
        kernel.enter_scope(*scope, spec.at ? *spec.at : kernel.deadline_after(spec.after));
        return false;
    }
    void result() const noexcept {}
};

// Leaves the scope however the frame that owns it ends.
class ScopeExit {
public:
    explicit ScopeExit(TimeoutScope& scope) noexcept : scope_(scope) {}
    ScopeExit(const ScopeExit&) = delete;
    ScopeExit& operator=(const ScopeExit&) = delete;
    ~ScopeExit() {
        if (scope_.kernel != nullptr) {
            scope_.kernel->leave_scope(scope_);
        }
    }

private:
    TimeoutScope& scope_;
};

// Runs `operation` in a deadline scope: gives its result, or on timeout throws TimeoutError
// (Throws) or gives an empty optional / false.
template <bool Throws, class Awaitable, class Result = await_result_t<Awaitable>>
Task<std::conditional_t<Throws, Result,
                        std::conditional_t<std::is_void_v<Result>, bool, std::optional<Result>>>>
with_deadline(DeadlineSpec spec, Awaitable operation) {
    TimeoutScope scope;
    ScopeExit exit(scope);
    co_await EnterScope(scope, spec);
    try {
        if constexpr (std::is_void_v<Result>) {
            co_await std::move(operation);
            if constexpr (!Throws) {
                co_return true;
            } else {
                co_return;
            }
        } else {
            co_return co_await std::move(operation);
        }
    } catch (const TimeoutError& timeout) {
        if (timeout.scope() != &scope) {
            throw; // another failure, or an outer deadline passing through
        }
    }
    if constexpr (Throws) {
        throw TimeoutError();
    } else if constexpr (std::is_void_v<Result>) {
        co_return false;
    } else {
        co_return std::nullopt;
    }
}

} // namespace detail

/// Awaits `operation` (a Task, a system call, or another awaitable), but throws TimeoutError if it
/// has not completed `delay` after this is awaited. Throws std::invalid_argument for a
/// floating-point `delay` that is NaN or infinite.
template <class Rep, class Period, class Awaitable>
auto timeout_after(std::chrono::duration<Rep, Period> delay, Awaitable operation) {
    return detail::with_deadline<true>(detail::DeadlineSpec{std::nullopt, detail::to_clock_duration(delay)},
                                       std::move(operation));
}

/// Awaits `operation`, but throws TimeoutError if it has not completed at `deadline` (on the
/// Scheduler's clock).
template <class Awaitable>
auto timeout_at(Scheduler::Clock::time_point deadline, Awaitable operation) {
    return detail::with_deadline<true>(detail::DeadlineSpec{deadline, {}}, std::move(operation));
}

/// Awaits `operation`, giving its value in an optional that is empty if `delay` passed first
/// (for an operation that gives nothing: true if it completed, false if time ran out). Throws
/// std::invalid_argument for a floating-point `delay` that is NaN or infinite.
template <class Rep, class Period, class Awaitable>
auto ignore_after(std::chrono::duration<Rep, Period> delay, Awaitable operation) {
    static_assert(!std::is_reference_v<detail::await_result_t<Awaitable>>,
                  "ignore_after gives an optional: the operation must not give a reference");
    return detail::with_deadline<false>(detail::DeadlineSpec{std::nullopt, detail::to_clock_duration(delay)},
                                        std::move(operation));
}

/// ignore_after with an absolute deadline.
template <class Awaitable>
auto ignore_at(Scheduler::Clock::time_point deadline, Awaitable operation) {
    static_assert(!std::is_reference_v<detail::await_result_t<Awaitable>>,
                  "ignore_at gives an optional: the operation must not give a reference");
    return detail::with_deadline<false>(detail::DeadlineSpec{deadline, {}}, std::move(operation));
}

} // namespace corio
