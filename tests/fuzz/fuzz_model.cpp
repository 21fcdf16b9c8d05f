// libFuzzer target: the model test's interpreter (tests/model/) on the fuzzer's bytes. Any byte
// string is a valid program; a broken rule of the model aborts with the rules and the program, so
// that libFuzzer saves the input (replay it: ./fuzz_model_epoll crash-<sha1>).
// Built with -DCORIO_BUILD_FUZZERS=ON (clang++): see tests/fuzz/CMakeLists.txt.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <span>

#include "model/interpreter.hpp"
#include "model/program.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const corio::model::Program program = corio::model::decode(std::span(data, size));
    const corio::model::Verdict verdict = corio::model::run_program(program);
    if (!verdict.ok()) {
        std::cerr << "the input broke the model:\n";
        for (const auto& violation : verdict.violations) {
            std::cerr << "  " << violation << '\n';
        }
        std::cerr << "the program:\n" << corio::model::to_string(program) << std::flush;
        std::abort();
    }
    return 0;
}
