// Model test: the language of the randomized scheduler test. A Program is a tree of tasks, each a
// list of operations (spawn, kill, wait, sleep, yield, socket I/O, events, throw, timeouts); the
// interpreter (interpreter.hpp) runs it on one Scheduler and checks what happened.
//
// Programs are decoded from bytes, so that libFuzzer can drive them (tests/fuzz/fuzz_model.cpp)
// and a seed can make them (bytes_from_seed): every byte string is a valid program, and decoding
// is total, bounded and deterministic. The layout, for whoever writes a corpus file by hand:
//
//     task    := count op{count % (max_ops_per_task + 1)}     (task 0 is the root)
//     op      := kind(byte % 32, see kind_table) arguments
//     spawn   := the child's task, decoded right here (depth first: children get higher indices)
//     wait    := byte b, timeout: b odd, a child spawned by an earlier op (if any), else task
//                self + 1 + (b >> 1) % 4;   kill := byte b: task b % (tasks decoded so far + 2)
//     duration byte: (b & 31) units of {1ms, 1ms, 1ms, 3ms, 10us, 1us, 0, 1s}[b >> 5]
//     timeout := byte b; b % 3 == 0: none, else a duration byte follows
//
// A missing byte reads as 0, so a truncated input just ends the program early.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace corio::model {

using Duration = std::chrono::nanoseconds;

enum class OpKind : std::uint8_t {
    spawn,          // NewTask: the child task `target` (its program follows in the tree)
    yield,          // Yield
    sleep,          // Sleep{duration}
    sleep_until,    // SleepUntil{start of the run + duration}
    wait,           // WaitTask{task `target`} (a task of higher index: waits never form a cycle)
    kill,           // KillTask{task `target`}, possibly itself, an ancestor, or one never spawned
    throw_error,    // throws a TestError: the task fails
    recv,           // AsyncSocket::recv on socket end `target`, up to `size` bytes
    recv_lent,      // AsyncSocket::recv_lent on socket end `target` (whatever has arrived)
    send,           // AsyncSocket::send on socket end `target`, `size` bytes of its stream
    read_wait,      // ReadWait on socket end `target`
    write_wait,     // WriteWait on socket end `target`
    event_wait,     // Event `target`: wait()
    event_set,      // Event `target`: set()
    event_clear,    // Event `target`: clear()
    nested_timeout, // timeout_after(duration, timeout_after(timeout, Sleep{size ns}))
};

struct Op {
    OpKind kind = OpKind::yield;
    int target = 0;
    std::size_t size = 0;
    Duration duration{};
    std::optional<Duration> timeout; // the operation runs inside timeout_after(*timeout, ...)
};

struct TaskProgram {
    int parent = -1; // -1 for the root
    std::vector<Op> ops;
};

struct Program {
    std::vector<TaskProgram> tasks; // tasks[0] is the root
};

// Bounds that keep every run small and fast whatever the input.
inline constexpr int max_tasks = 12;
inline constexpr std::size_t max_ops_per_task = 10;
inline constexpr std::size_t max_ops = 80;
inline constexpr int max_depth = 4;
inline constexpr int socket_pairs = 2; // socket ends 0..3: end e is paired with end e ^ 1
inline constexpr int event_count = 2;
inline constexpr std::size_t big_transfer = std::size_t{64} << 10;
// The timeout of a wait that could otherwise last forever (an fd nobody writes to, an Event
// nobody sets) when the input gives none: every run ends.
inline constexpr Duration forced_timeout = std::chrono::milliseconds(50);

