#!/bin/sh
# Runs once, as the superuser, when the pgdata volume is first initialised (the postgres image
# runs /docker-entrypoint-initdb.d/*). It creates the two roles findlora uses and nothing else:
#   findlora_migrate  owns the database and its schema; `findlora db migrate` connects as it
#   findlora_app      the service and the worker; DML only, granted by `findlora db migrate`
# and the pgvector extension, which only a superuser may create. Passwords are secret files.
set -eu
secrets="${FINDLORA_SECRETS_DIR:-/run/secrets}"
migrate_password="$(cat "$secrets/postgres_migrate_password")"
app_password="$(cat "$secrets/postgres_app_password")"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
     -v migrate_password="$migrate_password" -v app_password="$app_password" <<'SQL'
CREATE ROLE findlora_migrate LOGIN PASSWORD :'migrate_password';
CREATE ROLE findlora_app LOGIN PASSWORD :'app_password';
CREATE DATABASE findlora OWNER findlora_migrate;
-- Only findlora's roles may connect (PUBLIC may by default).
REVOKE CONNECT, TEMPORARY ON DATABASE findlora FROM PUBLIC;
GRANT CONNECT ON DATABASE findlora TO findlora_app;
\connect findlora
CREATE EXTENSION IF NOT EXISTS vector;
SQL
