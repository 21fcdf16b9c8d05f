# Checks that README.md quotes examples/minimal_echo_server.cpp verbatim, so the README's example
# is code that is compiled and kept working. Run: cmake -DSOURCE_DIR=<corio> -P readme_snippet.cmake
file(READ "${SOURCE_DIR}/README.md" readme)
file(READ "${SOURCE_DIR}/examples/minimal_echo_server.cpp" example)
string(FIND "${readme}" "```cpp\n${example}```" position)
if(position EQUAL -1)
    message(FATAL_ERROR "README.md does not quote examples/minimal_echo_server.cpp verbatim "
                        "(in a ```cpp block): copy the file into the README again")
endif()
