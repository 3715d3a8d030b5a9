-- Alerts out: each account's webhook settings, and a durable outbox of signed deliveries
-- (Standard Webhooks). A row is written when the fact is known and stays until its
-- receiver acknowledges it with a 2xx (or a day of retries has passed), across restarts.

-- One row per account that set `PUT /v1/alerts`. The signing secret is kept only sealed by
-- the vault (provider 'alerts', key id = the account id), never in plaintext.
CREATE TABLE alert_settings (
  account_id            TEXT PRIMARY KEY REFERENCES accounts(id),
  url                   TEXT NOT NULL,
  low_balance_threshold INTEGER,  -- pico-USD; NULL: no credits.low alerts
  secret_envelope       TEXT NOT NULL,
  low_since             TEXT,     -- credits.low was sent; cleared once the balance is back at or above
  created_at            TEXT NOT NULL,
  updated_at            TEXT NOT NULL
);

-- `id` is the webhook-id, the same on every retry. `account_id` NULL: an operator alert
-- (sent to NEMO_OPERATOR_ALERT_URL). `payload` is the exact body that is signed and sent.
-- `next_attempt_at` is NULL once the row is delivered or given up.
CREATE TABLE outbox (
  id              TEXT PRIMARY KEY,
  account_id      TEXT REFERENCES accounts(id),
  event_type      TEXT NOT NULL,
  payload         TEXT NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TEXT,
  delivered_at    TEXT,
  failed_at       TEXT,
  last_error      TEXT,
  created_at      TEXT NOT NULL
);
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX outbox_account ON outbox(account_id, created_at);
