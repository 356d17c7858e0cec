-- The three Corridor roles and the database (docs/operations/postgres-roles.md, ADR 0064), run
-- once by the postgres image on an empty data directory. REGTEST ONLY: the passwords are
-- written here in the clear; compose/production.yaml sets them from secret files.
CREATE ROLE corridor_owner   LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD 'regtest-owner';
CREATE ROLE corridor_engine  LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD 'regtest-engine';
CREATE ROLE corridor_auditor LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD 'regtest-auditor';
ALTER ROLE corridor_auditor SET default_transaction_read_only = on;
CREATE DATABASE corridor OWNER corridor_owner;
REVOKE ALL ON DATABASE corridor FROM PUBLIC;
GRANT CONNECT ON DATABASE corridor TO corridor_engine, corridor_auditor;
