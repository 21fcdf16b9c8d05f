// Consumer smoke test for corio's packaging tests: it must compile and link against corio::corio
// alone (C++20 and threads come from the target), and run a task to completion.
#include <corio/corio.hpp>

namespace {
corio::Task<int> answer() {
    co_await corio::Yield{};
    co_return 42;
}
} // namespace

int main() { return corio::run(answer()) == 42 ? 0 : 1; }
