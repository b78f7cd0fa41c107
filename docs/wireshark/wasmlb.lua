-- Wireshark dissector for the wasmlb service protocol (docs/protocol.md).
--
--   wireshark -X lua_script:docs/wireshark/wasmlb.lua capture.pcap
--   tshark    -X lua_script:docs/wireshark/wasmlb.lua -r capture.pcap -V
--
-- or copy this file into Wireshark's personal Lua plugins folder (Help > About > Folders).
--
-- One UDP datagram carries one or more service messages back to back; each message is a 20-byte header
-- (version, type, length, sender, sequence) followed by segments (type with the "required" bit, data
-- length, data padded to 4 bytes). Action lists nest action segments one level deep. Every field is
-- big-endian. The dissector registers on the UDP ports of the preference "UDP ports" (the defaults of
-- the configuration: agent control 7400, wildcard multicast 7401, manager control 7500-7509) and as a
-- heuristic UDP dissector, so captures on other ports are recognised too.
--
-- Anything that does not follow the layout is flagged with an expert item of severity error
-- (shown by tshark -V as "Expert Info (Error/Malformed)") and dissection stops for that message.

local wasmlb = Proto("wasmlb", "wasmlb Service Protocol")

local HEADER_BYTES = 20
local REQUIRED_FLAG = 0x8000

------------------------------------------------------------------------------------------------------
-- Codes (host/protocol/constants.ts)

local MSG_TYPES = {
  [1] = "affinity-update-wildcard",
  [2] = "affinity-update-fixed",
  [3] = "affinity-update-deny",
  [4] = "interest-match-wildcard",
  [5] = "interest-match-fixed",
  [6] = "ip-packet-only",
  [16] = "replication",
  [17] = "replication-ack",
  [18] = "resync-request",
  [19] = "resync-data",
  [20] = "resync-done",
  [21] = "heartbeat",
}

local SEG = {
  SECURITY = 1, IDENTITY_INFO = 2, WILDCARD_AFFINITY = 3, FIXED_AFFINITY = 4, AFFINITY_IDENTIFIER = 5,
  SERVICE_PRECEDENCE = 6, BACKUP_PRECEDENCE = 7, MANAGER_INTEREST_DATA = 8, AGENT_INTEREST_DATA = 9,
  IP_PACKET = 10, DENY_REPORT = 11, ACTION_LIST = 16, ACTION_NAT = 32, ACTION_ADVERTISE = 33,
  ACTION_SEQUENCE_ADJUST = 34, ACTION_INTEREST_CRITERIA = 35, ACTION_DISPATCH = 36,
  REPLICATION_ENTRY = 48, REPLICATION_ACK = 49, RESYNC_MARKER = 50, HEARTBEAT_DATA = 51,
}

local SEG_NAMES = {
  [1] = "Security", [2] = "Identity Info", [3] = "Wildcard Affinity", [4] = "Fixed Affinity",
  [5] = "Affinity Identifier", [6] = "Service Precedence", [7] = "Backup Precedence",
  [8] = "Manager Interest Data", [9] = "Agent Interest Data", [10] = "IP Packet", [11] = "Deny Report",
  [16] = "Action List", [32] = "NAT Action", [33] = "Advertise Action", [34] = "Sequence Adjust Action",
  [35] = "Interest Criteria Action", [36] = "Dispatch Action", [48] = "Replication Entry",
  [49] = "Replication Ack", [50] = "Resync Marker", [51] = "Heartbeat Data",
}

local IP_PROTOS = { [0] = "any", [1] = "ICMP", [6] = "TCP", [17] = "UDP" }
local MAC_ALGORITHMS = { [1] = "HMAC-SHA256", [2] = "Keyed MD5" }
local MAC_BYTES = { [1] = 32, [2] = 16 }
local DENY_REASONS = {
  [1] = "unknown required segment", [2] = "segment not allowed", [3] = "unsupported action",
  [4] = "table full", [5] = "no supporting wildcard", [6] = "bad argument",
}
local ROLES = { [1] = "primary", [2] = "backup" }
local RESYNC_STATES = { [0] = "none", [1] = "requested", [2] = "in-progress", [3] = "complete" }

------------------------------------------------------------------------------------------------------
-- Fields

