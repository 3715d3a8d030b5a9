-- Models priced per unit (an image, a character, a second of audio, a search): what each request
-- was billed in and how many (money/usage.py). NULL and 0 for every request priced per token.
ALTER TABLE generations ADD COLUMN unit TEXT;
ALTER TABLE generations ADD COLUMN units BIGINT NOT NULL DEFAULT 0;

-- nemo_settle and nemo_settle_many with the two unit columns last: new overloads beside the
-- old ones (migrations 0008, 0010), which processes not yet upgraded keep calling during a
-- rolling upgrade (their settles leave the unit columns at NULL and 0, as they should).
CREATE FUNCTION nemo_settle(
  p_id TEXT, p_window TEXT,
  p_model TEXT, p_provider TEXT, p_upstream_model TEXT, p_deployment_id TEXT, p_provider_key_id TEXT,
  p_endpoint TEXT, p_streamed BOOLEAN, p_cancelled BOOLEAN, p_finish_reason TEXT, p_status TEXT,
  p_prompt_tokens BIGINT, p_completion_tokens BIGINT, p_cached_tokens BIGINT, p_cache_write_tokens BIGINT,
  p_cache_write_1h_tokens BIGINT, p_reasoning_tokens BIGINT, p_cost BIGINT, p_price_version_id BIGINT,
  p_latency_ms BIGINT, p_error TEXT, p_raw_usage TEXT, p_unit TEXT, p_units BIGINT
) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
  v_hold BIGINT;
  v_account TEXT;
  v_key TEXT;
BEGIN
  UPDATE generations SET
      model = p_model, provider = p_provider, upstream_model = p_upstream_model,
      deployment_id = p_deployment_id, provider_key_id = p_provider_key_id, endpoint = p_endpoint,
      streamed = p_streamed, cancelled = p_cancelled, finish_reason = p_finish_reason, status = p_status,
      prompt_tokens = p_prompt_tokens, completion_tokens = p_completion_tokens,
      cached_tokens = p_cached_tokens, cache_write_tokens = p_cache_write_tokens,
      cache_write_1h_tokens = p_cache_write_1h_tokens, reasoning_tokens = p_reasoning_tokens,
      cost = p_cost, price_version_id = p_price_version_id, latency_ms = p_latency_ms,
      error = p_error, raw_usage = p_raw_usage, unit = p_unit, units = p_units
    WHERE id = p_id AND status = 'pending'
    RETURNING hold, account_id, key_id INTO v_hold, v_account, v_key;
  IF NOT FOUND THEN
    RETURN FALSE;
  END IF;
  UPDATE api_keys SET held = held - v_hold, usage = usage + p_cost,
      window_usage = (CASE WHEN window_start = p_window THEN window_usage ELSE 0 END) + p_cost,
      window_start = p_window
    WHERE id = v_key;
  UPDATE accounts SET held = held - v_hold, total_usage = total_usage + p_cost WHERE id = v_account;
  RETURN TRUE;
END $$;

CREATE FUNCTION nemo_settle_many(
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
