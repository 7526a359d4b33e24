// `vmctl inspect`: the effective configuration of an instance and of a command-line VM, as text `vmd -n` accepts
// back (round trip), with what the instance inherited and who made the command-line VM; refused to other users.
import t from 'tap';
import { execa } from 'execa';
import { existsSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { vmdEntry } from '../../share/paths.js';
import { guestInitrd, guestKernel, VmdHarness } from '../lib/vmd-harness.js';

t.test('inspect an instance and a command-line VM; the text passes vmd -n', async (t) => {
  if (!existsSync(guestKernel)) throw new Error(`test guest missing: run share/guest/build (${guestKernel})`);
  const h = await VmdHarness.start({
    config: `vm "base" {\n disable\n memory 96M\n boot "${guestKernel}"\n initrd "${guestInitrd}"\n`
      + ` cmdline "console=ttyS0 quiet panic=-1"\n allow instance { memory }\n}\n`,
  });
  t.teardown(() => h.teardown());

  const inst = await h.vmctl(['start', '-t', 'base', '-m', '128M', 'child']);
  t.equal(inst.exitCode, 0, `instance start: ${inst.stderr}`);
  const cli = await h.vmctl(['start', '-b', guestKernel, '--initrd', guestInitrd, '-m', '160M', 'cli']);
  t.equal(cli.exitCode, 0, `command-line start: ${cli.stderr}`);

  const child = await h.vmctl(['inspect', 'child']);
  t.equal(child.exitCode, 0, child.stderr);
  t.match(child.stdout, /^vm "child" \{\n/, 'a plain vm block');
  t.match(child.stdout, /\n\tmemory 128M\n/, 'its own memory');
  // Paths as vmd resolved them (realpath, as OpenBSD): the checkout's build/ may be a symlink.
  t.ok(child.stdout.includes(`\n\tboot "${realpathSync(guestKernel)}"\n`), 'the boot image it inherited');
  t.match(child.stdout, /\n\tcmdline "console=ttyS0 quiet panic=-1"\n/, 'the cmdline it inherited');

  const made = await h.vmctl(['inspect', 'cli']);
  t.equal(made.exitCode, 0, made.stderr);
  t.match(made.stdout, /\n\tmemory 160M\n/);
  t.match(made.stdout, /\n\towner root\n/, 'the user who made it owns it');

  for (const [name, text] of [['child', child.stdout], ['cli', made.stdout]] as const) {
    const file = join(h.dir, `${name}.conf`);
    writeFileSync(file, text);
    const check = await execa(vmdEntry, ['-n', '-f', file], { reject: false, extendEnv: false, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    t.equal(check.exitCode, 0, `vmd -n accepts ${name}'s text: ${check.stderr}\n${text}`);
    t.match(check.stderr + check.stdout, /configuration OK/);
  }

  const json = JSON.parse((await h.vmctl(['--json', 'inspect', 'child'])).stdout) as { type: string; text: string; config: { memory: number; boot: string } };
  t.equal(json.type, 'vm.inspect.response');
  t.equal(json.config.memory, 128 * 1024 * 1024);
  t.equal(json.text, `${child.stdout}\n`, "the same text (the harness strips its final newline)");

  const nobody = await h.vmctl(['inspect', 'child'], { uid: 65534 });
  t.equal(nobody.exitCode, 1, 'another user may not inspect it');
  t.equal((await h.vmctl(['inspect', 'nosuchvm'])).exitCode, 1);
});
