#!/bin/sh
# Creates (once) the role and database labelbridge's replicas share on the compose PostgreSQL
# server, beside Label Studio's; run by the one-shot `bridge-db` service of the "ha" profile.
# Idempotent: an existing role gets the current LABELBRIDGE_DB_PASSWORD. labelbridge creates
# and migrates its own tables in that database at start.
# Needs PGHOST, PGUSER, PGPASSWORD, PGDATABASE (a superuser's connection) and BRIDGE_PASSWORD.
set -eu
: "${BRIDGE_PASSWORD:?set LABELBRIDGE_DB_PASSWORD in .env}"
psql -v ON_ERROR_STOP=1 -q -v pw="$BRIDGE_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE labelbridge LOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'labelbridge') \gexec
SELECT format('ALTER ROLE labelbridge LOGIN PASSWORD %L', :'pw') \gexec
SELECT 'CREATE DATABASE labelbridge OWNER labelbridge'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'labelbridge') \gexec
REVOKE ALL ON DATABASE labelbridge FROM PUBLIC;
GRANT ALL ON DATABASE labelbridge TO labelbridge;
SQL
echo "bridge-db: database labelbridge (role labelbridge) is ready"
