// test_signal_wait.cpp again, on the self-pipe path that systems without signalfd use: on Linux
// the signalfd path is the default, and this build forces the other one.
#define CORIO_SIGNAL_SELF_PIPE 1
#include "test_signal_wait.cpp"