namespace detail {

// 32 slots: the weight of each kind in a random program.
inline constexpr std::array<OpKind, 32> kind_table{
    OpKind::spawn,       OpKind::spawn,      OpKind::spawn,       OpKind::spawn,
    OpKind::spawn,       OpKind::spawn,      OpKind::yield,       OpKind::yield,
    OpKind::sleep,       OpKind::sleep,      OpKind::sleep,       OpKind::sleep_until,
    OpKind::wait,        OpKind::wait,       OpKind::wait,        OpKind::wait,
    OpKind::kill,        OpKind::kill,       OpKind::kill,        OpKind::throw_error,
    OpKind::recv,        OpKind::recv,       OpKind::recv_lent,   OpKind::send,
    OpKind::send,        OpKind::read_wait,  OpKind::write_wait,  OpKind::event_wait,
    OpKind::event_wait,  OpKind::event_set,  OpKind::event_clear, OpKind::nested_timeout,
};

class ByteReader {
public:
    explicit ByteReader(std::span<const std::uint8_t> bytes) noexcept : bytes_(bytes) {}
    std::uint8_t next() noexcept { return position_ < bytes_.size() ? bytes_[position_++] : 0; }
    [[nodiscard]] bool exhausted() const noexcept { return position_ >= bytes_.size(); }

private:
    std::span<const std::uint8_t> bytes_;
    std::size_t position_ = 0;
};

inline Duration decode_duration(std::uint8_t byte) {
    using namespace std::chrono;
    static constexpr std::array<Duration, 8> units{milliseconds(1), milliseconds(1),
                                                   milliseconds(1), milliseconds(3),
                                                   microseconds(10), microseconds(1),
                                                   Duration::zero(), seconds(1)};
    return (byte & 31) * units[byte >> 5];
}

inline std::optional<Duration> decode_timeout(ByteReader& in) {
    if (in.next() % 3 == 0) {
        return std::nullopt;
    }
    return decode_duration(in.next());
}

inline std::size_t decode_size(std::uint8_t byte) {
    // Mostly small; sometimes enough to fill a socket buffer (so that a send must wait).
    return (byte & 0x80) != 0 ? big_transfer * ((byte & 3) + 1) : std::size_t{(byte & 0x7fU) + 1U};
}

class Decoder {
public:
    explicit Decoder(std::span<const std::uint8_t> bytes) noexcept : in_(bytes) {}

    Program decode() {
        decode_task(-1, 0);
        return std::move(program_);
    }

private:
    int decode_task(int parent, int depth) {
        const int index = static_cast<int>(program_.tasks.size());
        program_.tasks.push_back(TaskProgram{parent, {}});
        const std::size_t count = in_.next() % (max_ops_per_task + 1);
        for (std::size_t i = 0; i < count && total_ops_ < max_ops && !in_.exhausted(); ++i) {
            ++total_ops_;
            Op op = decode_op(index, depth);
            program_.tasks[static_cast<std::size_t>(index)].ops.push_back(op);
        }
        return index;
    }

    Op decode_op(int self, int depth) {
        Op op;
        op.kind = kind_table[in_.next() % kind_table.size()];
        switch (op.kind) {
        case OpKind::spawn:
            if (depth + 1 > max_depth || static_cast<int>(program_.tasks.size()) >= max_tasks) {
                op.kind = OpKind::yield; // no room for another task
                break;
            }
            op.target = decode_task(self, depth + 1);
            break;
        case OpKind::yield:
        case OpKind::throw_error: break;
        case OpKind::sleep:
        case OpKind::sleep_until: op.duration = decode_duration(in_.next()); break;
        case OpKind::wait: {
            // Half the time a child this task spawned before (likely alive), else a later task.
            const std::uint8_t pick = in_.next();
            const auto& earlier = program_.tasks[static_cast<std::size_t>(self)].ops;
            std::vector<int> children;
            for (const Op& done : earlier) {
                if (done.kind == OpKind::spawn) {
                    children.push_back(done.target);
                }
            }
            op.target = (pick & 1) != 0 && !children.empty()
                            ? children[static_cast<std::size_t>(pick >> 1) % children.size()]
                            : self + 1 + (pick >> 1) % 4;
            op.timeout = decode_timeout(in_);
            break;
        }
        case OpKind::kill: // mostly a task decoded so far (an ancestor, itself, an elder), else a later one
            op.target = in_.next() % (static_cast<int>(program_.tasks.size()) + 2);
            break;
        case OpKind::recv:
        case OpKind::recv_lent:
        case OpKind::send:
            op.target = in_.next() % (2 * socket_pairs);
            op.size = decode_size(in_.next());
            op.timeout = decode_timeout(in_).value_or(forced_timeout);
            break;
        case OpKind::read_wait:
        case OpKind::write_wait:
            op.target = in_.next() % (2 * socket_pairs);
            op.timeout = decode_timeout(in_).value_or(forced_timeout);
            break;
        case OpKind::event_wait:
            op.target = in_.next() % event_count;
            op.timeout = decode_timeout(in_).value_or(forced_timeout);
            break;
        case OpKind::event_set:
        case OpKind::event_clear: op.target = in_.next() % event_count; break;
        case OpKind::nested_timeout:
            op.duration = decode_duration(in_.next());
            op.timeout = decode_duration(in_.next());
            op.size = static_cast<std::size_t>(decode_duration(in_.next()).count());
            break;
        }
        return op;
    }

