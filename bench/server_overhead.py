"""Server overhead: time-to-first-token and decode tokens/s through ``llava_demo.server.cli`` (official ``openai``
client, streaming) against the in-process local backend, on the same checkpoint in the same run.

    python bench/server_overhead.py                       # random LLaVA-NeXT (hidden 256, 4 layers), CPU
    python bench/server_overhead.py --model assets/models/synthworld-llava-next --repeats 7
    python bench/server_overhead.py --in-thread           # server in this process (shares the GIL)

Both paths answer the same question about the same image, greedily, for the same number of tokens; the two
are interleaved (in-process, server, in-process, ...) so machine load hits both alike, and medians are
reported. By default the server is a separate process (as deployed), started with the same thread count.
TTFT runs from the call to the first text; tokens/s is (completion_tokens - 1) / (last text - first text).
transformers' streamer releases text at word boundaries, so a random model that rarely emits a space gives
few text chunks: then read "total ms" and CPU ms/token (the server process's CPU, from /proc) instead.
Goal (issue 3): overhead <= 20% on both.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.server_common import wait_until_healthy  # noqa: E402 - after the path insert


@dataclass(frozen=True)
class Run:
    ttft_s: float
    tokens: int
    decode_s: float
    total_s: float

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 and self.tokens > 1 else float("nan")


def time_stream(
    chunks: Callable[[], object], text_of: Callable[[object], str], tokens_of: Callable[[object], int | None]
) -> Run:
    """Consume a stream; note when the first and last text arrived and the token count it reported."""
    started = time.perf_counter()
    first = last = None
    tokens = None
    for item in chunks():
        if text_of(item):
            last = time.perf_counter()
            first = first or last
        tokens = tokens_of(item) or tokens
    ended = time.perf_counter()
    if first is None or tokens is None:
        raise RuntimeError("the stream produced no text or no usage")
    return Run(first - started, tokens, last - first, ended - started)


def in_process_run(backend, conversation, params) -> Run:
    return time_stream(
        lambda: backend.stream(conversation, params),
        lambda e: e.text if e.kind == "delta" else "",
        lambda e: e.usage.completion_tokens if e.kind == "done" and e.usage else None,
    )


def server_run(client, messages, max_tokens: int) -> Run:
    return time_stream(
        lambda: client.chat.completions.create(
            model="default",
            messages=messages,
            temperature=0,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        ),
        lambda c: c.choices[0].delta.content if c.choices else "",
        lambda c: c.usage.completion_tokens if c.usage else None,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server_process(model: str, threads: int, interval_ms: float) -> tuple[subprocess.Popen, str]:

    port = free_port()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        sys.executable,
        "-m",
        "llava_demo.server",
        "--model",
        model,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--stream-interval-ms",
        str(interval_ms),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(process, url, 180)
    return process, url


def build_random_model(hidden: int, layers: int) -> str:
    """A random LLaVA-NeXT with EOS suppressed (answers run to max_tokens); the tests' builder."""
    sys.path.insert(0, str(ROOT))  # the tests' builder: tests/support/tiny_llava.py
    from tests.support.tiny_llava import build_tiny_llava

    folder = Path(tempfile.mkdtemp(prefix="bench-llava-"))
    return str(build_tiny_llava(folder, hidden=hidden, layers=layers, suppress_eos=True))


