;; Admission check for the firmware path of `wasmlb rewrite`, run over the firmware's own memory (imported)
;; after the chunk is copied in and before process(). The firmware's RFC 1624 incremental NAT gives
;; tcprewrite's bytes (tcprewrite recomputes checksums from scratch) only for a whole, unfragmented IPv4
;; packet with IHL 5, TCP or UDP with a whole header, no multicast address (tcprewrite edits the MAC), a
;; UDP checksum in use, and checksums that are right and canonical (a right one stored as 0xffff, the other
;; zero, comes out of tcprewrite as 0x0000; a wrong one comes out corrected).
;;
;; admit(desc, k, n, region, verify) -> the first index in [k, n) whose packet does not qualify, or n.
;; Descriptor i (32 bytes at desc + 32 i) holds the packet's offset in the region (u32) and its length from
;; the IPv4 header to the end of the capture (u16); the caller passes only whole packets (caplen = len).
;; With verify = 0 the checksums are not summed (--trust-checksums).
;;
;; settle(desc, k, n, region) -> after process(): the first index in [k, n) whose verdict is not FORWARD
;; (the firmware dropped or diverted it; its bytes are as read), or n. On the way it counts the packets
;; the firmware rewrote (taken by rewritten(), which clears the count) and writes a UDP checksum the
;; firmware left as 0xffff (RFC 768's zero) as 0x0000, as tcprewrite's recompute does.
;;
;; A ones'-complement sum is congruent modulo 0xffff to the sum of the 32-bit little-endian words
;; (2^16 = 1 mod 0xffff), and a checking sum folds to 0xffff in either byte order: the pass adds
;; little-endian u32 words, and the pseudo-header's protocol and length words byte-swapped to match.
;;
;; Source of the bytes embedded in verify-kernel.ts (test/host/rewrite/verify-kernel.test.ts compiles this
;; file with wabt and compares).
(module
  (import "env" "memory" (memory 1))
  (global $rewritten (mut i32) (i32.const 0))
  (func (export "admit") (param $desc i32) (param $k i32) (param $n i32) (param $region i32) (param $verify i32) (result i32)
    (local $d i32) (local $p i32) (local $len i32) (local $q i32) (local $e i32) (local $s i64) (local $l4 i32)
    (local $proto i32) (local $ck i32)
    (block $out
      (loop $next
        (br_if $out (i32.ge_u (local.get $k) (local.get $n)))
        (local.set $d (i32.add (local.get $desc) (i32.shl (local.get $k) (i32.const 5))))
        (local.set $p (i32.add (local.get $region) (i32.load (local.get $d))))
        (local.set $len (i32.load16_u offset=4 (local.get $d)))
        ;; the header rules
        (br_if $out (i32.lt_u (local.get $len) (i32.const 28)))
        (br_if $out (i32.ne (i32.load8_u (local.get $p)) (i32.const 0x45)))
        ;; total length = len (16-bit fields are compared as little-endian loads see them)
        (br_if $out (i32.ne (i32.load16_u offset=2 (local.get $p))
          (i32.or (i32.and (i32.shl (local.get $len) (i32.const 8)) (i32.const 0xff00)) (i32.shr_u (local.get $len) (i32.const 8)))))
        ;; no fragment: flags MF and offset 0 (0x3fff big-endian)
        (br_if $out (i32.and (i32.load16_u offset=6 (local.get $p)) (i32.const 0xff3f)))
        (br_if $out (i32.eq (i32.shr_u (i32.load8_u offset=12 (local.get $p)) (i32.const 4)) (i32.const 0xe)))
        (br_if $out (i32.eq (i32.shr_u (i32.load8_u offset=16 (local.get $p)) (i32.const 4)) (i32.const 0xe)))
        (local.set $proto (i32.load8_u offset=9 (local.get $p)))
        (if (i32.eq (local.get $proto) (i32.const 6))
          (then
            (br_if $out (i32.lt_u (local.get $len) (i32.const 40)))
            (local.set $ck (i32.load16_u offset=36 (local.get $p))))
          (else
            (br_if $out (i32.ne (local.get $proto) (i32.const 17)))
            (local.set $ck (i32.load16_u offset=26 (local.get $p)))
            (br_if $out (i32.eqz (local.get $ck)))))
        (br_if $out (i32.eq (local.get $ck) (i32.const 0xffff)))
        (br_if $out (i32.eq (i32.load16_u offset=10 (local.get $p)) (i32.const 0xffff)))
        (if (local.get $verify)
          (then
            ;; the IPv4 header: five words
            (local.set $s
              (i64.add
                (i64.add
                  (i64.add (i64.load32_u (local.get $p)) (i64.load32_u offset=4 (local.get $p)))
                  (i64.add (i64.load32_u offset=8 (local.get $p)) (i64.load32_u offset=12 (local.get $p))))
                (i64.load32_u offset=16 (local.get $p))))
            (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffffffff)) (i64.shr_u (local.get $s) (i64.const 32))))
            (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffff)) (i64.shr_u (local.get $s) (i64.const 16))))
            (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffff)) (i64.shr_u (local.get $s) (i64.const 16))))
            (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffff)) (i64.shr_u (local.get $s) (i64.const 16))))
            (br_if $out (i64.ne (local.get $s) (i64.const 0xffff)))
            ;; pseudo-header protocol and length (byte-swapped), the addresses, the segment: [p + 12, p + len)
            (local.set $l4 (i32.sub (local.get $len) (i32.const 20)))
            (local.set $s
              (i64.extend_i32_u
                (i32.add
                  (i32.shl (local.get $proto) (i32.const 8))
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
            (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffffffff)) (i64.shr_u (local.get $s) (i64.const 32))))
            (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffff)) (i64.shr_u (local.get $s) (i64.const 16))))
            (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffff)) (i64.shr_u (local.get $s) (i64.const 16))))
            (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffff)) (i64.shr_u (local.get $s) (i64.const 16))))
            (br_if $out (i64.ne (local.get $s) (i64.const 0xffff)))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $next)))
    (local.get $k))
  (func (export "settle") (param $desc i32) (param $k i32) (param $n i32) (param $region i32) (result i32)
    (local $d i32) (local $p i32)
    (block $out
      (loop $next
        (br_if $out (i32.ge_u (local.get $k) (local.get $n)))
        (local.set $d (i32.add (local.get $desc) (i32.shl (local.get $k) (i32.const 5))))
        ;; verdict FORWARD (1)
        (br_if $out (i32.ne (i32.load8_u offset=12 (local.get $d)) (i32.const 1)))
        ;; out flag REWRITTEN (8)
        (if (i32.and (i32.load16_u offset=14 (local.get $d)) (i32.const 8))
          (then
            (global.set $rewritten (i32.add (global.get $rewritten) (i32.const 1)))
            (local.set $p (i32.add (local.get $region) (i32.load (local.get $d))))
            (if (i32.and
                  (i32.eq (i32.load8_u offset=9 (local.get $p)) (i32.const 17))
                  (i32.eq (i32.load16_u offset=26 (local.get $p)) (i32.const 0xffff)))
              (then (i32.store16 offset=26 (local.get $p) (i32.const 0))))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $next)))
    (local.get $k))
  (func (export "rewritten") (result i32)
    (local $r i32)
    (local.set $r (global.get $rewritten))
    (global.set $rewritten (i32.const 0))
    (local.get $r)))
