"""A stand-in training job for launcher tests: writes metrics.jsonl, checkpoints on SIGTERM (exit 143) like the
trainer's CLIs, and continues from its checkpoint with --resume."""

import argparse
import json
import signal
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.05)
parser.add_argument("--fail", action="store_true")
parser.add_argument("--resume", action="store_true")
parser.add_argument("--hold", action="store_true", help="step on (up to --steps) until OUT/release exists")
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)
checkpoint = args.out / "checkpoint.json"
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
start = json.loads(checkpoint.read_text())["step"] if args.resume and checkpoint.exists() else 0
print(f"fake job from step {start}", flush=True)
with open(args.out / "metrics.jsonl", "a") as metrics:
    for step in range(start + 1, args.steps + 1):
        time.sleep(args.sleep)
        metrics.write(json.dumps({"step": step, "loss": 1.0 / step, "lr": 0.1}) + "\n")
        metrics.flush()
        checkpoint.write_text(json.dumps({"step": step}))
        if stop:
            print(f"stopping at step {step} with a checkpoint", flush=True)
            sys.exit(143)
        if args.hold and (args.out / "release").exists():
            print(f"released at step {step}", flush=True)
            break
if args.fail:
    print("fake job failing on purpose", flush=True)
    sys.exit(3)
print("fake job done", flush=True)
