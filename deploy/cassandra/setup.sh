#!/bin/bash
# One-shot, in the cassandra image (cqlsh): natter's Cassandra roles, as the superuser.
#
#   setup.sh roles    compose's cassandra-setup, before `migrate`. The first time, logs in as the
#                     default superuser cassandra/cassandra, creates the superuser ADMIN_ROLE with
#                     ADMIN_PASSWORD and takes the default one's login and superuser status away;
#                     afterwards logs in as ADMIN_ROLE. Then runs roles.cql, sets the roles'
#                     passwords when they changed, and runs grants.cql when the keyspace exists.
#   setup.sh grants   compose's cassandra-grants, after `migrate`: grants.cql.
#
# The .cql files name roles and passwords as ${VARIABLE}; they are filled in from this
# environment. Safe to run at every `docker compose up` (docs/operations.md, "MinIO and
# Cassandra credentials": what the operator does, rotating the passwords).
set -euo pipefail

phase=${1:-}
here=$(dirname "$0")
host=${CASSANDRA_HOST:-cassandra}
port=${CASSANDRA_PORT:-9042}

fail() {
  echo "cassandra-setup: $*" >&2
  exit 1
}

# Names are CQL identifiers and passwords go between quotes: both are checked, never escaped.
need() {
  local name=$1 pattern=$2 why=$3
  [[ -n ${!name:-} ]] || fail "$name is not set"
  [[ ${!name} =~ $pattern ]] || fail "$name must be $why"
}
need ADMIN_ROLE '^[a-z][a-z0-9_]*$' 'a lower-case CQL name'
need ADMIN_PASSWORD '^[A-Za-z0-9]{16,}$' 'at least 16 letters and digits (openssl rand -hex 32)'
need KEYSPACE '^[a-z][a-z0-9_]*$' 'a lower-case CQL name'
need MIGRATE_ROLE '^[a-z][a-z0-9_]*$' 'a lower-case CQL name'
need NATTER_ROLE '^[a-z][a-z0-9_]*$' 'a lower-case CQL name'
[[ $ADMIN_ROLE != cassandra ]] || fail "ADMIN_ROLE must not be the default superuser, cassandra"

# cqlsh reads the login from a private file, not the command line.
credentials=$(mktemp)
trap 'rm -f "$credentials"' EXIT
cql_as() {
  local user=$1 password=$2
  shift 2
  printf '[plain_text_auth]\nusername = %s\npassword = %s\n' "$user" "$password" >"$credentials"
  cqlsh "$host" "$port" --credentials="$credentials" --request-timeout=60 "$@"
}
cql() { cql_as "$ADMIN_ROLE" "$ADMIN_PASSWORD" "$@"; }

# A .cql file with its ${VARIABLE}s filled in.
run_file() {
  local text
  text=$(<"$here/$1")
  for name in KEYSPACE MIGRATE_ROLE MIGRATE_PASSWORD NATTER_ROLE NATTER_PASSWORD; do
    if [[ $text == *"\${$name}"* ]]; then
      [[ -n ${!name:-} ]] || fail "$1 needs $name"
      text=${text//"\${$name}"/${!name}}
    fi
  done
  cql -e "$text"
}

# Sets a role's password unless it logs in with it already (the first run, or nothing rotated).
password_of() {
  local role=$1 password=$2
  if ! cql_as "$role" "$password" -e "SELECT release_version FROM system.local" >/dev/null 2>&1; then
    echo "cassandra-setup: setting the password of $role"
    cql -e "ALTER ROLE $role WITH PASSWORD = '$password'"
  fi
}

keyspace_exists() {
  [[ $(cql -e "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = '$KEYSPACE'") == *"(1 rows)"* ]]
}

login_admin() {
  # Cassandra creates the default superuser about 10 s after its first start: wait for a login.
  local attempt
  for attempt in $(seq 1 60); do
    if cql -e "SELECT release_version FROM system.local" >/dev/null 2>&1; then
      return 0
    fi
    if cql_as cassandra cassandra -e "SELECT release_version FROM system.local" >/dev/null 2>&1; then
      echo "cassandra-setup: replacing the default superuser cassandra/cassandra with $ADMIN_ROLE"
      cql_as cassandra cassandra -e "CREATE ROLE IF NOT EXISTS $ADMIN_ROLE WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = '$ADMIN_PASSWORD'"
      # A superuser cannot demote itself: the new one does it, with a password nobody keeps.
      cql -e "ALTER ROLE cassandra WITH SUPERUSER = false AND LOGIN = false AND PASSWORD = '$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')'"
      return 0
    fi
    sleep 2
  done
  fail "cannot log in to $host:$port as $ADMIN_ROLE (ADMIN_PASSWORD) nor as the default cassandra/cassandra"
}

case "$phase" in
  roles)
    need MIGRATE_PASSWORD '^[A-Za-z0-9]{16,}$' 'at least 16 letters and digits (openssl rand -hex 32)'
    need NATTER_PASSWORD '^[A-Za-z0-9]{16,}$' 'at least 16 letters and digits (openssl rand -hex 32)'
    login_admin
    run_file roles.cql
    password_of "$MIGRATE_ROLE" "$MIGRATE_PASSWORD"
    password_of "$NATTER_ROLE" "$NATTER_PASSWORD"
    if keyspace_exists; then run_file grants.cql; fi
    echo "cassandra-setup: roles $MIGRATE_ROLE and $NATTER_ROLE are set"
    ;;
  grants)
    login_admin
    keyspace_exists || fail "keyspace $KEYSPACE does not exist: did migrate run?"
    run_file grants.cql
    echo "cassandra-setup: $NATTER_ROLE may read and write keyspace $KEYSPACE"
    ;;
  *) fail "usage: setup.sh roles|grants" ;;
esac
