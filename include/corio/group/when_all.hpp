// corio/group/when_all.hpp - when_all: run tasks concurrently and collect every value, in order.
//
//     auto [user, orders] = co_await corio::when_all(fetch_user(id), fetch_orders(id));
//     std::vector<std::string> pages = co_await corio::when_all(std::move(fetches));
//
// when_all is a Task that runs in the awaiting task and keeps a ChildSet (group/child_set.hpp) in
// its frame: each task runs as a separate task of the Scheduler under a supervisor that stores its
// value into a slot of when_all's frame, and destroying that frame (a kill, a deadline unwinding
// it) kills every child first. The slots are declared before the set, so they outlive the
// children that write into them.
//
// Rules: docs/guide.md#when_all.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/group/child_set.hpp"
#include "corio/task.hpp"

namespace corio {

namespace detail {

template <std::size_t... Is, class... Ts>
Task<std::tuple<value_or_monostate_t<Ts>...>> when_all_tuple(std::index_sequence<Is...> /*unused*/,
                                                             Task<Ts>... tasks) {
    // The slots outlive the set: the set's destructor kills the children that write into them.
    std::tuple<std::optional<value_or_monostate_t<Ts>>...> slots;
    ChildSet children(ChildPolicy::all);
    co_await BindChildren(children);
    (children.spawn(std::move(tasks), StoreIn<value_or_monostate_t<Ts>>{&std::get<Is>(slots)}, Is),
     ...);
    co_await AwaitChildren(children);
    children.rethrow_if_failed(children.owner());
    co_return std::tuple<value_or_monostate_t<Ts>...>(std::move(*std::get<Is>(slots))...);
}

template <class T>
Task<std::vector<T>> when_all_vector(std::vector<Task<T>> tasks) {
    if (tasks.empty()) {
        co_return std::vector<T>{};
    }
    std::vector<std::optional<T>> slots(tasks.size()); // sized once: the children point into it
    ChildSet children(ChildPolicy::all);
    co_await BindChildren(children);
    for (std::size_t i = 0; i < tasks.size(); ++i) {
        children.spawn(std::move(tasks[i]), StoreIn<T>{&slots[i]}, i);
    }
    co_await AwaitChildren(children);
    children.rethrow_if_failed(children.owner());
    std::vector<T> values;
    values.reserve(slots.size());
    for (std::optional<T>& slot : slots) {
        values.push_back(std::move(*slot));
    }
    co_return values;
}

inline Task<> when_all_void(std::vector<Task<>> tasks) {
    if (tasks.empty()) {
        co_return;
    }
    ChildSet children(ChildPolicy::all);
    co_await BindChildren(children);
    for (std::size_t i = 0; i < tasks.size(); ++i) {
        children.spawn(std::move(tasks[i]), Discard{}, i);
    }
    co_await AwaitChildren(children);
    children.rethrow_if_failed(children.owner());
}

} // namespace detail

/// Runs the tasks concurrently, each as a task of its own, and gives their values as a tuple in
/// argument order (std::monostate for a void task). If one throws, the others are killed and the
/// first exception propagates. See docs/guide.md#when_all.
template <class... Ts>
[[nodiscard]] Task<std::tuple<detail::value_or_monostate_t<Ts>...>> when_all(Task<Ts>... tasks) {
    static_assert((!std::is_reference_v<Ts> && ...),
                  "corio: when_all needs tasks that give objects");
    (detail::check_unstarted(tasks, "corio: when_all needs Tasks that have not run"), ...);
    return detail::when_all_tuple(std::index_sequence_for<Ts...>{}, std::move(tasks)...);
}

/// Runs the tasks concurrently and gives their values in the vector's order; an empty vector
/// gives an empty vector at once. If one throws, the others are killed and the first exception
/// propagates.
template <class T>
requires(!std::is_void_v<T>)
    [[nodiscard]] Task<std::vector<T>> when_all(std::vector<Task<T>> tasks) {
    static_assert(!std::is_reference_v<T>, "corio: when_all needs tasks that give objects");
    for (const Task<T>& task : tasks) {
        detail::check_unstarted(task, "corio: when_all needs Tasks that have not run");
    }
    return detail::when_all_vector(std::move(tasks));
}

/// Runs the void tasks concurrently until all have returned; an empty vector returns at once. If
/// one throws, the others are killed and the first exception propagates.
[[nodiscard]] inline Task<> when_all(std::vector<Task<>> tasks) {
    for (const Task<>& task : tasks) {
        detail::check_unstarted(task, "corio: when_all needs Tasks that have not run");
    }
    return detail::when_all_void(std::move(tasks));
}

} // namespace corio
