-- Alerts out (the port of sqlite/0003_alerts_outbox.sql): each account's webhook settings, and a
-- durable outbox of signed deliveries (Standard Webhooks). A row is written when the fact is
-- known and stays until its receiver acknowledges it with a 2xx (or a day of retries has
-- passed), across restarts. Any replica may deliver a row; a claim leases it to one.

-- One row per account that set `PUT /v1/alerts`. The signing secret is kept only sealed by
-- the vault (provider 'alerts', key id = the account id), never in plaintext.
CREATE TABLE alert_settings (
  account_id            TEXT COLLATE "C" PRIMARY KEY REFERENCES accounts(id),
  url                   TEXT COLLATE "C" NOT NULL,
  low_balance_threshold BIGINT,  -- pico-USD; NULL: no credits.low alerts
  secret_envelope       TEXT COLLATE "C" NOT NULL,
  low_since             TEXT COLLATE "C",  -- credits.low was sent; cleared once the balance is back
  created_at            TEXT COLLATE "C" NOT NULL,
  updated_at            TEXT COLLATE "C" NOT NULL
);

-- `id` is the webhook-id, the same on every retry. `account_id` NULL: an operator alert
-- (sent to NEMO_OPERATOR_ALERT_URL). `payload` is the exact body that is signed and sent.
-- `next_attempt_at` is NULL once the row is delivered or given up.
CREATE TABLE outbox (
  id              TEXT COLLATE "C" PRIMARY KEY,
  account_id      TEXT COLLATE "C" REFERENCES accounts(id),
  event_type      TEXT COLLATE "C" NOT NULL,
  payload         TEXT COLLATE "C" NOT NULL,
  attempts        BIGINT NOT NULL DEFAULT 0,
  next_attempt_at TEXT COLLATE "C",
  delivered_at    TEXT COLLATE "C",
  failed_at       TEXT COLLATE "C",
  last_error      TEXT COLLATE "C",
  created_at      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX outbox_account ON outbox(account_id, created_at);
