#!/usr/bin/env bash
# Starts the machine's PostgreSQL and prepares the role and database the atoll-store tests use.
#
# Idempotent: safe to run when PostgreSQL is already running and the role/database exist.
# Usage:   eval "$(.ci/pg-setup.sh)"      (or run it and copy the printed export line)
# Needs root (or the postgres user) for pg_ctlcluster and `su postgres`.
set -euo pipefail

# Only the export line may reach stdout (callers eval it): everything else, including what
# pg_ctlcluster prints (e.g. "Removed stale pid file"), goes to stderr.
exec 3>&1 1>&2

ROLE=atoll
PASSWORD=atoll
DATABASE=atoll_test
PORT=5432

log() { echo "pg-setup: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "pg_ctlcluster not found: install PostgreSQL (apt-get install postgresql)"
    exit 1
fi

VERSION=$(ls /etc/postgresql | sort -V | tail -1)
if [ -z "$VERSION" ]; then
    log "no cluster under /etc/postgresql"
    exit 1
fi

if pg_ctlcluster "$VERSION" main status >/dev/null 2>&1; then
    log "PostgreSQL $VERSION already running"
else
    log "starting PostgreSQL $VERSION"
    # The server outlives this script: it must not inherit fd 3, or the caller's `$(...)`
    # would wait for it to close forever.
    pg_ctlcluster "$VERSION" main start 3>&- </dev/null
fi

as_postgres() { su postgres -c "$1" 3>&-; }

# Wait until the server accepts connections (up to 30 s).
for _ in $(seq 1 60); do
    if as_postgres "psql -p $PORT -Atqc 'SELECT 1'" >/dev/null 2>&1; then
        break
    fi
    sleep 0.5
done
if ! as_postgres "psql -p $PORT -Atqc 'SELECT 1'" >/dev/null 2>&1; then
    log "PostgreSQL did not accept connections in 30 s; see /var/log/postgresql/postgresql-$VERSION-main.log"
    exit 1
fi

if [ "$(as_postgres "psql -p $PORT -Atqc \"SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'\"")" != "1" ]; then
    log "creating role $ROLE"
    as_postgres "psql -p $PORT -qc \"CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD' CREATEDB;\""
else
    # Keep the password and CREATEDB in a known state (tests create a database per test).
    as_postgres "psql -p $PORT -qc \"ALTER ROLE $ROLE LOGIN PASSWORD '$PASSWORD' CREATEDB;\""
fi

if [ "$(as_postgres "psql -p $PORT -Atqc \"SELECT 1 FROM pg_database WHERE datname = '$DATABASE'\"")" != "1" ]; then
    log "creating database $DATABASE"
    as_postgres "psql -p $PORT -qc \"CREATE DATABASE $DATABASE OWNER $ROLE;\""
fi

URL="postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"

# Check the password login over TCP, as the tests will do it.
for _ in $(seq 1 20); do
    if PGPASSWORD=$PASSWORD psql -h 127.0.0.1 -p $PORT -U $ROLE -d $DATABASE -Atqc 'SELECT 1' >/dev/null 2>&1; then
        log "ready"
        echo "export ATOLL_TEST_POSTGRES_URL=$URL" >&3
        exit 0
    fi
    sleep 0.5
done
log "could not log in as $ROLE over TCP at 127.0.0.1:$PORT"
exit 1
