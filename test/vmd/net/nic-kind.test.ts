// What each interface block becomes (tap, passt, QEMU user-mode) and what a start refuses, without a daemon.

import t from 'tap';
import { parseConfigText } from '../../../grammar/parse.js';
import type { Config } from '../../../share/config.js';
import { nicKindOf } from '../../../vmd/net/nic-kind.js';

const text = `switch "lan" {\n  interface vmdnk0\n}\n` +
  `switch "nat" {\n  interface vmdnk1\n  address 10.9.0.1/24\n  dhcp\n  nat\n}\n` +
  `vm "v" {\n  memory 64M\n` +
  `  interface\n` +
  `  interface { switch "lan" }\n` +
  `  local interface { forward tcp 8080 to 80 }\n` +
  `  interface { forward tcp 8081 to 80 }\n}\n` +
  `vm "w" {\n  memory 64M\n  interface { switch "nat"\n forward tcp 8082 to 80 }\n  passt interface\n}\n`;

function config(): Config {
  const r = parseConfigText(text, 'vm.conf');
  if (r.config === null) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.config;
}

t.test('root: taps, with their refusals', async (t) => {
  const c = config();
  const [plain, onLan, local, unattached] = c.vms[0]!.interfaces;
  const lan = c.switches.find((s) => s.name === 'lan');
  const never = (): boolean => { throw new Error('passt is not asked about as root'); };
  t.equal(nicKindOf('v', plain!, undefined, true, never), 'tap', 'a plain interface is a tap on no switch');
  t.equal(nicKindOf('v', onLan!, lan, true, never), 'tap');
  t.equal(nicKindOf('v', local!, undefined, true, never), 'tap');
  t.throws(() => nicKindOf('v', onLan!, undefined, true, never), { code: 'ERR_INVALID', message: 'vm "v": interface 1: switch "lan" not found' });
  t.throws(() => nicKindOf('v', unattached!, undefined, true, never), { code: 'ERR_INVALID', message: /interface 3: forward needs a local interface or a switch/ });
  const [forwardOnNat, passt] = c.vms[1]!.interfaces;
  const nat = c.switches.find((s) => s.name === 'nat')!;
  t.equal(nicKindOf('w', forwardOnNat!, nat, true, never), 'tap', 'a forward on a switch with address, dhcp and nat');
  // The switch as a later reload may leave it.
  t.throws(() => nicKindOf('w', forwardOnNat!, { ...nat, dhcp: false }, true, never), { code: 'ERR_INVALID', message: /forward tcp 8082: switch "nat" has no dhcp/ });
  t.equal(nicKindOf('w', passt!, undefined, true, never), 'passt', 'a passt interface is passt even as root');
});

t.test('rootless: passt when installed, else user-mode; no switches or local interfaces', async (t) => {
  const c = config();
  const [plain, onLan, local] = c.vms[0]!.interfaces;
  t.equal(nicKindOf('v', plain!, undefined, false, () => true), 'passt');
  t.equal(nicKindOf('v', plain!, undefined, false, () => false), 'user');
  t.throws(() => nicKindOf('v', onLan!, c.switches[0], false, () => true), { code: 'ERR_UNSUPPORTED', message: 'vm "v": interface 1: switch "lan" need vmd to run as root' });
  t.throws(() => nicKindOf('v', local!, undefined, false, () => true), { code: 'ERR_UNSUPPORTED', message: /local interfaces need vmd to run as root/ });
});