local F = wasmlb.fields
local function add(f) F[#F + 1] = f; return f end

-- header
local f_version = add(ProtoField.uint8("wasmlb.version", "Version"))
local f_type = add(ProtoField.uint8("wasmlb.type", "Message Type", base.DEC, MSG_TYPES))
local f_hreserved = add(ProtoField.uint16("wasmlb.flags", "Flags (reserved)", base.HEX))
local f_length = add(ProtoField.uint32("wasmlb.length", "Message Length"))
local f_sender = add(ProtoField.ipv4("wasmlb.sender", "Sender Identity"))
local f_sequence = add(ProtoField.uint64("wasmlb.sequence", "Sequence"))

-- segment header
local f_seg = add(ProtoField.uint16("wasmlb.segment.type", "Segment Type", base.DEC, SEG_NAMES, 0x7fff))
local f_seg_required = add(ProtoField.bool("wasmlb.segment.required", "Required", 16, nil, REQUIRED_FLAG))
local f_seg_len = add(ProtoField.uint16("wasmlb.segment.length", "Data Length"))
local f_seg_pad = add(ProtoField.bytes("wasmlb.segment.padding", "Padding"))
local f_seg_data = add(ProtoField.bytes("wasmlb.segment.data", "Data"))

-- common affinity fields
local f_proto = add(ProtoField.uint8("wasmlb.protocol", "Protocol", base.DEC, IP_PROTOS))
local f_reserved8 = add(ProtoField.uint8("wasmlb.reserved8", "Reserved", base.HEX))
local f_reserved16 = add(ProtoField.uint16("wasmlb.reserved16", "Reserved", base.HEX))
local f_src = add(ProtoField.ipv4("wasmlb.src", "Source Address"))
local f_src_mask = add(ProtoField.ipv4("wasmlb.src_mask", "Source Mask"))
local f_dst = add(ProtoField.ipv4("wasmlb.dst", "Destination Address"))
local f_dst_mask = add(ProtoField.ipv4("wasmlb.dst_mask", "Destination Mask"))
local f_sport = add(ProtoField.uint16("wasmlb.srcport", "Source Port"))
local f_dport = add(ProtoField.uint16("wasmlb.dstport", "Destination Port"))
local f_ttl = add(ProtoField.uint32("wasmlb.ttl_ms", "TTL (ms)"))

local f_wc_flags = add(ProtoField.uint16("wasmlb.wildcard.flags", "Flags", base.HEX))
local f_wc_newonly = add(ProtoField.bool("wasmlb.wildcard.new_flows_only", "New flows only", 16, nil, 0x0001))
local f_fx_flags = add(ProtoField.uint16("wasmlb.fixed.flags", "Flags", base.HEX))
local f_fx_info = add(ProtoField.bool("wasmlb.fixed.information", "Information", 16, nil, 0x0001))
local f_id_flags = add(ProtoField.uint16("wasmlb.identifier.flags", "Flags", base.HEX))
local f_id_dispatched = add(ProtoField.bool("wasmlb.identifier.dispatched", "Dispatched", 16, nil, 0x0001))
local f_id_info = add(ProtoField.bool("wasmlb.identifier.information", "Information", 16, nil, 0x0002))
local f_reason = add(ProtoField.uint32("wasmlb.identifier.reason", "Reason (interest bits)", base.HEX))

-- interest bits (reason u32, criteria mask u16)
local INTEREST_BITS = {
  { 0x0001, "new_flow", "New flow" }, { 0x0002, "fin", "FIN" }, { 0x0004, "rst", "RST" },
  { 0x0008, "data", "Data" }, { 0x0010, "expired", "Expired" }, { 0x0020, "fragment", "Fragment" },
  { 0x0040, "information", "Information" },
}
local f_reason_bits, f_mask_bits = {}, {}
for i, b in ipairs(INTEREST_BITS) do
  f_reason_bits[i] = add(ProtoField.bool("wasmlb.identifier.reason." .. b[2], b[3], 32, nil, b[1]))
  f_mask_bits[i] = add(ProtoField.bool("wasmlb.interest.mask." .. b[2], b[3], 16, nil, b[1]))
end

-- security, identity, precedences
local f_sec_alg = add(ProtoField.uint8("wasmlb.security.algorithm", "Algorithm", base.DEC, MAC_ALGORITHMS))
local f_sec_keyid = add(ProtoField.uint16("wasmlb.security.key_id", "Key ID"))
local f_sec_mac = add(ProtoField.bytes("wasmlb.security.mac", "MAC"))
local f_id_addr = add(ProtoField.ipv4("wasmlb.identity.addr", "Address"))
local f_id_host = add(ProtoField.string("wasmlb.identity.host", "Host Name"))
local f_sp_flags = add(ProtoField.uint8("wasmlb.service_precedence.flags", "Flags", base.HEX))
local f_sp_wcfirst = add(ProtoField.bool("wasmlb.service_precedence.wildcard_first", "Wildcards first", 8, nil, 0x01))
local f_sp_value = add(ProtoField.uint32("wasmlb.service_precedence.value", "Service Precedence"))
local f_bp_value = add(ProtoField.uint32("wasmlb.backup_precedence", "Backup Precedence"))
local f_interest_data = add(ProtoField.bytes("wasmlb.interest_data", "Interest Data"))

-- deny report
local f_deny_type = add(ProtoField.uint8("wasmlb.deny.type", "Denied Message Type", base.DEC, MSG_TYPES))
local f_deny_count = add(ProtoField.uint16("wasmlb.deny.count", "Denied Segments"))
local f_deny_seq = add(ProtoField.uint64("wasmlb.deny.sequence", "Denied Sequence"))
local f_deny_seg = add(ProtoField.uint16("wasmlb.deny.segment_type", "Segment Type", base.DEC, SEG_NAMES))
local f_deny_reason = add(ProtoField.uint16("wasmlb.deny.reason", "Reason", base.DEC, DENY_REASONS))
local f_deny_offset = add(ProtoField.uint32("wasmlb.deny.offset", "Offset"))

-- actions
local f_nat_which = add(ProtoField.uint8("wasmlb.nat.which", "Rewritten Fields", base.HEX))
local f_nat_bits = {
  add(ProtoField.bool("wasmlb.nat.which.src_addr", "Source address", 8, nil, 0x01)),
  add(ProtoField.bool("wasmlb.nat.which.src_port", "Source port", 8, nil, 0x02)),
  add(ProtoField.bool("wasmlb.nat.which.dst_addr", "Destination address", 8, nil, 0x04)),
  add(ProtoField.bool("wasmlb.nat.which.dst_port", "Destination port", 8, nil, 0x08)),
}
local f_adv_addr = add(ProtoField.ipv4("wasmlb.advertise.addr", "Address"))
local f_adv_mask = add(ProtoField.ipv4("wasmlb.advertise.mask", "Mask"))
local f_seq_delta = add(ProtoField.uint32("wasmlb.seqadj.seq_delta", "Sequence Delta"))
local f_seq_init = add(ProtoField.uint32("wasmlb.seqadj.initial_seq", "Initial Sequence"))
local f_ack_delta = add(ProtoField.uint32("wasmlb.seqadj.ack_delta", "Ack Delta"))
local f_ack_init = add(ProtoField.uint32("wasmlb.seqadj.initial_ack", "Initial Ack"))
local f_ic_addr = add(ProtoField.ipv4("wasmlb.interest.addr", "Manager Address"))
local f_ic_port = add(ProtoField.uint16("wasmlb.interest.port", "Manager Port"))
local f_ic_mask = add(ProtoField.uint16("wasmlb.interest.mask", "Interest Mask", base.HEX))
local f_ic_flags = add(ProtoField.uint8("wasmlb.interest.flags", "Flags", base.HEX))
local f_ic_data = add(ProtoField.bool("wasmlb.interest.flags.data", "Send packet", 8, nil, 0x01))
local f_ic_copy = add(ProtoField.bool("wasmlb.interest.flags.copy", "Copy (forward too)", 8, nil, 0x02))
local f_ic_hold = add(ProtoField.bool("wasmlb.interest.flags.hold", "Hold", 8, nil, 0x04))
local f_dispatch = add(ProtoField.ipv4("wasmlb.dispatch.next_hop", "Next Hop"))

-- replication, resync, heartbeat
local f_rep_remaining = add(ProtoField.uint32("wasmlb.replication.remaining_ms", "Remaining (ms)"))
local f_rep_backend = add(ProtoField.ipv4("wasmlb.replication.backend", "Backend Address"))
local f_rep_bport = add(ProtoField.uint16("wasmlb.replication.backend_port", "Backend Port"))
local f_rep_owner = add(ProtoField.ipv4("wasmlb.replication.owner", "Owner"))
local f_ack_seq = add(ProtoField.uint64("wasmlb.replication_ack.sequence", "Acknowledged Sequence"))
local f_rs_id = add(ProtoField.uint32("wasmlb.resync.id", "Resync ID"))
local f_rs_epoch = add(ProtoField.uint32("wasmlb.resync.epoch", "Epoch"))
local f_rs_count = add(ProtoField.uint32("wasmlb.resync.entry_count", "Entry Count"))
local f_hb_role = add(ProtoField.uint8("wasmlb.heartbeat.role", "Role", base.DEC, ROLES))
local f_hb_state = add(ProtoField.uint8("wasmlb.heartbeat.resync_state", "Resync State", base.DEC, RESYNC_STATES))
local f_hb_epoch = add(ProtoField.uint32("wasmlb.heartbeat.epoch", "Epoch"))
local f_hb_bp = add(ProtoField.uint32("wasmlb.heartbeat.backup_precedence", "Backup Precedence"))
local f_hb_interval = add(ProtoField.uint32("wasmlb.heartbeat.interval_ms", "Interval (ms)"))

------------------------------------------------------------------------------------------------------
-- Expert items

local e_malformed = ProtoExpert.new("wasmlb.malformed", "Malformed wasmlb message", expert.group.MALFORMED, expert.severity.ERROR)
local e_bad_length = ProtoExpert.new("wasmlb.bad_length", "Segment data length not as specified", expert.group.MALFORMED, expert.severity.ERROR)
local e_unknown = ProtoExpert.new("wasmlb.unknown_segment", "Unknown segment type", expert.group.UNDECODED, expert.severity.WARN)
local e_not_allowed = ProtoExpert.new("wasmlb.segment_not_allowed", "Segment not allowed here", expert.group.PROTOCOL, expert.severity.WARN)
wasmlb.experts = { e_malformed, e_bad_length, e_unknown, e_not_allowed }

------------------------------------------------------------------------------------------------------
-- Preferences and helpers

local DEFAULT_PORTS = "7400-7401,7500-7509"
wasmlb.prefs.ports = Pref.range("UDP ports", DEFAULT_PORTS, "UDP ports decoded as wasmlb", 65535)
wasmlb.prefs.heuristic = Pref.bool("Heuristic detection", true, "Also try any other UDP port")

local ip_dissector = Dissector.get("ip")

--- Fails the current message: an expert error on `item`, then unwinds to the message loop.
local Malformed = {}
local function fail(item, expert_item, text)
  item:add_proto_expert_info(expert_item, text)
  error(Malformed)
end

local function padded(n) return n + ((4 - n % 4) % 4) end

local function add_bits(tree, field, bits, range)
  local t = tree:add(field, range)
  for _, b in ipairs(bits) do t:add(b, range) end
  return t
end

local function expect_len(item, code, got, want)
  if got ~= want then
    fail(item, e_bad_length, string.format("%s: %d data bytes, expected %d", SEG_NAMES[code] or code, got, want))
  end
end

local function ip4(tvb, o) return tostring(tvb(o, 4):ipv4()) end

local function proto_name(p) return IP_PROTOS[p] or tostring(p) end

------------------------------------------------------------------------------------------------------
-- Segment bodies: each gets (tvb, data offset, data length, subtree, segment item, pinfo) and returns
-- a short summary for the segment's line.

local body = {}

body[SEG.SECURITY] = function(tvb, d, len, t, item)
  if len < 4 then fail(item, e_bad_length, "security segment shorter than 4 bytes") end
  local alg = tvb(d, 1):uint()
  t:add(f_sec_alg, tvb(d, 1))
  t:add(f_reserved8, tvb(d + 1, 1))
  t:add(f_sec_keyid, tvb(d + 2, 2))
  if MAC_BYTES[alg] and len ~= 4 + MAC_BYTES[alg] then
    fail(item, e_bad_length, string.format("MAC of %d bytes for %s", len - 4, MAC_ALGORITHMS[alg]))
  end
  if len > 4 then t:add(f_sec_mac, tvb(d + 4, len - 4)) end
  return string.format("%s, key %d", MAC_ALGORITHMS[alg] or ("algorithm " .. alg), tvb(d + 2, 2):uint())
end

body[SEG.IDENTITY_INFO] = function(tvb, d, len, t, item)
  if len < 4 or len > 4 + 255 then fail(item, e_bad_length, "identity info of " .. len .. " bytes") end
  t:add(f_id_addr, tvb(d, 4))
  for i = d + 4, d + len - 1 do
    local c = tvb(i, 1):uint()
    if c < 0x21 or c > 0x7e then fail(item, e_malformed, "host name is not printable ASCII") end
  end
  local host = ""
  if len > 4 then
    t:add(f_id_host, tvb(d + 4, len - 4))
    host = " " .. tvb(d + 4, len - 4):string()
  end
  return ip4(tvb, d) .. host
end

local function key_fields(tvb, d, t)
  t:add(f_proto, tvb(d, 1))
  t:add(f_reserved8, tvb(d + 1, 1))
  t:add(f_src, tvb(d + 4, 4))
  t:add(f_dst, tvb(d + 8, 4))
  t:add(f_sport, tvb(d + 12, 2))
  t:add(f_dport, tvb(d + 14, 2))
  return string.format("%s %s:%d -> %s:%d", proto_name(tvb(d, 1):uint()), ip4(tvb, d + 4),
    tvb(d + 12, 2):uint(), ip4(tvb, d + 8), tvb(d + 14, 2):uint())
end

local function fixed_fields(tvb, d, t)
  local s = key_fields(tvb, d, t)
  add_bits(t, f_fx_flags, { f_fx_info }, tvb(d + 2, 2))
  t:add(f_ttl, tvb(d + 16, 4))
  return s .. ", ttl " .. tvb(d + 16, 4):uint() .. " ms"
end

body[SEG.FIXED_AFFINITY] = function(tvb, d, len, t, item)
  expect_len(item, SEG.FIXED_AFFINITY, len, 20)
  return fixed_fields(tvb, d, t)
end

body[SEG.WILDCARD_AFFINITY] = function(tvb, d, len, t, item)
  expect_len(item, SEG.WILDCARD_AFFINITY, len, 28)
  t:add(f_proto, tvb(d, 1))
  t:add(f_reserved8, tvb(d + 1, 1))
  add_bits(t, f_wc_flags, { f_wc_newonly }, tvb(d + 2, 2))
  t:add(f_src, tvb(d + 4, 4))
  t:add(f_src_mask, tvb(d + 8, 4))
  t:add(f_dst, tvb(d + 12, 4))
  t:add(f_dst_mask, tvb(d + 16, 4))
  t:add(f_sport, tvb(d + 20, 2))
  t:add(f_dport, tvb(d + 22, 2))
  t:add(f_ttl, tvb(d + 24, 4))
  return string.format("%s %s/%s:%d -> %s/%s:%d, ttl %d ms", proto_name(tvb(d, 1):uint()),
    ip4(tvb, d + 4), ip4(tvb, d + 8), tvb(d + 20, 2):uint(), ip4(tvb, d + 12), ip4(tvb, d + 16),
    tvb(d + 22, 2):uint(), tvb(d + 24, 4):uint())
end

body[SEG.AFFINITY_IDENTIFIER] = function(tvb, d, len, t, item)
  expect_len(item, SEG.AFFINITY_IDENTIFIER, len, 20)
  local s = key_fields(tvb, d, t)
  add_bits(t, f_id_flags, { f_id_dispatched, f_id_info }, tvb(d + 2, 2))
  add_bits(t, f_reason, f_reason_bits, tvb(d + 16, 4))
  return s .. string.format(", reason 0x%x", tvb(d + 16, 4):uint())
end

body[SEG.SERVICE_PRECEDENCE] = function(tvb, d, len, t, item)
  expect_len(item, SEG.SERVICE_PRECEDENCE, len, 8)
  if tvb(d, 1):uint() > 1 then fail(item, e_malformed, "service precedence flags " .. tvb(d, 1):uint()) end
  add_bits(t, f_sp_flags, { f_sp_wcfirst }, tvb(d, 1))
  t:add(f_reserved8, tvb(d + 1, 1))
  t:add(f_reserved16, tvb(d + 2, 2))
  t:add(f_sp_value, tvb(d + 4, 4))
  return tostring(tvb(d + 4, 4):uint())
end

body[SEG.BACKUP_PRECEDENCE] = function(tvb, d, len, t, item)
  expect_len(item, SEG.BACKUP_PRECEDENCE, len, 4)
  t:add(f_bp_value, tvb(d, 4))
  return tostring(tvb(d, 4):uint())
end

local function interest_data(tvb, d, len, t)
  if len > 0 then t:add(f_interest_data, tvb(d, len)) end
  return len .. " bytes"
end
body[SEG.MANAGER_INTEREST_DATA] = interest_data
body[SEG.AGENT_INTEREST_DATA] = interest_data

body[SEG.IP_PACKET] = function(tvb, d, len, t, item, pinfo)
  if len == 0 then fail(item, e_bad_length, "empty IP packet") end
  local sub = tvb(d, len):tvb("IP Packet")
  if ip_dissector ~= nil and bit.rshift(tvb(d, 1):uint(), 4) == 4 then
    -- Shown as IP; the addresses and columns stay those of the datagram carrying it.
    local src, dst, net_src, net_dst = pinfo.src, pinfo.dst, pinfo.net_src, pinfo.net_dst
    ip_dissector:call(sub, pinfo, t)
    pinfo.src, pinfo.dst, pinfo.net_src, pinfo.net_dst = src, dst, net_src, net_dst
  else
    t:add(f_seg_data, tvb(d, len))
  end
  return len .. " bytes"
end

body[SEG.DENY_REPORT] = function(tvb, d, len, t, item)
  if len < 12 then fail(item, e_bad_length, "deny report shorter than 12 bytes") end
  local count = tvb(d + 2, 2):uint()
  expect_len(item, SEG.DENY_REPORT, len, 12 + 8 * count)
  if MSG_TYPES[tvb(d, 1):uint()] == nil then fail(item, e_malformed, "denied message type " .. tvb(d, 1):uint()) end
  t:add(f_deny_type, tvb(d, 1))
  t:add(f_reserved8, tvb(d + 1, 1))
  t:add(f_deny_count, tvb(d + 2, 2))
  t:add(f_deny_seq, tvb(d + 4, 8))
  for i = 0, count - 1 do
    local p = d + 12 + 8 * i
    local e = t:add(wasmlb, tvb(p, 8), string.format("Denied: %s, %s, offset %d",
      SEG_NAMES[tvb(p, 2):uint()] or ("segment " .. tvb(p, 2):uint()),
      DENY_REASONS[tvb(p + 2, 2):uint()] or ("reason " .. tvb(p + 2, 2):uint()), tvb(p + 4, 4):uint()))
    e:add(f_deny_seg, tvb(p, 2))
    e:add(f_deny_reason, tvb(p + 2, 2))
    e:add(f_deny_offset, tvb(p + 4, 4))
  end
  return string.format("%s seq %s, %d segment(s)", MSG_TYPES[tvb(d, 1):uint()] or tvb(d, 1):uint(),
    tostring(tvb(d + 4, 8):uint64()), count)
end

body[SEG.ACTION_NAT] = function(tvb, d, len, t, item)
  expect_len(item, SEG.ACTION_NAT, len, 16)
  local which = tvb(d, 1):uint()
  if which == 0 or which > 0x0f then fail(item, e_malformed, "NAT field selector " .. which) end
  add_bits(t, f_nat_which, f_nat_bits, tvb(d, 1))
  t:add(f_reserved8, tvb(d + 1, 1))
  t:add(f_reserved16, tvb(d + 2, 2))
  local parts = {}
  if bit.band(which, 0x01) ~= 0 then t:add(f_src, tvb(d + 4, 4)); parts[#parts + 1] = "src " .. ip4(tvb, d + 4) end
  if bit.band(which, 0x04) ~= 0 then t:add(f_dst, tvb(d + 8, 4)); parts[#parts + 1] = "dst " .. ip4(tvb, d + 8) end
  if bit.band(which, 0x02) ~= 0 then t:add(f_sport, tvb(d + 12, 2)); parts[#parts + 1] = "sport " .. tvb(d + 12, 2):uint() end
  if bit.band(which, 0x08) ~= 0 then t:add(f_dport, tvb(d + 14, 2)); parts[#parts + 1] = "dport " .. tvb(d + 14, 2):uint() end
  return table.concat(parts, ", ")
end

body[SEG.ACTION_ADVERTISE] = function(tvb, d, len, t, item)
  if len ~= 4 and len ~= 8 then fail(item, e_bad_length, "advertise action of " .. len .. " bytes, expected 4 or 8") end
  t:add(f_adv_addr, tvb(d, 4))
  if len == 8 then
    t:add(f_adv_mask, tvb(d + 4, 4))
    return ip4(tvb, d) .. "/" .. ip4(tvb, d + 4)
  end
  return ip4(tvb, d)
end

body[SEG.ACTION_SEQUENCE_ADJUST] = function(tvb, d, len, t, item)
  expect_len(item, SEG.ACTION_SEQUENCE_ADJUST, len, 16)
  t:add(f_seq_delta, tvb(d, 4))
  t:add(f_seq_init, tvb(d + 4, 4))
  t:add(f_ack_delta, tvb(d + 8, 4))
  t:add(f_ack_init, tvb(d + 12, 4))
  return string.format("seq +%d, ack +%d", tvb(d, 4):uint(), tvb(d + 8, 4):uint())
end

body[SEG.ACTION_INTEREST_CRITERIA] = function(tvb, d, len, t, item)
  expect_len(item, SEG.ACTION_INTEREST_CRITERIA, len, 12)
  if tvb(d + 8, 1):uint() > 7 then fail(item, e_malformed, "interest criteria flags " .. tvb(d + 8, 1):uint()) end
  t:add(f_ic_addr, tvb(d, 4))
  t:add(f_ic_port, tvb(d + 4, 2))
  add_bits(t, f_ic_mask, f_mask_bits, tvb(d + 6, 2))
  add_bits(t, f_ic_flags, { f_ic_data, f_ic_copy, f_ic_hold }, tvb(d + 8, 1))
  t:add(f_reserved8, tvb(d + 9, 1))
  t:add(f_reserved16, tvb(d + 10, 2))
  return string.format("%s:%d mask 0x%x", ip4(tvb, d), tvb(d + 4, 2):uint(), tvb(d + 6, 2):uint())
end

body[SEG.ACTION_DISPATCH] = function(tvb, d, len, t, item)
  expect_len(item, SEG.ACTION_DISPATCH, len, 4)
  t:add(f_dispatch, tvb(d, 4))
  return "next hop " .. ip4(tvb, d)
end

body[SEG.REPLICATION_ENTRY] = function(tvb, d, len, t, item)
  expect_len(item, SEG.REPLICATION_ENTRY, len, 36)
  local s = fixed_fields(tvb, d, t)
  t:add(f_rep_remaining, tvb(d + 20, 4))
  t:add(f_rep_backend, tvb(d + 24, 4))
  t:add(f_rep_bport, tvb(d + 28, 2))
  t:add(f_reserved16, tvb(d + 30, 2))
  t:add(f_rep_owner, tvb(d + 32, 4))
  return string.format("%s => %s:%d", s, ip4(tvb, d + 24), tvb(d + 28, 2):uint())
end

body[SEG.REPLICATION_ACK] = function(tvb, d, len, t, item)
  if len == 0 or len % 8 ~= 0 then fail(item, e_bad_length, "replication ack of " .. len .. " bytes") end
  for p = d, d + len - 8, 8 do t:add(f_ack_seq, tvb(p, 8)) end
  return (len / 8) .. " sequence(s)"
end

body[SEG.RESYNC_MARKER] = function(tvb, d, len, t, item)
  expect_len(item, SEG.RESYNC_MARKER, len, 12)
  t:add(f_rs_id, tvb(d, 4))
  t:add(f_rs_epoch, tvb(d + 4, 4))
  t:add(f_rs_count, tvb(d + 8, 4))
  return string.format("id %d, epoch %d, %d entries", tvb(d, 4):uint(), tvb(d + 4, 4):uint(), tvb(d + 8, 4):uint())
end

body[SEG.HEARTBEAT_DATA] = function(tvb, d, len, t, item)
  expect_len(item, SEG.HEARTBEAT_DATA, len, 16)
  local role, state = tvb(d, 1):uint(), tvb(d + 1, 1):uint()
  if ROLES[role] == nil then fail(item, e_malformed, "heartbeat role " .. role) end
  if RESYNC_STATES[state] == nil then fail(item, e_malformed, "resync state " .. state) end
  t:add(f_hb_role, tvb(d, 1))
  t:add(f_hb_state, tvb(d + 1, 1))
  t:add(f_reserved16, tvb(d + 2, 2))
  t:add(f_hb_epoch, tvb(d + 4, 4))
  t:add(f_hb_bp, tvb(d + 8, 4))
  t:add(f_hb_interval, tvb(d + 12, 4))
  return string.format("%s, epoch %d, resync %s", ROLES[role], tvb(d + 4, 4):uint(), RESYNC_STATES[state])
end

-- Top-level segments each message type takes (codec.ts ALLOWED_BY_TYPE); security is first or absent.
local ALLOWED = {}
for code, segs in pairs({
  [1] = { 2, 6, 7, 8, 3, 16 },
  [2] = { 2, 8, 9, 4, 16, 10 },
  [3] = { 2, 11, 3, 4 },
  [4] = { 2, 5, 3, 9, 8, 10 },
  [5] = { 2, 5, 9, 8, 10 },
  [6] = { 10 },
  [16] = { 48, 16 },
  [17] = { 49 },
  [18] = { 50 },
  [19] = { 50, 48, 16 },
  [20] = { 50 },
  [21] = { 2, 51 },
}) do
  ALLOWED[code] = {}
  for _, s in ipairs(segs) do ALLOWED[code][s] = true end
end

-- Segments a message of each type must carry (docs/protocol.md, "Message types", ¹).
local MANDATORY = {
  [1] = 3, [2] = 4, [3] = 11, [4] = 5, [5] = 5, [6] = 10, [16] = 48, [17] = 49, [18] = 50, [19] = 50,
  [20] = 50, [21] = 51,
}
-- Affinity segments: repeatable, and the only ones an action list may follow.
local AFFINITY = { [3] = true, [4] = true, [48] = true }

local ACTIONS = {
  [SEG.ACTION_NAT] = true, [SEG.ACTION_ADVERTISE] = true, [SEG.ACTION_SEQUENCE_ADJUST] = true,
  [SEG.ACTION_INTEREST_CRITERIA] = true, [SEG.ACTION_DISPATCH] = true,
}

------------------------------------------------------------------------------------------------------
-- Segment walking

local dissect_segments

--- One segment at `o` inside [o, stop); returns the offset after it (padding included).
--- `ctx` is nil inside an action list, else { type = message type code, first = first segment offset }.
local function dissect_segment(tvb, pinfo, tree, o, stop, ctx)
  local nested = ctx == nil
  if o + 4 > stop then
    fail(tree:add(wasmlb, tvb(o, stop - o), "Truncated segment header"), e_malformed, "segment header runs past its container")
  end
  local th = tvb(o, 2):uint()
  local code = bit.band(th, 0x7fff)
  local len = tvb(o + 2, 2):uint()
  local d = o + 4
  local next = d + padded(len)
  if next > stop then
    fail(tree:add(wasmlb, tvb(o, stop - o), (SEG_NAMES[code] or ("Segment " .. code)) .. " (truncated)"),
      e_malformed, string.format("segment %d of %d data bytes runs past its container", code, len))
  end
  local name = SEG_NAMES[code] or ("Unknown segment " .. code)
  local item = tree:add(wasmlb, tvb(o, next - o), name)
  item:add(f_seg, tvb(o, 2))
  item:add(f_seg_required, tvb(o, 2))
  item:add(f_seg_len, tvb(o + 2, 2))
  local summary
  if not nested then
    local prev = ctx.prev
    ctx.prev = code
    if code ~= SEG.ACTION_LIST and not (AFFINITY[code] and not (ctx.type == 4 and code == SEG.WILDCARD_AFFINITY)) then
      if ctx.seen[code] then item:add_proto_expert_info(e_malformed, name .. " appears twice (refused: DUPLICATE_SEGMENT)") end
    end
    ctx.seen[code] = true
    if code == SEG.ACTION_LIST and not AFFINITY[prev] then
      item:add_proto_expert_info(e_malformed, "action list does not follow an affinity segment (refused: ORPHAN_ACTION_LIST)")
    end
  end
  if code == SEG.ACTION_LIST then
    if nested then fail(item, e_malformed, "action lists do not nest") end
    if not ALLOWED[ctx.type][code] then
      item:add_proto_expert_info(e_not_allowed, "action list not allowed in " .. MSG_TYPES[ctx.type])
    end
    local n = dissect_segments(tvb, pinfo, item, d, d + len, nil)
    summary = n .. " action(s)"
  elseif body[code] ~= nil then
    if nested and not ACTIONS[code] then item:add_proto_expert_info(e_not_allowed, name .. " inside an action list") end
    if not nested then
      if code == SEG.SECURITY then
        if o ~= ctx.first then item:add_proto_expert_info(e_not_allowed, "security segment not right after the header") end
        if ctx.type == 6 then item:add_proto_expert_info(e_not_allowed, "IP packet only messages carry no security segment") end
      elseif not ALLOWED[ctx.type][code] then
        item:add_proto_expert_info(e_not_allowed, string.format("%s not allowed in %s (a receiver %s)", name,
          MSG_TYPES[ctx.type], bit.band(th, REQUIRED_FLAG) ~= 0 and "denies it" or "ignores it"))
      end
    end
    summary = body[code](tvb, d, len, item, item, pinfo)
  else
    item:add_proto_expert_info(e_unknown, string.format("unknown segment type %d (%s)", code,
      bit.band(th, REQUIRED_FLAG) ~= 0 and "required: a receiver refuses the message" or "optional: ignored"))
    if len > 0 then item:add(f_seg_data, tvb(d, len)) end
  end
  if next > d + len then item:add(f_seg_pad, tvb(d + len, next - d - len)) end
  if summary ~= nil and summary ~= "" then item:append_text(": " .. summary) end
  if bit.band(th, REQUIRED_FLAG) ~= 0 then item:append_text(" [required]") end
  return next
end

--- Every segment in [o, stop); returns how many.
dissect_segments = function(tvb, pinfo, tree, o, stop, ctx)
  local n = 0
  while o < stop do
    o = dissect_segment(tvb, pinfo, tree, o, stop, ctx)
    n = n + 1
  end
  return n
end

------------------------------------------------------------------------------------------------------
-- Messages

--- One message at `o`; returns its length, or nil when the bytes cannot be a message (stop there).
local function dissect_message(tvb, pinfo, tree, o)
  local remaining = tvb:len() - o
  if remaining < HEADER_BYTES then
    local item = tree:add(wasmlb, tvb(o, remaining), "wasmlb (truncated header)")
    item:add_proto_expert_info(e_malformed, remaining .. " bytes left, a header needs " .. HEADER_BYTES)
    return nil
  end
  local mlen = tvb(o + 4, 4):uint()
  local code = tvb(o + 1, 1):uint()
  local tname = MSG_TYPES[code] or ("unknown type " .. code)
  local span = (mlen >= HEADER_BYTES and mlen <= remaining) and mlen or remaining
  local item = tree:add(wasmlb, tvb(o, span), "wasmlb " .. tname)
  item:add(f_version, tvb(o, 1))
  item:add(f_type, tvb(o + 1, 1))
  item:add(f_hreserved, tvb(o + 2, 2))
  local len_item = item:add(f_length, tvb(o + 4, 4))
  item:add(f_sender, tvb(o + 8, 4))
  item:add(f_sequence, tvb(o + 12, 8))
  item:append_text(string.format(", sender %s, seq %s", ip4(tvb, o + 8), tostring(tvb(o + 12, 8):uint64())))
  if tvb(o, 1):uint() ~= 1 then
    item:add_proto_expert_info(e_malformed, "protocol version " .. tvb(o, 1):uint())
    return nil
  end
  if MSG_TYPES[code] == nil then
    item:add_proto_expert_info(e_malformed, "unknown message type " .. code)
    return nil
  end
  if mlen < HEADER_BYTES or mlen > remaining or mlen % 4 ~= 0 then
    len_item:add_proto_expert_info(e_malformed, string.format("message length %d (datagram has %d bytes left)", mlen, remaining))
    return nil
  end
  local ctx = { type = code, first = o + HEADER_BYTES, seen = {}, prev = nil }
  local ok, err = pcall(dissect_segments, tvb, pinfo, item, o + HEADER_BYTES, o + mlen, ctx)
  if not ok and err ~= Malformed then error(err, 0) end
  if ok and not ctx.seen[MANDATORY[code]] then
    item:add_proto_expert_info(e_malformed, string.format("%s lacks its %s segment (refused: MISSING_SEGMENT)",
      tname, SEG_NAMES[MANDATORY[code]]))
  end
  return mlen, tname
end

function wasmlb.dissector(tvb, pinfo, tree)
  local n = tvb:len()
  if n < HEADER_BYTES then return 0 end
  pinfo.cols.protocol = "wasmlb"
  local root = tree:add(wasmlb, tvb(), "wasmlb Service Protocol")
  local names = {}
  local o = 0
  while o < n do
    local mlen, tname = dissect_message(tvb, pinfo, root, o)
    if mlen == nil then break end
    names[#names + 1] = tname
    o = o + mlen
  end
  root:append_text(string.format(", %d message(s)", #names))
  -- Set the columns after the messages: a carried IP packet's dissector may have written them.
  pinfo.cols.protocol:clear_fence()
  pinfo.cols.info:clear_fence()
  pinfo.cols.protocol = "wasmlb"
  pinfo.cols.info = "wasmlb " .. (#names > 0 and table.concat(names, ", ") or "malformed")
  return n
end

--- Heuristic: version 1, a known type, a plausible length; the whole datagram made of such messages.
local function heuristic(tvb, pinfo, tree)
  if not wasmlb.prefs.heuristic then return false end
  local n = tvb:len()
  local o = 0
  while o < n do
    if n - o < HEADER_BYTES then return false end
    if tvb(o, 1):uint() ~= 1 or MSG_TYPES[tvb(o + 1, 1):uint()] == nil then return false end
    local mlen = tvb(o + 4, 4):uint()
    if mlen < HEADER_BYTES or mlen % 4 ~= 0 or mlen > n - o then return false end
    o = o + mlen
  end
  wasmlb.dissector(tvb, pinfo, tree)
  return true
end

local udp_table = DissectorTable.get("udp.port")
local registered = DEFAULT_PORTS
udp_table:add(registered, wasmlb)
wasmlb:register_heuristic("udp", heuristic)

function wasmlb.prefs_changed()
  if registered ~= tostring(wasmlb.prefs.ports) then
    udp_table:remove(registered, wasmlb)
    registered = tostring(wasmlb.prefs.ports)
    udp_table:add(registered, wasmlb)
  end
end
