// Control record: the host writes one affinity (host byte order) at CONTROL and calls an install / delete /
// lookup export; lookups answer at CONTROL + CONTROL_OUT. Mirrored in host/agent/wasm.ts (CTL_*).

export const C_SADDR = 0; //        u32 host order
export const C_DADDR = 4; //        u32
export const C_SPORT = 8; //        u16 host order (wildcard: 0 = any)
export const C_DPORT = 10; //       u16
export const C_PROTO = 12; //       u8 (wildcard: 0 = any)
export const C_PREC_FLAGS = 13; //  u8 wildcard: WP_SEARCH_FIRST
export const C_ACTIONS = 14; //     u16 ACT_*
export const C_TTL = 16; //         u32 seconds, 0 = delete
export const C_OWNER = 20; //       u16
export const C_INTEREST_MASK = 22; // u16
export const C_INTEREST_TARGET = 24; // u16
export const C_SERVICE_PREC = 26; // u16 wildcard
export const C_NAT_SRC_ADDR = 28; // u32
export const C_NAT_SRC_PORT = 32; // u16
export const C_NAT_DST_PORT = 34; // u16
export const C_NAT_DST_ADDR = 36; // u32
export const C_FORWARD_IP = 40; //  u32
export const C_SEQ_INIT = 44; //    u32
export const C_SEQ_DELTA = 48; //   u32
export const C_ACK_INIT = 52; //    u32
export const C_ACK_DELTA = 56; //   u32
export const C_SMASK = 60; //       u32 wildcard
export const C_DMASK = 64; //       u32 wildcard
export const C_BACKUP_PREC = 68; // u16 wildcard

// answer of lookupFixed (host order)
export const O_SLOT = 128; //       u32
export const O_STATE = 132; //      u8
export const O_ACTIONS = 134; //    u16
export const O_EXPIRY = 136; //     u32 (ms, low 32 bits of the host clock)
export const O_OWNER = 140; //      u16
export const O_INTEREST_MASK = 142;
export const O_INTEREST_TARGET = 144;
export const O_NAT_SRC_PORT = 146; // u16
export const O_NAT_SRC_ADDR = 148; // u32
export const O_NAT_DST_ADDR = 152; // u32
export const O_NAT_DST_PORT = 156; // u16
export const O_FORWARD_IP = 160; // u32
export const O_SEQ_INIT = 164;
export const O_SEQ_DELTA = 168;
export const O_ACK_INIT = 172;
export const O_ACK_DELTA = 176;
export const O_PACKETS = 180; //    u32
export const O_BYTES = 184; //      u64

/** TTL cap: expiry is compared in serial arithmetic, so it must stay below 2^31 ms. */
export const MAX_TTL_SEC: u32 = 2000000;
