// Connection state per link: which guest's rules may honour a tracked connection. The host has one conntrack
// table, so a guest could otherwise plant an entry that another guest's rules then treat as its own reply.
//
// Every connection through a filtered link records in its conntrack mark the link it came from (its origin, O)
// and the filtered link that let it in (its admitter, D). A link's rules skip the state check only for packets of
// connections it originated (replies towards it, its own further packets) or admitted (further packets towards
// it, its replies); anything else is judged by its rules as a new packet would be. Ids come from the VM's stable
// id and the NIC index (linkMarkId), so they survive reloads and daemon restarts as the entries do.
//
// Bridged links are filtered in `bridge vmd`, where this kernel has no conntrack (HOST-FACTS §4): a chain there
// stamps a filtered link's id into the packet mark before br_netfilter runs the inet hooks, `inet vmd` records it
// in the entry's mark and hands state, direction and both ids back in the packet mark for the bridge chains.
// Routed (local) links are filtered in `inet vmd`, where the chains read the entry's mark directly.
//
// Mark layout (documented in vmd.8): bits 0-13 origin id, 16-29 admitter id, both in the conntrack mark; in the
// packet mark also bit 14 (established or related), bit 15 (reply direction) and bit 30 (set by vmd).

/** Bits of the ids in both marks. */
const ORIGIN = 0x00003fff;
const ADMITTER = 0x3fff0000;
const IDS = ORIGIN | ADMITTER;
/** Packet-mark flags. */
const EST = 0x00004000;
const REPLY = 0x00008000;
export const FW_VMD_MARK = 0x40000000;

/** The largest id: ids run 1..MAX_ID, 0 being "no filtered link" (the host, the outside, an unfiltered guest). */
const MAX_ID = 0x3ffe;
const NICS_PER_VM = 4;

const hex = (n: number): string => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

/**
 * A link's id in the marks, from its VM's id (never reused by another name, db.ts) and NIC index: unique until
 * 4,095 VMs later, when ids wrap; a wrapped id only meets entries of a VM long gone.
 */
export function linkMarkId(vmId: number, index: number): number {
  return (((vmId - 1) * NICS_PER_VM + index) % MAX_ID) + 1;
}

type Chain = { name: string; hook: string; rules: string[] };

// ---- bridged links (bridge vmd reads what inet vmd computed)

/** The packet mark a filtered bridged link's frames are stamped with on entry (map fw_ids of `bridge vmd`). */
export function stampOf(id: number): string {
  return hex(FW_VMD_MARK | id);
}

/** Base chain of `bridge vmd` that stamps frames from filtered links, before br_netfilter (priority 0). */
export function bridgeStampChain(): Chain {
  return { name: 'fw_stamp', hook: 'type filter hook prerouting priority -190; policy accept;', rules: ['meta mark set iifname map @fw_ids'] };
}

/**
 * Chains of `inet vmd` on vmd's bridges (set fw_bridges): record the origin of a new connection (the stamp),
 * hand the state of the others to the bridge chains, and record the admitter a bridge chain stamped before the
 * entry is confirmed (postrouting runs for bridged packets too). After conntrack (-200).
 */
export function inetBridgeStateChains(): Chain[] {
  const fromCt = [
    `ct state established,related ct direction original meta mark set ct mark & ${hex(IDS)} | ${hex(FW_VMD_MARK | EST)}`,
    `ct state established,related ct direction reply meta mark set ct mark & ${hex(IDS)} | ${hex(FW_VMD_MARK | EST | REPLY)}`,
  ];
  // A new connection's origin, if recorded (a routed link's), goes along: postrouting writes the mark back.
  const fresh = `ct state new meta mark set ct mark & ${hex(IDS)} | ${hex(FW_VMD_MARK)}`;
  const unmarked = `oifname @fw_bridges meta mark & ${hex(FW_VMD_MARK)} == 0`;
  return [
    {
      name: 'fw_state_pre', hook: 'type filter hook prerouting priority mangle; policy accept;', rules: [
        // The stamp is there on the first pass only: the bridge's input chain clears it before the host sees it.
        `iifname @fw_bridges ct state new meta mark & ${hex(ORIGIN)} != 0 ct mark set meta mark & ${hex(ORIGIN)}`,
        ...fromCt.map((r) => `iifname @fw_bridges ${r}`),
      ],
    },
    // Routed into a bridge (from elsewhere or from another bridge): the target's chains read the same marks.
    // Bridged packets pass here too (br_netfilter, before the bridge's forward chains), marked already.
    { name: 'fw_state_fwd', hook: 'type filter hook forward priority mangle; policy accept;', rules: fromCt.concat(fresh).map((r) => `${unmarked} ${r}`) },
    {
      name: 'fw_state_out', hook: 'type filter hook postrouting priority mangle; policy accept;', rules: [
        // A bridged packet a filtered link admitted: origin and admitter go into the entry before it is confirmed.
        `meta mark & ${hex(FW_VMD_MARK)} != 0 ct state new ct mark set meta mark & ${hex(IDS)}`,
        // The host's own packets: only here is the interface a forward's translation chose known.
        ...fromCt.concat(fresh).map((r) => `${unmarked} ${r}`),
      ],
    },
  ];
}

