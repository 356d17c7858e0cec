-- Least privilege (ADR 0064). corridor_owner owns every object and runs migrations;
-- corridor_engine reads the log and appends to it only through append_events;
-- corridor_auditor reads. A superuser creates the three roles first
-- (services/eventstore/roles.py, or the SQL in docs/operations/postgres-roles.md).

DO $$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(r, ', ') INTO missing
      FROM unnest(ARRAY['corridor_owner', 'corridor_engine', 'corridor_auditor']) AS r
     WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'role(s) % do not exist: a superuser creates them before this migration',
            missing
            USING ERRCODE = 'undefined_object', HINT = 'see docs/operations/postgres-roles.md';
    END IF;
END $$;

-- A log migrated before this file by a superuser passes to the owner role here; when
-- corridor_owner runs it, each line is a no-op.
ALTER TABLE events OWNER TO corridor_owner;
ALTER TABLE event_log_head OWNER TO corridor_owner;
ALTER TABLE idempotency_keys OWNER TO corridor_owner;
ALTER TABLE checkpoints OWNER TO corridor_owner;
ALTER TABLE schema_migrations OWNER TO corridor_owner;
ALTER FUNCTION refuse_event_change() OWNER TO corridor_owner;
ALTER FUNCTION append_events(text[], integer[], uuid[], text[], integer[], jsonb[], jsonb[],
    bigint[], bytea[], text[], text[], text[], text[]) OWNER TO corridor_owner;

-- Nobody gets anything by default, not even EXECUTE on a function.
REVOKE ALL ON events, event_log_head, idempotency_keys, checkpoints, schema_migrations
    FROM PUBLIC;
REVOKE ALL ON FUNCTION refuse_event_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION append_events(text[], integer[], uuid[], text[], integer[], jsonb[],
    jsonb[], bigint[], bytea[], text[], text[], text[], text[]) FROM PUBLIC;

-- Both reading roles see every table. The engine reads schema_migrations to learn, at start,
-- that nothing is pending.
GRANT SELECT ON events, event_log_head, idempotency_keys, checkpoints, schema_migrations
    TO corridor_engine, corridor_auditor;

-- The engine writes the log only through append_events, which runs as the owner: it takes the
-- head row's lock, chains the hashes and inserts in one statement (ADR 0001). So the engine has
-- no INSERT on events or idempotency_keys and no UPDATE on the head row: it cannot write a row
-- outside the chain, move the head, or change a committed event.
GRANT EXECUTE ON FUNCTION append_events(text[], integer[], uuid[], text[], integer[], jsonb[],
    jsonb[], bigint[], bytea[], text[], text[], text[], text[]) TO corridor_engine;
-- A SECURITY DEFINER function must not resolve names through the caller's search_path, or the
-- caller could shadow a table with a temporary one: the log's schema, then pg_temp last.
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION append_events(text[], integer[], uuid[], text[], integer[], jsonb[],'
        ' jsonb[], bigint[], bytea[], text[], text[], text[], text[])'
        ' SECURITY DEFINER SET search_path = pg_catalog, %I, pg_temp',
        current_schema());
END $$;

-- The relay's checkpoint is the engine's only row it may change (an upsert).
GRANT INSERT, UPDATE ON checkpoints TO corridor_engine;

-- Objects later migrations create: the auditor reads every new table, and no new function is
-- callable until a migration grants it. The engine's grants are always written out by hand.
ALTER DEFAULT PRIVILEGES FOR ROLE corridor_owner GRANT SELECT ON TABLES TO corridor_auditor;
ALTER DEFAULT PRIVILEGES FOR ROLE corridor_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
