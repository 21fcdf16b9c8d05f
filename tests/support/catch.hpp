// Catch2 shim for corio's tests: include this instead of Catch2 directly,
//
//     #include "support/catch.hpp"
//
// so that tests build against either Catch2 v3 (<catch2/catch_all.hpp>) or
// Catch2 v2 (<catch2/catch.hpp>, e.g. Debian's `catch2` package).
// Never define CATCH_CONFIG_MAIN in a test: main() lives in support/main.cpp.
#pragma once

// CORIO_CATCH2_MAJOR is set by tests/CMakeLists.txt from the Catch2 it found;
// fall back to probing the headers when building outside that setup.
#if defined(CORIO_CATCH2_MAJOR) && CORIO_CATCH2_MAJOR >= 3
#include <catch2/catch_all.hpp>
#elif defined(CORIO_CATCH2_MAJOR)
#include <catch2/catch.hpp>
#elif __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
