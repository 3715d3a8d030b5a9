-- Operator overruns: a provider reported more than the request's hold covers. The customer is
-- charged the hold (the generation's `cost`); the difference is the operator's, kept here with
-- the provider's own report. Amounts are exact decimal text of pico-USD: a provider's report is
-- untrusted and may exceed any 64-bit amount (docs/money-trail.md, "Overruns").
CREATE TABLE overruns (
  request_id       TEXT PRIMARY KEY,
  account_id       TEXT NOT NULL,
  key_id           TEXT NOT NULL,
  model            TEXT NOT NULL,
  provider         TEXT,
  provider_key_id  TEXT,
  deployment_id    TEXT,
  hold             INTEGER NOT NULL,
  charged          INTEGER NOT NULL,
  reported_cost    TEXT NOT NULL,
  overrun          TEXT NOT NULL,
  reason           TEXT NOT NULL,
  raw_usage        TEXT,
  created_at       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX overruns_provider ON overruns(provider, created_at);

-- Every change of a key's limit, so `ledger verify` can tell a limit lowered below what the key
-- had already spent (the operator's or owner's doing) from a breach of the cap.
CREATE TABLE key_limit_changes (
  key_id      TEXT NOT NULL,
  changed_at  TEXT NOT NULL,
  limit_pico  INTEGER
);
CREATE INDEX key_limit_changes_key ON key_limit_changes(key_id, changed_at);
