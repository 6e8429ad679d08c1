;; fsprobe: asks WASI whether fd 3 is a preopened directory (it is only when
;; the agent holds ACCESS_FS), then tries to create "probe.txt" in it.
;; Returns prestat_errno * 1000 + path_open_errno (0 = success).
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "probe.txt")
  (func (export "aios_main") (result i32)
    (local $e i32)
    (local.set $e (call $prestat (i32.const 3) (i32.const 0)))
    (if (i32.ne (local.get $e) (i32.const 0)) (then (return (i32.mul (local.get $e) (i32.const 1000)))))
    ;; path_open(dirfd=3, dirflags=0, path, len=9, oflags=CREAT(1), rights: write(64)|read(2), inheriting 0, fdflags 0, out@128)
    (call $open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 9) (i32.const 1)
                (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 128))))
