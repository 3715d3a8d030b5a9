-- A reserve batch and a settle batch write each key's and each account's row once (was once per
-- request), and a statement that makes many generations final queues their seals with one INSERT
-- (was one trigger call per row).
--
-- Why: every UPDATE of a row makes a new version of it, and the versions one transaction makes
-- cannot be pruned before it commits. A batch of 128 settles of one key made 128 versions of its
-- ~220-byte row: more than a page holds, so the rest went to new pages, and without a VACUUM
-- (a server with autovacuum off, or one that lags) a one-row table grew to hundreds of pages,
-- which every scan of it then read (measured under `make bench`: 393 pages for one key after
-- ~30,000 requests; the scans of it were 9 % of the database server's CPU). One version per batch
-- stays in its page, where the next access prunes the old ones.

-- nemo_reserve_many, same arguments and outcomes as in 0010: the rows of the batch's keys and
-- accounts are locked (keys before accounts, each in id order, as before) and read once; the
-- requests are decided one after the other on those values plus what the batch has held so far,
-- with nemo_reserve's conditions exactly; then each row that holds more is written once. Each
-- key is locked by its own statement on its primary key, so the lock never scans the table.
CREATE OR REPLACE FUNCTION nemo_reserve_many(
  p_amount BIGINT[], p_key TEXT[], p_now TEXT[], p_window TEXT[], p_account TEXT[], p_id TEXT[],
  p_model TEXT[], p_endpoint TEXT[], p_streamed BOOLEAN[], p_owner TEXT[], p_created TEXT[]
) RETURNS TEXT[] LANGUAGE plpgsql AS $$
DECLARE
  v_out TEXT[] := '{}';
  v_id TEXT;
  k api_keys%ROWTYPE;
  a accounts%ROWTYPE;
  -- The batch's keys, as locked: parallel arrays, one element per key.
  k_ids TEXT[] := '{}';
  k_live BOOLEAN[] := '{}';       -- neither revoked nor disabled
  k_expires TEXT[] := '{}';
  k_limit BIGINT[] := '{}';
  k_window TEXT[] := '{}';
  k_window_usage NUMERIC[] := '{}';
  k_held NUMERIC[] := '{}';       -- as locked
  k_added NUMERIC[] := '{}';      -- what this batch holds on it
  -- The batch's accounts: what they could hold as locked, and what this batch holds on them.
  a_ids TEXT[] := '{}';
  a_free NUMERIC[] := '{}';       -- total_credits - total_usage - held
  a_added NUMERIC[] := '{}';
  ki INT;
  ai INT;
BEGIN
  -- Not waited to durability, as nemo_reserve: a hold lost in a crash of the database server is
  -- one no charge can follow.
  PERFORM set_config('synchronous_commit', 'off', true);
  FOREACH v_id IN ARRAY ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(p_key) AS t(x) ORDER BY 1) LOOP
    SELECT * INTO k FROM api_keys WHERE id = v_id FOR UPDATE;
    IF FOUND THEN
      k_ids := k_ids || k.id;
      k_live := k_live || (k.revoked_at IS NULL AND NOT k.disabled);
      k_expires := k_expires || k.expires_at;
      k_limit := k_limit || k.limit_pico;
      k_window := k_window || k.window_start;
      k_window_usage := k_window_usage || k.window_usage;
      k_held := k_held || k.held;
      k_added := k_added || 0::NUMERIC;
    END IF;
  END LOOP;
  FOREACH v_id IN ARRAY ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(p_account) AS t(x) ORDER BY 1) LOOP
    SELECT * INTO a FROM accounts WHERE id = v_id FOR UPDATE;
    IF FOUND THEN
      a_ids := a_ids || a.id;
      a_free := a_free || (a.total_credits - a.total_usage - a.held);
      a_added := a_added || 0::NUMERIC;
    END IF;
  END LOOP;
  FOR i IN 1 .. coalesce(array_length(p_id, 1), 0) LOOP
    ki := array_position(k_ids, p_key[i]);
    -- nemo_reserve's key condition, on the key as this batch has left it so far.
    IF ki IS NULL OR NOT coalesce(
        k_live[ki]
        AND (k_expires[ki] IS NULL OR k_expires[ki] > p_now[i])
        AND (k_limit[ki] IS NULL
             OR (CASE WHEN k_window[ki] = p_window[i] THEN k_window_usage[ki] ELSE 0 END)
                + k_held[ki] + k_added[ki] + p_amount[i] <= k_limit[ki]),
        FALSE) THEN
      v_out := v_out || 'key'::TEXT;
      CONTINUE;
    END IF;
    ai := array_position(a_ids, p_account[i]);
    IF ai IS NULL OR NOT coalesce(a_free[ai] - a_added[ai] >= p_amount[i], FALSE) THEN
      v_out := v_out || 'account'::TEXT;
      CONTINUE;
    END IF;
    INSERT INTO generations (id, account_id, key_id, model, endpoint, streamed, status, hold, owner, created_at)
      VALUES (p_id[i], p_account[i], p_key[i], p_model[i], p_endpoint[i], p_streamed[i], 'pending',
              p_amount[i], p_owner[i], p_created[i])
      ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
      v_out := v_out || 'duplicate'::TEXT;
      CONTINUE;
    END IF;
    k_added[ki] := k_added[ki] + p_amount[i];
    a_added[ai] := a_added[ai] + p_amount[i];
    v_out := v_out || 'ok'::TEXT;
  END LOOP;
  FOR j IN 1 .. coalesce(array_length(k_ids, 1), 0) LOOP
    IF k_added[j] <> 0 THEN
      UPDATE api_keys SET held = held + k_added[j] WHERE id = k_ids[j];
    END IF;
  END LOOP;
  FOR j IN 1 .. coalesce(array_length(a_ids, 1), 0) LOOP
    IF a_added[j] <> 0 THEN
      UPDATE accounts SET held = held + a_added[j] WHERE id = a_ids[j];
    END IF;
  END LOOP;
  RETURN v_out;
