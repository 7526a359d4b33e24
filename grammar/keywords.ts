// The reserved words of vm.conf: OpenBSD's parse.y keyword table, and the words of our extensions.
// The man-page test checks that every word here is documented in share/man/man5/vm.conf.5.

/** OpenBSD parse.y 1.72 `lookup()` table (sorted): always reserved, so they must be quoted as names. */
export const KEYWORDS: readonly string[] = [
  'add', 'agentx', 'allow', 'boot', 'cdrom', 'context', 'delay', 'device', 'disable', 'disk',
  'down', 'enable', 'format', 'group', 'id', 'include', 'inet6', 'instance', 'interface',
  'interfaces', 'lladdr', 'local', 'locked', 'memory', 'net', 'owner', 'parallel', 'path',
  'prefix', 'rdomain', 'sev', 'seves', 'size', 'socket', 'staggered', 'start', 'switch', 'up', 'vm',
];

/**
 * Words that start or structure an extension option; the grammar recognises them only where an extension
 * expects them (elsewhere they are plain strings, so OpenBSD configs using them as names keep working).
 * Order matters: grammar/tokens.ts gives them the token codes n-z 0-9 and then U+00C0 on, used by
 * grammar/vm.conf.peggy.
 */
export const EXTENSION_STRUCTURAL_WORDS: readonly string[] = [
  'accel', 'qemu', 'cpus', 'initrd', 'cmdline', 'address', 'dhcp', 'nat', 'vxlan', 'remote', 'dev',
  'port', 'forward', 'to', 'pass', 'block', 'in', 'out', 'quick', 'proto', 'from', 'machine', 'bus',
  'passt', 'metrics',
  // Real operating systems: `firmware bios|uefi [secure-boot]` and the `cloud-init { … }` block.
  'firmware', 'cloud-init',
  // A graphical console: `display vnc|none` (codes U+00C4, U+00C5; U+00C0-C3 are passt to cloud-init).
  'display', 'vnc',
];

/** Words of vmd's extensions; recognised only where they are expected, so OpenBSD configs keep working. */
export const EXTENSION_WORDS: readonly string[] = [
  ...EXTENSION_STRUCTURAL_WORDS,
  // Values checked by the extensions' actions: accelerators, rule protocols and addresses.
  'auto', 'kvm', 'tcg', 'tcp', 'udp', 'icmp', 'icmp6', 'any', 'router',
  // Machine types and disk buses.
  'q35', 'pc', 'microvm', 'virtio', 'scsi', 'sata', 'ide', 'nvme',
  // Firmware kinds and the cloud-init block's settings.
  'bios', 'uefi', 'secure-boot', 'hostname', 'user', 'ssh-key', 'user-data',
  // Display kinds besides `vnc`.
  'none',
];
