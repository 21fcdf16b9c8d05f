// corio/task_id.hpp - TaskId: how a task is named, for the lifetime of its Scheduler.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>

namespace corio {

namespace detail {
class TaskTable;
} // namespace detail

/// Identifies a task for the lifetime of its Scheduler. Serial numbers start at 1 and are never
/// reused, so a stale id never names a newer task; a default-constructed id names no task.
class TaskId {
public:
    constexpr TaskId() noexcept = default;

    /// The task's serial number within its scheduler (1, 2, 3, ...; 0 for "no task").
    [[nodiscard]] constexpr std::uint64_t serial() const noexcept { return serial_; }
    /// True if the id names a task (it is not default-constructed).
    [[nodiscard]] constexpr explicit operator bool() const noexcept { return serial_ != 0; }

    /// Ids compare by serial number: a smaller one was created earlier.
    friend constexpr bool operator==(TaskId a, TaskId b) noexcept { return a.serial_ == b.serial_; }
    friend constexpr auto operator<=>(TaskId a, TaskId b) noexcept { return a.serial_ <=> b.serial_; }
    friend std::ostream& operator<<(std::ostream& out, TaskId id) { return out << id.serial_; }

private:
    friend class detail::TaskTable; // makes ids from its records
    constexpr TaskId(std::uint64_t serial, std::uint32_t slot) noexcept
        : serial_(serial), slot_(slot) {}

    std::uint64_t serial_ = 0;
    std::uint32_t slot_ = 0; // where the kernel keeps the task: lookups by id are O(1)
};

} // namespace corio

/// Hashes a TaskId by its serial number, so that ids can key unordered containers.
template <>
struct std::hash<corio::TaskId> {
    /// The hash of the id's serial number.
    std::size_t operator()(corio::TaskId id) const noexcept {
        return std::hash<std::uint64_t>{}(id.serial());
    }
};
