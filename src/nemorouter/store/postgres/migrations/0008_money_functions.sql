-- Reserve and settle as server-side functions: each is one round trip instead of five or six, so
-- a key's and an account's rows stay locked for the microseconds the statements take, not for
-- several network round trips (requests on one hot key queue on exactly those row locks). The
-- statements, their order (key before account) and their conditions are those the store ran
-- one by one before (store/postgres_money.py); SQLite has no server, so no counterpart.

-- 'ok', or why nothing was held: 'key' (revoked, disabled, expired or over its limit),
-- 'account' (balance) or 'duplicate' (the request id has a record). A refusal after the key was
-- held raises, so the whole statement is rolled back and nothing stays held.
CREATE FUNCTION nemo_reserve(
  p_amount BIGINT, p_key TEXT, p_now TEXT, p_window TEXT, p_account TEXT, p_id TEXT, p_model TEXT,
  p_endpoint TEXT, p_streamed BOOLEAN, p_owner TEXT, p_created TEXT
) RETURNS TEXT LANGUAGE plpgsql AS $$
BEGIN
  -- Not waited to durability: a hold lost in a crash of the database server is one no charge
  -- can follow (settle finds no pending record), so the cap is never passed.
  PERFORM set_config('synchronous_commit', 'off', true);
  UPDATE api_keys SET held = held + p_amount
    WHERE id = p_key AND revoked_at IS NULL AND NOT disabled
      AND (expires_at IS NULL OR expires_at > p_now)
      AND (limit_pico IS NULL
           OR (CASE WHEN window_start = p_window THEN window_usage ELSE 0 END) + held + p_amount <= limit_pico);
  IF NOT FOUND THEN
    RETURN 'key';
  END IF;
  UPDATE accounts SET held = held + p_amount
    WHERE id = p_account AND total_credits - total_usage - held >= p_amount;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'nemo_refused:account';
  END IF;
  INSERT INTO generations (id, account_id, key_id, model, endpoint, streamed, status, hold, owner, created_at)
    VALUES (p_id, p_account, p_key, p_model, p_endpoint, p_streamed, 'pending', p_amount, p_owner, p_created)
    ON CONFLICT (id) DO NOTHING;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'nemo_refused:duplicate';
  END IF;
  RETURN 'ok';
END $$;

-- Replace the hold with the exact charge and complete the record; false when the request has no
-- open hold (settled, released or recovered already). The outcome columns are those of
-- `_OUTCOME_COLUMNS` in store/postgres_money.py, in that order.
CREATE FUNCTION nemo_settle(
  p_id TEXT, p_window TEXT,
  p_model TEXT, p_provider TEXT, p_upstream_model TEXT, p_deployment_id TEXT, p_provider_key_id TEXT,
  p_endpoint TEXT, p_streamed BOOLEAN, p_cancelled BOOLEAN, p_finish_reason TEXT, p_status TEXT,
  p_prompt_tokens BIGINT, p_completion_tokens BIGINT, p_cached_tokens BIGINT, p_cache_write_tokens BIGINT,
  p_cache_write_1h_tokens BIGINT, p_reasoning_tokens BIGINT, p_cost BIGINT, p_price_version_id BIGINT,
  p_latency_ms BIGINT, p_error TEXT, p_raw_usage TEXT
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
      error = p_error, raw_usage = p_raw_usage
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
