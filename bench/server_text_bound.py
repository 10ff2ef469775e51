"""Refusing an oversized text prompt (issue 19, defect 2): a text-only chat request of ``--mb`` megabytes
(default 50, under the 64 MiB body cap) against ``python -m llava_demo.server`` with the embedded model, in a
separate process as deployed. Reports the time to the 4xx, the server's peak RSS growth during the request (from
/proc) and the slowest ``/health`` answered while the request was being refused, polled from a third process
(``tests/support/health_poller.py``: a poller thread in this process would wait for this process's own copy
of the 50 MB body).

The baseline, measured in the same run on a second server started with ``--max-request-chars`` and
``--max-message-chars`` raised out of the way (the behaviour before the bound), is a ``--baseline-mb`` prompt
(default 1 MB: the unbounded path tokenizes it, which at 50 MB took 198 s and 11 GB), so the ratio printed is
per megabyte: seconds per MB unbounded / seconds per MB bounded.

    python bench/server_text_bound.py                 # 50 MB bounded, 1 MB unbounded baseline
    python bench/server_text_bound.py --mb 5 --baseline-mb 0.5

Goal (issue 19): the 50 MB request refused with a 4xx in under 2 s, RSS growth under 300 MB, /health under
100 ms meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.server_common import wait_until_healthy  # noqa: E402 - after the path insert
from bench.server_overhead import free_port  # noqa: E402
from tests.support.health_poller import health_poller, peak_rss_mb, reset_peak_rss  # noqa: E402

UNBOUNDED = str(1 << 40)


def start(model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "llava_demo.server", "--model", model, "--port", str(port),
               "--log-level", "warning", *extra]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(process, url, 300)
    return process, url


def refuse(process: subprocess.Popen, url: str, megabytes: float) -> dict:
    words = int(megabytes * 1024 * 1024 / 5)
    body = json.dumps({"messages": [{"role": "user", "content": "word " * words}], "max_tokens": 4}).encode()
    before = reset_peak_rss(process.pid)  # the model's load-time peak is not this request's
    with health_poller(url) as health:  # another process: this one stalls while it sends the body
        start = time.time()
        response = httpx.post(url + "/v1/chat/completions", content=body, timeout=900,
                              headers={"content-type": "application/json"})  # fmt: skip
        end = time.time()
    during = health.overlapping(start, end)
    return {
        "mb": round(len(body) / 1e6, 2),
        "status": response.status_code,
        "seconds": round(end - start, 3),
        "rss_growth_mb": round(peak_rss_mb(process.pid) - before, 1),
        "health_max_ms": round(1000 * max(during), 1) if during else None,
        "health_polls": len(during),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="synthworld-llava-next")
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--baseline-mb", type=float, default=1.0)
    args = parser.parse_args()
    rows = {}
    for name, extra, size in (
        ("bounded (default flags)", [], args.mb),
        ("unbounded (before)", ["--max-request-chars", UNBOUNDED, "--max-message-chars", UNBOUNDED],
         args.baseline_mb),
    ):  # fmt: skip
        process, url = start(args.model, extra)
        try:
            rows[name] = refuse(process, url, size)
        finally:
            process.terminate()
            process.wait(30)
    print(f"{'server':26} {'MB':>7} {'status':>6} {'seconds':>8} {'RSS +MB':>8} {'/health max ms':>15}")
    for name, row in rows.items():
        print(f"{name:26} {row['mb']:7.2f} {row['status']:6d} {row['seconds']:8.3f} {row['rss_growth_mb']:8.1f} "
              f"{row['health_max_ms']!s:>15}")  # fmt: skip
    bounded, before = rows["bounded (default flags)"], rows["unbounded (before)"]
    per_mb = (before["seconds"] / before["mb"]) / max(bounded["seconds"] / bounded["mb"], 1e-9)
    print(f"seconds per MB, unbounded / bounded: {per_mb:.0f}x")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
