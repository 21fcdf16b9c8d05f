// corio/task.hpp - Task<T>: a lazy coroutine that owns its frame and is awaited by another task.
//
//   parent frame                    child frame (owned by the Task object in the parent's frame)
//   co_await child_task  ──start──▶ runs until it finishes or traps into the kernel
//        ▲                                   │
//        └────────── continuation ◀──────────┘ final_suspend hands control back to the parent
//
// How control moves, and why it never grows the stack:
// * `co_await task` starts the child directly from the parent's await_suspend. If the child finishes
//   without suspending, its final_suspend finds no continuation yet (the parent becomes the
//   continuation only once the child has suspended) and simply returns to its starter;
//   await_suspend then returns false and the parent continues in the same frame of the C++ stack.
//   A loop of a million synchronously finishing `co_await`s therefore runs in constant stack
//   space with any compiler at any optimisation level. (Handing the child over by
//   symmetric transfer would rely on the compiler turning resume-calls into tail calls, which GCC
//   does not do at -O0: such a loop overflows the stack in a Debug build.)
// * If the child suspends (it waits for I/O, a timer, another task...), the parent stays suspended
//   too. When the kernel later resumes the child and it finishes, its final_suspend returns the
//   parent's handle: control moves to the parent by symmetric transfer, never by a nested resume().
//
// Rules (ownership, values, one awaiter, lambdas): docs/guide.md#tasks.
#pragma once

