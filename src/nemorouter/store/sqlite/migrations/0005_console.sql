-- The web console (/console): an account's users, their one-time set-password invites and the
-- sessions of users and of the operator. Only hashes of secrets are stored: an argon2id hash
-- of each password, a SHA-256 of each invite token and session token.

-- One row per invited person; `email` is unique across accounts (it is how one signs in).
-- `password_hash` is NULL until the invite is used.
CREATE TABLE console_users (
  id            TEXT PRIMARY KEY,
  account_id    TEXT NOT NULL REFERENCES accounts(id),
  email         TEXT NOT NULL UNIQUE,
  password_hash TEXT,
  created_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL
);
CREATE INDEX console_users_account ON console_users(account_id);

-- A set-password link: valid until `expires_at`, usable once (`used_at` set when used).
CREATE TABLE console_invites (
  token_hash TEXT PRIMARY KEY,
  user_id    TEXT NOT NULL REFERENCES console_users(id),
  expires_at TEXT NOT NULL,
  used_at    TEXT,
  created_at TEXT NOT NULL
);

-- A signed-in browser. `user_id` NULL: the operator (signed in with the admin token).
-- `csrf_token` is the synchronizer token every form of this session carries. `granted_by`, for
-- the operator: a hash of the admin token it signed in with (a new token ends those sessions).
CREATE TABLE console_sessions (
  token_hash TEXT PRIMARY KEY,
  user_id    TEXT REFERENCES console_users(id),
  csrf_token TEXT NOT NULL,
  granted_by TEXT,
  expires_at TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);
