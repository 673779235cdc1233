#!/usr/bin/env bash
# Makes sure the PostgreSQL server the tests use is reachable, starting the local cluster when it
# is installed but down; otherwise exits non-zero saying what to do.
#
# The server is DOLITTLE_TEST_POSTGRES_URL, else DATABASE_URL, else
# postgres://postgres@127.0.0.1:5432/postgres (user postgres, trust authentication).
set -euo pipefail

url="${DOLITTLE_TEST_POSTGRES_URL:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}"
# What the tests print is the URL without a password.
shown_url="$(printf '%s' "$url" | sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#')"

fail() {
    echo "error: $*" >&2
    exit 1
}

ready() {
    pg_isready -q -d "$url" -t 2
}

if ! command -v pg_isready >/dev/null 2>&1; then
    for folder in /usr/lib/postgresql/*/bin; do
        [ -x "$folder/pg_isready" ] && PATH="$folder:$PATH"
    done
fi
command -v pg_isready >/dev/null 2>&1 ||
    fail "pg_isready is not installed, so PostgreSQL cannot be checked at $shown_url: install \
PostgreSQL (Debian: apt-get install postgresql) or set DOLITTLE_TEST_POSTGRES_URL"

if ready; then
    echo "PostgreSQL is reachable at $shown_url"
    exit 0
fi

# The port the URL names (5432 when it names none), to find the local cluster serving it.
port="$(printf '%s' "$url" | sed -nE 's#^[a-z]+://[^/]*:([0-9]+)(/.*)?$#\1#p')"
port="${port:-$(printf '%s' "$url" | sed -nE 's#.*port=([0-9]+).*#\1#p')}"
port="${port:-5432}"

command -v pg_lsclusters >/dev/null 2>&1 ||
    fail "PostgreSQL is not reachable at $shown_url and no local cluster is installed \
(pg_lsclusters not found): start a server or set DOLITTLE_TEST_POSTGRES_URL"

cluster="$(pg_lsclusters --no-header 2>/dev/null | awk -v port="$port" '$3 == port { print $1, $2, $4; exit }')"
[ -n "$cluster" ] ||
    fail "PostgreSQL is not reachable at $shown_url and no local cluster listens on port $port \
(pg_lsclusters shows none): start a server or set DOLITTLE_TEST_POSTGRES_URL"
read -r version name status <<<"$cluster"

if [ "$status" != "online" ]; then
    echo "starting the local PostgreSQL cluster $version/$name (it was $status)"
    pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start ||
        fail "could not start the local PostgreSQL cluster $version/$name: see \
/var/log/postgresql/postgresql-$version-$name.log"
fi

for _ in $(seq 1 30); do
    if ready; then
        echo "PostgreSQL is reachable at $shown_url"
        exit 0
    fi
    sleep 1
done
fail "PostgreSQL cluster $version/$name is $(pg_lsclusters --no-header | awk -v v="$version" \
-v n="$name" '$1 == v && $2 == n { print $4 }') but not reachable at $shown_url after 30 s"
