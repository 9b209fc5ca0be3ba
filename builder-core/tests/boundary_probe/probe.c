/* Boundary probe: makes one system call a build step should not be able to make and
 * prints "<probe>: ok" or "<probe>: <ERRNO NAME>". Compiled static by the test
 * (gcc -static), since busybox has no applet for most of these calls.
 * Usage: probe mount DIR | fsopen | finit_module FILE | ptrace PID | unshare-user |
 *        unshare-mount | clone-newuser | clone3 | keyctl | bpf | setns PATH */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(const char *what, long result) {
    if (result < 0) {
        printf("%s: %s\n", what, strerrorname_np(errno));
        return 1;
    }
    printf("%s: ok\n", what);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe NAME [ARG]\n");
        return 2;
    }
    const char *name = argv[1];
    const char *arg = argc > 2 ? argv[2] : "";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(name, "mount"))
        return report(name, mount("none", arg, "tmpfs", 0, NULL));
    if (!strcmp(name, "fsopen"))
        return report(name, syscall(SYS_fsopen, "tmpfs", 0));
    if (!strcmp(name, "open_tree"))
        return report(name, syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
    if (!strcmp(name, "finit_module")) {
        int fd = open(arg, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return report("open", -1);
        return report(name, syscall(SYS_finit_module, fd, "", 0));
    }
    if (!strcmp(name, "ptrace"))
        return report(name, ptrace(PTRACE_ATTACH, atoi(arg), 0, 0));
    if (!strcmp(name, "unshare-user"))
        return report(name, unshare(CLONE_NEWUSER));
    if (!strcmp(name, "unshare-mount"))
        return report(name, unshare(CLONE_NEWNS));
    if (!strcmp(name, "clone-newuser")) {
        long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0)
            _exit(0);
        if (pid > 0)
            waitpid(pid, NULL, 0);
        return report(name, pid);
    }
    if (!strcmp(name, "clone3"))
        return report(name, syscall(SYS_clone3, NULL, 0));
    if (!strcmp(name, "keyctl"))
        return report(name, syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    if (!strcmp(name, "bpf"))
        return report(name, syscall(SYS_bpf, 0, NULL, 0));
    if (!strcmp(name, "setns")) {
        int fd = open(arg, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return report("open", -1);
        return report(name, syscall(SYS_setns, fd, 0));
    }
    fprintf(stderr, "unknown probe %s\n", name);
    return 2;
}
