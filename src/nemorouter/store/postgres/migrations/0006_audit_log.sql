-- The audit log: every admin and management action (who, what, when), chained like the
-- ledger's seals so an entry changed, removed or reordered later is named by `audit verify`.
-- Never a secret: keys are named by id, provider secrets by fingerprint.
CREATE TABLE audit_log (
  seq        BIGINT PRIMARY KEY,   -- 1, 2, 3, ... without gaps
  at         TEXT NOT NULL,      -- ISO 8601 UTC
  actor      TEXT NOT NULL,      -- admin | cli:USER | management_key:ID | console:USER | system
  action     TEXT NOT NULL,      -- e.g. key.create
  account_id TEXT,               -- the tenant concerned, if any
  targets    TEXT NOT NULL,      -- canonical JSON object of ids
  params     TEXT NOT NULL,      -- canonical JSON object of non-secret parameters
  digest     TEXT NOT NULL,      -- SHA-256 of the entry's canonical fields
  chain      TEXT NOT NULL       -- SHA-256(previous chain + digest), from 64 zeros
);
CREATE INDEX audit_log_account ON audit_log(account_id, seq);
CREATE INDEX audit_log_action ON audit_log(action, seq);
