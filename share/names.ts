// The rules for names that end up in kernel interface names, nftables identifiers, ip(8) arguments and file
// names: one place, so `vmd -n`, reload, the stream reader and the network code accept exactly the same names.
// Paths and command lines only need to be free of control characters (CONTROL_CHARS).

/** IFNAMSIZ - 1: the longest interface name Linux keeps (a longer one would be cut or refused). */
export const IFNAME_MAX = 15;
/** OpenBSD's VMM_MAX_NAME_LEN - 1, the longest vm or switch name. */
export const NAME_MAX = 63;
/** What `ifNameError` says of a name that only fails by its length (the grammar words that case apart). */
export const IFNAME_TOO_LONG = `longer than ${IFNAME_MAX} characters`;

// ip(8) reads a leading `-` as an option and `.`/`..` are not interfaces; nft, dnsmasq and `ip -batch` lines
// take these characters unquoted.
const IFNAME_CHARS = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
// An interface group becomes the nft set `group_NAME`, written unquoted: nft identifier characters (measured:
// `@group_a.b` and `@group_a-b` load); OpenBSD's priv_validgroup adds: not ending in a digit.
const GROUP_CHARS = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const VM_CHARS = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const NETNS_CHARS = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
// A switch is looked up by name and names its dnsmasq files (`switch-NAME.leases`): no `/`, no control characters.
const SWITCH_BAD = /[/\u0000-\u001f\u007f]/;

/** Control characters would break QEMU's option parsing, ip(8) batch lines and vmd's one-line logs. */
export const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** Why `name` cannot be a Linux interface vmd creates or attaches to (bridge, vxlan device, link), or null. */
export function ifNameError(name: string): string | null {
  if (!IFNAME_CHARS.test(name)) return 'use letters, digits, ".", "-" and "_", not "." or "-" first';
  if (name.length > IFNAME_MAX) return IFNAME_TOO_LONG;
  return null;
}

/** Why `name` cannot be an interface group (an nft set of vmd's tables), or null. */
export function groupNameError(name: string): string | null {
  if (!GROUP_CHARS.test(name)) return 'use letters, digits, ".", "-" and "_", a letter or "_" first';
  if (name.length > IFNAME_MAX) return `longer than ${IFNAME_MAX} characters`;
  if (/[0-9]$/.test(name)) return 'a group name cannot end in a digit';
  return null;
}

/** Why `name` cannot be a switch name, or null. */
export function switchNameError(name: string): string | null {
  if (name === '') return 'empty';
  if (SWITCH_BAD.test(name)) return 'no "/" or control characters';
  if (Buffer.byteLength(name) > NAME_MAX) return `longer than ${NAME_MAX} bytes`;
  return null;
}

/** Why `name` cannot be a vm name (OpenBSD's vm_register rule), or null. */
export function vmNameError(name: string): string | null {
  if (!VM_CHARS.test(name)) return 'use letters, digits, ".", "_" and "-", not first';
  if (name.length > NAME_MAX) return `longer than ${NAME_MAX} characters`;
  return null;
}

/** Why `name` cannot be a network namespace (a file in /run/netns that ip(8) is given), or null. */
export function netnsNameError(name: string): string | null {
  if (!NETNS_CHARS.test(name)) return 'use letters, digits, ".", "-" and "_", not "." or "-" first';
  if (name.length > NAME_MAX) return `longer than ${NAME_MAX} characters`;
  return null;
}
