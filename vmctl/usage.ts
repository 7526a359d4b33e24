// Every vmctl command's name and usage line, without the code: vmctl loads a command's module only to run it.
// The command modules take their usage from here, so each line is written once.

/** The part after `vmctl [-v] NAME ` in each command's usage line. */
export const COMMAND_USAGE = {
  capture: '[-w file] [-c count] [-s snaplen] id [if] [expression]',
  console: '[-t seconds] id',
  create: '[-b base | -i disk] [-s size] disk',
  display: '[-p port] id',
  events: '[id]',
  firewall: 'id [if]',
  grow: '-s size disk',
  help: '[command]',
  inspect: 'id',
  load: 'filename',
  links: '[id]',
  log: 'brief | verbose | id',
  migrate: '[-D ms] [-s socket] [--copy-storage] id [user@]host',
  pause: 'id',
  receive: 'name',
  send: 'id',
  snapshot: '[-l | -r name | -d name] id [name]',
  unpause: 'id',
  reload: '',
  reset: '[all | switches | vms]',
  show: '[id]',
  start: '[-cL] [-B device] [-b path] [-d disk] [-i count]\n'
    + '\t\t[-m size] [-n switch] [-r path] [-t name]\n'
    + '\t\t[--initrd path] [--cmdline string] [--forward proto:hostport:guestport]\n'
    + '\t\t[--machine type] [--passt real | nat] [--firmware bios | uefi]\n'
    + '\t\t[--secure-boot] [--user name] [--ssh-key file] [--display vnc | none]\n'
    + '\t\tid | name',
  status: '[-r] [id]',
  stop: '[-fw] [id | -a]',
  wait: 'id',
} as const;

/** The global usage line, exactly OpenBSD's. */
export const GLOBAL_USAGE = 'usage:\tvmctl [-v] command [arg ...]\n';