def summarise(name: str, runs: list[Run], cpu_s: float | None) -> dict[str, float | str | None]:
    """Medians, plus the best run (least disturbed by other load on a shared machine)."""
    tokens = sum(r.tokens for r in runs)
    return {
        "path": name,
        "ttft_ms": 1000 * statistics.median(r.ttft_s for r in runs),
        "ttft_ms_best": 1000 * min(r.ttft_s for r in runs),
        "tokens_per_s": statistics.median(r.tokens_per_s for r in runs),
        "tokens_per_s_best": max(r.tokens_per_s for r in runs),
        "tokens": statistics.median(r.tokens for r in runs),
        "total_ms": 1000 * statistics.median(r.total_s for r in runs),
        "cpu_ms_per_token": None if cpu_s is None else 1000 * cpu_s / tokens,
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc; 10 ms resolution, so sum many runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="checkpoint folder or preset (default: a random model, see --hidden)")
    parser.add_argument(
        "--hidden", type=int, default=256, help="random model: text hidden size (default 256)"
    )
    parser.add_argument("--layers", type=int, default=4, help="random model: text layers (default 4)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both processes (default 1)")
    parser.add_argument("--image-size", default="336x336", help="WxH of the test image (default 336x336)")
    parser.add_argument("--in-thread", action="store_true", help="run the server in this process")
    parser.add_argument(
        "--stream-interval-ms", type=float, default=20.0, help="the server's chunk interval (default 20)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import openai
    import torch
    from PIL import Image
    from tqdm import tqdm

    from llava_demo.backends import SamplingParams
    from llava_demo.backends.local import LocalBackend, LocalBackendConfig
    from vision_common.chat.conversation import Conversation, Message

    torch.set_num_threads(args.threads)
    model = args.model or build_random_model(args.hidden, args.layers)
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    image_path = Path(tempfile.mkdtemp(prefix="bench-img-")) / "scene.png"
    Image.effect_noise((width, height), 64).convert("RGB").save(image_path)
    prompt = "Describe the picture in detail."
    conversation = Conversation((Message("user", prompt, (str(image_path),)),))
    data_url = "data:image/png;base64," + base64.b64encode(image_path.read_bytes()).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url}},
                {"type": "text", "text": prompt},
            ],
        }
    ]
    params = SamplingParams(temperature=0.0, max_new_tokens=args.max_tokens)

    backend = LocalBackend.load(model, LocalBackendConfig(device="cpu"))
    process = None
    server = None
    if args.in_thread:
        from llava_demo.server.app import create_app
        from llava_demo.server.config import ServerConfig
        from llava_demo.server.thread import BackgroundServer

        server = BackgroundServer(
            create_app(backend, ServerConfig(port=0, stream_interval_ms=args.stream_interval_ms))
        ).start()
        url = server.url
    else:
        process, url = start_server_process(model, args.threads, args.stream_interval_ms)
    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=600)
    try:
        in_process_run(backend, conversation, params)  # warm-up: first-call allocations, lazy imports
        server_run(client, messages, args.max_tokens)
        local_runs, served_runs = [], []
        local_cpu = server_cpu = client_cpu = 0.0
        for _ in tqdm(range(args.repeats), desc="interleaved runs", unit="pair"):
            cpu = time.process_time()
            local_runs.append(in_process_run(backend, conversation, params))
            local_cpu += time.process_time() - cpu
            cpu, remote = time.process_time(), process_cpu_s(process.pid) if process else 0.0
            served_runs.append(server_run(client, messages, args.max_tokens))
            client_cpu += time.process_time() - cpu
            server_cpu += process_cpu_s(process.pid) - remote if process else 0.0
    finally:
        if server is not None:
            server.stop()
        if process is not None:
            process.terminate()
            process.wait(30)
        backend.close()

    local = summarise("in-process", local_runs, local_cpu)
    # In-thread, the server's and the client's CPU cannot be told apart.
    served = summarise("server", served_runs, server_cpu if process else None)
    if local["tokens"] != served["tokens"]:
        print(f"warning: token counts differ (in-process {local['tokens']}, server {served['tokens']})")
    ttft_overhead = served["ttft_ms"] / local["ttft_ms"] - 1
    rate_overhead = local["tokens_per_s"] / served["tokens_per_s"] - 1
    best_ttft = served["ttft_ms_best"] / local["ttft_ms_best"] - 1
    best_rate = local["tokens_per_s_best"] / served["tokens_per_s_best"] - 1
    print(
        f"model {model}  image {width}x{height}  {args.max_tokens} tokens  threads {args.threads}  "
        f"server {'in-thread' if args.in_thread else 'subprocess'}  "
        f"stream interval {args.stream_interval_ms:g} ms  repeats {args.repeats}  "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'path':12} {'TTFT ms':>9} {'(best)':>8} {'tokens/s':>9} {'(best)':>8} {'total ms':>9} {'CPU ms/token':>13}"
    )
    for row in (local, served):
        cpu = "-" if row["cpu_ms_per_token"] is None else f"{row['cpu_ms_per_token']:.2f}"
        print(
            f"{row['path']:12} {row['ttft_ms']:9.1f} {row['ttft_ms_best']:8.1f} {row['tokens_per_s']:9.1f} "
            f"{row['tokens_per_s_best']:8.1f} {row['total_ms']:9.1f} {cpu:>13}"
        )
    if process:
        print(
            f"client (openai, this process): {1000 * client_cpu / sum(r.tokens for r in served_runs):.2f} CPU ms/token"
        )
    print(
        f"overhead (median): TTFT {100 * ttft_overhead:+.1f}%, tokens/s {100 * rate_overhead:+.1f}%; "
        f"(best run): TTFT {100 * best_ttft:+.1f}%, tokens/s {100 * best_rate:+.1f}%  (goal <= 20%)"
    )
    if args.json:
        from vision_common.atomic import atomic_write_json

        result = {
            "model": model,
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "in_process": local,
            "server": served,
            "ttft_overhead": ttft_overhead,
            "tokens_per_s_overhead": rate_overhead,
            "ttft_overhead_best": best_ttft,
            "tokens_per_s_overhead_best": best_rate,
            "load_average": os.getloadavg()[0],
            "runs": {
                "in_process": [asdict(r) for r in local_runs],
                "server": [asdict(r) for r in served_runs],
            },
        }
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
