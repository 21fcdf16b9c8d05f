// corio/group/when_any.hpp - when_any: run tasks concurrently; the first to finish wins, the rest are
// killed.
//
//     corio::WhenAny<std::string> first = co_await corio::when_any(std::move(mirrors));
//     use(first.index, first.value);
//     auto any = co_await corio::when_any(read_reply(socket), read_reply(backup)); // variadic
//     if (any.index == 0) { ... std::get<0>(any.value) ... }
//
// Built like when_all (a Task that keeps a ChildSet in its frame: group/child_set.hpp). The first
// child to return or throw decides, and kills the others while its own task is still the running
// one, so no loser runs again and nothing of them is left once when_any gives its result.
//
// Rules: docs/guide.md#when_any.
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
/// std::invalid_argument for an empty vector. See docs/guide.md#when_any.
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
