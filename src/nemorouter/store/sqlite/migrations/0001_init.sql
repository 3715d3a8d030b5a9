-- NemoRouter schema, version 1. Migrations are append-only: never edit an applied file.
-- Money columns are INTEGER pico-USD (1 USD = 10^12). Times are ISO 8601 UTC text.

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

-- Bundled list prices (reference data loaded by `init`), keyed by vendor and model.
CREATE TABLE catalog (
  vendor         TEXT NOT NULL,
  model_id       TEXT NOT NULL,
  mode           TEXT NOT NULL,
  pricing        TEXT NOT NULL,
  context_length INTEGER NOT NULL,
  max_output     INTEGER NOT NULL,
  source         TEXT NOT NULL,
  PRIMARY KEY (vendor, model_id)
);

CREATE TABLE providers (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL UNIQUE,
  kind       TEXT NOT NULL,
  base_url   TEXT NOT NULL,
  config     TEXT NOT NULL DEFAULT '{}',
  disabled   INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);

CREATE TABLE provider_keys (
  id             TEXT PRIMARY KEY,
  provider_id    TEXT NOT NULL REFERENCES providers(id),
  label          TEXT NOT NULL,
  weight         INTEGER NOT NULL DEFAULT 1,
  fingerprint    TEXT NOT NULL,
  envelope       TEXT NOT NULL,
  disabled       INTEGER NOT NULL DEFAULT 0,
  quarantined_at TEXT,
  created_at     TEXT NOT NULL
);

-- Immutable price snapshots: a charge points at the version that produced it.
CREATE TABLE price_versions (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  pricing    TEXT NOT NULL,
  created_at TEXT NOT NULL
);

CREATE TABLE models (
  id               TEXT PRIMARY KEY,
  name             TEXT NOT NULL,
  mode             TEXT NOT NULL DEFAULT 'chat',
  context_length   INTEGER NOT NULL,
  max_output       INTEGER NOT NULL,
  price_version_id INTEGER NOT NULL REFERENCES price_versions(id),
  created_at       TEXT NOT NULL,
  updated_at       TEXT NOT NULL
);

CREATE TABLE deployments (
  id               TEXT PRIMARY KEY,
  model_id         TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  provider_id      TEXT NOT NULL REFERENCES providers(id),
  upstream_model   TEXT NOT NULL,
  priority         INTEGER NOT NULL DEFAULT 0,
  weight           INTEGER NOT NULL DEFAULT 1,
  price_version_id INTEGER REFERENCES price_versions(id),
  disabled         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX deployments_model ON deployments(model_id);

CREATE TABLE accounts (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  email         TEXT,
  total_credits INTEGER NOT NULL DEFAULT 0,
  total_usage   INTEGER NOT NULL DEFAULT 0,
  held          INTEGER NOT NULL DEFAULT 0,
  created_at    TEXT NOT NULL
);

CREATE TABLE credits (
  id              TEXT PRIMARY KEY,
  account_id      TEXT NOT NULL REFERENCES accounts(id),
  amount          INTEGER NOT NULL,
  reason          TEXT NOT NULL,
  idempotency_key TEXT,
  created_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX credits_idempotency ON credits(account_id, idempotency_key);
CREATE INDEX credits_account ON credits(account_id, created_at);

CREATE TABLE api_keys (
  id              TEXT PRIMARY KEY,
  account_id      TEXT NOT NULL REFERENCES accounts(id),
  scope           TEXT NOT NULL,
  name            TEXT NOT NULL,
  hint            TEXT NOT NULL,
  limit_pico      INTEGER,
  limit_reset     TEXT,
  window_start    TEXT NOT NULL DEFAULT '',
  window_usage    INTEGER NOT NULL DEFAULT 0,
  usage           INTEGER NOT NULL DEFAULT 0,
  held            INTEGER NOT NULL DEFAULT 0,
  expires_at      TEXT,
  disabled        INTEGER NOT NULL DEFAULT 0,
  revoked_at      TEXT,
  rpm             INTEGER,
  tpm             INTEGER,
  max_concurrency INTEGER,
  allowed_models  TEXT,
  created_at      TEXT NOT NULL,
  updated_at      TEXT NOT NULL
);
CREATE INDEX api_keys_account ON api_keys(account_id);

-- A key may have several live secrets while a rotation's grace period runs.
CREATE TABLE key_secrets (
  hash        TEXT PRIMARY KEY,
  key_id      TEXT NOT NULL REFERENCES api_keys(id),
  valid_until TEXT,
  created_at  TEXT NOT NULL
);
CREATE INDEX key_secrets_key ON key_secrets(key_id);

-- One row per request, written when its hold is reserved (status 'pending': an open hold of
-- `hold` pico-USD) and completed when it is settled ('success', 'partial', 'cancelled': the
-- charge is `cost`) or released ('error': no charge). Holds a dead process left are marked
-- 'orphaned' at the next start, released, and kept for reconciliation. Ids are time-ordered,
-- so with WITHOUT ROWID each insert appends to one B-tree.
CREATE TABLE generations (
  id                 TEXT PRIMARY KEY,
  account_id         TEXT NOT NULL,
  key_id             TEXT NOT NULL,
  model              TEXT NOT NULL,
  provider           TEXT,
  upstream_model     TEXT,
  deployment_id      TEXT,
  provider_key_id    TEXT,
  endpoint           TEXT NOT NULL,
  streamed           INTEGER NOT NULL,
  cancelled          INTEGER NOT NULL DEFAULT 0,
  finish_reason      TEXT,
  status             TEXT NOT NULL,
  prompt_tokens      INTEGER NOT NULL DEFAULT 0,
  completion_tokens  INTEGER NOT NULL DEFAULT 0,
  cached_tokens      INTEGER NOT NULL DEFAULT 0,
  cache_write_tokens INTEGER NOT NULL DEFAULT 0,
  cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
  reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
  cost               INTEGER NOT NULL DEFAULT 0,
  hold               INTEGER NOT NULL DEFAULT 0,
  price_version_id   INTEGER,
  latency_ms         INTEGER,
  error              TEXT,
  raw_usage          TEXT,
  owner              TEXT NOT NULL DEFAULT '',
  created_at         TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX generations_account ON generations(account_id, created_at);
CREATE INDEX generations_key ON generations(key_id, created_at);
