#!/usr/bin/env bash
# Private OpenSSH sshd (SFTP only) on 127.0.0.1 for lifeboat's tests; independent of the
# system sshd. (Made from ../shared/reference/services/sftp.sh; this copy is the project's own.)
#   sftp.sh start  -> installs openssh-server if missing, keys, config, starts sshd; prints export lines
#   sftp.sh stop   -> kills that sshd by its pid file, removes the state dir
#   sftp.sh env    -> print export lines again
# Env knobs: SFTP_PORT (default 52222), SFTP_DIR (default /tmp/lifeboat-sftp),
#            SFTP_USER (default lbsftp when root, else the current user)
# Key-only auth; the client gets a generated ed25519 key and a known_hosts file pinning the host key.
set -euo pipefail

SFTP_PORT=${SFTP_PORT:-52222}
SFTP_DIR=${SFTP_DIR:-/tmp/lifeboat-sftp}
if [ "$(id -u)" = 0 ]; then SFTP_USER=${SFTP_USER:-lbsftp}; else SFTP_USER=${SFTP_USER:-$(id -un)}; fi
SSHD=/usr/sbin/sshd   # must be an absolute path: sshd re-execs itself

log() { echo "sftp.sh: $*" >&2; }

print_env() {
  cat <<EOF
export SFTP_HOST=127.0.0.1
export SFTP_PORT=$SFTP_PORT
export SFTP_USER=$SFTP_USER
export SFTP_KEY=$SFTP_DIR/client_key
export SFTP_KNOWN_HOSTS=$SFTP_DIR/known_hosts
export SFTP_HOME=$(getent passwd "$SFTP_USER" | cut -d: -f6)
# ready-made client options for ssh/sftp/scp:
export SFTP_SSH_OPTS="-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$SFTP_DIR/known_hosts -o GlobalKnownHostsFile=/dev/null -i $SFTP_DIR/client_key"
EOF
}

start() {
  exec 3>&1 1>&2   # only the export lines may reach stdout (callers eval it); 'usermod: no changes' etc. go to stderr
  if [ ! -x "$SSHD" ]; then
    log "installing openssh-server"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d on these images stops the postinst from starting the system sshd on :22
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends openssh-server openssh-client >&2
  fi
  if [ -f "$SFTP_DIR/sshd.pid" ] && case "$(ps -o stat= -p "$(cat "$SFTP_DIR/sshd.pid")" 2>/dev/null)" in ''|Z*) false ;; esac; then
    log "already running"; print_env >&3; return
  fi
  rm -rf "$SFTP_DIR"; mkdir -p "$SFTP_DIR"; chmod 755 "$SFTP_DIR"
  if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/sshd && chmod 755 /run/sshd   # privilege-separation dir; missing on a fresh box
    if ! id "$SFTP_USER" >/dev/null 2>&1; then
      useradd --no-create-home --shell /bin/sh "$SFTP_USER"
    fi
    if [ "$SFTP_USER" != root ]; then
      # fresh, empty home = the SFTP root for tests
      [ "$(getent passwd "$SFTP_USER" | cut -d: -f6)" = "$SFTP_DIR/home" ] || usermod -d "$SFTP_DIR/home" "$SFTP_USER"
      mkdir -p "$SFTP_DIR/home"; chown "$SFTP_USER:" "$SFTP_DIR/home"; chmod 755 "$SFTP_DIR/home"
      # useradd leaves the password field '!' (locked); with UsePAM no, sshd refuses locked
      # accounts even for pubkey auth. '*' = no usable password, but not locked.
      usermod -p '*' "$SFTP_USER"
    fi
  fi
  ssh-keygen -q -t ed25519 -N '' -C lifeboat-sftp-host -f "$SFTP_DIR/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C lifeboat-sftp-client -f "$SFTP_DIR/client_key"
  cp "$SFTP_DIR/client_key.pub" "$SFTP_DIR/authorized_keys"
  chmod 644 "$SFTP_DIR/authorized_keys"
  echo "[127.0.0.1]:$SFTP_PORT $(cut -d' ' -f1,2 "$SFTP_DIR/host_ed25519.pub")" > "$SFTP_DIR/known_hosts"
  cat > "$SFTP_DIR/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $SFTP_PORT
HostKey $SFTP_DIR/host_ed25519
PidFile $SFTP_DIR/sshd.pid
AuthorizedKeysFile $SFTP_DIR/authorized_keys
# StrictModes would reject keys under /tmp (world-writable parent dirs)
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
AllowUsers $SFTP_USER
Subsystem sftp internal-sftp
PrintMotd no
UseDNS no
LogLevel VERBOSE
MaxStartups 100:30:200
MaxSessions 50
EOF
  "$SSHD" -t -f "$SFTP_DIR/sshd_config"
  # -D: no daemonizing, so we own the pid; -E: log file. Detach stdio, or a caller doing
  # eval "$(sftp.sh start)" waits forever on the inherited stdout pipe.
  "$SSHD" -D -f "$SFTP_DIR/sshd_config" -E "$SFTP_DIR/sshd.log" </dev/null >/dev/null 2>&1 3>&- &
  local pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$SFTP_PORT") 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$SFTP_DIR/sshd.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "$pid" > "$SFTP_DIR/sshd.pid"
  print_env >&3
}

stop() {
  if [ -f "$SFTP_DIR/sshd.pid" ]; then
    local pid; pid=$(cat "$SFTP_DIR/sshd.pid")
    kill "$pid" 2>/dev/null || true
    # gone, or a zombie (PID 1 in these sandboxes may reap late; a zombie still answers kill -0)
    for _ in $(seq 1 50); do
      case "$(ps -o stat= -p "$pid" 2>/dev/null)" in ''|Z*) break ;; esac; sleep 0.1
    done
  fi
  rm -rf "$SFTP_DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
