-- vmd state, version 2: host network objects vmd created, so it removes exactly those (and never adopted ones),
-- also after a crash or a restart.

CREATE TABLE owned_net (
  kind   TEXT NOT NULL CHECK (kind IN ('bridge', 'vxlan', 'netns')),
  name   TEXT NOT NULL,
  netns  TEXT NOT NULL DEFAULT '',   -- '' = the namespace vmd runs in
  PRIMARY KEY (kind, name, netns)
);
