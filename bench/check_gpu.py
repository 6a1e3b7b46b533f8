"""`make check-gpu`: the served hrnet_om on an NVIDIA GPU (configs/gpu.pbtxt: ONNX Runtime's
TensorRT and CUDA providers, from `make install GPU=1`), measured with client.perf:

* hrnet_om at 1x3x512x512 (one pass) and 2x3x512x512 (the flip-test pair of one image), concurrency 1;
* hrnet_pose (the whole pipeline on the bundled COCO images) at concurrency 1 and 4.

Prints img/s and the GPU's name. Exits 2 where this onnxruntime has no GPU provider or the server's
log shows hrnet_om running on the CPU.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown GPU"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown GPU (no nvidia-smi)"


def perf(url: str, model: str, concurrency: str, *extra) -> list:
    """[(concurrency, infer/s)] from client.perf's CSV."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "perf.csv")
        cmd = [sys.executable, "-m", "client.perf", "-u", url, "-m", model, "--concurrency-range", concurrency,
               "--measurement-interval", "3000", "-f", out, *extra]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        with open(out) as f:
            rows = list(csv.DictReader(f))
    return sorted((int(r["Concurrency"]), float(r["Inferences/Second"])) for r in rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.check_gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default=os.path.join(ROOT, "model_repository"))
    p.add_argument("--config", default="gpu", help="--model-config-name for hrnet_om (default gpu)")
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    import onnxruntime as ort
    from backend.backends.onnxruntime_backend import gpu_providers
    from tests.serverproc import start_server, wait_ready

    have = gpu_providers()  # (the server's own check, CUDA libraries preloaded as it does)
    if not have:
        print(f"no GPU execution provider in this onnxruntime ({ort.__version__}: "
              f"{', '.join(ort.get_available_providers())}): make install GPU=1 on a machine with an NVIDIA GPU",
              file=sys.stderr)
        return 2
    print(f"{gpu_name()}; onnxruntime {ort.__version__} with {', '.join(have)}")
    print("starting the server (a TensorRT engine build can take minutes)...", flush=True)
    with start_server(args.repo, "--model-config-name", args.config, timeout=1800) as srv:
        wait_ready(srv.url, "hrnet_pose", timeout=1800).close()
        lines = [line for line in srv.log.splitlines() if "model 'hrnet_om' instance" in line]
        if not any(" on GPU " in line for line in lines):  # the backend's line for a GPU instance
            print("hrnet_om is not running on a GPU:\n" + "\n".join(lines), file=sys.stderr)
            return 2
        print("\n".join(lines))
        (one,) = perf(srv.url, "hrnet_om", "1", "--shape", "input:1,3,512,512")
        (pair,) = perf(srv.url, "hrnet_om", "1", "--shape", "input:2,3,512,512")
        pose = perf(srv.url, "hrnet_pose", "1:4:3")
    rows = [("hrnet_om 1x3x512x512 (one pass), concurrency 1", one[1]),
            ("hrnet_om 2x3x512x512 (flip-test pair), concurrency 1", pair[1]),
            *((f"hrnet_pose (bundled COCO images), concurrency {c}", ips) for c, ips in pose)]
    print(f"\n| {'measurement':<56} | {'img/s':>8} |\n|{'-' * 58}|{'-' * 10}|")
    for name, ips in rows:
        print(f"| {name:<56} | {ips:>8.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
