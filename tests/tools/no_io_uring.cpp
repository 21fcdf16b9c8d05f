// no_io_uring - runs a program as a container whose seccomp profile refuses io_uring would
// (Docker >= 25, containerd 2): io_uring_setup fails with EPERM, everything else is allowed.
//
//   no_io_uring PROGRAM [ARGUMENT...]
//
// The filter is installed with no_new_privs and kept across execve, so PROGRAM and its children
// run under it. Exit status 126 if the filter cannot be installed, 127 if PROGRAM cannot run.
#include <cerrno>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: no_io_uring PROGRAM [ARGUMENT...]\n");
        return 2;
    }
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
        fprintf(stderr, "no_io_uring: seccomp: %s\n", strerror(errno));
        return 126;
    }
    execv(argv[1], argv + 1);
    fprintf(stderr, "no_io_uring: %s: %s\n", argv[1], strerror(errno));
    return 127;
}
