/* A multi-purpose WASI command for yacr's tests: each subcommand checks one piece of the
 * WASI mapping (args, env, files under the preopened root, stdio, exit codes), or misbehaves
 * on purpose (trap, memory growth, endless loop, a syscall the allowlist denies). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int usage(void) {
    fprintf(stderr, "usage: probe args|env|cat F|write F TEXT|ls D|exit N|trap|grow MB|"
                    "spin|sleep S|symlink T L|cwd|stdin|tty|clock\n");
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
        printf("sleeping\n");
        fflush(stdout);
        sleep((unsigned)atoi(argv[2]));
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
    return usage();
}
