"""`make bench`, second table: can the server keep an accelerator busy? `hrnet_om` is replaced by
an emulated device (bench/emulated_om: each batch-1 pass sleeps `pass_ms` with the GIL free and
returns trained-like maps), and the served `hrnet_pose` is driven by NVIDIA's perf_analyzer (async,
concurrency 4, the bundled COCO JPEGs):

* at 6.6 ms a pass (the reference's Ascend 310P3: 151 img/s a pass, so 75.8 img/s with the flip
  test's two passes) the served img/s over that cap says how busy the device is kept;
* at 0 ms the host side alone (decode, preprocess, grouping, the server) sets the pace.

Levers measured: instances of preprocess and grouping. perf_analyzer comes from
../shared/tools/perf_analyzer.sh; where it is absent or cannot run, the table is skipped saying why.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(os.path.dirname(ROOT), "shared", "tools", "perf_analyzer.sh")
REFERENCE_PASS_MS = 6.6
CONCURRENCY = 4
# (pass ms, preprocess instances, grouping instances)
CASES = [(REFERENCE_PASS_MS, 1, 1), (REFERENCE_PASS_MS, 2, 1), (0.0, 1, 1), (0.0, 2, 1), (0.0, 2, 2)]
EMULATED_CONFIG = '''
name: "hrnet_om"
backend: "python"
max_batch_size: 0
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ -1, 3, -1, -1 ] }} ]
output [ {{ name: "output1" data_type: TYPE_FP32 dims: [ -1, 34, -1, -1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "pass_ms" value: {{ string_value: "{pass_ms}" }} }}
parameters {{ key: "project_root" value: {{ string_value: "{root}" }} }}
'''


def perf_analyzer_ready() -> str:
    """'' when perf_analyzer can run, else why not."""
    if not os.path.isfile(TOOL):
        return f"{TOOL} is absent (no ../shared next to this checkout)"
    setup = subprocess.run(["bash", TOOL, "--setup-only"], capture_output=True, text=True, timeout=300)
    if setup.returncode != 0:
        return f"perf_analyzer could not be prepared (exit {setup.returncode}): {setup.stderr.strip()[-300:]}"
    return ""


def _set_count(config_path: str, count: int):
    from google.protobuf import text_format
    from proto import model_config_pb2 as mc
    cfg = text_format.Parse(open(config_path).read(), mc.ModelConfig())
    del cfg.instance_group[:]
    cfg.instance_group.add(count=count, kind=mc.ModelInstanceGroup.KIND_CPU)
    with open(config_path, "w") as f:
        f.write(text_format.MessageToString(cfg))


def build_repo(dest: str, pass_ms: float, preprocess: int, grouping: int) -> str:
    """model_repository's pipeline with the emulated device in hrnet_om's place."""
    src = os.path.join(ROOT, "model_repository")
    for name in ("preprocess", "grouping", "hrnet_pose"):
        shutil.copytree(os.path.join(src, name), os.path.join(dest, name), ignore=shutil.ignore_patterns("__pycache__"))
    om = os.path.join(dest, "hrnet_om")
    os.makedirs(os.path.join(om, "1"))
    shutil.copy(os.path.join(ROOT, "bench", "emulated_om", "model.py"), os.path.join(om, "1", "model.py"))
    with open(os.path.join(om, "config.pbtxt"), "w") as f:
        f.write(EMULATED_CONFIG.format(pass_ms=pass_ms, root=ROOT))
    _set_count(os.path.join(dest, "preprocess", "config.pbtxt"), preprocess)
    _set_count(os.path.join(dest, "grouping", "config.pbtxt"), grouping)
    return dest


def measure(pass_ms, preprocess, grouping, requests) -> float:
    from tests.serverproc import start_server, wait_ready
    with tempfile.TemporaryDirectory() as tmp:
        repo = build_repo(os.path.join(tmp, "repo"), pass_ms, preprocess, grouping)
        data = os.path.join(tmp, "images.json")
        with start_server(repo) as srv:
            wait_ready(srv.url, "hrnet_pose").close()
            export = subprocess.run([sys.executable, "-m", "client.perf", "-u", srv.url, "-m", "hrnet_pose",
                                     "--export-input-data", data], cwd=ROOT, capture_output=True, text=True)
            if export.returncode != 0:
                raise SystemExit(f"client.perf --export-input-data failed:\n{export.stderr[-2000:]}")
            cmd = ["bash", TOOL, "-m", "hrnet_pose", "-u", srv.url, "-i", "grpc", "--async",
                   "--concurrency-range", str(CONCURRENCY), "--input-data", data, "--request-count", str(requests)]
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        m = re.search(r"Throughput: ([0-9.]+) infer/sec", run.stdout)
        if run.returncode != 0 or not m:
            raise SystemExit(f"$ {' '.join(cmd)}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        return float(m.group(1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.emulated_device", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=400, help="requests measured per case (perf_analyzer)")
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    why = perf_analyzer_ready()
    if why:
        print(f"\nEmulated-device table skipped: {why}")
        return 0
    cores = os.cpu_count() or 1
    cap = 1000 / (2 * REFERENCE_PASS_MS)
    print(f"\nKeeping an accelerator busy — emulated device in hrnet_om's place, served hrnet_pose, "
          f"perf_analyzer --async concurrency {CONCURRENCY}, {args.requests} requests a case, {cores} cores\n")
    print("| device pass | preprocess inst. | grouping inst. | img/s | notes")
    print("|---|---|---|---|---")
    for pass_ms, pre, grp in CASES:
        ips = measure(pass_ms, pre, grp, args.requests)
        if pass_ms:
            note = f"{ips / cap:.3f} of the device cap {cap:.1f} img/s (goal >= 0.97)"
        else:
            note = f"host side alone: {ips / cores:.1f} img/s per core (goal >= 110 img/s on 2 cores)"
        print(f"| {pass_ms:g} ms | {pre} | {grp} | {ips:.1f} | {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
