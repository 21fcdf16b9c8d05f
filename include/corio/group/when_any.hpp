// corio/group/when_any.hpp - when_any: run tasks concurrently; the first to finish wins, the rest are
// killed.
//
//     corio::WhenAny<std::string> first = co_await corio::when_any(std::move(mirrors));
//     use(first.index, first.value);
//     auto any = co_await corio::when_any(read_reply(socket), read_reply(backup)); // variadic
//     if (any.index == 0) { ... std::get<0>(any.value) ... }
//
// Each task runs as a separate task of the Scheduler, supervised like the children of a TaskGroup
// (see task_group.hpp and detail/child_set.hpp). The first task to finish - by returning or by
// throwing - wins: every other task is killed at that moment, synchronously, from the winner's
// task, so no loser runs again. By the time `co_await when_any(...)` gives its result, the losers
// are gone: their frames destroyed (their destructors ran) and nothing of theirs left registered
// with the kernel (no timer, no fd interest, no task). If the winner threw, when_any rethrows its
// exception; otherwise it gives the winner's position and value:
//
// * `when_any(std::vector<Task<T>>)` gives `WhenAny<T>`: `.index` in the vector and `.value`
//   (WhenAny<void> has only `.index`);
// * `when_any(Task<Ts>...)` gives `WhenAny<std::variant<Vs...>>`: `.index` among the arguments
//   and `.value` holding the winner's value as alternative `.index` (std::monostate for a void
//   task; `.value.index() == .index` even when two tasks give the same type).
//
// An empty vector has no winner: when_any throws std::invalid_argument when called. A task killed
// from outside (KillTask on its id) does not win; it just leaves the race. If every task is killed
// that way, when_any throws std::runtime_error.
//
// Cancellation: when_any is a Task that runs in the awaiting task, and the tasks are owned by its
// frame. Killing the awaiting task destroys that frame, which kills every task before the KillTask
// returns. A deadline around it (`timeout_after(d, when_any(...))`) throws TimeoutError in the
// awaiting task, and the tasks are killed as it unwinds out of when_any's frame.
//
// Values must be objects (not references): the winner's is moved out of its frame into the result.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/group/child_set.hpp"
#include "corio/task.hpp"

namespace corio {

/// What `co_await when_any(...)` gives: which task won (its position among the tasks) and its
/// value. For the variadic when_any, T is a std::variant of the tasks' values.
template <class T>
struct WhenAny {
    std::size_t index = 0; ///< position of the winner among the tasks handed to when_any
    /// the winner's value (no default member initializer: T need not be default-constructible)
    T value; // NOLINT(cppcoreguidelines-pro-type-member-init)
};

/// What `co_await when_any(std::vector<Task<>>)` gives: which task returned first.
template <>
struct WhenAny<void> {
    std::size_t index = 0; ///< position of the winner among the tasks handed to when_any
};

namespace detail {

[[noreturn]] inline void throw_no_winner() {
    throw std::runtime_error("corio: when_any: every task was killed before one completed");
}

template <class T>
Task<WhenAny<T>> when_any_vector(std::vector<Task<T>> tasks) {
    std::optional<value_or_monostate_t<T>> slot; // outlives the set, whose children write it
    ChildSet children(ChildPolicy::any);
    co_await BindChildren(children);
    for (std::size_t i = 0; i < tasks.size(); ++i) {
        if constexpr (std::is_void_v<T>) {
            children.spawn(std::move(tasks[i]), Discard{}, i);
        } else {
            children.spawn(std::move(tasks[i]), StoreIn<T>{&slot}, i);
        }
    }
    co_await AwaitChildren(children);
    children.rethrow_if_failed(children.owner()); // the winner threw
    if (!children.decided()) {
        throw_no_winner();
    }
    if constexpr (std::is_void_v<T>) {
        co_return WhenAny<void>{children.winner()};
    } else {
        co_return WhenAny<T>{children.winner(), std::move(*slot)};
    }
}

template <std::size_t... Is, class... Ts>
Task<WhenAny<std::variant<value_or_monostate_t<Ts>...>>>
when_any_variant(std::index_sequence<Is...> /*unused*/, Task<Ts>... tasks) {
    using Variant = std::variant<value_or_monostate_t<Ts>...>;
    std::optional<Variant> slot; // outlives the set, whose children write it
    ChildSet children(ChildPolicy::any);
    co_await BindChildren(children);
    (children.spawn(std::move(tasks), StoreAlternative<Is, Variant>{&slot}, Is), ...);
    co_await AwaitChildren(children);
    children.rethrow_if_failed(children.owner()); // the winner threw
    if (!children.decided()) {
        throw_no_winner();
    }
    co_return WhenAny<Variant>{children.winner(), std::move(*slot)};
}

} // namespace detail

/// Runs the tasks concurrently; the first to return or throw wins and the others are killed (and
/// gone) before this gives the winner's index and value or rethrows its exception. Throws
/// std::invalid_argument for an empty vector. See the top of when_any.hpp.
template <class T>
[[nodiscard]] Task<WhenAny<T>> when_any(std::vector<Task<T>> tasks) {
    static_assert(!std::is_reference_v<T>, "corio: when_any needs tasks that give objects");
    if (tasks.empty()) {
        throw std::invalid_argument("corio: when_any needs at least one task");
    }
    for (const Task<T>& task : tasks) {
        detail::check_unstarted(task, "corio: when_any needs Tasks that have not run");
    }
    return detail::when_any_vector(std::move(tasks));
}

/// Runs the tasks concurrently; the first to return or throw wins and the others are killed (and
/// gone) before this gives the winner's position and its value as that alternative of a variant
/// (std::monostate for a void task), or rethrows its exception.
template <class T0, class... Ts>
[[nodiscard]] Task<
    WhenAny<std::variant<detail::value_or_monostate_t<T0>, detail::value_or_monostate_t<Ts>...>>>
when_any(Task<T0> first, Task<Ts>... rest) {
    static_assert(!std::is_reference_v<T0> && (!std::is_reference_v<Ts> && ...),
                  "corio: when_any needs tasks that give objects");
    detail::check_unstarted(first, "corio: when_any needs Tasks that have not run");
    (detail::check_unstarted(rest, "corio: when_any needs Tasks that have not run"), ...);
    return detail::when_any_variant(std::index_sequence_for<T0, Ts...>{}, std::move(first),
                                    std::move(rest)...);
}

} // namespace corio
