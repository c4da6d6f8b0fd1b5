#!/bin/sh
# One-shot (compose's minio-setup, in the minio/mc image): natter's bucket and natter's own MinIO
# user, allowed by deploy/minio/natter-policy.json to use that bucket's objects and nothing else.
# It logs in with MinIO's root credentials, which no natter service holds (docs/security.md).
#
# Safe to run at every `docker compose up`: it creates what is missing, and sets the user's
# password and policy to what compose gives it, which is how MINIO_NATTER_PASSWORD is rotated
# (docs/operations.md, "MinIO and Cassandra credentials"). POSIX sh and mc only: the image has little else.
set -eu

: "${MINIO_URL:?}" "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${MINIO_NATTER_USER:?}" "${MINIO_NATTER_PASSWORD:?}" "${MINIO_NATTER_BUCKET:?}"
POLICY_FILE=${POLICY_FILE:-/etc/natter/natter-policy.json}
POLICY_NAME=$MINIO_NATTER_USER

fail() {
  echo "minio-setup: $*" >&2
  exit 1
}

if [ "${#MINIO_NATTER_PASSWORD}" -lt 8 ]; then fail "MINIO_NATTER_PASSWORD is shorter than 8 characters (MinIO's minimum)"; fi
if [ "$MINIO_NATTER_USER" = "$MINIO_ROOT_USER" ]; then fail "natter's MinIO user must not be the root user"; fi
policy=$(cat "$POLICY_FILE")
case "$policy" in
  *"arn:aws:s3:::$MINIO_NATTER_BUCKET\""*) ;;
  *) fail "$POLICY_FILE does not name the bucket $MINIO_NATTER_BUCKET (blobs.bucket): edit the policy's Resource entries" ;;
esac

mc alias set setup "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc ready setup
mc mb --ignore-existing "setup/$MINIO_NATTER_BUCKET"
# Creating a policy that exists replaces it; adding a user that exists sets its password.
mc admin policy create setup "$POLICY_NAME" "$POLICY_FILE"
mc admin user add setup "$MINIO_NATTER_USER" "$MINIO_NATTER_PASSWORD"
if ! out=$(mc admin policy attach setup "$POLICY_NAME" --user "$MINIO_NATTER_USER" 2>&1); then
  case "$out" in
    *"already in effect"*) ;;
    *) fail "attaching policy $POLICY_NAME to $MINIO_NATTER_USER: $out" ;;
  esac
fi
echo "minio-setup: bucket $MINIO_NATTER_BUCKET, user $MINIO_NATTER_USER with policy $POLICY_NAME"
