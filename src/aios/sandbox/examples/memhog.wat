;; memhog: grows linear memory one 64 KiB page at a time until memory.grow
;; fails (-1 once the store's memory limit, the agent's quota, is reached);
;; returns how many pages it got.
(module
  (memory (export "memory") 1)
  (func (export "aios_main") (result i32)
    (local $n i32)
    (block $done
      (loop $more
        (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $more)))
    (local.get $n)))
