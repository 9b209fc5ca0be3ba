#define _GNU_SOURCE
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
/* Under rbuild's proot isolation: the calls that proot 5.1 does not translate must
   not reach the container's files, and the C library must still work on the step's. */
int main(int argc, char **argv) {
  const char *mine = argv[1], *host = argv[2];
  struct statx sx;
  int bad = 0;
  if (statx(AT_FDCWD, mine, 0, STATX_BASIC_STATS, &sx) != 0) { printf("statx %s: %s\n", mine, strerror(errno)); bad = 1; }
  if (faccessat(AT_FDCWD, mine, R_OK, AT_EACCESS) != 0) { printf("faccessat %s: %s\n", mine, strerror(errno)); bad = 1; }
  if (statx(AT_FDCWD, host, 0, STATX_BASIC_STATS, &sx) == 0) { printf("statx sees %s\n", host); bad = 1; }
  if (faccessat(AT_FDCWD, host, R_OK, AT_EACCESS) == 0) { printf("faccessat sees %s\n", host); bad = 1; }
  struct open_how how = { .flags = O_RDONLY };
  long fd = syscall(SYS_openat2, AT_FDCWD, host, &how, sizeof how);
  if (fd >= 0) { printf("openat2 opened %s\n", host); bad = 1; }
  printf("probe %s\n", bad ? "failed" : "ok");
  return bad;
}
