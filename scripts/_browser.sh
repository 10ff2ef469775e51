# Sourced by scripts/test: make sure Debian's chromium is there for the browser tests (tests/browser), as
# .ci/run does; when it cannot be installed, say loudly that those tests will be skipped (issue 19: a
# newcomer's run skipped them silently).
# Usage: ensure_browser   (CHROMIUM and APT_GET may be overridden, for tests)

ensure_browser() {
    local chromium="${CHROMIUM:-/usr/bin/chromium}"
    local apt="${APT_GET:-apt-get}"
    if [ -x "$chromium" ]; then
        return 0
    fi
    if [ "$(id -u)" = "0" ] && command -v "$apt" >/dev/null 2>&1; then
        echo "[test] installing Debian chromium for the browser tests ($apt install chromium)"
        if "$apt" update -qq && DEBIAN_FRONTEND=noninteractive "$apt" install -y -qq chromium >/dev/null \
            && [ -x "$chromium" ]; then
            return 0
        fi
        echo "[test] chromium could not be installed" >&2
    fi
    BROWSER_TESTS_SKIPPED=1
    cat >&2 <<MSG
[test] ************************************************************************************************
[test] WARNING: the browser tests (tests/browser) will be SKIPPED: $chromium is missing and cannot be
[test] installed here (needs root and apt-get). Install it with: sudo apt-get install chromium
[test] ************************************************************************************************
MSG
}
