/*
 * The few declarations of wasmtime's C API (version 50) that yacr-wasmhost uses, written
 * for yacr from the API's documented signatures; nothing here is copied from wasmtime.
 * The library is the _libwasmtime.so bundled in the pinned PyPI wasmtime wheel
 * (pyproject.toml: wasmtime==50.0.1), which ships no headers.
 *
 * Every engine object is opaque to us and only handled through pointers. The few
 * structures passed by value or filled in by the library are laid out as the API
 * defines them for 64-bit targets; their sizes are checked below at compile time.
 */
#ifndef YACR_WASMTIME_API_H
#define YACR_WASMTIME_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wasm_config_t wasm_config_t;
typedef struct wasm_engine_t wasm_engine_t;
typedef struct wasm_trap_t wasm_trap_t;
typedef struct wasm_valtype_t wasm_valtype_t;
typedef struct wasm_functype_t wasm_functype_t;
typedef struct wasmtime_error_t wasmtime_error_t;
typedef struct wasmtime_module_t wasmtime_module_t;
typedef struct wasmtime_store_t wasmtime_store_t;
typedef struct wasmtime_context_t wasmtime_context_t;
typedef struct wasmtime_linker_t wasmtime_linker_t;
typedef struct wasmtime_instance_pre_t wasmtime_instance_pre_t;
typedef struct wasmtime_caller_t wasmtime_caller_t;
typedef struct wasi_config_t wasi_config_t;

/* wasm_byte_vec_t and wasm_valtype_vec_t: a size and a pointer. */
typedef struct { size_t size; char *data; } wasm_byte_vec_t;
typedef struct { size_t size; wasm_valtype_t **data; } wasm_valtype_vec_t;
typedef wasm_byte_vec_t wasm_message_t;

/* An instance and a function, as handles into their store. */
typedef struct { uint64_t store_id; size_t private_index; } wasmtime_instance_t;
typedef struct { uint64_t store_id; void *private_ptr; } wasmtime_func_t;

/* wasmtime_extern_t: a kind, then a union whose largest member (a global) takes 24 bytes. */
#define WASMTIME_EXTERN_FUNC 0
typedef struct {
    uint8_t kind;
    union {
        wasmtime_func_t func;
        uint8_t other[24];
    } of;
} wasmtime_extern_t;

/* wasmtime_val_t: a kind, then a 16-byte-wide union (v128 is the widest). Only the i32
 * member is read (proc_exit's argument). */
#define WASMTIME_I32 0
typedef struct {
    uint8_t kind;
    union {
        int32_t i32;
        int64_t i64;
        uint8_t v128[16];
        wasmtime_func_t funcref;
    } of;
} wasmtime_val_t;

_Static_assert(sizeof(wasmtime_extern_t) == 32, "wasmtime_extern_t is 32 bytes");
_Static_assert(offsetof(wasmtime_extern_t, of) == 8, "wasmtime_extern_t.of at 8");
_Static_assert(offsetof(wasmtime_val_t, of) == 8, "wasmtime_val_t.of at 8");
_Static_assert(sizeof(wasmtime_instance_t) == 16, "wasmtime_instance_t is 16 bytes");

typedef wasm_trap_t *(*wasmtime_func_callback_t)(void *env, wasmtime_caller_t *caller,
                                                 const wasmtime_val_t *args, size_t nargs,
                                                 wasmtime_val_t *results, size_t nresults);

/* configuration and engine */
wasm_config_t *wasm_config_new(void);
void wasmtime_config_cranelift_opt_level_set(wasm_config_t *, uint8_t level);
void wasmtime_config_cranelift_flag_set(wasm_config_t *, const char *key, const char *value);
void wasmtime_config_parallel_compilation_set(wasm_config_t *, bool);
void wasmtime_config_memory_reservation_set(wasm_config_t *, uint64_t);
void wasmtime_config_memory_guard_size_set(wasm_config_t *, uint64_t);
void wasmtime_config_memory_reservation_for_growth_set(wasm_config_t *, uint64_t);
void wasmtime_config_memory_init_cow_set(wasm_config_t *, bool);
void wasmtime_config_native_unwind_info_set(wasm_config_t *, bool);
wasm_engine_t *wasm_engine_new_with_config(wasm_config_t *); /* takes the config */

