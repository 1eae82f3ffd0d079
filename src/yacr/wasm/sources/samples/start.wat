;; A WASI command with a start function (section 8): instantiation runs guest code, so
;; yacr instantiates it only after `start`, under the seccomp allowlist. Prints
;; "start function ran" if the start function ran before _start, then exits 7.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "start function ran\n")
  (global $ran (mut i32) (i32.const 0))
  (func $init (global.set $ran (i32.const 1)))
  (start $init)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 19))
    (if (global.get $ran)
      (then (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
    (call $proc_exit (i32.const 7))))
