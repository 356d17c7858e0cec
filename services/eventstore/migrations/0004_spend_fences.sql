-- Many engines, one truth (ADR 0073). Every engine judges spend limits and policy against
-- its own in-memory view of the log; an append now carries fences that fail it when that view
-- is stale, so a decision taken on another engine's blind spot is never committed.
--
-- spend_fences: per caller, the position of the last event of the last batch that changed or
-- judged that caller's spend (a reservation, release or settlement, or a policy verdict). An
-- engine passes, per caller its batch touches, the position up to which it has folded that
-- caller's spend; a row beyond it means another engine moved that caller's spend unseen.

CREATE TABLE spend_fences (
    caller_id text   PRIMARY KEY,
    position  bigint NOT NULL
);
ALTER TABLE spend_fences OWNER TO corridor_owner;
REVOKE ALL ON spend_fences FROM PUBLIC;
GRANT SELECT ON spend_fences TO corridor_engine, corridor_auditor;

DROP FUNCTION append_events(text[], integer[], uuid[], text[], integer[], jsonb[], jsonb[],
    bigint[], bytea[], text[], text[], text[], text[]);

-- As in 0001, plus the fences. Both are checked after the head row's lock is taken: every
-- append holds that lock until it commits, so what the checks read is every commit before
-- this one, and nothing can commit between the check and this append.
--   p_fence_callers/p_fence_known: refuse (CR002) if a caller's fence is beyond what the
--     engine knows; then move each named caller's fence to this batch's last position.
--   p_policy_stream/p_policy_known: refuse (CR003) if the policy stream has a version beyond
--     the one the engine judged with (a policy activated by another engine).
CREATE FUNCTION append_events(
    p_stream_ids       text[],
    p_stream_versions  integer[],
    p_event_ids        uuid[],
    p_types            text[],
    p_schema_versions  integer[],
    p_payloads         jsonb[],
    p_metadata         jsonb[],
    p_recorded_at_ms   bigint[],
    p_bodies           bytea[],
    p_claim_callers    text[],
    p_claim_keys       text[],
    p_claim_intents    text[],
    p_claim_prints     text[],
    p_fence_callers    text[] DEFAULT '{}',
    p_fence_known      bigint[] DEFAULT '{}',
    p_policy_stream    text DEFAULT NULL,
    p_policy_known     integer DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n          integer := coalesce(array_length(p_event_ids, 1), 0);
    claimed    integer;
    stale      integer;
    head_pos   bigint;
    head_hash  bytea;
    pos        bigint;
    hashes     bytea[] := '{}';
    prevs      bytea[] := '{}';
    i          integer;
BEGIN
    IF coalesce(array_length(p_claim_keys, 1), 0) > 0 THEN
        -- Claims are inserted in key order so two batches cannot deadlock on each other.
        WITH ins AS (
            INSERT INTO idempotency_keys (caller_id, idempotency_key, intent_id, fingerprint)
            SELECT c, k, i2, f
              FROM unnest(p_claim_callers, p_claim_keys, p_claim_intents, p_claim_prints)
                   AS t(c, k, i2, f)
             ORDER BY c, k
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT count(*) INTO claimed FROM ins;
        IF claimed < array_length(p_claim_keys, 1) THEN
            RAISE EXCEPTION 'idempotency claim conflict' USING ERRCODE = 'CR001';
        END IF;
    END IF;
    IF n = 0 THEN
        RETURN NULL;
    END IF;

    SELECT position, hash INTO head_pos, head_hash FROM event_log_head FOR UPDATE;

    IF p_policy_stream IS NOT NULL AND EXISTS (
        SELECT 1 FROM events
         WHERE stream_id = p_policy_stream AND stream_version > p_policy_known
    ) THEN
        RAISE EXCEPTION 'the policy changed since this batch was judged' USING ERRCODE = 'CR003';
    END IF;
    IF coalesce(array_length(p_fence_callers, 1), 0) > 0 THEN
        SELECT count(*) INTO stale
          FROM spend_fences f
          JOIN unnest(p_fence_callers, p_fence_known) AS t(c, k) ON f.caller_id = t.c
         WHERE f.position > t.k;
        IF stale > 0 THEN
            RAISE EXCEPTION 'spend of % caller(s) changed since this batch was judged', stale
                USING ERRCODE = 'CR002';
        END IF;
    END IF;

    pos := head_pos;
    FOR i IN 1..n LOOP
        pos := pos + 1;
        prevs := prevs || head_hash;
        head_hash := sha256(head_hash || int8send(pos) || p_bodies[i]);
        hashes := hashes || head_hash;
    END LOOP;

    INSERT INTO events (position, event_id, stream_id, stream_version, type, schema_version,
                        payload, metadata, recorded_at, prev_hash, hash)
    SELECT head_pos + t.ord, t.eid, t.sid, t.sv, t.ty, t.sch, t.pl, t.md,
           timestamptz 'epoch' + t.ms * interval '1 millisecond', t.prev, t.h
      FROM unnest(p_event_ids, p_stream_ids, p_stream_versions, p_types, p_schema_versions,
                  p_payloads, p_metadata, p_recorded_at_ms, prevs, hashes)
           WITH ORDINALITY AS t(eid, sid, sv, ty, sch, pl, md, ms, prev, h, ord);

    IF coalesce(array_length(p_fence_callers, 1), 0) > 0 THEN
        INSERT INTO spend_fences (caller_id, position)
        SELECT DISTINCT c, pos FROM unnest(p_fence_callers) AS c
        ON CONFLICT (caller_id) DO UPDATE SET position = EXCLUDED.position;
    END IF;

    UPDATE event_log_head SET position = pos, hash = head_hash;
    PERFORM pg_notify('corridor_events', pos::text);
    RETURN head_pos + 1;
END $$;

ALTER FUNCTION append_events(text[], integer[], uuid[], text[], integer[], jsonb[], jsonb[],
    bigint[], bytea[], text[], text[], text[], text[], text[], bigint[], text, integer)
    OWNER TO corridor_owner;
REVOKE ALL ON FUNCTION append_events(text[], integer[], uuid[], text[], integer[], jsonb[],
    jsonb[], bigint[], bytea[], text[], text[], text[], text[], text[], bigint[], text, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_events(text[], integer[], uuid[], text[], integer[], jsonb[],
    jsonb[], bigint[], bytea[], text[], text[], text[], text[], text[], bigint[], text, integer)
    TO corridor_engine;
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION append_events(text[], integer[], uuid[], text[], integer[], jsonb[],'
        ' jsonb[], bigint[], bytea[], text[], text[], text[], text[], text[], bigint[], text,'
        ' integer) SECURITY DEFINER SET search_path = pg_catalog, %I, pg_temp',
        current_schema());
END $$;
