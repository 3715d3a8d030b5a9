-- Give a hold back exactly, as if it had never been reserved: the pending record deleted, the
-- key's and the account's `held` lowered by its amount. For a request whose rate limits (decided
-- in Redis, at the same time as the reserve: service/admission.py) refused it after its hold was
-- taken. False, changing nothing, when the request has no open hold (recovered meanwhile).
-- Locks in the one order (store/postgres/conn.py): its own generation row, the key, the account.
CREATE FUNCTION nemo_unreserve(p_id TEXT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
  v_hold BIGINT;
  v_account TEXT;
  v_key TEXT;
BEGIN
  -- Not waited to durability, as the reserve it undoes: lost in a crash of the database server,
  -- the hold stays open and is recovered with its owner's.
  PERFORM set_config('synchronous_commit', 'off', true);
  DELETE FROM generations WHERE id = p_id AND status = 'pending'
    RETURNING hold, account_id, key_id INTO v_hold, v_account, v_key;
  IF NOT FOUND THEN
    RETURN FALSE;
  END IF;
  UPDATE api_keys SET held = held - v_hold WHERE id = v_key;
  UPDATE accounts SET held = held - v_hold WHERE id = v_account;
  RETURN TRUE;
END $$;
