-- Settle many requests in one statement and one transaction: one round trip and one WAL flush for
-- every settle a replica has waiting, as SQLite's group commit puts every write of an event-loop
-- iteration in one transaction (store/postgres/settle_batch.py gathers them). Each settle does
-- exactly what nemo_settle (0008) does; rows are locked in the one order of store/postgres/conn.py:
-- the requests' own generation rows first, then their keys in id order, then their accounts in
-- id order, so batches of several replicas never wait on each other in a cycle.

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
