#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialized (the postgres
# image runs /docker-entrypoint-initdb.d/*.sh as the superuser). Creates the
# two roles of docs/POSTGRES.md and the database; `idflow migrate` (the
# migrate service) then creates the schema as the owner and grants the app
# role what it needs.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
	-v owner_pw="$IDFLOW_DB_OWNER_PASSWORD" -v app_pw="$IDFLOW_DB_APP_PASSWORD" <<'SQL'
CREATE ROLE idflow_owner LOGIN PASSWORD :'owner_pw' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE idflow_app   LOGIN PASSWORD :'app_pw'   NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE DATABASE idflow OWNER idflow_owner;
REVOKE ALL ON DATABASE idflow FROM PUBLIC;
GRANT CONNECT ON DATABASE idflow TO idflow_app;
SQL