END $$;

-- One key's settles of a batch, folded (below): the holds given back, the charges, the window
-- its last settle names, the charges since the window last changed in the batch, and whether it
-- changed at all.
CREATE FUNCTION nemo_settle_key(
  p_key TEXT, p_held NUMERIC, p_usage NUMERIC, p_window TEXT, p_in_window NUMERIC, p_moved BOOLEAN
) RETURNS VOID LANGUAGE sql AS $$
  UPDATE api_keys SET held = held - p_held, usage = usage + p_usage,
      window_usage = (CASE WHEN NOT p_moved AND window_start = p_window THEN window_usage ELSE 0 END)
                     + p_in_window,
      window_start = p_window
    WHERE id = p_key;
$$;

-- nemo_settle_many, same arguments and outcome as in 0013: each key's settles are folded in the
-- order given, then written in one UPDATE. The fold is exactly the sequence of nemo_settle's
-- updates: `held` and `usage` move by the sums; the window ends as the last settle's; its usage
-- is the costs since the window last changed within the batch, plus the row's own usage if the
-- window never changed and is the row's current one.
CREATE OR REPLACE FUNCTION nemo_settle_many(
  p_id TEXT[], p_window TEXT[],
  p_model TEXT[], p_provider TEXT[], p_upstream_model TEXT[], p_deployment_id TEXT[], p_provider_key_id TEXT[],
  p_endpoint TEXT[], p_streamed BOOLEAN[], p_cancelled BOOLEAN[], p_finish_reason TEXT[], p_status TEXT[],
  p_prompt_tokens BIGINT[], p_completion_tokens BIGINT[], p_cached_tokens BIGINT[], p_cache_write_tokens BIGINT[],
  p_cache_write_1h_tokens BIGINT[], p_reasoning_tokens BIGINT[], p_cost BIGINT[], p_price_version_id BIGINT[],
  p_latency_ms BIGINT[], p_error TEXT[], p_raw_usage TEXT[], p_unit TEXT[], p_units BIGINT[]
) RETURNS SETOF TEXT LANGUAGE plpgsql AS $$
DECLARE
  r RECORD;
  v_accounts TEXT[] := '{}';
  v_holds BIGINT[] := '{}';
  v_costs BIGINT[] := '{}';
  v_key TEXT := NULL;      -- the key being folded
  v_held NUMERIC;          -- its holds given back
  v_usage NUMERIC;         -- its charges
  v_window TEXT;           -- the window its last settle names
  v_in_window NUMERIC;     -- its charges since the window last changed in this batch
  v_moved BOOLEAN;         -- whether the window changed within this batch
