-- Reserve or settle many requests in one statement and one transaction: one round trip (and, for
-- settles, one WAL flush) for every reserve or settle a replica has waiting, as SQLite's group
-- commit puts every write of an event-loop iteration in one transaction (store/postgres/batches.py
-- gathers them). Each does exactly what nemo_reserve or nemo_settle (0008) does for one request;
-- rows are locked in the one order of store/postgres/conn.py (keys before accounts, several rows
-- of one table in id order), so batches of several replicas never wait on each other in a cycle.

-- One outcome per request, in order, as nemo_reserve's ('ok', 'key', 'account', 'duplicate'):
-- the requests are decided one after the other as if each ran alone, each seeing the holds of
-- those before it. Every key, then every account of the batch is locked first, in id order, so
-- the decisions take no lock out of order; a refusal after the key was held gives that hold
-- (and the account's) back at once, leaving what a rolled-back nemo_reserve leaves.
CREATE FUNCTION nemo_reserve_many(
  p_amount BIGINT[], p_key TEXT[], p_now TEXT[], p_window TEXT[], p_account TEXT[], p_id TEXT[],
  p_model TEXT[], p_endpoint TEXT[], p_streamed BOOLEAN[], p_owner TEXT[], p_created TEXT[]
) RETURNS TEXT[] LANGUAGE plpgsql AS $$
DECLARE
  v_out TEXT[] := '{}';
BEGIN
  -- Not waited to durability, as nemo_reserve: a hold lost in a crash of the database server is
  -- one no charge can follow.
  PERFORM set_config('synchronous_commit', 'off', true);
  PERFORM 1 FROM api_keys WHERE id = ANY(p_key) ORDER BY id COLLATE "C" FOR UPDATE;
  PERFORM 1 FROM accounts WHERE id = ANY(p_account) ORDER BY id COLLATE "C" FOR UPDATE;
  FOR i IN 1 .. coalesce(array_length(p_id, 1), 0) LOOP
    UPDATE api_keys SET held = held + p_amount[i]
      WHERE id = p_key[i] AND revoked_at IS NULL AND NOT disabled
        AND (expires_at IS NULL OR expires_at > p_now[i])
        AND (limit_pico IS NULL
             OR (CASE WHEN window_start = p_window[i] THEN window_usage ELSE 0 END) + held + p_amount[i]
                <= limit_pico);
    IF NOT FOUND THEN
      v_out := v_out || 'key'::TEXT;
      CONTINUE;
    END IF;
    UPDATE accounts SET held = held + p_amount[i]
      WHERE id = p_account[i] AND total_credits - total_usage - held >= p_amount[i];
    IF NOT FOUND THEN
      UPDATE api_keys SET held = held - p_amount[i] WHERE id = p_key[i];
      v_out := v_out || 'account'::TEXT;
      CONTINUE;
    END IF;
    INSERT INTO generations (id, account_id, key_id, model, endpoint, streamed, status, hold, owner, created_at)
      VALUES (p_id[i], p_account[i], p_key[i], p_model[i], p_endpoint[i], p_streamed[i], 'pending',
              p_amount[i], p_owner[i], p_created[i])
      ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
      UPDATE api_keys SET held = held - p_amount[i] WHERE id = p_key[i];
      UPDATE accounts SET held = held - p_amount[i] WHERE id = p_account[i];
      v_out := v_out || 'duplicate'::TEXT;
      CONTINUE;
    END IF;
    v_out := v_out || 'ok'::TEXT;
  END LOOP;
  RETURN v_out;
END $$;

-- The ids that had an open hold and are now settled; the others (settled, released or
-- recovered already) changed nothing. The arrays are parallel: one element per settle, the
-- outcome columns in nemo_settle's order. An id given twice is settled once, by one of its
-- outcomes: the caller never sends one twice.
CREATE FUNCTION nemo_settle_many(
  p_id TEXT[], p_window TEXT[],
  p_model TEXT[], p_provider TEXT[], p_upstream_model TEXT[], p_deployment_id TEXT[], p_provider_key_id TEXT[],
  p_endpoint TEXT[], p_streamed BOOLEAN[], p_cancelled BOOLEAN[], p_finish_reason TEXT[], p_status TEXT[],
  p_prompt_tokens BIGINT[], p_completion_tokens BIGINT[], p_cached_tokens BIGINT[], p_cache_write_tokens BIGINT[],
  p_cache_write_1h_tokens BIGINT[], p_reasoning_tokens BIGINT[], p_cost BIGINT[], p_price_version_id BIGINT[],
  p_latency_ms BIGINT[], p_error TEXT[], p_raw_usage TEXT[]
) RETURNS SETOF TEXT LANGUAGE plpgsql AS $$
DECLARE
  r RECORD;
  v_accounts TEXT[] := '{}';
  v_holds BIGINT[] := '{}';
  v_costs BIGINT[] := '{}';
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
          error = u.error, raw_usage = u.raw_usage
        FROM unnest(
          p_id, p_window, p_model, p_provider, p_upstream_model, p_deployment_id, p_provider_key_id,
          p_endpoint, p_streamed, p_cancelled, p_finish_reason, p_status, p_prompt_tokens,
          p_completion_tokens, p_cached_tokens, p_cache_write_tokens, p_cache_write_1h_tokens,
          p_reasoning_tokens, p_cost, p_price_version_id, p_latency_ms, p_error, p_raw_usage
        ) WITH ORDINALITY AS u(
          id, win, model, provider, upstream_model, deployment_id, provider_key_id, endpoint, streamed,
          cancelled, finish_reason, status, prompt_tokens, completion_tokens, cached_tokens,
          cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, cost, price_version_id,
          latency_ms, error, raw_usage, n
        )
        WHERE g.id = u.id AND g.status = 'pending'
        RETURNING g.id, g.hold, g.account_id, g.key_id, u.win, u.cost, u.n
    )
    SELECT * FROM done ORDER BY key_id COLLATE "C", n
  LOOP
    -- One key's settles in the order given: each moves the key's window as nemo_settle would.
    UPDATE api_keys SET held = held - r.hold, usage = usage + r.cost,
        window_usage = (CASE WHEN window_start = r.win THEN window_usage ELSE 0 END) + r.cost,
        window_start = r.win
      WHERE id = r.key_id;
    v_accounts := v_accounts || r.account_id;
    v_holds := v_holds || r.hold;
    v_costs := v_costs || r.cost;
    RETURN NEXT r.id;
  END LOOP;
  FOR r IN
    SELECT a, SUM(h) AS held, SUM(c) AS cost FROM unnest(v_accounts, v_holds, v_costs) AS t(a, h, c)
      GROUP BY a ORDER BY a COLLATE "C"
  LOOP
    UPDATE accounts SET held = held - r.held, total_usage = total_usage + r.cost WHERE id = r.a;
  END LOOP;
  RETURN;
END $$;
