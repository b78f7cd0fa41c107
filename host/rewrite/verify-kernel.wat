;; Checksum verification for the firmware path of `wasmlb rewrite`, run over the firmware's own memory
;; (imported), before process(): the firmware's incremental NAT equals tcprewrite's full recompute only
;; when the input checksums were right. Each descriptor points at an IPv4 header (IHL 5, TCP or UDP, the
;; caller checked) whose total length is the descriptor's length.
;;
;; verify(desc, k, n, region) -> the first index in [k, n) whose IPv4 header checksum or TCP/UDP checksum
;; (with the pseudo-header) does not check out, or n. A ones'-complement sum is congruent modulo 0xffff to
;; the sum of the 32-bit little-endian words (2^16 = 1 mod 0xffff) and a checking sum folds to 0xffff in
;; either byte order, so the pass adds little-endian u32 words; the pseudo-header's protocol and length
;; words are added byte-swapped to match.
;;
;; Source of the bytes embedded in verify-kernel.ts (test/host/rewrite/verify-kernel.test.ts compiles this
;; file with wabt and compares).
(module
  (import "env" "memory" (memory 1))
  (func $fold (param $s i64) (result i32)
    (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffffffff)) (i64.shr_u (local.get $s) (i64.const 32))))
    (block $done
      (loop $more
        (br_if $done (i64.eqz (i64.shr_u (local.get $s) (i64.const 16))))
        (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffff)) (i64.shr_u (local.get $s) (i64.const 16))))
        (br $more)))
    (i32.wrap_i64 (local.get $s)))
  (func (export "verify") (param $desc i32) (param $k i32) (param $n i32) (param $region i32) (result i32)
    (local $d i32) (local $p i32) (local $len i32) (local $q i32) (local $e i32) (local $s i64) (local $l4 i32)
    (block $out
      (loop $next
        (br_if $out (i32.ge_u (local.get $k) (local.get $n)))
        (local.set $d (i32.add (local.get $desc) (i32.shl (local.get $k) (i32.const 5))))
        (local.set $p (i32.add (local.get $region) (i32.load (local.get $d))))
        (local.set $len (i32.load16_u offset=4 (local.get $d)))
        ;; the IPv4 header: five words
        (local.set $s
          (i64.add
            (i64.add
              (i64.add (i64.load32_u (local.get $p)) (i64.load32_u offset=4 (local.get $p)))
              (i64.add (i64.load32_u offset=8 (local.get $p)) (i64.load32_u offset=12 (local.get $p))))
            (i64.load32_u offset=16 (local.get $p))))
        (br_if $out (i32.ne (call $fold (local.get $s)) (i32.const 0xffff)))
        ;; pseudo-header protocol and length (byte-swapped), addresses and the segment: [p + 12, p + len)
        (local.set $l4 (i32.sub (local.get $len) (i32.const 20)))
        (local.set $s
          (i64.extend_i32_u
            (i32.add
              (i32.shl (i32.load8_u offset=9 (local.get $p)) (i32.const 8))
              (i32.or
                (i32.and (i32.shl (local.get $l4) (i32.const 8)) (i32.const 0xff00))
                (i32.shr_u (local.get $l4) (i32.const 8))))))
        (local.set $q (i32.add (local.get $p) (i32.const 12)))
        (local.set $e (i32.add (local.get $p) (local.get $len)))
        (block $words
          (loop $word
            (br_if $words (i32.gt_u (i32.add (local.get $q) (i32.const 4)) (local.get $e)))
            (local.set $s (i64.add (local.get $s) (i64.load32_u (local.get $q))))
            (local.set $q (i32.add (local.get $q) (i32.const 4)))
            (br $word)))
        (if (i32.le_u (i32.add (local.get $q) (i32.const 2)) (local.get $e))
          (then
            (local.set $s (i64.add (local.get $s) (i64.load16_u (local.get $q))))
            (local.set $q (i32.add (local.get $q) (i32.const 2)))))
        (if (i32.lt_u (local.get $q) (local.get $e))
          (then (local.set $s (i64.add (local.get $s) (i64.load8_u (local.get $q))))))
        (br_if $out (i32.ne (call $fold (local.get $s)) (i32.const 0xffff)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $next)))
    (local.get $k)))
