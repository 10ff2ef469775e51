"""Issue 19, defect 8 of the issue (newcomer paths): ``scripts/run`` right after ``scripts/test`` does not reinstall
(the dev install covers the runtime), and ``scripts/test`` installs Debian chromium when it can, otherwise says
loudly that the browser tests are skipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


def _fake_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A repo root with the real _venv.sh and pyproject.toml, and a .venv whose python records its calls."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPTS / "_venv.sh", repo / "scripts" / "_venv.sh")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    python = repo / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    python.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    python.chmod(0o755)
    return repo, calls


def _ensure(repo: Path, extras: str) -> subprocess.CompletedProcess:
    script = f'source "{repo}/scripts/_venv.sh"; ensure_venv "{extras}"'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_run_after_test_does_not_reinstall(tmp_path):
    repo, calls = _fake_repo(tmp_path)
    first = _ensure(repo, "dev")  # scripts/test
    assert first.returncode == 0, first.stderr
    assert "installing project [dev]" in first.stdout and "[dev]" in calls.read_text()
    calls.unlink()
    second = _ensure(repo, "")  # scripts/run right after
    assert second.returncode == 0, second.stderr
    assert "installing" not in second.stdout and not calls.exists()
    assert _ensure(repo, "").returncode == 0 and not calls.exists()


@pytest.mark.slow
def test_a_runtime_install_does_not_stand_in_for_dev(tmp_path):
    repo, calls = _fake_repo(tmp_path)
    assert _ensure(repo, "").returncode == 0
    calls.unlink()
    assert "installing project [dev]" in _ensure(repo, "dev").stdout and "[dev]" in calls.read_text()


def _browser(tmp_path: Path, apt: str) -> subprocess.CompletedProcess:
    chromium = tmp_path / "chromium"
    script = (f'source "{SCRIPTS}/_browser.sh"; BROWSER_TESTS_SKIPPED=0; CHROMIUM="{chromium}" APT_GET="{apt}" '
              'ensure_browser; echo "skipped=$BROWSER_TESTS_SKIPPED"')  # fmt: skip
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_scripts_test_installs_chromium_when_it_can(tmp_path):
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":
        pytest.skip("installing needs root")
    fake_apt = tmp_path / "apt-get"
    fake_apt.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt.txt\n'
                        f'case "$*" in *install*) printf "#!/bin/sh\\n" > {tmp_path}/chromium; '
                        f'chmod +x {tmp_path}/chromium;; esac\n')  # fmt: skip
    fake_apt.chmod(0o755)
    done = _browser(tmp_path, str(fake_apt))
    assert done.stdout.strip().endswith("skipped=0") and "installing Debian chromium" in done.stdout
    assert "install -y -qq chromium" in (tmp_path / "apt.txt").read_text()


@pytest.mark.slow
def test_scripts_test_says_loudly_when_browser_tests_are_skipped(tmp_path):
    done = _browser(tmp_path, "/nonexistent/apt-get")
    assert done.stdout.strip().endswith("skipped=1")
    assert "WARNING: the browser tests (tests/browser) will be SKIPPED" in done.stderr
    assert "sudo apt-get install chromium" in done.stderr
    assert 'echo "[test] WARNING: the browser tests were SKIPPED' in (SCRIPTS / "test").read_text()
