// What the parent learns at its start and never changes: its options, who it runs as, where its state lives.
// Imported by every part of the parent and importing none of them.

export interface ParentOptions {
  readonly file: string;
  readonly macros: Readonly<Record<string, string>>;
  readonly verbose: number;
  /** Called once the socket accepts connections (the daemonising launcher waits for it). */
  readonly onReady?: () => void;
}

export interface Identity {
  readonly uid: number;
  readonly gid: number;
}

/** What the parent learns at its start and never changes. */
export interface ParentEnv {
  readonly options: ParentOptions;
  /** Running as root: switches, taps, the QEMU sandbox and identity changes are available. */
  readonly root: boolean;
  /** Who configured VMs belong to and are started as when vm.conf says nothing: root, or a rootless daemon's user. */
  readonly selfUid: number;
  /** The unprivileged user of vmm, control and QEMU (`_vmd`); null without root. */
  readonly ident: Identity | null;
  /** Who QEMU runs as: `_vmd` under root, the daemon's own user otherwise. */
  readonly qemuIdentity: Identity;
  readonly stateDir: string;
  readonly runRoot: string;
  readonly sockPath: string;
}
