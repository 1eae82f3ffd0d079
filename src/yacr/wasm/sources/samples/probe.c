/* A multi-purpose WASI command for yacr's tests: each subcommand checks one piece of the
 * WASI mapping (args, env, files under the preopened root, stdio, exit codes), or misbehaves
 * on purpose (trap, memory growth, endless loop, a syscall the allowlist denies). */
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int usage(void) {
    fprintf(stderr, "usage: probe args|env|cat F|write F TEXT|ls D|exit N|trap|grow MB|"
                    "spin|sleep S [F]|symlink T L|cwd|stdin|tty|clock|fsops DIR\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "args")) {
        for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
        return 0;
    }
    if (!strcmp(cmd, "env")) {
        extern char **environ;
        for (char **e = environ; *e; e++) printf("%s\n", *e);
        return 0;
    }
    if (!strcmp(cmd, "cat") && argc > 2) {
        FILE *f = fopen(argv[2], "r");
        if (!f) { fprintf(stderr, "open %s: %s\n", argv[2], strerror(errno)); return 1; }
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
        fclose(f);
        return 0;
    }
    if (!strcmp(cmd, "write") && argc > 3) {
        FILE *f = fopen(argv[2], "w");
        if (!f) { fprintf(stderr, "open %s: %s\n", argv[2], strerror(errno)); return 1; }
        fputs(argv[3], f);
        return fclose(f) ? 1 : 0;
    }
    if (!strcmp(cmd, "ls") && argc > 2) {
        DIR *d = opendir(argv[2]);
        if (!d) { fprintf(stderr, "opendir %s: %s\n", argv[2], strerror(errno)); return 1; }
        struct dirent *e;
        while ((e = readdir(d))) printf("%s\n", e->d_name);
        closedir(d);
        return 0;
    }
    if (!strcmp(cmd, "exit") && argc > 2) exit(atoi(argv[2]));
    if (!strcmp(cmd, "trap")) {
        fprintf(stderr, "about to trap\n");
        __builtin_trap();
    }
    if (!strcmp(cmd, "grow") && argc > 2) {
        /* touch every page, or the optimiser drops the allocation */
        size_t mb = (size_t)atoi(argv[2]);
        size_t total = 0;
        for (size_t i = 0; i < mb; i++) {
            volatile char *p = malloc(1 << 20);
            if (!p) { printf("malloc failed after %zu MiB\n", total); return 3; }
            for (size_t j = 0; j < (1 << 20); j += 4096) p[j] = 1;
            total++;
        }
        printf("allocated %zu MiB\n", total);
        return 0;
    }
    if (!strcmp(cmd, "spin")) {
        printf("spinning\n");
        fflush(stdout);
        volatile unsigned long n = 0;
        for (;;) n++;
    }
    if (!strcmp(cmd, "sleep") && argc > 2) {
        if (argc > 3) {  /* read a file first: the engine keeps an idle I/O thread */
            FILE *f = fopen(argv[3], "r");
            if (!f) { fprintf(stderr, "open %s: %s\n", argv[3], strerror(errno)); return 1; }
            fclose(f);
        }
        printf("sleeping\n");
        fflush(stdout);
        sleep((unsigned)atoi(argv[2]));
        printf("slept\n");
        return 0;
    }
    if (!strcmp(cmd, "symlink") && argc > 3) {
        if (symlink(argv[2], argv[3]) != 0) {
            printf("symlink failed: %s\n", strerror(errno));
            return 4;
        }
        printf("symlink made\n");
        return 0;
    }
    if (!strcmp(cmd, "cwd")) {
        char buf[1024];
        printf("%s\n", getcwd(buf, sizeof buf) ? buf : strerror(errno));
        return 0;
    }
    if (!strcmp(cmd, "stdin")) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
        return 0;
    }
    if (!strcmp(cmd, "tty")) {
        printf("stdin tty=%d stdout tty=%d\n", isatty(0), isatty(1));
        return 0;
    }
    if (!strcmp(cmd, "clock")) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned char r[8];
        getentropy(r, sizeof r);
        printf("time %lld random %02x%02x\n", (long long)ts.tv_sec, r[0], r[1]);
        return 0;
    }
    if (!strcmp(cmd, "fsops") && argc > 2) {
        /* the WASI file calls an ordinary program makes, each of which must pass the
         * allowlist: a failure prints its step, a denied syscall kills the process */
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/f", argv[2]);
        snprintf(b, sizeof b, "%s/g", argv[2]);
        int fd = open(a, O_CREAT | O_RDWR | O_TRUNC, 0644);
        if (fd < 0) { printf("open: %s\n", strerror(errno)); return 1; }
        if (write(fd, "abcdef", 6) != 6) { printf("write failed\n"); return 1; }
        if (pwrite(fd, "XY", 2, 1) != 2) { printf("pwrite failed\n"); return 1; }
        char buf[8] = {0};
        if (pread(fd, buf, 3, 0) != 3 || strcmp(buf, "aXY")) { printf("pread\n"); return 1; }
        if (lseek(fd, 0, SEEK_END) != 6) { printf("lseek\n"); return 1; }
        if (fsync(fd) || fdatasync(fd)) { printf("sync: %s\n", strerror(errno)); return 1; }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);  /* advisory: errors ignored */
        if (ftruncate(fd, 2)) { printf("ftruncate: %s\n", strerror(errno)); return 1; }
        struct stat st;
        if (fstat(fd, &st) || st.st_size != 2) { printf("fstat\n"); return 1; }
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_APPEND)) { printf("fcntl\n"); return 1; }
        close(fd);
        struct timespec ts[2] = {{1, 0}, {2, 0}};
        if (utimensat(AT_FDCWD, a, ts, 0)) { printf("utimensat: %s\n", strerror(errno)); return 1; }
        if (stat(a, &st) || st.st_mtime != 2) { printf("stat\n"); return 1; }
        if (rename(a, b)) { printf("rename: %s\n", strerror(errno)); return 1; }
        snprintf(a, sizeof a, "%s/d", argv[2]);
        if (mkdir(a, 0755) || rmdir(a)) { printf("mkdir/rmdir: %s\n", strerror(errno)); return 1; }
        if (unlink(b)) { printf("unlink: %s\n", strerror(errno)); return 1; }
        if (access(b, F_OK) == 0) { printf("still there\n"); return 1; }
        sched_yield();
        struct timespec res;
        clock_getres(CLOCK_MONOTONIC, &res);
        struct timespec nap = {0, 1000000};
        nanosleep(&nap, NULL);
        printf("fsops ok\n");
        return 0;
    }
    return usage();
}
