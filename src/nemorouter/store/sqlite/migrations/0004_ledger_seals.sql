-- The ledger's hash chain. A background sealer (never the request path) appends one row per
-- ledger entry once it is final: every credit, and every generation that carries a charge
-- (status other than pending, error or orphaned). `digest` is SHA-256 over the entry's
-- canonical fields; `chain` is SHA-256(previous chain + digest), from 64 zeros. `ledger verify`
-- recomputes both, so an entry changed, removed or reordered after it was sealed is named.
CREATE TABLE ledger_seals (
  seq       INTEGER PRIMARY KEY,  -- 1, 2, 3, ... without gaps
  kind      TEXT NOT NULL,        -- 'credit' | 'generation'
  row_id    TEXT NOT NULL,
  digest    TEXT NOT NULL,
  chain     TEXT NOT NULL,
  sealed_at TEXT NOT NULL
);
CREATE UNIQUE INDEX ledger_seals_row ON ledger_seals(kind, row_id);
