# Sourced by scripts/run and scripts/test: create or update .venv at the repo root and install the project.
# Usage: ensure_venv [EXTRAS]   (EXTRAS like "dev"; empty for the runtime only)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"

ensure_venv() {
    local extras="${1:-}"
    local py="${PYTHON:-python3}"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "[setup] creating $VENV"
        "$py" -m venv "$VENV"
    fi
    # Reinstall only when pyproject.toml changed or new extras are asked for (a stamp keeps reruns fast).
    local hash
    hash="$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -c1-16)"
    local stamp="$VENV/.installed-$hash-${extras:-base}"
    # Extras only add packages: an install with any extras (dev, after scripts/test) covers the runtime.
    if [ -z "$extras" ] && [ ! -f "$stamp" ]; then
        for candidate in "$VENV/.installed-$hash-"*; do
            if [ -f "$candidate" ]; then
                stamp="$candidate"
                break
            fi
        done
    fi
    if [ ! -f "$stamp" ]; then
        echo "[setup] installing project${extras:+ [$extras]} into .venv"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        local target="$REPO_ROOT"
        [ -n "$extras" ] && target="$REPO_ROOT[$extras]"
        "$VENV/bin/python" -m pip install --quiet -e "$target"
        touch "$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}
