/*
 * The yacr command: start the Python CLI from a sealed, read-only copy of the interpreter.
 *
 * yacr's container init is a fork of the CLI process, so until it execs the container's
 * program its /proc/self/exe is the interpreter yacr runs on. Were that the host's
 * python3 file, a container could reach it through /proc/<pid>/exe (or make init exec it
 * with "#!/proc/self/exe") and overwrite it: CVE-2019-5736, as it hit runc. So the CLI
 * runs from a private copy of the interpreter, reachable only through a read-only bind
 * mount in SAFE_DIR: made once per boot (and per interpreter version) by the first yacr
 * invocation that finds it missing, and merely checked (one statvfs) by every other.
 * (A sealed memfd would be the other choice, but a memfd cannot be bind-mounted, and
 * copying one per start costs ~2 ms.)
 *
 * Without the privilege to mount (rootless use), it runs the host interpreter: a rootless
 * container's root is an unprivileged user on the host and cannot write it anyway.
 *
 * PYTHON, SCRIPT and SAFE_DIR are set by scripts/write-launcher.sh when it compiles this.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#ifndef PYTHON
#error "PYTHON must be defined"
#endif
#ifndef SCRIPT
#error "SCRIPT must be defined"
#endif
#ifndef SAFE_DIR
#define SAFE_DIR "/run/yacr-exe"
#endif

/* The copy's name carries the original's size and mtime: an upgraded interpreter gets a
 * fresh copy instead of a stale one. */
static int safe_path(char *buf, size_t len) {
    struct stat st;
    if (stat(PYTHON, &st) != 0) return -1;
    snprintf(buf, len, "%s/python-%lld-%lld", SAFE_DIR, (long long)st.st_size,
             (long long)st.st_mtim.tv_sec);
    return 0;
}

static int is_sealed_copy(const char *path) {
    struct statvfs sv;
    return statvfs(path, &sv) == 0 && (sv.f_flag & ST_RDONLY);
}

static int copy_file(const char *from, const char *to) {
    int src = open(from, O_RDONLY | O_CLOEXEC);
    if (src < 0) return -1;
    struct stat st;
    int dst = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0555);
    if (dst < 0 || fstat(src, &st) != 0) { close(src); if (dst >= 0) close(dst); return -1; }
    off_t off = 0;
    int rc = 0;
    while (off < st.st_size) {
        if (sendfile(dst, src, &off, st.st_size - off) <= 0) { rc = -1; break; }
    }
    close(src);
    if (fsync(dst) != 0) rc = -1;
    close(dst);
    return rc;
}

static int make_sealed_copy(const char *path) {
    if (mkdir(SAFE_DIR, 0711) != 0 && errno != EEXIST) return -1;
    int dir = open(SAFE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return -1;
    if (flock(dir, LOCK_EX) != 0) { close(dir); return -1; }
    int rc = -1;
    char copy[600];
    snprintf(copy, sizeof copy, "%s.copy", path);
    if (is_sealed_copy(path)) { rc = 0; goto out; }  /* another yacr made it meanwhile */
    unlink(copy);
    if (copy_file(PYTHON, copy) != 0) goto out;
    int target = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0555);
    if (target < 0) goto out;
    close(target);
    /* The copy is reached only through this read-only bind mount: a write through
     * /proc/<pid>/exe fails with EROFS, whatever the writer's capabilities in its
     * container, which cannot remount a mount of the host's namespace. */
    if (mount(copy, path, NULL, MS_BIND, NULL) != 0) goto out;
    if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
              NULL) != 0) {
        umount2(path, MNT_DETACH);
        goto out;
    }
    rc = 0;
out:
    flock(dir, LOCK_UN);
    close(dir);
    return rc;
}

int main(int argc, char **argv) {
    char safe[512];
    const char *exe = PYTHON;
    if (safe_path(safe, sizeof safe) == 0 &&
        (is_sealed_copy(safe) || (geteuid() == 0 && make_sealed_copy(safe) == 0)))
        exe = safe;
    /* Tools that start yacr again (yacr bench) find this front-end here: the Python
     * side sees only the interpreter copy as its executable. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        setenv("YACR_CLI", self, 1);
    }
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (args == NULL) return 1;
    args[0] = "python3";
    args[1] = "-IS";
    args[2] = SCRIPT;
    for (int i = 1; i < argc; i++) args[i + 2] = argv[i];
    execv(exe, args);
    fprintf(stderr, "yacr: cannot start %s: %s\n", exe, strerror(errno));
    return 127;
}
