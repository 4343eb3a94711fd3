#!/usr/bin/env bash
# make backend-db: a local PostgreSQL (Debian's packages) holding Pulumi's state (the DIY backend,
# `postgres://`), for a team that outgrew the local .pulumi-state/ folder.
#
#   engine/backend-db.sh up     create (first time) and start it; print the two lines to export
#   engine/backend-db.sh down   stop it (the data stays in DIR)
#   engine/backend-db.sh env    print the two lines to export (PULUMI_BACKEND_URL, PGPASSFILE)
#
# Environment: BACKEND_DB_DIR (default .backend-db/ in the project), BACKEND_DB_PORT (5433),
# BACKEND_DB_PASSFILE (default DIR/pgpass). What it sets up:
# - a cluster in DIR/data run by the `postgres` user (by yourself when not root), listening on
#   127.0.0.1 only, with TLS on: a self-signed server certificate for 127.0.0.1/localhost, whose copy
#   DIR/root.crt the clients verify with sslmode=verify-full (for a real server, use a certificate from
#   your CA and its CA certificate as sslrootcert);
# - a database `pulumi_state` and a role `pulumi` that may only log in over TLS from 127.0.0.1 to that
#   database, and read/write rows of the one table `pulumi_state` (Pulumi's schema, created here by the
#   administrator: the role cannot create, drop or alter anything);
# - the role's password in a pgpass file (PostgreSQL's format, host:port:database:user:password, mode
#   0600, the password without ':' or '\\') that you control: give your own, or one with a random
#   password is written. The password never appears in argv or in the server's logs (the role gets a
#   SCRAM verifier computed here), and the URL carries no password: the CLI's driver reads $PGPASSFILE.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${BACKEND_DB_DIR:-$root/.backend-db}
port=${BACKEND_DB_PORT:-5433}
passfile=${BACKEND_DB_PASSFILE:-$dir/pgpass}
database=pulumi_state
role=pulumi
table=pulumi_state

pgbin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  echo "backend-db: PostgreSQL is not installed (apt-get install postgresql)" >&2
  exit 1
fi
# initdb and postgres refuse to run as root: as root, the cluster belongs to the `postgres` user.
# Its superuser has the owner's name and logs in only over the cluster's Unix socket (peer).
if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  as_owner() { runuser -u postgres -- "$@"; }
else
  owner=$(id -un)
  as_owner() { "$@"; }
fi
data=$dir/data
socket=$dir/run
logs=$dir/log

url() {
  echo "postgres://$role@127.0.0.1:$port/$database?sslmode=verify-full&sslrootcert=$dir/root.crt&connect_timeout=10"
}

print_env() {
  echo "export PULUMI_BACKEND_URL='$(url)'"
  echo "export PGPASSFILE='$passfile'"
}

admin_sql() { # SQL on stdin, as the cluster's superuser over the Unix socket (peer authentication)
  as_owner "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$socket" -p "$port" -U "$owner" "$@"
}

create() {
  mkdir -p "$dir"
  chmod 0711 "$dir"
  if [ ! -e "$passfile" ]; then
    (
      umask 077
      pw=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
      printf '127.0.0.1:%s:%s:%s:%s\n' "$port" "$database" "$role" "$pw" >"$passfile"
    )
  fi
  mkdir -p "$data" "$socket" "$logs"
  chown "$owner" "$data" "$socket" "$logs"
  chmod 0700 "$data"
  as_owner "$pgbin/initdb" -D "$data" -U "$owner" --auth-local=peer --auth-host=reject -E UTF8 >"$dir/initdb.log"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$data/server.key" -out "$data/server.crt" 2>/dev/null
  chown "$owner" "$data/server.key" "$data/server.crt"
  chmod 0600 "$data/server.key"
  cp "$data/server.crt" "$dir/root.crt"
  chmod 0644 "$dir/root.crt"
  cat >>"$data/postgresql.conf" <<EOF
# engine/backend-db.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$socket'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
log_connections = on
EOF
  # The superuser only over the Unix socket; the state role only over TLS, to its database; nothing else.
  cat >"$data/pg_hba.conf" <<EOF
local   all             $owner                        peer
hostssl $database    $role          127.0.0.1/32    scram-sha-256
host    all             all             0.0.0.0/0       reject
EOF
}

start() {
  if as_owner "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    return 0
  fi
  as_owner "$pgbin/pg_ctl" -D "$data" -l "$logs/server.log" -w -t 60 -o "-k $socket" start >/dev/null
}

provision() {
  # The password is read from the pgpass line for this server; the role is given its SCRAM verifier.
  local pw verifier
  if [ "$(stat -c %a "$passfile")" != 600 ]; then
    echo "backend-db: $passfile must be mode 0600 (libpq ignores a pgpass file others can read)" >&2
    exit 1
  fi
  pw=$(awk -F: -v p="$port" -v d="$database" -v u="$role" \
    '($1=="127.0.0.1"||$1=="*") && ($2==p||$2=="*") && ($3==d||$3=="*") && ($4==u||$4=="*") {print $5; exit}' \
    "$passfile")
  if [ -z "$pw" ]; then
    echo "backend-db: $passfile has no line for 127.0.0.1:$port:$database:$role" >&2
    exit 1
  fi
  # shellcheck disable=SC2016 # Python source, not shell
  verifier=$(printf '%s' "$pw" | python3 -c '
import base64, hashlib, hmac, os, sys
pw, salt, n = sys.stdin.buffer.read(), os.urandom(16), 4096
salted = hashlib.pbkdf2_hmac("sha256", pw, salt, n)
client = hmac.new(salted, b"Client Key", "sha256").digest()
server = hmac.new(salted, b"Server Key", "sha256").digest()
b = lambda x: base64.b64encode(x).decode()
print(f"SCRAM-SHA-256${n}:{b(salt)}${b(hashlib.sha256(client).digest())}:{b(server)}")')
  admin_sql -d postgres <<EOF
SELECT 'CREATE ROLE $role LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') \gexec
ALTER ROLE $role PASSWORD '$verifier';
SELECT 'CREATE DATABASE $database OWNER "$owner"'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$database') \gexec
REVOKE ALL ON DATABASE $database FROM PUBLIC;
GRANT CONNECT ON DATABASE $database TO $role;
EOF
  # Pulumi's own schema (pkg/backend/diy/postgres/schema.sql), owned by the administrator.
  admin_sql -d "$database" <<EOF
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO $role;
CREATE TABLE IF NOT EXISTS $table (
    key TEXT PRIMARY KEY,
    data JSON NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ${table}_key_prefix_idx ON $table (key text_pattern_ops);
REVOKE ALL ON $table FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON $table TO $role;
EOF
}

case ${1:-up} in
  up)
    [ -s "$data/PG_VERSION" ] || create
    start
    provision
    echo "backend-db: PostgreSQL on 127.0.0.1:$port (TLS), database $database, role $role; state in $dir" >&2
    echo "Point the engine commands at it:" >&2
    print_env
    ;;
  down)
    if [ -s "$data/PG_VERSION" ]; then
      as_owner "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
  env) print_env ;;
  *)
    echo "usage: engine/backend-db.sh [up|down|env]" >&2
    exit 2
    ;;
esac
