// corio/syscall_concept.hpp - the shape of a system call: the trap through which a task asks the kernel.
//
// In Beazley's scheduler a task `yield`s a SystemCall object; the scheduler calls its `handle()`
// with the task and itself, and the call decides whether the task goes straight back to the ready
// queue or waits for something. corio keeps that shape, made type-safe: any type with
//
//     bool handle(corio::Scheduler& kernel, corio::TaskId caller);
//     R    result();                       // what `co_await` gives the task
//
// is a system call: `co_await call` suspends the task and runs `handle` in the kernel, which
// returns false to let the caller continue at once, true to leave it waiting.
//
// Rules for writing one: docs/guide.md#system-calls.
#pragma once

#include "corio/task_id.hpp"

#include <concepts>

namespace corio {

class Scheduler;

/// A system call: something a task can `co_await` to trap into the kernel (see the top of this file).
template <class Call>
concept SystemCall = requires(Call& call, Scheduler& kernel, TaskId caller) {
    { call.handle(kernel, caller) } -> std::convertible_to<bool>;
    call.result();
};

} // namespace corio
