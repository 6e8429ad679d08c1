;; hello: the smallest AIOS Wasm agent that makes syscalls.
;;
;; ABI (docs/wasm-agents.md): import aios.syscall(sysno, args_ptr, args_len,
;; ret_ptr, ret_cap) -> i32.  Arguments are a msgpack array in linear memory;
;; a result >= 0 is the length of the msgpack result written at ret_ptr, a
;; negative result is -errno (the message, msgpack str, is at ret_ptr).
(module
  (import "aios" "syscall" (func $sys (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\90")            ;; msgpack []
  (data (i32.const 16) "\92\a5hello\01") ;; msgpack ["hello", 1]
  (func (export "aios_main") (result i32)
    (local $r i32)
    ;; sysno 20 (the stand-in kernel's "who am I"), no arguments
    (local.set $r (call $sys (i32.const 20) (i32.const 0) (i32.const 1) (i32.const 256) (i32.const 64)))
    (if (i32.lt_s (local.get $r) (i32.const 0)) (then (return (local.get $r))))
    ;; sysno 21 (echo) with ["hello", 1]
    (local.set $r (call $sys (i32.const 21) (i32.const 16) (i32.const 8) (i32.const 512) (i32.const 64)))
    (if (i32.lt_s (local.get $r) (i32.const 0)) (then (return (local.get $r))))
    ;; return our id: a positive fixint is its own msgpack encoding
    (i32.load8_u (i32.const 256))))
