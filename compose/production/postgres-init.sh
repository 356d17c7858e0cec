#!/bin/sh
# The three Corridor roles and the database (docs/operations/postgres-roles.md), run once by
# the postgres image on an empty data directory, with the passwords from the secret files.
# psql's variables keep them out of the command line; statement logging is off during init.
set -eu
psql -v ON_ERROR_STOP=1 --username postgres \
    -v owner_pw="$(cat /run/secrets/postgres_owner_password)" \
    -v engine_pw="$(cat /run/secrets/postgres_engine_password)" \
    -v auditor_pw="$(cat /run/secrets/postgres_auditor_password)" <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE corridor_owner   LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'owner_pw';
CREATE ROLE corridor_engine  LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'engine_pw';
CREATE ROLE corridor_auditor LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'auditor_pw';
ALTER ROLE corridor_auditor SET default_transaction_read_only = on;
CREATE DATABASE corridor OWNER corridor_owner;
REVOKE ALL ON DATABASE corridor FROM PUBLIC;
GRANT CONNECT ON DATABASE corridor TO corridor_engine, corridor_auditor;
SQL
