// Tools a test guest lacks, for the isolation tests: a static router-advertisement sender and TCP client with a
// chosen source port, built here with the host's C compiler and appended to the test guest's initramfs (the kernel unpacks concatenated gzip'd archives).

import { execa, type ResultPromise } from 'execa';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { guestInitrd, guestKernel, type VmdHarness } from './vmd-harness.js';

/**
 * `vmd-tool ra IFACE COUNT`: COUNT router advertisements for 2001:db8:66::/64 to ff02::1, one a second.
 * `vmd-tool tcp SRC SPORT DST DPORT`: a TCP connection from exactly SRC:SPORT (busybox nc ignores -p when it
 * connects), an HTTP/1.0 request, and the reply printed; 3 s to connect.
 */
const TOOL_SOURCE = String.raw`
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
static int ra(const char *ifname, int count) {
  unsigned idx = if_nametoindex(ifname);
  int s = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6), hops = 255;
  if (idx == 0 || s < 0) { perror("vmd-tool ra"); return 1; }
  setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops);
  setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_IF, &idx, sizeof idx);
  unsigned char p[48] = { 134, 0, 0, 0, 64, 0, 0x07, 0x08 };                     /* RA, hop limit 64, 1800 s */
  unsigned char opt[16] = { 3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x07, 0x08 }; /* prefix /64, on-link, autonomous */
  memcpy(p + 16, opt, sizeof opt);
  inet_pton(AF_INET6, "2001:db8:66::", p + 32);
  struct sockaddr_in6 to = { .sin6_family = AF_INET6, .sin6_scope_id = idx };
  inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
  for (int i = 0; i < count; i++) {
    if (sendto(s, p, sizeof p, 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("vmd-tool ra: sendto"); return 1; }
    printf("vmd-tool: sent %d\n", i + 1);
    fflush(stdout);
    sleep(1);
  }
  return 0;
}
static int tcp(const char *src, int sport, const char *dst, int dport) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct timeval tv = { 3, 0 };
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(sport) }, b = { .sin_family = AF_INET, .sin_port = htons(dport) };
  inet_pton(AF_INET, src, &a.sin_addr);
  inet_pton(AF_INET, dst, &b.sin_addr);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("vmd-tool tcp: bind"); return 1; }
  if (connect(s, (struct sockaddr *)&b, sizeof b) < 0) { perror("vmd-tool tcp: connect"); return 1; }
  const char *req = "GET / HTTP/1.0\r\n\r\n";
  write(s, req, strlen(req));
  char buf[512];
  ssize_t n;
  while ((n = read(s, buf, sizeof buf)) > 0) fwrite(buf, 1, n, stdout);
  return 0;
}
int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "ra") == 0) return ra(argv[2], atoi(argv[3]));
  if (argc == 6 && strcmp(argv[1], "tcp") == 0) return tcp(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]));
  fprintf(stderr, "usage: vmd-tool ra IFACE COUNT | tcp SRC SPORT DST DPORT\n");
  return 2;
}
`;

/**
 * An initramfs in `dir`: the test guest's, plus /bin/vmd-tool. gcc and cpio are what share/setup installs, so
 * a missing one fails the test.
 */
export async function initrdWithTools(dir: string): Promise<string> {
  const tree = join(dir, 'tools');
  mkdirSync(join(tree, 'bin'), { recursive: true });
  writeFileSync(join(dir, 'vmd-tool.c'), TOOL_SOURCE);
  await execa('gcc', ['-static', '-Os', '-o', join(tree, 'bin', 'vmd-tool'), join(dir, 'vmd-tool.c')]);
  const cpio = await execa('cpio', ['-o', '-H', 'newc', '-R', '0:0', '--quiet'], {
    cwd: tree, input: './bin\n./bin/vmd-tool\n', encoding: 'buffer',
  });
  const out = join(dir, 'initrd-tools.img');
  writeFileSync(out, Buffer.concat([readFileSync(guestInitrd), gzipSync(Buffer.from(cpio.stdout))]));
  chmodSync(out, 0o644);
  return out;
}

/** A vm block booting the test guest (with the tools' initrd) on one interface, for the isolation tests. */
export const vm = (name: string, initrd: string, iface: string): string =>
  `vm "${name}" {\n  memory 256M\n  boot "${guestKernel}"\n  initrd "${initrd}"\n` +
  `  cmdline "console=ttyS0 quiet panic=-1 vmd.hostname=${name}"\n  ${iface}\n}\n`;

let seq = 0;
/**
 * Runs a shell command on a guest's console once (the harness's console() sends its input again every 3 s
 * until the output matches, which would run a slow command twice) and returns what it printed.
 */
export async function sh(h: VmdHarness, name: string, cmd: string, timeoutSec = 30): Promise<string> {
  const tag = `E${++seq}X`;
  const done = new RegExp(`(?:^|\\n)${tag}-BEGIN\\r?\\n([\\s\\S]*?)${tag}-\\d+-END`);
  let out = await h.console(name, `echo ${tag}-BEGIN; ${cmd}; echo ${tag}-$?-END\n`, /[\s\S]/, 3);
  if (!done.test(out)) out += await h.console(name, '', done, timeoutSec);
  return done.exec(out)![1]!;
}

/** What tcpdump sees on a link of vmd's namespace while `during` runs (one line a packet). */
export async function captured(netns: string, link: string, filter: string, during: () => Promise<unknown>): Promise<string> {
  const p: ResultPromise = execa('ip', ['netns', 'exec', netns, 'tcpdump', '-i', link, '-n', '-l', '-e', filter], { reject: false, all: true });
  let seen = '';
  p.all!.on('data', (c: Buffer) => { seen += c.toString(); });
  for (let i = 0; i < 100 && !seen.includes('listening on'); i++) await new Promise((r) => setTimeout(r, 50));
  try {
    await during();
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    p.kill('SIGINT');
    await p;
  }
  return seen;
}
