#!/usr/bin/env bash
# moto (in-memory AWS mock) in server mode as an S3 endpoint on 127.0.0.1, for lifeboat's tests.
# (Made from ../shared/reference/services/moto.sh; this copy is the project's own.)
#   moto.sh start  -> venv install if missing (~30 s), start moto_server, create bucket; prints export lines
#   moto.sh stop   -> kill by pid, rm state dir (the venv is kept)
#   moto.sh env    -> print export lines
# Env knobs: MOTO_PORT (53950), MOTO_DIR (/tmp/lifeboat-moto), MOTO_VENV (/tmp/lifeboat-venv), S3_BUCKET,
#            MOTO_FORCE_VENV=1 (ignore the image's global moto),
#            MOTO_AUTH=1 (check signatures; prints the generated key id and secret as AWS_*)
# Reset all state between tests without restarting: curl -X POST $S3_ENDPOINT/moto-api/reset
set -euo pipefail
MOTO_PORT=${MOTO_PORT:-53950}
MOTO_DIR=${MOTO_DIR:-/tmp/lifeboat-moto}
MOTO_VENV=${MOTO_VENV:-/tmp/lifeboat-venv}
S3_BUCKET=${S3_BUCKET:-lifeboat-test}
log() { echo "moto.sh: $*" >&2; }

print_env() {
  cat <<EOF
export S3_ENDPOINT=http://127.0.0.1:$MOTO_PORT
export S3_REGION=us-east-1
export S3_BUCKET=$S3_BUCKET
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
export AWS_REGION=us-east-1
export MOTO_PY=${MOTO_PY:-python3}
EOF
}

start() {
  exec 3>&1 1>&2
  # The rust machine image already ships moto 5.2.1 + Flask + flask-cors + boto3 in the global python3:
  # use it when importable (0 s install); otherwise install into a venv (~30 s).
  if [ -z "${MOTO_FORCE_VENV:-}" ] && python3 -c 'import moto, flask, flask_cors, boto3' 2>/dev/null \
     && command -v moto_server >/dev/null; then
    MOTO_SERVER=$(command -v moto_server); MOTO_PY=$(command -v python3)
  else
    MOTO_SERVER=$MOTO_VENV/bin/moto_server; MOTO_PY=$MOTO_VENV/bin/python
  fi
  if [ ! -x "$MOTO_SERVER" ]; then
    log "installing moto into $MOTO_VENV"
    python3 -m venv "$MOTO_VENV" 2>/dev/null || {
      # Debian's python3 has no venv module until python3-venv is installed.
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$MOTO_VENV"
    }
    # moto[s3] + flask + flask-cors is all moto_server needs for S3 (moto[server] pulls ~300 MB more)
    "$MOTO_VENV/bin/pip" install -q 'moto[s3]>=5.1' flask flask-cors boto3
  fi
  if [ -f "$MOTO_DIR/moto.pid" ] && case "$(ps -o stat= -p "$(cat "$MOTO_DIR/moto.pid")" 2>/dev/null)" in ''|Z*) false ;; esac; then
    log "already running"; print_env >&3; return
  fi
  rm -rf "$MOTO_DIR"; mkdir -p "$MOTO_DIR"
  # MOTO_AUTH=1: signatures are checked (after 3 unauthenticated set-up calls that create an
  # IAM user with S3 rights), so wrong-credential tests have a server that refuses them.
  local auth_env=()
  if [ "${MOTO_AUTH:-0}" = 1 ]; then auth_env=(env INITIAL_NO_AUTH_ACTION_COUNT=3); fi
  "${auth_env[@]}" "$MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null >"$MOTO_DIR/moto.log" 2>&1 3>&- &
  local pid=$!; echo "$pid" > "$MOTO_DIR/moto.pid"
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || { cat "$MOTO_DIR/moto.log"; exit 1; }
    if curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; then
      if [ "${MOTO_AUTH:-0}" = 1 ]; then
        "$MOTO_PY" - "http://127.0.0.1:$MOTO_PORT" "$S3_BUCKET" > "$MOTO_DIR/keys" <<'PY'
import json, sys, boto3
ep, bucket = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="lb")
k = iam.create_access_key(UserName="lb")["AccessKey"]
iam.put_user_policy(UserName="lb", PolicyName="s3all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"])
s3.create_bucket(Bucket=bucket)
print(k["AccessKeyId"], k["SecretAccessKey"])
PY
        read -r key secret < "$MOTO_DIR/keys"
        print_env | sed -e "s|^export AWS_ACCESS_KEY_ID=.*|export AWS_ACCESS_KEY_ID=$key|" \
                        -e "s|^export AWS_SECRET_ACCESS_KEY=.*|export AWS_SECRET_ACCESS_KEY=$secret|" >&3
        return
      fi
      # create the bucket with a plain signed-or-not PUT (moto doesn't check signatures by default)
      curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$MOTO_PORT/$S3_BUCKET"
      print_env >&3; return
    fi
    sleep 0.05
  done
  log "moto not up after 10s"; cat "$MOTO_DIR/moto.log"; exit 1
}

stop() {
  if [ -f "$MOTO_DIR/moto.pid" ]; then
    local pid; pid=$(cat "$MOTO_DIR/moto.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do case "$(ps -o stat= -p "$pid" 2>/dev/null)" in ''|Z*) break ;; esac; sleep 0.1; done
  fi
  rm -rf "$MOTO_DIR"
}

case "${1:-}" in
  start) start ;; stop) stop ;; env) print_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