/* modules */
wasmtime_error_t *wasmtime_module_deserialize_file(wasm_engine_t *, const char *path,
                                                   wasmtime_module_t **ret);

/* errors and traps */
void wasmtime_error_message(const wasmtime_error_t *, wasm_message_t *out);
bool wasmtime_error_exit_status(const wasmtime_error_t *, int *status);
void wasmtime_error_delete(wasmtime_error_t *);
void wasm_trap_message(const wasm_trap_t *, wasm_message_t *out);
void wasm_byte_vec_delete(wasm_byte_vec_t *);

/* stores */
wasmtime_store_t *wasmtime_store_new(wasm_engine_t *, void *data, void (*finalizer)(void *));
wasmtime_context_t *wasmtime_store_context(wasmtime_store_t *);
void wasmtime_store_limiter(wasmtime_store_t *, int64_t memory_size, int64_t table_elements,
                            int64_t instances, int64_t tables, int64_t memories);

/* WASI */
wasi_config_t *wasi_config_new(void);
bool wasi_config_set_argv(wasi_config_t *, size_t argc, const char *argv[]);
bool wasi_config_set_env(wasi_config_t *, size_t envc, const char *names[],
                         const char *values[]);
void wasi_config_inherit_stdin(wasi_config_t *);
void wasi_config_inherit_stdout(wasi_config_t *);
void wasi_config_inherit_stderr(wasi_config_t *);
bool wasi_config_preopen_dir(wasi_config_t *, const char *host_path, const char *guest_path,
                             bool mutable_fs);
wasmtime_error_t *wasmtime_context_set_wasi(wasmtime_context_t *, wasi_config_t *); /* takes it */

/* linking and instantiation */
wasmtime_linker_t *wasmtime_linker_new(wasm_engine_t *);
void wasmtime_linker_allow_shadowing(wasmtime_linker_t *, bool);
wasmtime_error_t *wasmtime_linker_define_wasi(wasmtime_linker_t *);
wasmtime_error_t *wasmtime_linker_define_func(wasmtime_linker_t *, const char *module,
                                              size_t module_len, const char *name,
                                              size_t name_len, const wasm_functype_t *ty,
                                              wasmtime_func_callback_t cb, void *data,
                                              void (*finalizer)(void *));
wasmtime_error_t *wasmtime_linker_instantiate_pre(const wasmtime_linker_t *,
                                                  const wasmtime_module_t *,
                                                  wasmtime_instance_pre_t **out);
wasmtime_error_t *wasmtime_instance_pre_instantiate(const wasmtime_instance_pre_t *,
                                                    wasmtime_context_t *,
                                                    wasmtime_instance_t *out,
                                                    wasm_trap_t **trap);
bool wasmtime_instance_export_get(wasmtime_context_t *, const wasmtime_instance_t *,
                                  const char *name, size_t name_len, wasmtime_extern_t *out);
wasmtime_error_t *wasmtime_func_call(wasmtime_context_t *, const wasmtime_func_t *,
                                     const wasmtime_val_t *args, size_t nargs,
                                     wasmtime_val_t *results, size_t nresults,
                                     wasm_trap_t **trap);

/* function types, for proc_exit: (i32) -> () */
#define WASM_I32 0
wasm_valtype_t *wasm_valtype_new(uint8_t kind);
void wasm_valtype_vec_new(wasm_valtype_vec_t *out, size_t size, wasm_valtype_t *const data[]);
void wasm_valtype_vec_new_empty(wasm_valtype_vec_t *out);
wasm_functype_t *wasm_functype_new(wasm_valtype_vec_t *params, wasm_valtype_vec_t *results);
void wasm_functype_delete(wasm_functype_t *);

#endif
