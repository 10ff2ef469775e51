"""A cache folder holding SGLang's own code, for the conformance suite, without touching the project's venv.

SGLang pins torch and transformers versions this project does not use, and its model code needs GPU kernels.
Its pure-Python parts (the ``ServerArgs`` parser, the chat-template registry, the OpenAI protocol models)
import on a CPU machine with the project's own torch and transformers plus a few small packages. So the
wheel and exactly those packages are installed with ``pip install --no-deps --target
.cache/sglang-<version>/``: no torch, no transformers, nothing in the venv changes. SGLang code then runs in
a subprocess (``tests/support/sglang_probe.py``) that appends the folder to the END of ``sys.path``, so every
package the venv already has wins over anything in the folder.

Run by hand: ``python tests/support/sglang_env.py`` installs (if needed) and prints the folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from llava_demo.backends.sglang_version import SGLANG_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = REPO_ROOT / ".cache"
MARKER = "conformance-env.json"
# What ``sglang.srt.server_args``, ``sglang.srt.parser.conversation`` and
# ``sglang.srt.entrypoints.openai.protocol`` import beyond the project's venv (measured on sglang 0.5.23 with
# the venv of pyproject.toml's dev extra: each was the next ModuleNotFoundError). Pinned so the folder is
# reproducible; none is torch, transformers or anything the venv pins.
IMPORT_DEPS: tuple[str, ...] = (
    "pybase64==1.5.1",
    "msgspec==0.23.0",
    "pyzmq==27.3.0",
    "requests==2.34.2",
    "urllib3==2.8.0",
    "ipython==9.19.1",
    "traitlets==5.16.1",
    "aiohttp==3.14.5",
    "aiohappyeyeballs==2.7.1",
    "aiosignal==1.4.0",
    "attrs==26.1.0",
    "frozenlist==1.8.0",
    "multidict==7.2.1",
    "propcache==0.5.4",
    "yarl==1.25.1",
)
# pip's words for "the package index could not be reached" (the only reason to skip, not fail). pip does not
# always say it (an unreachable index can read as "from versions: none"), so the index is also asked directly.
_UNREACHABLE = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Name or service not known|"
    r"Network is unreachable|Connection refused|Max retries exceeded|ConnectTimeoutError|ReadTimeoutError|"
    r"No route to host|ProxyError|Could not fetch URL"
)
DEFAULT_INDEX = "https://pypi.org/simple"
INSTALL_TIMEOUT_S = 900.0


class RegistryUnreachable(RuntimeError):
    """pip could not reach the package index; the message holds pip's own words."""


class UnsupportedPython(RuntimeError):
    """The pinned sglang publishes no wheel for this Python (it needs 3.11 or newer)."""


@dataclass(frozen=True)
class SGLangEnv:
    """A ready folder: ``path`` goes on ``sys.path`` (at the end) of a subprocess."""

    path: Path
    version: str
    deps: tuple[str, ...]


def env_dir(version: str = SGLANG_VERSION) -> Path:
    return CACHE_ROOT / f"sglang-{version}"


def requirements(version: str = SGLANG_VERSION) -> list[str]:
    return [f"sglang=={version}", *IMPORT_DEPS]


def index_url() -> str:
    """The index pip uses: ``PIP_INDEX_URL``, else pip's configured ``index-url``, else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    configured = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True
    )
    return (
        configured.stdout.strip()
        if configured.returncode == 0 and configured.stdout.strip()
        else DEFAULT_INDEX
    )


def index_unreachable_reason(package: str = "sglang") -> str | None:
    """Why the index cannot be reached (None when it answers at all, whatever the status)."""
    url = f"{index_url().rstrip('/')}/{package}/"
    try:
        httpx.get(url, timeout=15.0, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"GET {url}: {type(exc).__name__}: {exc}"
    return None


def _ready(folder: Path, version: str) -> SGLangEnv | None:
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("requirements") != requirements(version) or not (folder / "sglang").is_dir():
        return None
    return SGLangEnv(folder, version, IMPORT_DEPS)


def ensure_sglang_env(version: str = SGLANG_VERSION) -> SGLangEnv:
    """The folder for ``version``, installing it first when missing or built from other requirements.

    The install goes to a temporary sibling that is renamed into place once complete, so an interrupted
    install never leaves a half-filled folder that looks ready. ``RegistryUnreachable`` when pip cannot reach
    the index; any other pip failure is a ``RuntimeError`` with pip's output.
    """
    folder = env_dir(version)
    found = _ready(folder, version)
    if found is not None:
        return found
    if sys.version_info < (3, 11):
        raise UnsupportedPython(f"sglang {version} needs Python >= 3.11; this is {sys.version.split()[0]}")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-compile",
        "--target",
        str(tmp),
        *requirements(version),
    ]
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RegistryUnreachable(f"pip did not finish within {INSTALL_TIMEOUT_S:g} s") from exc
    output = (done.stdout + done.stderr)[-3000:]
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        if _UNREACHABLE.search(output):
            raise RegistryUnreachable(f"pip could not reach the package index: {output.strip()[-600:]}")
        unreachable = index_unreachable_reason()
        if unreachable is not None:
            raise RegistryUnreachable(
                f"the package index does not answer ({unreachable}); pip said: {output[-300:]}"
            )
        raise RuntimeError(f"pip install {' '.join(requirements(version))} failed:\n{output}")
    record = {
        "requirements": requirements(version),
        "install_s": round(time.monotonic() - started, 1),
        "python": sys.version.split()[0],
    }
    (tmp / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    try:
        tmp.rename(folder)
    except OSError:
        # Another process finished the same install first; use its folder if it is complete.
        shutil.rmtree(tmp, ignore_errors=True)
    found = _ready(folder, version)
    if found is None:
        raise RuntimeError(f"{folder}: install finished but the folder is incomplete")
    return found


def main() -> int:
    try:
        env = ensure_sglang_env()
    except (RegistryUnreachable, UnsupportedPython) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(env.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
