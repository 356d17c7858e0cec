-- Payees' personal data (ADR 0270): names and contact details, outside the append-only log so
-- that they can be erased. One row per payee id; the log's events carry only the id. Nothing
-- here is derived from the log, and no projection, export or audit bundle reads it.

CREATE TABLE payee_personal_data (
    payee_id   text        PRIMARY KEY,
    name       text        NOT NULL,
    email      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Limits as in the CLI (services/payees/directory.py), so another writer cannot store more.
    CONSTRAINT payee_id_shape CHECK (payee_id ~ '^payee-[0-9a-f-]{36}$'),
    CONSTRAINT name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT email_length CHECK (email IS NULL OR char_length(email) BETWEEN 3 AND 254)
);

ALTER TABLE payee_personal_data OWNER TO corridor_owner;
REVOKE ALL ON payee_personal_data FROM PUBLIC;
-- 0002's default privileges give the auditor SELECT on every new table: not on this one.
-- Auditors see payee ids in the log, never names.
REVOKE ALL ON payee_personal_data FROM corridor_auditor;
-- The engine's role (what the CLI of a dev stack connects as) writes and erases rows.
GRANT SELECT, INSERT, UPDATE, DELETE ON payee_personal_data TO corridor_engine;
