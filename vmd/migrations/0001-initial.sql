-- vmd state, version 1: VMs, their stable ids, runtime records and an event log.
-- Written only by the parent process.

CREATE TABLE vm (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL UNIQUE,
  origin     TEXT NOT NULL CHECK (origin IN ('config', 'adhoc', 'load', 'instance')),
  config     TEXT NOT NULL,            -- JSON of the VmConfig the VM was defined with
  owner_uid  INTEGER NOT NULL DEFAULT 0,
  owner_gid  INTEGER,
  created_at TEXT NOT NULL
);

-- A name keeps its id across stop/start, removal and daemon restarts (OpenBSD keeps them for the daemon's life).
CREATE TABLE vm_id (
  name TEXT PRIMARY KEY,
  id   INTEGER NOT NULL UNIQUE
);

-- One row per guest that vmd believes is running (or is starting/stopping): the intent, written before acting.
CREATE TABLE runtime (
  vm_id          INTEGER PRIMARY KEY REFERENCES vm(id) ON DELETE CASCADE,
  state          TEXT NOT NULL CHECK (state IN ('starting', 'running', 'paused', 'stopping')),
  pid            INTEGER,
  uid            INTEGER NOT NULL,      -- the user who started it (OpenBSD's vm_uid)
  run_dir        TEXT NOT NULL,
  qmp_socket     TEXT NOT NULL,
  console_socket TEXT NOT NULL,
  started_at     TEXT,
  restarts       INTEGER NOT NULL DEFAULT 0,
  last_start_ms  INTEGER,
  boot_once      TEXT
);

CREATE TABLE event (
  id     INTEGER PRIMARY KEY AUTOINCREMENT,
  at     TEXT NOT NULL,
  vm_id  INTEGER,
  kind   TEXT NOT NULL,
  detail TEXT
);
