// The one translation unit that provides main() for corio's Catch2 tests.
// Built as the static library corio_test_main by tests/CMakeLists.txt.

#if defined(CORIO_CATCH2_MAJOR) && CORIO_CATCH2_MAJOR >= 3

#include <catch2/catch_session.hpp>

int main(int argc, char* argv[]) {
    return Catch::Session().run(argc, argv);
}

#else

// Catch2 v2: the implementation and main() are generated in the single TU
// that defines CATCH_CONFIG_MAIN before including the header. This is that TU.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#endif