/**
 * Base chains of `bridge vmd`, after br_netfilter (priority 0) ran the inet hooks: each packet goes through the
 * source's and the target's chains, which let their own state through (stateRules). Towards the host the
 * packet goes on into its IP stack, so vmd's marks are cleared first.
 */
export function bridgeBaseChains(): Chain[] {
  const clear = `meta mark & ${hex(FW_VMD_MARK)} != 0 meta mark set 0`;
  return [
    { name: 'fw_forward', hook: 'type filter hook forward priority 100; policy accept;', rules: ['iifname vmap @fw_out', 'oifname vmap @fw_in'] },
    { name: 'fw_input', hook: 'type filter hook input priority 100; policy accept;', rules: [`udp sport 68 udp dport 67 ${clear}`, 'udp sport 68 udp dport 67 accept', 'udp sport 546 udp dport 547 accept', 'iifname vmap @fw_out', clear] },
    { name: 'fw_output', hook: 'type filter hook output priority 100; policy accept;', rules: ['udp sport 67 udp dport 68 accept', 'udp sport 547 udp dport 546 accept', 'oifname vmap @fw_in'] },
  ];
}

// ---- routed links (inet vmd reads the entry itself)

/** Rule of `inet vmd`'s fw_state_pre that records a routed filtered link as the origin (map fw_rids). */
export function inetRoutedOriginRule(): string {
  return 'ct state new ct mark set iifname map @fw_rids';
}

/** Base chains of `inet vmd` for routed (local) links: each link's chains, which let their own state through. */
export function inetBaseChains(): Chain[] {
  return [
    { name: 'fw_forward', hook: 'type filter hook forward priority filter; policy accept;', rules: ['iifname vmap @fw_out', 'oifname vmap @fw_in'] },
    // The DHCP exchange with vmd's own dnsmasq on the host side of the link.
    { name: 'fw_input', hook: 'type filter hook input priority filter; policy accept;', rules: ['udp sport 68 udp dport 67 accept', 'udp sport 546 udp dport 547 accept', 'iifname vmap @fw_out'] },
    // After NAT's output hook (-100): a forward's translated destination (map fw_dnat_in in nft.ts) picks the chain.
    { name: 'fw_output', hook: 'type filter hook output priority filter; policy accept;', rules: ['udp sport 67 udp dport 68 accept', 'udp sport 547 udp dport 546 accept', 'ct status dnat ip daddr vmap @fw_dnat_in', 'oifname vmap @fw_in'] },
  ];
}

// ---- the head of each link's chain

/**
 * The first rules of a link's chain for one direction: its own state passes (`return`, on to the other link's
 * chain), and towards the link a new connection is stamped as admitted by it (a later `block` drops the packet,
 * and with it the unconfirmed entry).
 *
 * Towards the link: replies of what it originated, further packets of what it admitted. From the link: its
 * further packets of what it originated, its replies to what it admitted or to what nobody's rules admitted
 * (the host's own connections, connections routed in: vmd sees their target link only after they are recorded).
 */
export function stateRules(id: number, dir: 'in' | 'out', family: 'inet' | 'bridge'): string[] {
  const admitted = id << 16;
  if (family === 'inet') {
    const est = 'ct state established,related';
    return dir === 'in'
      ? [
        `${est} ct direction reply ct mark & ${hex(ORIGIN)} == ${hex(id)} return`,
        `${est} ct direction original ct mark & ${hex(ADMITTER)} == ${hex(admitted)} return`,
        `ct state new ct mark set ct mark & ${hex(ORIGIN)} | ${hex(admitted)}`,
      ]
      : [
        `${est} ct direction original ct mark & ${hex(ORIGIN)} == ${hex(id)} return`,
        `${est} ct direction reply ct mark & ${hex(ADMITTER)} == { ${hex(0)}, ${hex(admitted)} } return`,
      ];
  }
  const byOrigin = hex(FW_VMD_MARK | EST | REPLY | ORIGIN);
  const byAdmitter = hex(FW_VMD_MARK | EST | REPLY | ADMITTER);
  return dir === 'in'
    ? [
      `meta mark & ${byOrigin} == ${hex(FW_VMD_MARK | EST | REPLY | id)} return`,
      `meta mark & ${byAdmitter} == ${hex(FW_VMD_MARK | EST | admitted)} return`,
      `meta mark set meta mark & ${hex(~ADMITTER)} | ${hex(FW_VMD_MARK | admitted)}`,
    ]
    : [
      `meta mark & ${byOrigin} == ${hex(FW_VMD_MARK | EST | id)} return`,
      `meta mark & ${byAdmitter} == { ${hex(FW_VMD_MARK | EST | REPLY)}, ${hex(FW_VMD_MARK | EST | REPLY | admitted)} } return`,
    ];
}
