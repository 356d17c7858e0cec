-- Read models (ADR 0152). Every row here is derived from the log and can be rebuilt by replay;
-- nothing here is a source of truth, so the engine role may write it.
--
-- projection_rows: one JSON document per key of a projection (an intent, a reconciliation
-- item), with the few columns the readers filter on. A rebuild writes its rows under the name
-- '<projection>#shadow' and swaps them in with one transaction (delete the live rows, rename
-- the shadow's), so readers see the old rows or the new ones, never a mix.
-- projection_checkpoints: the position each projection has applied up to, written in the same
-- transaction as the rows it covers, and the projection's version (a new fold means rebuild).

CREATE TABLE projection_rows (
    projection text   NOT NULL,
    key        text   NOT NULL,
    doc        jsonb  NOT NULL,
    sort_ms    bigint NOT NULL,
    caller_id  text,
    corridor   text,
    open       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (projection, key)
);
CREATE INDEX projection_rows_time ON projection_rows (projection, sort_ms);
CREATE INDEX projection_rows_caller ON projection_rows (projection, caller_id, sort_ms)
    WHERE caller_id IS NOT NULL;
CREATE INDEX projection_rows_corridor ON projection_rows (projection, corridor, sort_ms)
    WHERE corridor IS NOT NULL;
CREATE INDEX projection_rows_open ON projection_rows (projection) WHERE open;

CREATE TABLE projection_checkpoints (
    projection text        PRIMARY KEY,
    position   bigint      NOT NULL,
    version    integer     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE projection_rows OWNER TO corridor_owner;
ALTER TABLE projection_checkpoints OWNER TO corridor_owner;
REVOKE ALL ON projection_rows, projection_checkpoints FROM PUBLIC;
GRANT SELECT ON projection_rows, projection_checkpoints TO corridor_engine, corridor_auditor;
GRANT INSERT, UPDATE, DELETE ON projection_rows, projection_checkpoints TO corridor_engine;
