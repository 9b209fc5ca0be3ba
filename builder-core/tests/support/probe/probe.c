/* Boundary probe: makes one system call a build step should not be able to make and
 * prints "<probe>: ok" or "<probe>: <ERRNO NAME>". Compiled static by the test
 * (gcc -static), since busybox has no applet for most of these calls.
 * Usage: probe mount DIR | fsopen | finit_module FILE | ptrace PID | unshare-user |
 *        unshare-mount | clone-newuser | clone3 | keyctl | bpf | setns PATH | agent |
 *        setxattr PATH NAME VALUE
 * "agent" asks the ssh agent at $SSH_AUTH_SOCK for its identities (message 11,
 * SSH2_AGENTC_REQUEST_IDENTITIES) and prints "agent: N identities: COMMENT...". */
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
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static int report(const char *what, long result);

static int read_full(int fd, unsigned char *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static unsigned int be32(const unsigned char *p) {
    return ((unsigned int)p[0] << 24) | ((unsigned int)p[1] << 16) | ((unsigned int)p[2] << 8) | p[3];
}

static int agent(void) {
    const char *path = getenv("SSH_AUTH_SOCK");
    if (!path) {
        printf("agent: SSH_AUTH_SOCK unset\n");
        return 1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        printf("agent: connect %s: %s\n", path, strerrorname_np(errno));
        return 1;
    }
    unsigned char request[5] = {0, 0, 0, 1, 11};
    if (write(fd, request, sizeof request) != sizeof request)
        return report("agent write", -1);
    unsigned char head[4];
    if (read_full(fd, head, 4) < 0)
        return report("agent read", -1);
    unsigned int len = be32(head);
    if (len < 5 || len > 1 << 20) {
        printf("agent: bad reply length %u\n", len);
        return 1;
    }
    unsigned char *body = malloc(len);
    if (!body || read_full(fd, body, len) < 0)
        return report("agent read", -1);
    if (body[0] != 12) {
        printf("agent: reply type %u\n", body[0]);
        return 1;
    }
    unsigned int count = be32(body + 1), at = 5;
    printf("agent: %u identities:", count);
    for (unsigned int i = 0; i < count; i++) {
        if (at + 4 > len) break;
        at += 4 + be32(body + at); /* key blob */
        if (at + 4 > len) break;
        unsigned int clen = be32(body + at);
        at += 4;
        if (at + clen > len) break;
        printf(" %.*s", (int)clen, (const char *)body + at);
        at += clen;
    }
    printf("\n");
    return 0;
}

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
    if (!strcmp(name, "agent"))
        return agent();
    if (!strcmp(name, "setxattr") && argc > 4)
        return report(name, lsetxattr(arg, argv[3], argv[4], strlen(argv[4]), 0));
    fprintf(stderr, "unknown probe %s\n", name);
    return 2;
}
