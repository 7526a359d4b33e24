// cloud-init's NoCloud seed: the checks on what vm.conf and `vmctl start` may put in it, and the seed's files.
// Pure: vm.conf's actions, vmctl and the parent share the rules; the parent writes the files into an ISO.

import type { CloudInitConfig } from './config.js';
import { CONTROL_CHARS } from './names.js';

/** Longest authorized key accepted (an RSA 16384 key is ~2.8 KB); more keys than this is a mistake. */
export const MAX_SSH_KEY = 8192;
export const MAX_SSH_KEYS = 16;
/** Largest user-data file put in a seed; cloud-init's own limit is far above what a seed ISO should carry. */
export const MAX_USER_DATA = 1 << 20;

const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const KEY_RE = /^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?$/;

/** Why a hostname cannot go into the seed, or null (RFC 1123 labels: they end up in /etc/hostname and DHCP). */
export function hostnameError(v: string): string | null {
  return HOSTNAME_RE.test(v) ? null : 'letters, digits and "-" in dot-separated labels of at most 63, 253 in all';
}

/** Why a user name cannot go into the seed, or null (what Debian's adduser accepts by default). */
export function userError(v: string): string | null {
  return USER_RE.test(v) ? null : 'lowercase letters, digits, "_" and "-", starting with a letter or "_", at most 32';
}

/** Why a public key cannot be authorized, or null: one line of an OpenSSH public key, as authorized_keys takes it. */
export function sshKeyError(v: string): string | null {
  if (v.length > MAX_SSH_KEY) return `longer than ${MAX_SSH_KEY} bytes`;
  if (CONTROL_CHARS.test(v) || !KEY_RE.test(v)) return 'not an OpenSSH public key (TYPE BASE64 [COMMENT] on one line)';
  return null;
}

/** The guest's hostname when the config names none: the VM's name, with what a hostname cannot hold replaced. */
export function defaultHostname(vmName: string): string {
  const h = vmName.replace(/[^A-Za-z0-9.-]/g, '-').replace(/^[-.]+|[-.]+$/g, '').slice(0, 63);
  return h.length > 0 ? h : 'vm';
}

/** One address the seed's network-config gives a NIC (a local interface's /31), matched by MAC. */
export interface SeedAddress {
  readonly mac: string;
  /** CIDR, e.g. 100.64.1.3/31. */
  readonly address: string;
  readonly gateway: string;
  readonly dns: readonly string[];
}

/** The files of a NoCloud seed; `network-config` only where vmd knows the guest's addresses. */
export interface SeedFiles {
  readonly 'meta-data': string;
  readonly 'user-data': string;
  readonly 'network-config'?: string;
}

/**
 * The seed for a VM. `instanceId` changes whenever the seed's content does, so cloud-init runs its per-instance
 * modules again after a config change (a same id would make it keep the old hostname and keys).
 */
export function seedFiles(vmName: string, c: CloudInitConfig, userData: Buffer | null, addresses: readonly SeedAddress[], instanceId: string): SeedFiles {
  const hostname = c.hostname ?? defaultHostname(vmName);
  // JSON is YAML: every string below is quoted and escaped without a YAML library.
  const meta = `instance-id: ${JSON.stringify(instanceId)}\nlocal-hostname: ${JSON.stringify(hostname)}\n`;
  const user = userData !== null ? userData.toString('utf8') : generatedUserData(hostname, c);
  const files: SeedFiles = { 'meta-data': meta, 'user-data': user };
  if (addresses.length === 0) return files;
  return { ...files, 'network-config': networkConfig(addresses) };
}

/** `#cloud-config` with the hostname, the user and its keys: what `vmctl start --user/--ssh-key` asks for. */
function generatedUserData(hostname: string, c: CloudInitConfig): string {
  const lines = ['#cloud-config', `hostname: ${JSON.stringify(hostname)}`, 'preserve_hostname: false'];
  const keys = `[${c.sshKeys.map((k) => JSON.stringify(k)).join(', ')}]`;
  if (c.user !== null) {
    lines.push('users:', `  - name: ${JSON.stringify(c.user)}`, '    shell: /bin/bash', '    sudo: "ALL=(ALL) NOPASSWD:ALL"',
      '    lock_passwd: true', `    ssh_authorized_keys: ${keys}`);
  } else if (c.sshKeys.length > 0) {
    // No user named: the keys go to the image's default user (debian on Debian's cloud images).
    lines.push(`ssh_authorized_keys: ${keys}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Network config version 2: static addresses for the NICs vmd addresses itself, by MAC. */
function networkConfig(addresses: readonly SeedAddress[]): string {
  const lines = ['version: 2', 'ethernets:'];
  addresses.forEach((a, i) => {
    lines.push(`  nic${i}:`, '    match:', `      macaddress: ${JSON.stringify(a.mac)}`, `    addresses: [${JSON.stringify(a.address)}]`);
    lines.push('    routes:', `      - to: "0.0.0.0/0"`, `        via: ${JSON.stringify(a.gateway)}`);
    if (a.dns.length > 0) lines.push('    nameservers:', `      addresses: [${a.dns.map((d) => JSON.stringify(d)).join(', ')}]`);
  });
  return `${lines.join('\n')}\n`;
}
