// Tests for share/paths: the environment overrides every role and vmctl rely on.
import t from 'tap';
import { socketPath, stateDir, vmdUser, DEFAULT_SOCKET, DEFAULT_STATE_DIR } from '../../share/paths.js';

t.test('defaults', async (t) => {
  t.equal(socketPath({}), DEFAULT_SOCKET);
  t.equal(stateDir({}), DEFAULT_STATE_DIR);
  t.equal(vmdUser({}), '_vmd');
});

t.test('environment overrides, made absolute', async (t) => {
  t.equal(socketPath({ VMD_SOCKET: '/tmp/x.sock' }), '/tmp/x.sock');
  t.equal(stateDir({ VMD_STATE_DIR: 'rel' }), `${process.cwd()}/rel`);
  t.equal(vmdUser({ VMD_USER: 'nobody' }), 'nobody');
  t.equal(socketPath({ VMD_SOCKET: '' }), DEFAULT_SOCKET);
});
