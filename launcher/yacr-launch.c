/*
 * The yacr command: start the Python CLI from a read-only, detached mount of the
 * interpreter, so that no container can write to the host's interpreter through us.
 *
 * yacr's container init is a fork of the CLI process, so until it execs the container's
 * program its /proc/self/exe is the interpreter yacr runs on. Were that the host's
 * python3 as the host sees it, a container could reach it through /proc/<pid>/exe (or
 * make init exec it with "#!/proc/self/exe") and overwrite it: CVE-2019-5736, as it hit
 * runc. So the front-end clones a mount of the interpreter file alone (open_tree), makes
 * that mount read-only, and executes the interpreter through it (execveat): the
 * interpreter's /proc/<pid>/exe is then a file on a mount that is attached nowhere (it
 * reads "/"), that no one can remount, and through which nothing can be written. No
 * copy is made, nothing is left on the host, and the cost is two syscalls.
 *
 * Without the privilege to clone mounts (rootless use), it runs the host interpreter: a
 * rootless container's root is an unprivileged user on the host and cannot write it.
 *
 * PYTHON and SCRIPT are set by scripts/write-launcher.sh when it compiles this.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PYTHON
#error "PYTHON must be defined"
#endif
#ifndef SCRIPT
#error "SCRIPT must be defined"
#endif

extern char **environ;

/* An O_PATH fd of the interpreter on a private, read-only mount; -1 if not allowed. */
static int sealed_interpreter(void) {
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, PYTHON, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (fd < 0) return -1;
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    };
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    /* Tools that start yacr again (yacr bench) find this front-end here: the Python side
     * sees only the interpreter as its executable. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        setenv("YACR_CLI", self, 1);
    }
    char **args = calloc((size_t)argc + 6, sizeof *args);
    if (args == NULL) return 1;
    /* The interpreter's own path, never a bare name: Python derives its prefix (the
     * standard library, site-packages) from argv[0], and would search PATH for a bare
     * one, letting the caller's PATH choose the code a root process runs.
     * frozen_modules=on: the standard library's start-up modules (encodings, io, abc...)
     * come from the interpreter binary itself instead of .pyc files: 0.5 ms of CPU and
     * 0.1 MiB of RSS less on every command, measured. */
    args[0] = PYTHON;
    args[1] = "-IS";
    args[2] = "-X";
    args[3] = "frozen_modules=on";
    args[4] = SCRIPT;
    for (int i = 1; i < argc; i++) args[i + 4] = argv[i];
    int fd = sealed_interpreter();
    if (fd >= 0) {
        syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
        close(fd);  /* fall through to the plain interpreter */
    }
    execv(PYTHON, args);
    fprintf(stderr, "yacr: cannot start %s: %s\n", PYTHON, strerror(errno));
    return 127;
}