#include "corio/syscall_concept.hpp"
#include "corio/detail/frame_pool.hpp"

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <functional>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace corio {

template <class T = void>
class Task;

namespace detail {

// Runs a system call in the kernel. Kernel is a template parameter only so that this file does not
// need the Scheduler's definition: it is always corio::Scheduler.
template <class Call, class Kernel>
class Trap {
public:
    Trap(Call&& call, Kernel& kernel) : call_(std::move(call)), kernel_(&kernel) {}

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> caller) { return kernel_->enter(call_, caller); }
    decltype(auto) await_resume() {
        kernel_->throw_if_interrupted(); // a deadline ended the wait: no result to give
        return call_.result();
    }

private:
    Call call_;
    Kernel* kernel_;
};

// An object that is its own awaiter (AsyncSocket's recv, send...), as opposed to one with an
// operator co_await (Task) or a system call.
template <class Awaitable>
concept Awaiter = requires(std::remove_reference_t<Awaitable>& awaiter) {
    awaiter.await_ready();
    awaiter.await_resume();
} && !requires(Awaitable&& awaitable) { std::forward<Awaitable>(awaitable).operator co_await(); };

// What await_transform gives for an Awaiter: the awaiter itself, by pointer. GCC 12 copies into
// the frame any awaiter that await_transform returns by reference, next to the operand that is
// there already (a temporary of the co_await's full-expression, alive until the task resumes):
// this way the copy is one pointer, not a second awaiter.
template <class Operand>
class AwaiterRef {
public:
    explicit AwaiterRef(Operand& awaiter) noexcept : awaiter_(&awaiter) {}

    decltype(auto) await_ready() { return awaiter_->await_ready(); }
    template <class Promise>
    decltype(auto) await_suspend(std::coroutine_handle<Promise> caller) {
        return awaiter_->await_suspend(caller);
    }
    decltype(auto) await_resume() { return awaiter_->await_resume(); }

private:
    Operand* awaiter_;
};

// Where frames that are being destroyed hand what their destructors throw (see destroy_frame): the
// kernel points it at a vector of its own while it destroys a task (Failures::destroy_frames in kernel/failures.hpp).
inline thread_local std::vector<std::exception_ptr>* destruction_failures = nullptr;

// A destructor threw while a frame was being destroyed: the kernel reports it like a failure
// nobody waited for. With no kernel destroying a task on this thread (a Task destroyed by hand,
// outside any Scheduler), or no memory to keep it, it ends the program, as a destructor that
// throws where it may not does.
inline void hand_over_destruction_failure(const std::exception_ptr& error) noexcept {
    if (destruction_failures == nullptr) {
        std::terminate();
    }
    try {
        destruction_failures->push_back(error);
    } catch (...) {
        std::terminate();
    }
}

#if defined(CORIO_COUNT_FRAMES)
// Tests define CORIO_COUNT_FRAMES (in every translation unit of the program) to check that no
// coroutine frame is leaked: this counts the frames alive now.
inline std::atomic<long> live_frame_count{0};
#endif

// Where a frame was made: its coroutine's name and file. A promise constructor's default
// argument, so that the compiler fills it in from inside the coroutine (std::source_location is
// not there with clang 14 and libstdc++ 12; the builtins are, in GCC and Clang alike). Explicit,
// so that no coroutine's own parameters can pass for it.
struct FrameOrigin {
    explicit FrameOrigin(const char* function_name, const char* file_name) noexcept
        : function(function_name), file(file_name) {}
    const char* function;
    const char* file;
};

// Where a task was spawned (add_task, NewTask): a default argument, filled in at the call.
struct SpawnSite {
    explicit SpawnSite(const char* file_name, std::uint32_t line_number) noexcept
        : file(file_name), line(line_number) {}
    const char* file;
    std::uint32_t line;
};

// What every corio coroutine frame knows, whatever it returns.
class PromiseBase {
public:
    explicit PromiseBase(FrameOrigin origin) noexcept : function_(origin.function), file_(origin.file) {}

    // Frames come from the thread's frame pool (detail/frame_pool.hpp). Both operators are
    // inlined alike, or GCC 12 warns of a new/delete mismatch it imagines.
    [[gnu::always_inline]] static void* operator new(std::size_t size) {
        void* frame = allocate_frame(size);
#if defined(CORIO_COUNT_FRAMES)
        live_frame_count.fetch_add(1, std::memory_order_relaxed);
#endif
        return frame;
    }
    [[gnu::always_inline]] static void operator delete(void* frame, std::size_t size) noexcept {
#if defined(CORIO_COUNT_FRAMES)
        live_frame_count.fetch_sub(1, std::memory_order_relaxed);
#endif
        deallocate_frame(frame, size);
    }

    std::suspend_always initial_suspend() const noexcept { return {}; }

    struct FinalAwaiter {
        bool await_ready() const noexcept { return false; }
        template <class Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) const noexcept {
            PromiseBase& promise = self.promise();
            if (promise.continuation_.address() == self.address()) [[unlikely]] {
                // Marked by destroy_frame: a destructor threw while the frame was destroyed, and
                // the coroutine came here instead of going away. Finish the destruction.
                hand_over_destruction_failure(promise.exception_);
                self.destroy();
                return std::noop_coroutine();
            }
            if (!promise.continuation_) {
                return std::noop_coroutine(); // back to our starter, or to the kernel for a root task
            }
            return promise.continuation_;
        }
        void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() const noexcept { return {}; }

    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    // System calls trap into the kernel that runs this task; every other awaitable passes through.
    //
    // Each records the line of the co_await (a default argument: the compiler gives the line of
    // the co_await it calls this for), where introspection finds the frame while it is suspended
    // (corio/diag/); a Task awaited after it sets awaited_, so the chain of awaited frames can be
    // walked from a task's root to where it waits. Two stores per co_await.
    template <class Call>
        requires SystemCall<std::remove_cvref_t<Call>>
    auto await_transform(Call&& call, std::uint32_t line = __builtin_LINE()) {
        suspended_at(line);
        if (kernel_ == nullptr) {
            throw std::logic_error("corio: a system call was awaited outside a Scheduler's task");
        }
        using Kernel = std::remove_pointer_t<decltype(kernel_)>;
        return Trap<std::remove_cvref_t<Call>, Kernel>(std::remove_cvref_t<Call>(std::forward<Call>(call)), *kernel_);
    }
    template <class Awaitable>
        requires(!SystemCall<std::remove_cvref_t<Awaitable>> && !Awaiter<Awaitable>)
    Awaitable&& await_transform(Awaitable&& awaitable, std::uint32_t line = __builtin_LINE()) noexcept {
        suspended_at(line);
        return std::forward<Awaitable>(awaitable); // e.g. a Task: its operator co_await comes next
    }
    template <class Awaitable>
        requires(!SystemCall<std::remove_cvref_t<Awaitable>> && Awaiter<Awaitable>)
    auto await_transform(Awaitable&& awaiter, std::uint32_t line = __builtin_LINE()) noexcept {
        suspended_at(line);
        return AwaiterRef<std::remove_reference_t<Awaitable>>(awaiter);
    }

    [[nodiscard]] const std::exception_ptr& exception() const noexcept { return exception_; }
    [[nodiscard]] Scheduler* kernel() const noexcept { return kernel_; }
    void set_kernel(Scheduler* kernel) noexcept { kernel_ = kernel; }

    // ---- Where the frame is (read by introspection, corio/diag/, while its task is suspended).

    /// The coroutine's name (the compiler's short name: `handle_client`, `operator()`).
    [[nodiscard]] const char* function() const noexcept { return function_; }
    /// The coroutine's source file.
    [[nodiscard]] const char* file() const noexcept { return file_; }
    /// The line of the co_await the frame last reached (0 before its first one).
    [[nodiscard]] std::uint32_t line() const noexcept { return line_; }
    /// The frame this one awaits (a Task that suspended), or null when it waits on anything else.
    /// Only meaningful while its task is suspended: a frame that resumed after its child ended
    /// still points at it until its next co_await.
    [[nodiscard]] const PromiseBase* awaited() const noexcept { return awaited_; }

protected:
    void rethrow_if_failed() const {
        if (exception_) {
            std::rethrow_exception(exception_);
        }
    }

private:
    template <class, bool>
    friend class TaskAwaiter;
    template <class Promise>
    friend void destroy_frame(std::coroutine_handle<Promise> frame);

    void suspended_at(std::uint32_t line) noexcept {
        line_ = line;
        awaited_ = nullptr;
    }

    std::coroutine_handle<> continuation_;
    Scheduler* kernel_ = nullptr;
    std::exception_ptr exception_;
    const char* function_;
    const char* file_;
    const PromiseBase* awaited_ = nullptr;
    std::uint32_t line_ = 0;
};

// Destroys a coroutine frame, suspended or not. A destructor that throws while a suspended frame
// is destroyed does not leave destroy(): GCC and Clang both hand the exception to the promise's
// unhandled_exception() and take the coroutine on to its final suspend point, with the rest of the
// frame still alive (and no continuation may be resumed from there: the frames that await it are
// being destroyed too). So the frame is marked first: its continuation is set to itself, which no
// frame's ever is otherwise, and FinalAwaiter, finding the mark, hands the exception over (see
// hand_over_destruction_failure) and finishes destroying the frame.
template <class Promise>
void destroy_frame(std::coroutine_handle<Promise> frame) {
    frame.promise().continuation_ = frame;
    frame.destroy();
}

template <class T>
class Promise final : public PromiseBase {
public:
    explicit Promise(FrameOrigin origin = FrameOrigin(__builtin_FUNCTION(), __builtin_FILE())) noexcept
        : PromiseBase(origin) {}
    Task<T> get_return_object() noexcept;

    template <class Value = T>
        requires std::convertible_to<Value&&, T>
    void return_value(Value&& value) noexcept(std::is_nothrow_constructible_v<T, Value&&>) {
        if constexpr (std::is_reference_v<T>) {
            value_.emplace(value);
        } else {
            value_.emplace(std::forward<Value>(value));
        }
    }

    // The awaited value: a reference into the frame for `co_await task`, moved out for
    // `co_await std::move(task)` and temporaries.
    decltype(auto) result() & {
        rethrow_if_failed();
        if constexpr (std::is_reference_v<T>) {
            return static_cast<T>(value_->get());
        } else {
            return static_cast<T&>(*value_);
        }
    }
    T result() && {
        rethrow_if_failed();
        if constexpr (std::is_reference_v<T>) {
            return static_cast<T>(value_->get());
        } else {
            return std::move(*value_);
        }
    }

private:
    using Stored = std::conditional_t<std::is_reference_v<T>,
                                      std::reference_wrapper<std::remove_reference_t<T>>, T>;
    std::optional<Stored> value_;
};

template <>
class Promise<void> final : public PromiseBase {
public:
    explicit Promise(FrameOrigin origin = FrameOrigin(__builtin_FUNCTION(), __builtin_FILE())) noexcept
        : PromiseBase(origin) {}
    Task<void> get_return_object() noexcept;
    void return_void() const noexcept {}
    void result() const { rethrow_if_failed(); }
};

// Starts the awaited child in place (see the top of this file) and delivers its outcome: moved out
// of the frame when the Task was an rvalue, by reference into the frame when it was an lvalue.
template <class T, bool MoveResult>
class TaskAwaiter {
public:
    using Handle = std::coroutine_handle<Promise<T>>;
    explicit TaskAwaiter(Handle child) noexcept : child_(child) {}

    bool await_ready() const {
        if (!child_) {
            throw std::logic_error("corio: co_await on an empty Task");
        }
        return child_.done();
    }

    template <class ParentPromise>
    bool await_suspend(std::coroutine_handle<ParentPromise> parent) {
        PromiseBase& child = child_.promise();
        if (child.continuation_) { // it is suspended, and another task awaits it already
            throw std::logic_error("corio: a Task is awaited by two tasks at once");
        }
        if constexpr (std::is_base_of_v<PromiseBase, ParentPromise>) {
            child.kernel_ = parent.promise().kernel();
        }
        // No continuation yet: if the child finishes now, its final_suspend returns here. (No
        // flag for "starting" either: every frame would carry it.)
        child_.resume();
        if (child_.done()) {
            return false; // finished already: the parent goes on without suspending
        }
        child.continuation_ = parent; // it suspended: it resumes the parent when it finishes
        if constexpr (std::is_base_of_v<PromiseBase, ParentPromise>) {
            parent.promise().awaited_ = &child; // the chain introspection walks
        }
        return true;
    }

    decltype(auto) await_resume() {
        if constexpr (MoveResult) {
            return std::move(child_.promise()).result();
        } else {
            return child_.promise().result();
        }
    }

private:
    Handle child_;
};

} // namespace detail

