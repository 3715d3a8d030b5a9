-- The ledger's hash chain (the port of sqlite/0004_ledger_seals.sql). A background sealer
-- (never the request path) appends one row per ledger entry once it is final: every credit,
-- and every generation that carries a charge (status other than pending, error or orphaned).
-- `digest` is SHA-256 over the entry's canonical fields; `chain` is SHA-256(previous chain +
-- digest), from 64 zeros. `ledger verify` recomputes both, so an entry changed, removed or
-- reordered after it was sealed is named.
CREATE TABLE ledger_seals (
  seq       BIGINT PRIMARY KEY,          -- 1, 2, 3, ... without gaps: one chain, never a fork
  kind      TEXT COLLATE "C" NOT NULL,   -- 'credit' | 'generation'
  row_id    TEXT COLLATE "C" NOT NULL,
  digest    TEXT COLLATE "C" NOT NULL,
  chain     TEXT COLLATE "C" NOT NULL,
  sealed_at TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX ledger_seals_row ON ledger_seals(kind, row_id);

-- Entries that became final and wait for their seal. Many replicas write the ledger at once and
-- commit in any order, with clocks that may disagree, so the sealer cannot find new entries by
-- id or time as SQLite's does: the transaction that makes an entry final queues it, by trigger
-- (whatever wrote it), and the sealer drains the queue. Rows live here for about a second.
CREATE TABLE seal_queue (
  id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind   TEXT COLLATE "C" NOT NULL,
  row_id TEXT COLLATE "C" NOT NULL
);

CREATE FUNCTION nemo_queue_seal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO seal_queue (kind, row_id) VALUES (TG_ARGV[0], NEW.id);
  RETURN NULL;
END
$$;

CREATE TRIGGER credits_seal AFTER INSERT ON credits
  FOR EACH ROW EXECUTE FUNCTION nemo_queue_seal('credit');
CREATE TRIGGER generations_seal_new AFTER INSERT ON generations
  FOR EACH ROW WHEN (NEW.status NOT IN ('pending', 'error', 'orphaned'))
  EXECUTE FUNCTION nemo_queue_seal('generation');
CREATE TRIGGER generations_seal_final AFTER UPDATE OF status ON generations
  FOR EACH ROW WHEN (OLD.status IN ('pending', 'error', 'orphaned') AND NEW.status NOT IN ('pending', 'error', 'orphaned'))
  EXECUTE FUNCTION nemo_queue_seal('generation');

-- Entries already final when this migration runs are sealed by the first round, oldest first.
INSERT INTO seal_queue (kind, row_id) SELECT 'credit', id FROM credits ORDER BY created_at, id;
INSERT INTO seal_queue (kind, row_id)
  SELECT 'generation', id FROM generations WHERE status NOT IN ('pending', 'error', 'orphaned') ORDER BY id;
