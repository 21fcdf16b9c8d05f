// main() of the model test: Catch2's, plus two options of its own that Catch never sees:
//
//     test_model_epoll --seed 1234            replay seed 1234 and print its program
//     test_model_epoll --seed 1234 --count 50 seeds 1234..1283
//     test_model_epoll --count 100000         seeds 1..100000
//
// (CORIO_MODEL_SEED and CORIO_MODEL_COUNT in the environment do the same.) Every other argument
// goes to Catch.
#if defined(CORIO_CATCH2_MAJOR) && CORIO_CATCH2_MAJOR >= 3
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "model/options.hpp"

int main(int argc, char* argv[]) {
    std::vector<char*> catch_args{argv[0]};
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string arg = argv[i];
            if ((arg == "--seed" || arg == "--count") && i + 1 >= argc) {
                throw std::invalid_argument(arg + " needs a number");
            }
            if (arg == "--seed") {
                corio::model::seed_option = corio::model::parse_number(argv[++i], "--seed");
            } else if (arg == "--count") {
                corio::model::count_option =
                    static_cast<std::size_t>(corio::model::parse_number(argv[++i], "--count"));
            } else {
                catch_args.push_back(argv[i]);
            }
        }
    } catch (const std::exception& e) {
        std::cerr << argv[0] << ": " << e.what() << '\n';
        return 2;
    }
    return Catch::Session().run(static_cast<int>(catch_args.size()), catch_args.data());
}
