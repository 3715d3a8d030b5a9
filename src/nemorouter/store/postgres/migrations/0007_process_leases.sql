-- Gateway process leases, for recovering holds per owner. Every `nemorouter serve` process
-- (replica or worker) has an owner id, written on each hold it opens, and keeps one row here,
-- renewed every few seconds. A hold whose owner's lease has lapsed (the process died or lost
-- the database) or whose owner has no row is released by any live replica; a live process's
-- holds are never touched. Times by the database's clock (`clock_timestamp()`), so the
-- replicas' own clocks need not agree.
CREATE TABLE process_leases (
  owner      TEXT COLLATE "C" PRIMARY KEY,
  expires_at TIMESTAMPTZ NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  renewed_at TIMESTAMPTZ NOT NULL
);
