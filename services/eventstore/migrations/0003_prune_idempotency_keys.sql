-- Idempotency claims are pruned after a horizon (ADR 0079). The log stays append-only: only
-- claims are deleted, and a submit repeated after its claim is gone still finds its intent,
-- whose id derives from caller and key (ADR 0002): the append meets the stream's first
-- version and the engine answers from the log.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- At most p_rows_max claims older than p_horizon_s seconds, oldest first; returns how many.
-- Runs as the owner: the engine holds no DELETE on the table, only this bounded, age-only
-- delete (it cannot remove a fresh claim, nor any row of any other table).
CREATE FUNCTION prune_idempotency_keys(p_horizon_s bigint, p_rows_max integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    removed integer;
BEGIN
    IF p_horizon_s < 3600 OR p_rows_max < 1 OR p_rows_max > 100000 THEN
        RAISE EXCEPTION 'prune_idempotency_keys: horizon at least 3600 s, 1 to 100000 rows'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH old AS (
        SELECT caller_id, idempotency_key FROM idempotency_keys
         WHERE created_at < now() - p_horizon_s * interval '1 second'
         ORDER BY created_at
         LIMIT p_rows_max
           FOR UPDATE SKIP LOCKED
    )
    DELETE FROM idempotency_keys k USING old
     WHERE k.caller_id = old.caller_id AND k.idempotency_key = old.idempotency_key;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END $$;

ALTER FUNCTION prune_idempotency_keys(bigint, integer) OWNER TO corridor_owner;
REVOKE ALL ON FUNCTION prune_idempotency_keys(bigint, integer) FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION prune_idempotency_keys(bigint, integer)'
        ' SECURITY DEFINER SET search_path = pg_catalog, %I, pg_temp',
        current_schema());
END $$;
GRANT EXECUTE ON FUNCTION prune_idempotency_keys(bigint, integer) TO corridor_engine;
