#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on a loopback port for the tests; print its URL on stdout.
#   eval "$(bash scripts/test-postgres.sh start)"   exports SITESENTRY_TEST_PG_URL and SITESENTRY_TEST_PG_DIR
#   bash scripts/test-postgres.sh stop DIR
# Debian's `postgresql` package provides the binaries; the cluster runs as the `postgres` user because
# initdb refuses root, and listens on 127.0.0.1 only.
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-}" in
  start)
    dir=$(mktemp -d /tmp/sitesentry-pg.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    port=${PGPORT_TEST:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >&2 \
      || { cat "$dir/server.log" >&2; exit 1; }
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres sitesentry_test
    echo "export SITESENTRY_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$port/sitesentry_test"
    echo "export SITESENTRY_TEST_PG_DIR=$dir"
    ;;
  stop)
    dir=${2:?usage: stop DIR}
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
