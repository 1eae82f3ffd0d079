/*
 * yacr-wasmhost: runs one WASI module as a container's process, and nothing else.
 *
 * yacr's container init (Python) execs this program exactly where a native container
 * execs its entrypoint: after `start`, with the container's namespaces, cgroup, rlimits,
 * capabilities, user, no_new_privs and cwd already in place. Everything about the
 * container was decided in Python; this host only follows the handoff it is given (see
 * docs/WASM.md, "The host and its handoff"): an fd of a sealed memfd holding
 *
 *   "YWHOST01", then records: u32 tag, u32 length, `length` bytes (little-endian)
 *
 * with the tags below. It loads wasmtime's library (the dynamic loader did that before
 * main), maps the compiled module yacr verified, links it against WASI, installs the
 * seccomp allowlist it was handed, and calls the module's _start. Its exit status is the
 * module's: proc_exit's code, 0 when main returns, TRAP_EXIT for a trap.
 *
 * Errors are one line on stderr ("yacr: wasm host: ..."), exit status 1: the host runs
 * after `start`, so stderr is the only place left to say it. They mean yacr and the host
 * disagree (a bug, or a host from another build): yacr checked everything it hands over.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "wasmtime-api.h"

#define MAGIC "YWHOST01"
enum tag {
    T_ARG = 1,          /* a WASI argument (argv[0] first), repeated */
    T_ENV = 2,          /* "NAME=VALUE", repeated */
    T_PREOPEN = 3,      /* "HOST\0GUEST": a directory the module sees at GUEST */
    T_MODULE = 4,       /* u32 fd, u32 0, u64 size, i64 ctime s, i64 ctime ns: the module */
    T_CONFIG = 5,       /* "KEY\0VALUE": one engine setting, applied in order */
    T_MEMORY_LIMIT = 6, /* u64: bytes each linear memory may grow to */
    T_SECCOMP = 7,      /* a BPF program (struct sock_filter[]), loaded with TSYNC */
    T_STOP_SIGNAL = 8,  /* u32: this signal ends the module, exit status 128 + signal */
    T_CLOSE_FD = 9,     /* u32: an fd only the dynamic loader needed; closed first */
    T_EARLY = 10,       /* empty: instantiate before the filter (no start function) */
    T_TRAP_EXIT = 11,   /* u32: the exit status of a trap */
};
#define MAX_LIST 65536

struct module_ref {
    uint32_t fd, zero;
    uint64_t size;
    int64_t ctime_sec, ctime_nsec;
};

/* The handoff, parsed. Strings point into the handoff buffer, which lives until exit. */
static struct {
    const char **argv, **env_names, **env_values, **config_keys, **config_values;
    const char **preopen_host, **preopen_guest;
    size_t argc, envc, nconfig, npreopen;
    struct module_ref module;
    int has_module;
    int64_t memory_limit; /* -1: none */
    const struct sock_filter *bpf;
    size_t bpf_len;
    int stop_signals[32];
    size_t nstop;
    int early;
    int trap_exit;
} plan = {.memory_limit = -1, .trap_exit = 134};

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    static const char prefix[] = "yacr: wasm host: ";
    if (write(2, prefix, sizeof prefix - 1) < 0 || write(2, buf, (size_t)n) < 0) {
        /* nowhere else to say it */
    }
    _exit(1);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (p == NULL) die("out of memory");
    return p;
}

/* ---- the handoff ------------------------------------------------------------------ */

