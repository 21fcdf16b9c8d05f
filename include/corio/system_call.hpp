// corio/system_call.hpp - the shape of a system call: the trap through which a task asks the kernel.
//
// In Beazley's scheduler a task `yield`s a SystemCall object; the scheduler calls its `handle()`
// with the task and itself, and the call decides whether the task goes straight back to the ready
// queue or waits for something. corio keeps that shape, made type-safe: any type with
//
//     bool handle(corio::Scheduler& kernel, corio::TaskId caller);
//     R    result();                       // what `co_await` gives the task
//
// is a system call. `co_await call` inside a corio::Task suspends the task and runs `handle` in the
// kernel. `handle` returns false to let the caller continue at once (GetTid), or true to leave it
// suspended until the kernel wakes it: the call registered it somewhere (ReadWait, Sleep), or parked
// it and will `Scheduler::unpark` it later. Then `result()` is called on resumption.
//
// The call object lives in the awaiting frame until `result()` returns, so the kernel may write the
// result into it (WaitTask does). Give a call that owns resources a constructor rather than
// relying on aggregate initialisation: see the note on GCC 12 in syscalls.hpp.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <ostream>

namespace corio {

class Scheduler;

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
    friend class Scheduler;
    constexpr TaskId(std::uint64_t serial, std::uint32_t slot) noexcept
        : serial_(serial), slot_(slot) {}

    std::uint64_t serial_ = 0;
    std::uint32_t slot_ = 0; // where the kernel keeps the task: lookups by id are O(1)
};

/// A system call: something a task can `co_await` to trap into the kernel (see the top of this file).
template <class Call>
concept SystemCall = requires(Call& call, Scheduler& kernel, TaskId caller) {
    { call.handle(kernel, caller) } -> std::convertible_to<bool>;
    call.result();
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
