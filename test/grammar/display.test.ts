// Unit tests of vm.conf's `display vnc|none`: what it puts in the model, what `vmd -n` refuses with the line it
// names, and that `vmctl inspect`'s text carries it back.

import t from 'tap';
import { vmConfigText } from '../../share/config-text.js';
import { inherit } from '../../vmd/parent/vm-config.js';
import { parse, errorsOf } from './helpers.js';

const files = { 'a.img': '', 'k': '' };
const vmOf = (body: string) => {
  const p = parse(`vm "v" {\n  disk "a.img"\n${body}\n}\n`, files);
  if (p.result.config === null) throw new Error(`unexpected errors:\n${p.out}`);
  return p.result.config.vms[0]!;
};
const errs = (body: string) => errorsOf(`vm "v" {\n  disk "a.img"\n${body}\n}\n`, files);

t.test('display', async (t) => {
  t.equal(vmOf('').display, undefined, 'absent: no field, configs without it are unchanged');
  t.equal(vmOf('display vnc').display, 'vnc');
  t.equal(vmOf('display none').display, 'none');
  t.equal(vmOf('display "vnc"').display, 'vnc', 'a quoted value is the same word');
  t.equal(errs('display vga'), 'vmd: vm.conf:3: invalid display: vga: vnc or none');
  t.equal(errs('display'), 'vmd: vm.conf:3: syntax error');
  t.equal(errs('display vnc\n  display none'), 'vmd: vm.conf:4: display specified more than once');
  t.equal(errorsOf('vm "v" {\n  boot "k"\n  machine microvm\n  display vnc\n}\n', files),
    'vmd: vm.conf:4: machine microvm has no bus for a display: display needs machine q35 or pc');
  t.equal(parse('vm "display" {\n  disk "a.img"\n}\nvm "vnc" {\n  disk "a.img"\n}\n', files).result.config?.vms.length, 2, 'the words still name VMs');
});

t.test('inspect text and instances', async (t) => {
  const vm = vmOf('display vnc');
  const text = vmConfigText(vm);
  t.match(text, /\n\tdisplay vnc\n/);
  const back = parse(text.replace(/"[^"]*a\.img"/, '"a.img"'), files).result.config!.vms[0]!;
  t.equal(back.display, 'vnc', 'the text reads back');
  t.equal(vmConfigText(vmOf('')).includes('display'), false, 'no line without display');
  const child = { ...vmOf(''), disks: [], name: 'c', instanceOf: 'v' };
  t.equal(inherit(vm, child).display, 'vnc', 'an instance inherits the display');
  t.equal(inherit(vm, { ...child, display: 'none' }).display, 'none', 'and may turn it off');
  t.equal(inherit(vmOf(''), child).display, undefined, 'none inherited: no field');
});
