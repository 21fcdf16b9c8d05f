// corio/detail/task_list.hpp - an intrusive FIFO of tasks, the shape of every queue in the kernel.
//
// A task waits on at most one thing at a time, so it is in at most one list: the ready queue, the
// readers or writers of one fd, or the waiters of another task. Each record carries its own links
// and a pointer to the list that holds it, which makes removal O(1) (kill) and enqueueing free of
// allocation.
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
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] ListLinks* front() const noexcept { return head_; }

    void push_back(ListLinks& node) noexcept {
        node.prev = tail_;
        node.next = nullptr;
        node.owner = this;
        (tail_ != nullptr ? tail_->next : head_) = &node;
        tail_ = &node;
        ++size_;
    }

    ListLinks* pop_front() noexcept {
        ListLinks* node = head_;
        if (node != nullptr) {
            remove(*node);
        }
        return node;
    }

    void remove(ListLinks& node) noexcept {
        (node.prev != nullptr ? node.prev->next : head_) = node.next;
        (node.next != nullptr ? node.next->prev : tail_) = node.prev;
        node.prev = node.next = nullptr;
        node.owner = nullptr;
        --size_;
    }

private:
    ListLinks* head_ = nullptr;
    ListLinks* tail_ = nullptr;
    std::size_t size_ = 0;
};

} // namespace corio::detail