    ByteReader in_;
    Program program_;
    std::size_t total_ops_ = 0;
};

} // namespace detail

/// Decodes any byte string into a valid, bounded Program.
inline Program decode(std::span<const std::uint8_t> bytes) {
    return detail::Decoder(bytes).decode();
}

/// The bytes a seed stands for: what `--seed N` replays.
inline std::vector<std::uint8_t> bytes_from_seed(std::uint64_t seed) {
    std::mt19937_64 random(seed);
    // Lengths vary so that small programs are common too (they shrink failures).
    const std::size_t length = 8 + random() % 400;
    std::vector<std::uint8_t> bytes(length);
    for (std::uint8_t& byte : bytes) {
        byte = static_cast<std::uint8_t>(random());
    }
    return bytes;
}

inline const char* name_of(OpKind kind) {
    switch (kind) {
    case OpKind::spawn: return "spawn";
    case OpKind::yield: return "yield";
    case OpKind::sleep: return "sleep";
    case OpKind::sleep_until: return "sleep_until";
    case OpKind::wait: return "wait";
    case OpKind::kill: return "kill";
    case OpKind::throw_error: return "throw";
    case OpKind::recv: return "recv";
    case OpKind::recv_lent: return "recv_lent";
    case OpKind::send: return "send";
    case OpKind::read_wait: return "read_wait";
    case OpKind::write_wait: return "write_wait";
    case OpKind::event_wait: return "event_wait";
    case OpKind::event_set: return "event_set";
    case OpKind::event_clear: return "event_clear";
    case OpKind::nested_timeout: return "nested_timeout";
    }
    return "?";
}

inline std::string to_string(Duration duration) {
    return std::to_string(duration.count()) + "ns";
}

/// One line per operation, e.g. "task 1 op 2: wait task 3 timeout 2000000ns".
inline std::string to_string(const Op& op) {
    std::string text = name_of(op.kind);
    switch (op.kind) {
    case OpKind::spawn:
    case OpKind::wait:
    case OpKind::kill: text += " task " + std::to_string(op.target); break;
    case OpKind::sleep:
    case OpKind::sleep_until: text += " " + to_string(op.duration); break;
    case OpKind::recv_lent: text += " on end " + std::to_string(op.target); break;
    case OpKind::recv:
    case OpKind::send: text += " " + std::to_string(op.size) + " bytes";
        [[fallthrough]];
    case OpKind::read_wait:
    case OpKind::write_wait: text += " on end " + std::to_string(op.target); break;
    case OpKind::event_wait:
    case OpKind::event_set:
    case OpKind::event_clear: text += " event " + std::to_string(op.target); break;
    case OpKind::nested_timeout:
        text += " outer " + to_string(op.duration) + " sleep " +
                to_string(Duration(static_cast<Duration::rep>(op.size)));
        break;
    case OpKind::yield:
    case OpKind::throw_error: break;
    }
    if (op.timeout) {
        text += (op.kind == OpKind::nested_timeout ? " inner " : " timeout ") + to_string(*op.timeout);
    }
    return text;
}

inline std::string to_string(const Program& program) {
    std::string text;
    for (std::size_t task = 0; task < program.tasks.size(); ++task) {
        const TaskProgram& tp = program.tasks[task];
        text += "task " + std::to_string(task) +
                (tp.parent < 0 ? std::string(" (root)") : " (child of " + std::to_string(tp.parent) + ")") +
                ":\n";
        for (std::size_t op = 0; op < tp.ops.size(); ++op) {
            text += "  op " + std::to_string(op) + ": " + to_string(tp.ops[op]) + "\n";
        }
    }
    return text;
}

} // namespace corio::model
