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
 * Every yacr command starts here, so this program does not use the C library: starting
 * a dynamically linked program (the loader, libc's relocations and set-up) measured 0.6
 * ms of CPU, which every `yacr state` or `yacr delete` paid before Python even began.
 * It is built with -nostdlib on x86_64 and aarch64 (scripts/write-launcher.sh): a few
 * raw system calls, an entry point that reads argc, argv and the environment off the
 * initial stack, nothing else. Elsewhere the same logic builds against libc.
 *
 * PYTHON and SCRIPT are set by scripts/write-launcher.sh when it compiles this.
 */
#define _GNU_SOURCE
#include <linux/fcntl.h>
#include <linux/mount.h>
#include <asm/unistd.h>

#ifndef PYTHON
#error "PYTHON must be defined"
#endif
#ifndef SCRIPT
#error "SCRIPT must be defined"
#endif

#define ENV_NAME "YACR_CLI="
#define SELF_MAX 4096
#define LC_ALL_NAME "LC_ALL="
#define LC_SAVED "YACR_LC_ALL="
#define LC_MAX 4096

#if defined(YACR_NOLIBC)

/* --- the few system calls, raw ------------------------------------------------------- */
#if defined(__x86_64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
/* The entry point: the kernel leaves argc, argv..., 0, envp..., 0 at the stack pointer. */
__asm__(".text\n.global _start\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call start_c\n  hlt\n");
#elif defined(__aarch64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n  mov x0, sp\n  bl start_c\n  brk #0\n");
#else
#error "YACR_NOLIBC needs x86_64 or aarch64"
#endif

/* gcc may call these for copies and zeroing even here. */
void *memset(void *d, int c, unsigned long n) {
    unsigned char *p = d;
    while (n--) *p++ = (unsigned char)c;
    return d;
}
void *memcpy(void *d, const void *s, unsigned long n) {
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--) *p++ = *q++;
    return d;
}

static long readlink_(const char *path, char *buf, long size) {
    return sys6(__NR_readlinkat, AT_FDCWD, (long)path, (long)buf, size, 0, 0);
}
static long open_tree_(const char *path) {
    return sys6(__NR_open_tree, AT_FDCWD, (long)path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
                0, 0, 0);
}
static long mount_setattr_(long fd, struct mount_attr *attr) {
    return sys6(__NR_mount_setattr, fd, (long)"", AT_EMPTY_PATH, (long)attr, sizeof *attr,
                0);
}
static long execveat_(long fd, const char *path, char **argv, char **envp, long flags) {
    return sys6(__NR_execveat, fd, (long)path, (long)argv, (long)envp, flags, 0);
}
static void close_(long fd) { sys6(__NR_close, fd, 0, 0, 0, 0, 0); }
static void write_(const char *s, long n) { sys6(__NR_write, 2, (long)s, n, 0, 0, 0); }
static void exit_(int code) {
    sys6(__NR_exit_group, code, 0, 0, 0, 0, 0);
    for (;;) {}
}

#else /* the C library's */

#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static long readlink_(const char *path, char *buf, long size) {
    return readlink(path, buf, (size_t)size);
}
static long open_tree_(const char *path) {
    return syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
}
static long mount_setattr_(long fd, struct mount_attr *attr) {
    return syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, attr, sizeof *attr);
}
static long execveat_(long fd, const char *path, char **argv, char **envp, long flags) {
    return syscall(SYS_execveat, fd, path, argv, envp, flags);
}
static void close_(long fd) { close((int)fd); }
static void write_(const char *s, long n) { (void)!write(2, s, (size_t)n); }
static void exit_(int code) { _exit(code); }

#endif

static int starts_with(const char *s, const char *prefix) {
    while (*prefix)
        if (*s++ != *prefix++) return 0;
    return 1;
}

/* An O_PATH fd of the interpreter on a private, read-only mount; -1 if not allowed. */
static long sealed_interpreter(void) {
    long fd = open_tree_(PYTHON);
    if (fd < 0) return -1;
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    };
    if (mount_setattr_(fd, &attr) != 0) {
        close_(fd);
        return -1;
    }
    return fd;
}