static char *read_handoff(int fd, size_t *len) {
    struct stat st;
    if (fstat(fd, &st) != 0) die("handoff fd %d: %s", fd, strerror(errno));
    if (st.st_size < 8 || st.st_size > (64 << 20)) die("handoff: bad size %lld",
                                                        (long long)st.st_size);
    char *buf = xcalloc(1, (size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("handoff: read: %s", n < 0 ? strerror(errno) : "short");
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return buf;
}

/* n bytes, NUL-terminated, in memory of their own (strndup would stop at a NUL) */
static char *dup_bytes(const char *p, uint32_t n) {
    char *s = xcalloc(1, (size_t)n + 1);
    memcpy(s, p, n);
    return s;
}

static uint32_t u32_at(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64_at(const char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* "A\0B" with exactly one NUL inside (p is a NUL-terminated copy): split in place. */
static void split_pair(char *p, uint32_t n, const char *what, const char **a, const char **b) {
    char *nul = memchr(p, 0, n);
    if (nul == NULL || memchr(nul + 1, 0, n - (uint32_t)(nul + 1 - p)) != NULL)
        die("handoff: %s: not two strings", what);
    *a = p;
    *b = nul + 1;
}

static void parse(const char *buf, size_t len) {
    if (memcmp(buf, MAGIC, 8) != 0) die("handoff: not a yacr handoff (version mismatch?)");
    /* First pass: count, so that the lists are allocated once. */
    size_t counts[16] = {0};
    for (size_t off = 8; off < len;) {
        if (len - off < 8) die("handoff: truncated record header at %zu", off);
        uint32_t tag = u32_at(buf + off), n = u32_at(buf + off + 4);
        if (n > len - off - 8) die("handoff: record %u overruns the handoff", tag);
        if (tag == 0 || tag >= 16) die("handoff: unknown record %u", tag);
        counts[tag]++;
        off += 8 + n;
    }
    if (counts[T_ARG] > MAX_LIST || counts[T_ENV] > MAX_LIST) die("handoff: too many entries");
    plan.argv = xcalloc(counts[T_ARG] + 1, sizeof *plan.argv);
    plan.env_names = xcalloc(counts[T_ENV], sizeof *plan.env_names);
    plan.env_values = xcalloc(counts[T_ENV], sizeof *plan.env_values);
    plan.config_keys = xcalloc(counts[T_CONFIG], sizeof *plan.config_keys);
    plan.config_values = xcalloc(counts[T_CONFIG], sizeof *plan.config_values);
    plan.preopen_host = xcalloc(counts[T_PREOPEN], sizeof *plan.preopen_host);
    plan.preopen_guest = xcalloc(counts[T_PREOPEN], sizeof *plan.preopen_guest);
    for (size_t off = 8; off < len;) {
        uint32_t tag = u32_at(buf + off), n = u32_at(buf + off + 4);
        const char *p = buf + off + 8;
        switch (tag) {
        case T_ARG:
        case T_ENV:
            if (memchr(p, 0, n) != NULL) die("handoff: %s: contains a NUL byte",
                                             tag == T_ARG ? "argument" : "environment");
            if (tag == T_ARG) {
                plan.argv[plan.argc++] = dup_bytes(p, n);
            } else {
                char *kv = dup_bytes(p, n), *eq = strchr(kv, '=');
                if (eq == NULL) die("handoff: environment: no '=' in an entry");
                *eq = 0;
                plan.env_names[plan.envc] = kv;
                plan.env_values[plan.envc++] = eq + 1;
            }
            break;
        case T_PREOPEN:
            split_pair(dup_bytes(p, n), n, "preopen", &plan.preopen_host[plan.npreopen],
                       &plan.preopen_guest[plan.npreopen]);
            plan.npreopen++;
            break;
        case T_CONFIG:
            split_pair(dup_bytes(p, n), n, "config", &plan.config_keys[plan.nconfig],
                       &plan.config_values[plan.nconfig]);
            plan.nconfig++;
            break;
        case T_MODULE:
            if (n != sizeof plan.module) die("handoff: module: bad length %u", n);
            memcpy(&plan.module, p, sizeof plan.module);
            plan.has_module = 1;
            break;
        case T_MEMORY_LIMIT:
            if (n != 8) die("handoff: memory limit: bad length %u", n);
            plan.memory_limit = (int64_t)u64_at(p);
            if (plan.memory_limit < 0) die("handoff: memory limit: out of range");
            break;
        case T_SECCOMP: {
            if (n == 0 || n % sizeof(struct sock_filter) || n / 8 > BPF_MAXINSNS)
                die("handoff: seccomp: bad program length %u", n);
            struct sock_filter *prog = xcalloc(n / 8, sizeof *prog);
            memcpy(prog, p, n);
            plan.bpf = prog;
            plan.bpf_len = n / 8;
            break;
        }
        case T_STOP_SIGNAL:
        case T_CLOSE_FD:
        case T_TRAP_EXIT:
            if (n != 4) die("handoff: record %u: bad length %u", tag, n);
            uint32_t v = u32_at(p);
            if (tag == T_STOP_SIGNAL) {
                if (v == 0 || v >= 32 || v == SIGKILL || v == SIGSTOP || v == SIGSEGV ||
                    v == SIGBUS || v == SIGILL || v == SIGFPE)
                    die("handoff: stop signal %u: not one the host can take", v);
                if (plan.nstop < 32) plan.stop_signals[plan.nstop++] = (int)v;
            } else if (tag == T_CLOSE_FD) {
                if (v < 3) die("handoff: close fd %u: stdio is the module's", v);
                close((int)v);
            } else {
                if (v > 255) die("handoff: trap exit %u: out of range", v);
                plan.trap_exit = (int)v;
            }
            break;
        case T_EARLY:
            plan.early = 1;
            break;
        default:
            die("handoff: unknown record %u", tag);
        }
        off += 8 + n;
    }
    if (!plan.has_module) die("handoff: no module");
    if (plan.argc == 0) die("handoff: no arguments (argv[0] is the module's path)");
}

/* WASI preview 1 has no signals: TERM, INT, ... end the module at once, even while it
 * spins in compiled code (no epoch or fuel checks), with 128 + signal, as a shell reports a
 * process killed by it. _exit is async-signal-safe. */
static void on_stop_signal(int sig) { _exit(128 + sig); }

static void take_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigfillset(&sa.sa_mask);
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < plan.nstop; i++) {
        if (sigaction(plan.stop_signals[i], &sa, NULL) != 0) die("sigaction: %s",
                                                                 strerror(errno));
        sigaddset(&set, plan.stop_signals[i]);
    }
    /* yacr's init may have left them blocked: a blocked signal would wait forever */
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* ---- the engine ------------------------------------------------------------------- */

static uint64_t config_u64(const char *key, const char *value) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || *value == 0 || *end != 0) die("handoff: config %s=%s: not a number", key,
                                               value);
    return (uint64_t)v;
}

static bool config_bool(const char *key, const char *value) {
    if (strcmp(value, "true") == 0) return true;
    if (strcmp(value, "false") == 0) return false;
    die("handoff: config %s=%s: not true or false", key, value);
}

/* The engine exactly as yacr configured the one that compiled the module: wasmtime
 * refuses compiled code made under another configuration. */
static wasm_engine_t *make_engine(void) {
    wasm_config_t *cfg = wasm_config_new();
    if (cfg == NULL) die("wasmtime: no config");
    for (size_t i = 0; i < plan.nconfig; i++) {
        const char *k = plan.config_keys[i], *v = plan.config_values[i];
        if (strncmp(k, "cranelift.", 10) == 0)
            wasmtime_config_cranelift_flag_set(cfg, k + 10, v);
        else if (strcmp(k, "opt_level") == 0)
            wasmtime_config_cranelift_opt_level_set(cfg, (uint8_t)config_u64(k, v));
        else if (strcmp(k, "parallel_compilation") == 0)
            wasmtime_config_parallel_compilation_set(cfg, config_bool(k, v));
        else if (strcmp(k, "memory_reservation") == 0)
            wasmtime_config_memory_reservation_set(cfg, config_u64(k, v));
        else if (strcmp(k, "memory_guard_size") == 0)
            wasmtime_config_memory_guard_size_set(cfg, config_u64(k, v));
        else if (strcmp(k, "memory_reservation_for_growth") == 0)
            wasmtime_config_memory_reservation_for_growth_set(cfg, config_u64(k, v));
        else if (strcmp(k, "memory_init_cow") == 0)
            wasmtime_config_memory_init_cow_set(cfg, config_bool(k, v));
        else if (strcmp(k, "native_unwind_info") == 0)
            wasmtime_config_native_unwind_info_set(cfg, config_bool(k, v));
        else
            die("handoff: config %s: unknown setting", k);
    }
    wasm_engine_t *engine = wasm_engine_new_with_config(cfg);
    if (engine == NULL) die("wasmtime: cannot create an engine");
    return engine;
}

static void say_message(const char *prefix, wasm_message_t *msg) {
    size_t n = msg->size;
    while (n > 0 && (msg->data[n - 1] == 0 || msg->data[n - 1] == '\n')) n--;
    char *line = xcalloc(1, strlen(prefix) + n + 2);
    memcpy(line, prefix, strlen(prefix));
    memcpy(line + strlen(prefix), msg->data, n);
    line[strlen(prefix) + n] = '\n';
    if (write(2, line, strlen(prefix) + n + 1) < 0) {
        /* stderr is gone: the exit status still tells */
    }
    wasm_byte_vec_delete(msg);
}

/* An engine error that stops the host: its first line, named by what failed. */
static void check(wasmtime_error_t *err, const char *what) {
    if (err == NULL) return;
    wasm_message_t msg;
    wasmtime_error_message(err, &msg);
    size_t n = msg.size;
    char *nl = memchr(msg.data, '\n', n);
    if (nl != NULL) n = (size_t)(nl - msg.data);
    die("%s: %.*s", what, (int)n, msg.data);
}

/* WASI's proc_exit, replaced so that every code 0-255 reaches the exit status (wasmtime's
 * own turns codes >= 126 into an error without the code). The module flushed its own
 * buffers before calling it, so exiting at once loses nothing. */
static wasm_trap_t *proc_exit(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args,
                              size_t nargs, wasmtime_val_t *results, size_t nresults) {
    (void)env, (void)caller, (void)results, (void)nresults;
    _exit(nargs > 0 ? (args[0].of.i32 & 0xFF) : 1);
}

static void define_proc_exit(wasmtime_linker_t *linker) {
    wasmtime_linker_allow_shadowing(linker, true);
    wasm_valtype_vec_t params, results;
    wasm_valtype_t *i32 = wasm_valtype_new(WASM_I32);
    wasm_valtype_vec_new(&params, 1, &i32);
    wasm_valtype_vec_new_empty(&results);
    wasm_functype_t *ty = wasm_functype_new(&params, &results); /* takes both vectors */
    static const char mod[] = "wasi_snapshot_preview1", name[] = "proc_exit";
    check(wasmtime_linker_define_func(linker, mod, sizeof mod - 1, name, sizeof name - 1, ty,
                                      proc_exit, NULL, NULL), "proc_exit");
    wasm_functype_delete(ty);
}

/* What a call or an instantiation came to: -1 to go on, else the exit status. */
static int outcome(wasmtime_error_t *err, wasm_trap_t *trap) {
    if (err != NULL) {
        int status;
        if (wasmtime_error_exit_status(err, &status)) return status & 0xFF;
        wasm_message_t msg;
        wasmtime_error_message(err, &msg);
        say_message("", &msg);
        return 1;
    }
    if (trap != NULL) {
        wasm_message_t msg;
        wasm_trap_message(trap, &msg);
        say_message("wasm trap: ", &msg);
        return plan.trap_exit;
    }
    return -1;
}

static void same_module(const char *when) {
    struct stat st;
    if (fstat((int)plan.module.fd, &st) != 0) die("module fd: %s", strerror(errno));
    if ((uint64_t)st.st_size != plan.module.size || st.st_ctim.tv_sec != plan.module.ctime_sec ||
        st.st_ctim.tv_nsec != plan.module.ctime_nsec)
        die("compiled module: changed since yacr verified it (%s)", when);
}

static void load_filter(void) {
    if (plan.bpf == NULL) return;
    struct sock_fprog prog = {.len = (unsigned short)plan.bpf_len,
                              .filter = (struct sock_filter *)plan.bpf};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs: %s", strerror(errno));
    long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
    if (rc != 0) die("seccomp allowlist: %s", rc > 0 ? "a thread could not take it"
                                                      : strerror(errno));
}

int main(int argc, char **argv) {
    /* As yacr's Python init was: nothing in the container may read or trace this
     * process's memory (or its fds) through /proc. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (argc != 2) die("usage: yacr-wasmhost HANDOFF-FD (yacr execs this; see docs/WASM.md)");
    char *end;
    long hfd = strtol(argv[1], &end, 10);
    if (*argv[1] == 0 || *end != 0 || hfd < 3 || hfd > 65535) die("bad handoff fd %s", argv[1]);
    size_t len;
    char *buf = read_handoff((int)hfd, &len);
    parse(buf, len);
    take_stop_signals();
    /* ps shows the module's name (argv[0] is its path in the container), not the loader's
     * fd number */
    const char *base = strrchr(plan.argv[0], '/');
    prctl(PR_SET_NAME, base != NULL && base[1] ? base + 1 : plan.argv[0], 0, 0, 0);

    wasm_engine_t *engine = make_engine();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%u", plan.module.fd);
    same_module("before loading");
    wasmtime_module_t *module;
    check(wasmtime_module_deserialize_file(engine, path, &module), "compiled module");
    same_module("after loading");
    close((int)plan.module.fd);

    wasmtime_linker_t *linker = wasmtime_linker_new(engine);
    check(wasmtime_linker_define_wasi(linker), "WASI");
    define_proc_exit(linker);
    wasmtime_instance_pre_t *pre;
    check(wasmtime_linker_instantiate_pre(linker, module, &pre), "the module's imports");

    wasmtime_store_t *store = wasmtime_store_new(engine, NULL, NULL);
    wasmtime_context_t *ctx = wasmtime_store_context(store);
    if (plan.memory_limit >= 0)
        wasmtime_store_limiter(store, plan.memory_limit, -1, -1, -1, -1);
    wasi_config_t *wasi = wasi_config_new();
    if (!wasi_config_set_argv(wasi, plan.argc, plan.argv)) die("process.args: refused");
    if (!wasi_config_set_env(wasi, plan.envc, plan.env_names, plan.env_values))
        die("process.env: refused");
    wasi_config_inherit_stdin(wasi);
    wasi_config_inherit_stdout(wasi);
    wasi_config_inherit_stderr(wasi);
    for (size_t i = 0; i < plan.npreopen; i++)
        if (!wasi_config_preopen_dir(wasi, plan.preopen_host[i], plan.preopen_guest[i], true))
            die("cannot preopen %s as %s", plan.preopen_host[i], plan.preopen_guest[i]);
    check(wasmtime_context_set_wasi(ctx, wasi), "WASI");

    /* A module with a start function runs guest code while it is instantiated: it is
     * instantiated under the allowlist. Others are instantiated before it, so the
     * allowlist need not cover making an instance. */
    wasmtime_instance_t inst;
    wasm_trap_t *trap = NULL;
    int code;
    if (plan.early) {
        wasmtime_error_t *err = wasmtime_instance_pre_instantiate(pre, ctx, &inst, &trap);
        code = outcome(err, trap);
        if (code >= 0) _exit(code);
    }
    load_filter();
    if (!plan.early) {
        wasmtime_error_t *err = wasmtime_instance_pre_instantiate(pre, ctx, &inst, &trap);
        code = outcome(err, trap);
        if (code >= 0) _exit(code);
    }
    wasmtime_extern_t start;
    if (!wasmtime_instance_export_get(ctx, &inst, "_start", 6, &start) ||
        start.kind != WASMTIME_EXTERN_FUNC) {
        static const char msg[] = "the module exports no _start function (not a WASI "
                                  "command)\n";
        if (write(2, msg, sizeof msg - 1) < 0) _exit(1);
        _exit(1);
    }
    trap = NULL;
    wasmtime_error_t *err = wasmtime_func_call(ctx, &start.of.func, NULL, 0, NULL, 0, &trap);
    code = outcome(err, trap); /* not in one expression: trap is set by the call */
    /* _exit, not exit: nothing of the engine needs tearing down, and unmapping it all
     * would only cost time */
    _exit(code < 0 ? 0 : code);
}
