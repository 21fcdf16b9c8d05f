// corio/detail/task_list.hpp - an intrusive FIFO of tasks, the shape of every queue in the kernel.
//
// A task waits on at most one thing at a time, so it is in at most one list: the ready queue, the
// readers or writers of one fd, or the waiters of another task. Each record carries its own links
// and a pointer to the list that holds it, which makes removal O(1) (kill) and enqueueing free of
// allocation.
//
// The list is circular and keeps only its head (the tail is head->prev): one pointer per list, and
// every fd and every task has lists of its own, so idle connections pay for each word here.
#pragma once

#include <cstddef>

namespace corio::detail {

class TaskList;

struct ListLinks {
    ListLinks* prev = nullptr;
    ListLinks* next = nullptr;
    TaskList* owner = nullptr;
};

class TaskList {
public:
    TaskList() = default;
    TaskList(const TaskList&) = delete;
    TaskList& operator=(const TaskList&) = delete;

    [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
    [[nodiscard]] ListLinks* front() const noexcept { return head_; }
    /// The node after `node` in this list, or null at the end.
    [[nodiscard]] ListLinks* after(const ListLinks& node) const noexcept {
        return node.next != head_ ? node.next : nullptr;
    }
    /// O(n): the kernel never needs it, only statistics do.
    [[nodiscard]] std::size_t size() const noexcept {
        std::size_t count = 0;
        for (const ListLinks* node = head_; node != nullptr; node = after(*node)) {
            ++count;
        }
        return count;
    }

    void push_back(ListLinks& node) noexcept {
        node.owner = this;
        if (head_ == nullptr) {
            node.prev = node.next = &node;
            head_ = &node;
            return;
        }
        node.prev = head_->prev;
        node.next = head_;
        head_->prev->next = &node;
        head_->prev = &node;
    }

    ListLinks* pop_front() noexcept {
        ListLinks* node = head_;
        if (node != nullptr) {
            remove(*node);
        }
        return node;
    }

    void remove(ListLinks& node) noexcept {
        if (node.next == &node) {
            head_ = nullptr; // it was the only one
        } else {
            node.prev->next = node.next;
            node.next->prev = node.prev;
            if (head_ == &node) {
                head_ = node.next;
            }
        }
        node.prev = node.next = nullptr;
        node.owner = nullptr;
    }

private:
    ListLinks* head_ = nullptr;
};

} // namespace corio::detail
