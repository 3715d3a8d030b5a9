-- Gateway process leases, for recovering holds per owner (see postgres/0007). One SQLite file
-- serves one process, which releases every open hold when it starts; the lease keeps the rule
-- the same in both stores. Times are the store's fixed-width ISO text.
CREATE TABLE process_leases (
  owner      TEXT PRIMARY KEY,
  expires_at TEXT NOT NULL,
  started_at TEXT NOT NULL,
  renewed_at TEXT NOT NULL
);
