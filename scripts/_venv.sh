# Sourced by scripts/run and scripts/test: a project virtualenv with the given extras.
# Reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CASSETTED_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

ensure_venv() {  # $1: extras, e.g. "test" or ""
    local extras="$1" stamp
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
    fi
    stamp="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)-${extras:-core}"
    if [ ! -f "$stamp" ]; then
        local spec="$ROOT"
        [ -n "$extras" ] && spec="$ROOT[$extras]"
        "$VENV/bin/python" -m pip install --quiet -e "$spec"
        touch "$stamp"
    fi
}

broker_answers() {  # $1 host $2 port
    "$VENV/bin/python" - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_mosquitto() {  # install and start a local broker when none answers on 127.0.0.1:1883
    broker_answers 127.0.0.1 1883 && return 0
    if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
        echo "No MQTT broker on 127.0.0.1:1883: installing Mosquitto" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
    fi
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
        as_root systemctl start mosquitto || true
    fi
    broker_answers 127.0.0.1 1883 || as_root /usr/sbin/mosquitto -d -p 1883
    for _ in $(seq 50); do broker_answers 127.0.0.1 1883 && return 0; sleep 0.1; done
    echo "Mosquitto did not come up on 127.0.0.1:1883" >&2
    return 1
}
