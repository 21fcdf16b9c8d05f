// corio/detail/timer_heap.hpp - the kernel's timer queue: a binary min-heap of intrusive nodes.
//
// Ordered by (deadline, sequence): timers with the same deadline fire in the order they were armed.
// Each node knows its index in the heap, so cancelling one is O(log n) without a search.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace corio::detail {

struct TimerNode {
    static constexpr std::size_t not_armed = static_cast<std::size_t>(-1);

    // What expiry means: wake a sleeping task, or interrupt a task whose deadline passed.
    enum class Kind : std::uint8_t { wake, deadline };

    explicit TimerNode(Kind what) noexcept : kind(what) {}

    std::chrono::steady_clock::time_point deadline{};
    std::uint64_t sequence = 0;
    std::size_t index = not_armed;
    Kind kind;

    [[nodiscard]] bool armed() const noexcept { return index != not_armed; }
};

class TimerHeap {
public:
    [[nodiscard]] bool empty() const noexcept { return nodes_.empty(); }
    [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }
    [[nodiscard]] TimerNode* top() const noexcept { return nodes_.empty() ? nullptr : nodes_.front(); }

    void push(TimerNode& node, std::chrono::steady_clock::time_point deadline) {
        nodes_.push_back(&node); // first: if it throws, the node stays unarmed
        node.deadline = deadline;
        node.sequence = next_sequence_++;
        node.index = nodes_.size() - 1;
        sift_up(node.index);
    }

    void remove(TimerNode& node) noexcept {
        std::size_t index = node.index;
        if (index == TimerNode::not_armed) {
            return;
        }
        node.index = TimerNode::not_armed;
        TimerNode* last = nodes_.back();
        nodes_.pop_back();
        if (index == nodes_.size()) {
            return; // it was the last one
        }
        place(index, last);
        if (index > 0 && earlier(*nodes_[index], *nodes_[parent(index)])) {
            sift_up(index);
        } else {
            sift_down(index);
        }
    }

    TimerNode* pop() noexcept {
        TimerNode* node = top();
        if (node != nullptr) {
            remove(*node);
        }
        return node;
    }

private:
    static bool earlier(const TimerNode& a, const TimerNode& b) noexcept {
        return a.deadline != b.deadline ? a.deadline < b.deadline : a.sequence < b.sequence;
    }
    static std::size_t parent(std::size_t index) noexcept { return (index - 1) / 2; }

    void place(std::size_t index, TimerNode* node) noexcept {
        nodes_[index] = node;
        node->index = index;
    }
    void sift_up(std::size_t index) noexcept {
        TimerNode* node = nodes_[index];
        while (index > 0 && earlier(*node, *nodes_[parent(index)])) {
            place(index, nodes_[parent(index)]);
            index = parent(index);
        }
        place(index, node);
    }
    void sift_down(std::size_t index) noexcept {
        TimerNode* node = nodes_[index];
        const std::size_t count = nodes_.size();
        for (;;) {
            std::size_t child = 2 * index + 1;
            if (child >= count) {
                break;
            }
            if (child + 1 < count && earlier(*nodes_[child + 1], *nodes_[child])) {
                ++child;
            }
            if (!earlier(*nodes_[child], *node)) {
                break;
            }
            place(index, nodes_[child]);
            index = child;
        }
        place(index, node);
    }

    std::vector<TimerNode*> nodes_;
    std::uint64_t next_sequence_ = 0;
};

} // namespace corio::detail
