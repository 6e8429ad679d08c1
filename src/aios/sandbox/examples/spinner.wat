;; spinner: loops forever; stopped by running out of fuel (CPU budget) or by
;; the epoch deadline (wall time per slice).
(module
  (memory (export "memory") 1)
  (func (export "aios_main") (result i32)
    (local $i i32)
    (loop $forever
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $forever))
    (local.get $i)))
