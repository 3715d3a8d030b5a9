-- Open holds only (few rows at any time), as PostgreSQL has had since its first migration:
-- without it, the periodic release of dead processes' holds (`recover_dead_holds`, every lease
-- renewal), `open_holds` and recovery at start each read the whole `generations` table on the
-- event loop, which grows by one row per request.
CREATE INDEX generations_pending ON generations(owner) WHERE status = 'pending';
