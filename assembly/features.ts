// Actions and capabilities.
//
// Action bits are stored in the u16 `actions` field of fixed and wildcard affinities and are the same bits
// the host sends. Capability bits say which families of actions this build supports.
//
// A build can leave an action family out by compiling with `--use WASMLB_FEATURES=<mask>` (an integer
// constant; see asconfig.json target "minimal"): every hot-path branch is guarded by a constant test of
// FEATURES, so the code of a left-out action is folded away, and installing an affinity that needs it
// returns UNSUPPORTED_ACTION.

export const ACT_NAT_SRC_ADDR: u32 = 1 << 0;
export const ACT_NAT_SRC_PORT: u32 = 1 << 1;
export const ACT_NAT_DST_ADDR: u32 = 1 << 2;
export const ACT_NAT_DST_PORT: u32 = 1 << 3;
export const ACT_SEQ_ADJUST: u32 = 1 << 4;
export const ACT_DISPATCH: u32 = 1 << 5;
export const ACT_DROP: u32 = 1 << 6;
export const ACT_INFO: u32 = 1 << 7;
/** Interest match attaches the packet (TO_MANAGER when neither copy nor hold is set). */
export const ACT_INTEREST_DATA: u32 = 1 << 8;
/** Interest match: forward as usual and send a copy (COPY verdict). */
export const ACT_INTEREST_COPY: u32 = 1 << 9;
/** Interest match: the host holds the packet until the manager answers (HOLD verdict). */
export const ACT_INTEREST_HOLD: u32 = 1 << 10;
/** Wildcard only: the destination prefix joins the advertised set while the wildcard lives. */
export const ACT_ADVERTISE: u32 = 1 << 11;
export const ACT_ALL: u32 = (1 << 12) - 1;

export const ACT_NAT_SRC: u32 = ACT_NAT_SRC_ADDR | ACT_NAT_SRC_PORT;
export const ACT_NAT_DST: u32 = ACT_NAT_DST_ADDR | ACT_NAT_DST_PORT;
export const ACT_NAT_ANY: u32 = ACT_NAT_SRC | ACT_NAT_DST;
export const ACT_INTEREST_FLAGS: u32 = ACT_INTEREST_DATA | ACT_INTEREST_COPY | ACT_INTEREST_HOLD;

export const CAP_NAT: u32 = 1 << 0;
export const CAP_SEQ_ADJUST: u32 = 1 << 1;
export const CAP_DISPATCH: u32 = 1 << 2;
export const CAP_DROP: u32 = 1 << 3;
export const CAP_INFO: u32 = 1 << 4;
export const CAP_INTEREST: u32 = 1 << 5;
export const CAP_ADVERTISE: u32 = 1 << 6;
export const CAP_ALL: u32 = (1 << 7) - 1;

// @ts-ignore: `WASMLB_FEATURES` is introduced by `--use WASMLB_FEATURES=<mask>` when building a reduced firmware
export const FEATURES: u32 = isDefined(WASMLB_FEATURES) ? <u32>WASMLB_FEATURES & CAP_ALL : CAP_ALL;

/** Capabilities an affinity with these actions (and interest mask) needs. */
export function requiredCaps(actions: u32, interestMask: u32): u32 {
  let caps: u32 = 0;
  if (actions & ACT_NAT_ANY) caps |= CAP_NAT;
  if (actions & ACT_SEQ_ADJUST) caps |= CAP_SEQ_ADJUST;
  if (actions & ACT_DISPATCH) caps |= CAP_DISPATCH;
  if (actions & ACT_DROP) caps |= CAP_DROP;
  if (actions & ACT_INFO) caps |= CAP_INFO;
  if ((actions & ACT_INTEREST_FLAGS) || interestMask) caps |= CAP_INTEREST;
  if (actions & ACT_ADVERTISE) caps |= CAP_ADVERTISE;
  return caps;
}
