// The randomized model test of the Scheduler (issue 5): random programs of spawn, kill, wait,
// sleep, yield, socket I/O, events, throws and timeouts, each run on one Scheduler and checked
// against the model in tests/model/interpreter.hpp.
//
// A failure names its seed and prints the program; replay it alone with
//     ./build/tests/test_model_epoll --seed N        (or CORIO_MODEL_SEED=N)
// and run more seeds than ctest does with --count M (or CORIO_MODEL_COUNT=M).
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "model/interpreter.hpp"
#include "model/options.hpp"
#include "model/program.hpp"
#include "support/catch.hpp"
#include "support/leak_check.hpp"

namespace model = corio::model;

namespace {

std::string failure_report(const std::string& name, const model::Program& program,
                           const model::Verdict& verdict) {
    std::string text = name + " broke the model:\n";
    for (const std::string& violation : verdict.violations) {
        text += "  " + violation + "\n";
    }
    return text + "the program:\n" + model::to_string(program);
}

std::string figures(const model::Tally& tally) {
    return std::to_string(tally.runs) + " runs, " + std::to_string(tally.tasks) + " tasks, " +
           std::to_string(tally.ops) + " ops, " + std::to_string(tally.timeouts) + " timeouts, " +
           std::to_string(tally.kills) + " kills, " + std::to_string(tally.failures) +
           " throws (" + std::to_string(tally.reported) + " reported), " +
           std::to_string(tally.waited_tasks) + " waits for a live task, " +
           std::to_string(tally.bytes) + " bytes received, " + std::to_string(tally.skipped) +
           " transfers skipped";
}

} // namespace

TEST_CASE("model: random programs run as the model predicts") {
    corio::test::FrameLeakCheck leaks;
    const model::SeedRange seeds = model::seed_range();
    model::Tally total;
    std::size_t failed = 0;
    for (std::size_t i = 0; i < seeds.count && failed < 3; ++i) {
        const std::uint64_t seed = seeds.first + i;
        // Named in the report of a crash too (a wild wake-up may crash before any check).
        INFO("seed " << seed << " (replay: --seed " << seed << ", which prints the program)");
        const model::Program program = model::decode(model::bytes_from_seed(seed));
        if (seeds.replay && seeds.count == 1) {
            std::cout << "seed " << seed << ":\n" << model::to_string(program) << std::flush;
        }
        const model::Verdict verdict = model::run_program(program);
        total += verdict.tally;
        if (!verdict.ok()) {
            ++failed;
            FAIL_CHECK(failure_report("seed " + std::to_string(seed) + " (replay: --seed " +
                                          std::to_string(seed) + ")",
                                      program, verdict));
        }
    }
    std::cout << "model: seeds " << seeds.first << ".." << seeds.first + seeds.count - 1 << ": "
              << figures(total) << '\n';
    CHECK(total.runs > 0);
}

TEST_CASE("model: the fuzzer's seed corpus runs as the model predicts") {
    corio::test::FrameLeakCheck leaks;
    const std::vector<std::string> files{"spawn_kill_wait", "timeouts", "sockets", "events_throw"};
    for (const std::string& file : files) {
        std::ifstream in(std::string(CORIO_MODEL_CORPUS) + "/" + file, std::ios::binary);
        REQUIRE(in);
        const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                              std::istreambuf_iterator<char>());
        const model::Program program = model::decode(bytes);
        CHECK(program.tasks.size() > 1);
        const model::Verdict verdict = model::run_program(program);
        if (!verdict.ok()) {
            FAIL_CHECK(failure_report(file, program, verdict));
        }
    }
}

TEST_CASE("model: any bytes decode to a bounded program") {
    for (std::uint64_t seed = 0; seed < 2000; ++seed) {
        const model::Program program = model::decode(model::bytes_from_seed(seed));
        REQUIRE(!program.tasks.empty());
        REQUIRE(program.tasks.size() <= static_cast<std::size_t>(model::max_tasks));
        std::size_t ops = 0;
        for (const model::TaskProgram& task : program.tasks) {
            REQUIRE(task.ops.size() <= model::max_ops_per_task);
            ops += task.ops.size();
        }
        REQUIRE(ops <= model::max_ops);
    }
    CHECK(model::decode({}).tasks.size() == 1); // the empty input: a root that does nothing
}