static void run(int argc, char **argv, char **envp) {
    /* Tools that start yacr again (yacr bench) find this front-end in $YACR_CLI: the
     * Python side sees only the interpreter as its executable. */
    static char self[sizeof ENV_NAME + SELF_MAX];
    long n = readlink_("/proc/self/exe", self + sizeof ENV_NAME - 1, SELF_MAX - 1);
    int nenv = 0;
    while (envp[nenv]) nenv++;
    /* The interpreter starts in the C locale (LC_ALL=C): it then maps no locale files
     * (0.15 MiB of every command's memory, measured) and runs in UTF-8 mode, which is
     * what C.UTF-8 gives it too. The caller's LC_ALL travels in $YACR_LC_ALL ("+" and
     * its value, or "-" for none), and yacr.boot.launch puts it back before yacr starts
     * anything (a hook inherits the caller's environment). A caller's $YACR_LC_ALL is
     * dropped; with more than one LC_ALL, or a longer one than LC_MAX, nothing changes. */
    static char saved[sizeof LC_SAVED + 1 + LC_MAX];
    const char *caller = 0;
    int lc_all = 0;
    for (int i = 0; i < nenv; i++)
        if (starts_with(envp[i], LC_ALL_NAME)) {
            caller = envp[i] + sizeof LC_ALL_NAME - 1;
            lc_all++;
        }
    int c_locale = lc_all <= 1;
    if (caller) {
        int len = 0;
        while (caller[len]) len++;
        if (len > LC_MAX) c_locale = 0;
    }
    char *env[nenv + 4];
    int k = 0;
    for (int i = 0; i < nenv; i++) {
        if (n > 0 && starts_with(envp[i], ENV_NAME)) continue;
        if (c_locale && (starts_with(envp[i], LC_ALL_NAME) || starts_with(envp[i], LC_SAVED)))
            continue;
        env[k++] = envp[i];
    }
    if (n > 0) {
        for (unsigned i = 0; i < sizeof ENV_NAME - 1; i++) self[i] = ENV_NAME[i];
        self[sizeof ENV_NAME - 1 + n] = 0;
        env[k++] = self;
    }
    if (c_locale) {
        char *p = saved;
        for (const char *q = LC_SAVED; *q; q++) *p++ = *q;
        if (caller) {
            *p++ = '+';
            for (const char *q = caller; *q; q++) *p++ = *q;
        } else {
            *p++ = '-';
        }
        *p = 0;
        env[k++] = saved;
        env[k++] = LC_ALL_NAME "C";
    }
    env[k] = 0;
    /* The interpreter's own path, never a bare name: Python derives its prefix (the
     * standard library, site-packages) from argv[0], and would search PATH for a bare
     * one, letting the caller's PATH choose the code a root process runs.
     * frozen_modules=on: the standard library's start-up modules (encodings, io, abc...)
     * come from the interpreter binary itself instead of .pyc files: 0.5 ms of CPU and
     * 0.1 MiB of RSS less on every command, measured. */
    char *args[argc + 5];
    args[0] = PYTHON;
    args[1] = "-IS";
    args[2] = "-X";
    args[3] = "frozen_modules=on";
    args[4] = SCRIPT;
    for (int i = 1; i < argc; i++) args[i + 4] = argv[i];
    args[argc + 4] = 0;
    long fd = sealed_interpreter();
    if (fd >= 0) {
        execveat_(fd, "", args, env, AT_EMPTY_PATH);
        close_(fd); /* fall through to the plain interpreter */
    }
    execveat_(AT_FDCWD, PYTHON, args, env, 0);
    static const char msg[] = "yacr: cannot start " PYTHON "\n";
    write_(msg, sizeof msg - 1);
    exit_(127);
}

#if defined(YACR_NOLIBC)
__attribute__((used)) void start_c(long *sp) {
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    run(argc, argv, argv + argc + 1);
}
#else
extern char **environ;
int main(int argc, char **argv) {
    run(argc, argv, environ);
    return 127;
}
#endif
