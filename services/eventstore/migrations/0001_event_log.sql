-- The append-only event log, its hash chain, idempotency claims and consumer checkpoints.

CREATE TABLE event_log_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL,
    hash      bytea   NOT NULL
);
INSERT INTO event_log_head (position, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

CREATE TABLE events (
    position       bigint      PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    stream_id      text        NOT NULL,
    stream_version integer     NOT NULL CHECK (stream_version >= 1),
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL,
    -- Optimistic concurrency: two writers cannot both append version N of a stream.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

CREATE FUNCTION refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

CREATE TABLE idempotency_keys (
    caller_id       text        NOT NULL,
    idempotency_key text        NOT NULL,
    intent_id       text        NOT NULL,
    fingerprint     text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller_id, idempotency_key)
);

-- Where each consumer (the relay, projections) has got to in the log.
CREATE TABLE checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Append a batch of events (and idempotency claims) in one statement and one transaction.
--
-- Global positions are assigned while holding the head row's lock, which is only released at
-- commit. The next writer therefore gets position N+1 only after N is committed, so positions
-- become visible in commit order and a reader tailing "position > X" never skips a late commit
-- (the gap problem of sequence-based stores). Positions are gapless: a rollback also rolls back
-- the head.
--
-- Each hash is sha256(prev_hash || position as 8 bytes big-endian || body), where body is the
-- canonical JSON the writer computed (see services/eventstore/hashing.py).
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
    p_claim_prints     text[]
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n          integer := coalesce(array_length(p_event_ids, 1), 0);
    claimed    integer;
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

    UPDATE event_log_head SET position = pos, hash = head_hash;
    PERFORM pg_notify('corridor_events', pos::text);
    RETURN head_pos + 1;
END $$;