/// A lazy coroutine returning T. It starts when first awaited (or when handed to a Scheduler),
/// owns its frame, and is move-only. `co_await task` gives the value or rethrows the exception.
template <class T>
class [[nodiscard]] Task {
public:
    using promise_type = detail::Promise<T>;            ///< What makes a function a corio coroutine.
    using Handle = std::coroutine_handle<promise_type>; ///< The coroutine handle a Task owns.
    using value_type = T;                               ///< What `co_await task` gives.

    /// An empty Task: owns no frame (valid() is false).
    Task() noexcept = default;
    /// Takes ownership of a coroutine frame (the promise does this; rarely needed elsewhere).
    explicit Task(Handle handle) noexcept : handle_(handle) {}
    /// Takes over `other`'s frame; `other` becomes empty.
    Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    /// Destroys the frame this Task owns, if any, then takes over `other`'s.
    Task& operator=(Task&& other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    /// Destroys the coroutine frame, whether it never ran, finished, or is suspended.
    ~Task() { reset(); }

    /// True when this Task owns a coroutine frame.
    [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(handle_); }
    /// True when the coroutine has run to its end (returned or threw).
    [[nodiscard]] bool done() const noexcept { return handle_ && handle_.done(); }

    /// `co_await task` on an lvalue: runs the task inside the awaiting one and gives its value
    /// by reference into the frame (T& for a Task<T>), or rethrows its exception. Throws
    /// std::logic_error for an empty Task, and for a Task that another task awaits at this
    /// moment (one Task has one awaiter at a time). Awaiting a Task that has finished gives its
    /// outcome again without running anything.
    auto operator co_await() & noexcept { return detail::TaskAwaiter<T, false>(handle_); }
    /// `co_await std::move(task)` or on a temporary: the same, with the value moved out.
    auto operator co_await() && noexcept { return detail::TaskAwaiter<T, true>(handle_); }

    /// Gives up ownership of the frame (the Scheduler takes it over this way).
    [[nodiscard]] Handle release() noexcept { return std::exchange(handle_, {}); }

private:
    void reset() noexcept {
        if (handle_) {
            detail::destroy_frame(std::exchange(handle_, {}));
        }
    }

    Handle handle_;
};

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
    return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}
inline Task<void> Promise<void>::get_return_object() noexcept {
    return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}
} // namespace detail

} // namespace corio
