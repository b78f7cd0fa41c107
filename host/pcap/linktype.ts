// Link-layer types (tcpdump.org LINKTYPE_* values as stored in files) and the one question the load
// balancer asks of a link header: where does the IPv4 header start?

export const LINKTYPE_NULL = 0; // BSD loopback: 4-byte address family in host byte order
export const LINKTYPE_ETHERNET = 1;
export const DLT_RAW_BSD = 12; // DLT_RAW as some BSDs wrote it into files
export const DLT_RAW_OPENBSD = 14;
export const LINKTYPE_RAW = 101; // raw IPv4 or IPv6, version nibble tells
export const LINKTYPE_LOOP = 108; // OpenBSD loopback: address family in network byte order
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100; // 802.1Q
export const ETHERTYPE_QINQ = 0x88a8; // 802.1ad
export const ETHERTYPE_QINQ_OLD = 0x9100; // pre-standard double tagging

const ETH_HEADER = 14;
const VLAN_TAG = 4;
const SLL_HEADER = 16;
const SLL2_HEADER = 20;

export function linkTypeName(linkType: number): string {
  switch (linkType) {
    case LINKTYPE_NULL: return 'null';
    case LINKTYPE_ETHERNET: return 'ethernet';
    case DLT_RAW_BSD: case DLT_RAW_OPENBSD: case LINKTYPE_RAW: return 'raw';
    case LINKTYPE_LOOP: return 'loop';
    case LINKTYPE_LINUX_SLL: return 'linux-sll';
    case LINKTYPE_IPV4: return 'ipv4';
    case LINKTYPE_IPV6: return 'ipv6';
    case LINKTYPE_LINUX_SLL2: return 'linux-sll2';
    default: return `linktype-${linkType}`;
  }
}

/** Skips 802.1Q / 802.1ad tags starting at the ethertype field `at`; returns the IPv4 offset or -1. */
function afterEthertype(b: Uint8Array, start: number, at: number, end: number): number {
  while (at + 2 <= end) {
    const type = (b[at]! << 8) | b[at + 1]!;
    if (type === ETHERTYPE_IPV4) return versionIs4(b, at + 2, end) ? at + 2 - start : -1;
    if (type !== ETHERTYPE_VLAN && type !== ETHERTYPE_QINQ && type !== ETHERTYPE_QINQ_OLD) return -1;
    at += VLAN_TAG;
  }
  return -1;
}

function versionIs4(b: Uint8Array, at: number, end: number): boolean {
  return at < end && b[at]! >> 4 === 4;
}

/**
 * Offset of the IPv4 header from the start of the packet at `b[start .. start+capLen)`, or -1 when the
 * packet is not IPv4 (ARP, IPv6, unknown link type, or too short to hold even the version nibble).
 * Only the link header is looked at: the IPv4 header itself may still be truncated.
 */
export function ipv4Offset(linkType: number, b: Uint8Array, start: number, capLen: number): number {
  const end = start + capLen;
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      return capLen >= ETH_HEADER ? afterEthertype(b, start, start + 12, end) : -1;
    case LINKTYPE_RAW:
    case DLT_RAW_BSD:
    case DLT_RAW_OPENBSD:
    case LINKTYPE_IPV4:
      return versionIs4(b, start, end) ? 0 : -1;
    case LINKTYPE_LINUX_SLL:
      return capLen >= SLL_HEADER ? afterEthertype(b, start, start + 14, end) : -1;
    case LINKTYPE_LINUX_SLL2:
      if (capLen < SLL2_HEADER) return -1;
      if (((b[start]! << 8) | b[start + 1]!) !== ETHERTYPE_IPV4) return -1;
      return versionIs4(b, start + SLL2_HEADER, end) ? SLL2_HEADER : -1;
    case LINKTYPE_NULL: {
      if (capLen < 4) return -1;
      // host byte order of the capturing machine: AF_INET is 2 everywhere
      const le = b[start]! | (b[start + 1]! << 8);
      const be = (b[start + 2]! << 8) | b[start + 3]!;
      return (le === 2 && b[start + 2] === 0 && b[start + 3] === 0) || (be === 2 && b[start] === 0 && b[start + 1] === 0)
        ? versionIs4(b, start + 4, end) ? 4 : -1
        : -1;
    }
    case LINKTYPE_LOOP:
      if (capLen < 4) return -1;
      return b[start] === 0 && b[start + 1] === 0 && b[start + 2] === 0 && b[start + 3] === 2 && versionIs4(b, start + 4, end) ? 4 : -1;
    default:
      return -1;
  }
}