BEGIN
  FOR r IN
    WITH done AS (
      UPDATE generations g SET
          model = u.model, provider = u.provider, upstream_model = u.upstream_model,
          deployment_id = u.deployment_id, provider_key_id = u.provider_key_id, endpoint = u.endpoint,
          streamed = u.streamed, cancelled = u.cancelled, finish_reason = u.finish_reason, status = u.status,
          prompt_tokens = u.prompt_tokens, completion_tokens = u.completion_tokens,
          cached_tokens = u.cached_tokens, cache_write_tokens = u.cache_write_tokens,
          cache_write_1h_tokens = u.cache_write_1h_tokens, reasoning_tokens = u.reasoning_tokens,
          cost = u.cost, price_version_id = u.price_version_id, latency_ms = u.latency_ms,
          error = u.error, raw_usage = u.raw_usage, unit = u.unit, units = u.units
        FROM unnest(
          p_id, p_window, p_model, p_provider, p_upstream_model, p_deployment_id, p_provider_key_id,
          p_endpoint, p_streamed, p_cancelled, p_finish_reason, p_status, p_prompt_tokens,
          p_completion_tokens, p_cached_tokens, p_cache_write_tokens, p_cache_write_1h_tokens,
          p_reasoning_tokens, p_cost, p_price_version_id, p_latency_ms, p_error, p_raw_usage, p_unit, p_units
        ) WITH ORDINALITY AS u(
          id, win, model, provider, upstream_model, deployment_id, provider_key_id, endpoint, streamed,
          cancelled, finish_reason, status, prompt_tokens, completion_tokens, cached_tokens,
          cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, cost, price_version_id,
          latency_ms, error, raw_usage, unit, units, n
        )
        WHERE g.id = u.id AND g.status = 'pending'
        RETURNING g.id, g.hold, g.account_id, g.key_id, u.win, u.cost, u.n
    )
    SELECT * FROM done ORDER BY key_id COLLATE "C", n
  LOOP
    IF v_key IS DISTINCT FROM r.key_id THEN
      IF v_key IS NOT NULL THEN
        PERFORM nemo_settle_key(v_key, v_held, v_usage, v_window, v_in_window, v_moved);
      END IF;
      v_key := r.key_id;
      v_held := 0;
      v_usage := 0;
      v_window := r.win;
      v_in_window := 0;
      v_moved := FALSE;
    ELSIF r.win IS DISTINCT FROM v_window THEN
      v_window := r.win;
      v_in_window := 0;
      v_moved := TRUE;
    END IF;
    v_held := v_held + r.hold;
    v_usage := v_usage + r.cost;
    v_in_window := v_in_window + r.cost;
    v_accounts := v_accounts || r.account_id;
    v_holds := v_holds || r.hold;
    v_costs := v_costs || r.cost;
    RETURN NEXT r.id;
  END LOOP;
  IF v_key IS NOT NULL THEN
    PERFORM nemo_settle_key(v_key, v_held, v_usage, v_window, v_in_window, v_moved);
  END IF;
  FOR r IN
    SELECT a, SUM(h) AS held, SUM(c) AS cost FROM unnest(v_accounts, v_holds, v_costs) AS t(a, h, c)
      GROUP BY a ORDER BY a COLLATE "C"
  LOOP
    UPDATE accounts SET held = held - r.held, total_usage = total_usage + r.cost WHERE id = r.a;
  END LOOP;
  RETURN;
END $$;

-- A generation that becomes final is queued for its seal once per statement, from the rows the
-- statement changed (transition tables need a trigger without a column list, so the condition
-- on `status` moved into the query). Same rule as 0004's row trigger: from pending, error or
-- orphaned to anything else.
CREATE FUNCTION nemo_queue_final_generations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO seal_queue (kind, row_id)
    SELECT 'generation', n.id FROM final_new n JOIN final_old o ON o.id = n.id
      WHERE o.status IN ('pending', 'error', 'orphaned') AND n.status NOT IN ('pending', 'error', 'orphaned')
      ORDER BY n.id;
  RETURN NULL;
END
$$;

DROP TRIGGER generations_seal_final ON generations;
CREATE TRIGGER generations_seal_final AFTER UPDATE ON generations
  REFERENCING OLD TABLE AS final_old NEW TABLE AS final_new
  FOR EACH STATEMENT EXECUTE FUNCTION nemo_queue_final_generations();
