// The few libc calls the host needs (the TUN device; madvise for the firmware's memory), bound once with
// koffi. Nothing here allocates per call except the subarray a caller passes as a buffer; every call
// returns the raw result and leaves errno to `errno()`.
//
// Linux x86_64/aarch64 only: the constants below are the generic Linux ABI values (asm-generic), which both
// share. Loading this module on another OS throws a TunError('TUN_UNAVAILABLE') from `libc()`.

import { createRequire } from 'node:module';

type Koffi = typeof import('koffi');
let koffiModule: Koffi | null = null;
/** koffi on first use: importing this module (the firmware wrapper does) loads no native code. */
function koffi(): Koffi {
  return (koffiModule ??= createRequire(import.meta.url)('koffi') as Koffi);
}

export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** _IOW('T', 202, int): attach this fd to a TUN/TAP device (creates it if missing). */
export const TUNSETIFF = 0x400454ca;
/** _IOR('T', 210, unsigned int): which IFF_* flags the driver supports. */
export const TUNGETFEATURES = 0x800454cf;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
export const IFF_MULTI_QUEUE = 0x0100;
/** struct ifreq is 40 bytes on 64-bit Linux: char ifr_name[16]; union { short ifr_flags; ... } (24 bytes). */
export const IFREQ_SIZE = 40;
export const IFNAMSIZ = 16;
export const CLONE_NEWNET = 0x40000000;

export interface Libc {
  open(path: string, flags: number): number;
  close(fd: number): number;
  ioctl(fd: number, request: number, arg: Uint8Array): number;
  read(fd: number, buf: Uint8Array, count: number): number;
  write(fd: number, buf: Uint8Array, count: number): number;
  setns(fd: number, nstype: number): number;
  madvise(addr: bigint, len: number, advice: number): number;
  /** The address of a buffer's first byte. */
  addressOf(buf: Uint8Array): bigint;
  errno(): number;
}

export const MADV_HUGEPAGE = 14;

export const EPERM = 1;
export const EAGAIN = 11;
export const EINTR = 4;
export const EINVAL = 22;
export const ENOBUFS = 105;

let bound: Libc | null = null;

/** Binds libc lazily, so importing this module costs nothing until a call is needed. */
export function libc(): Libc {
  if (bound) return bound;
  const k = koffi();
  const lib = k.load('libc.so.6');
  const open = lib.func('int open(const char *path, int flags)');
  const close = lib.func('int close(int fd)');
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, void *arg)');
  const read = lib.func('long read(int fd, void *buf, size_t count)');
  const write = lib.func('long write(int fd, const void *buf, size_t count)');
  const setns = lib.func('int setns(int fd, int nstype)');
  const madvise = lib.func('int madvise(uintptr_t addr, size_t len, int advice)');
  // memset(buf, 0, 0) writes nothing and returns buf: the address of the buffer's bytes
  const memset = lib.func('void *memset(void *s, int c, size_t n)');
  bound = {
    open: (path, flags) => open(path, flags) as number,
    close: (fd) => close(fd) as number,
    ioctl: (fd, request, arg) => ioctl(fd, request, arg) as number,
    read: read as (fd: number, buf: Uint8Array, count: number) => number,
    write: write as (fd: number, buf: Uint8Array, count: number) => number,
    setns: (fd, nstype) => setns(fd, nstype) as number,
    madvise: (addr, len, advice) => madvise(addr, len, advice) as number,
    addressOf: (buf) => k.address(memset(buf, 0, 0)) as bigint,
    errno: () => k.errno(),
  };
  return bound;
}

/** Errno name for messages ("EAGAIN"), or the number as text. */
export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(koffi().os.errno)) if (value === errno) return name;
  return String(errno);
}

export type PollHandle = ReturnType<Koffi['node']['poll']>;

/**
 * libuv readiness for a raw fd (level-triggered): `cb(status)` runs on the event loop while the fd is
 * readable (status 0), or once with a negative errno when polling failed (libuv then stops the handle).
 * koffi calls back with (status, events); its type declaration says otherwise, hence the cast.
 */
export function pollReadable(fd: number, cb: (status: number) => void): PollHandle {
  const onPoll = (status: number): void => cb(status);
  return koffi().node.poll(fd, { readable: true }, onPoll as unknown as (ev: { readable: boolean }) => void);
}
