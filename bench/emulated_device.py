"""`make bench`, second table: can the server keep an accelerator busy? `hrnet_om` is replaced by
an emulated device (bench/emulated_om: each batch-1 pass sleeps `pass_ms` with the GIL free and
returns trained-like maps; its instances are sessions sharing one device, their passes queued back
to back), and the served `hrnet_pose` is driven by NVIDIA's perf_analyzer (async, concurrency 4,
the bundled COCO JPEGs):

* at 6.6 ms a pass (the reference's Ascend 310P3: 151 img/s a pass, so 75.8 img/s with the flip
  test's two passes) the served img/s over that cap says how busy the device is kept;
* at 0 ms the host side alone (decode, preprocess, grouping, the server) sets the pace; once with
  the server on one core (perf_analyzer on the other): the per-core figure.

Levers measured: device sessions (hrnet_om instances), instances of preprocess and grouping.
perf_analyzer's time windows (5 s, stable within 10 %, else 20 %); each row also gives the server's
CPU time per image and the load average it ran under (a shared machine moves the figures).
perf_analyzer comes from ../shared/tools/perf_analyzer.sh; where it is absent or cannot run, the
table is skipped saying why.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from bench.transport import PERF_ANALYZER as TOOL, Skip, parse, perf_analyzer_ready

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_PASS_MS = 6.6
CONCURRENCY = 4
WINDOW_MS = 5000
# (pass ms, device sessions, preprocess instances, grouping instances, server cores: 0 = all)
CASES = [(REFERENCE_PASS_MS, 1, 1, 1, 0), (REFERENCE_PASS_MS, 2, 1, 1, 0), (REFERENCE_PASS_MS, 2, 2, 2, 0),
         (0.0, 1, 1, 1, 1), (0.0, 1, 1, 1, 0), (0.0, 1, 2, 2, 0)]
EMULATED_CONFIG = '''
name: "hrnet_om"
backend: "python"
max_batch_size: 0
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ -1, 3, -1, -1 ] }} ]
output [ {{ name: "output1" data_type: TYPE_FP32 dims: [ -1, 34, -1, -1 ] }} ]
instance_group [ {{ count: {sessions} kind: KIND_CPU }} ]
parameters {{ key: "pass_ms" value: {{ string_value: "{pass_ms}" }} }}
parameters {{ key: "project_root" value: {{ string_value: "{root}" }} }}
'''


def _set_count(config_path: str, count: int):
    from google.protobuf import text_format
    from proto import model_config_pb2 as mc
    cfg = text_format.Parse(open(config_path).read(), mc.ModelConfig())
    del cfg.instance_group[:]
    cfg.instance_group.add(count=count, kind=mc.ModelInstanceGroup.KIND_CPU)
    with open(config_path, "w") as f:
        f.write(text_format.MessageToString(cfg))


def build_repo(dest: str, pass_ms: float, preprocess: int, grouping: int, sessions: int = 1) -> str:
    """model_repository's pipeline with the emulated device in hrnet_om's place (`sessions`
    instances of it, sharing the one device)."""
    src = os.path.join(ROOT, "model_repository")
    for name in ("preprocess", "grouping", "hrnet_pose"):
        shutil.copytree(os.path.join(src, name), os.path.join(dest, name), ignore=shutil.ignore_patterns("__pycache__"))
    om = os.path.join(dest, "hrnet_om")
    os.makedirs(os.path.join(om, "1"))
    shutil.copy(os.path.join(ROOT, "bench", "emulated_om", "model.py"), os.path.join(om, "1", "model.py"))
    with open(os.path.join(om, "config.pbtxt"), "w") as f:
        f.write(EMULATED_CONFIG.format(pass_ms=pass_ms, root=ROOT, sessions=sessions))
    _set_count(os.path.join(dest, "preprocess", "config.pbtxt"), preprocess)
    _set_count(os.path.join(dest, "grouping", "config.pbtxt"), grouping)
    return dest


def _pin(pid: int, cores: set):
    """Every thread of the process onto `cores` (threads made later inherit it from their maker)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:
            pass  # (a thread that ended meanwhile)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(client) -> int:
    stats = client.get_inference_statistics("hrnet_pose", as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0))


def measure(pass_ms, sessions, preprocess, grouping, cores, data: str) -> dict:
    """{"ips": served img/s (perf_analyzer), "cpu_ms": server CPU per image, "stable": bool}; the
    bundled images' perf_analyzer input file `data` is written by the first case."""
    from tests.serverproc import start_server, wait_ready
    with tempfile.TemporaryDirectory() as tmp:
        repo = build_repo(os.path.join(tmp, "repo"), pass_ms, preprocess, grouping, sessions)
        with start_server(repo) as srv:
            client = wait_ready(srv.url, "hrnet_pose")
            if not os.path.exists(data):
                export = subprocess.run([sys.executable, "-m", "client.perf", "-u", srv.url, "-m", "hrnet_pose",
                                         "--export-input-data", data], cwd=ROOT, capture_output=True, text=True)
                if export.returncode != 0:
                    raise SystemExit(f"client.perf --export-input-data failed:\n{export.stderr[-2000:]}")
            prefix = []
            if cores:
                _pin(srv.proc.pid, set(range(cores)))
                others = sorted(set(os.sched_getaffinity(0)) - set(range(cores)))
                prefix = ["taskset", "-c", ",".join(map(str, others))] if others and shutil.which("taskset") else []
            for stability in (10, 20):
                cmd = prefix + ["bash", TOOL, "-m", "hrnet_pose", "-u", srv.url, "-i", "grpc", "--async",
                                "--concurrency-range", str(CONCURRENCY), "--input-data", data,
                                "--measurement-interval", str(WINDOW_MS), "-s", str(stability)]
                cpu0, n0 = _cpu_seconds(srv.proc.pid), _count(client)
                run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                cpu1, n1 = _cpu_seconds(srv.proc.pid), _count(client)
                ips = parse(run.stdout).get("infer_per_s")
                if ips is not None and run.returncode == 0:
                    break
                if "Failed to obtain stable measurement" not in run.stdout + run.stderr:
                    raise SystemExit(f"$ {' '.join(cmd)}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
            client.close()
        stable = ips is not None and run.returncode == 0
        return {"ips": ips if stable else float("nan"), "stable": stable,
                "cpu_ms": (cpu1 - cpu0) / max(1, n1 - n0) * 1000, "stability": stability}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.emulated_device", description=__doc__.split("\n\n")[0])
    p.parse_args(argv)
    sys.path.insert(0, ROOT)
    try:
        perf_analyzer_ready()
    except Skip as why:
        print(f"\nEmulated-device table skipped: {why}")
        return 0
    cores = len(os.sched_getaffinity(0))
    cap = 1000 / (2 * REFERENCE_PASS_MS)
    print(f"\nKeeping an accelerator busy — emulated device in hrnet_om's place, served hrnet_pose, "
          f"perf_analyzer --async concurrency {CONCURRENCY}, {WINDOW_MS} ms windows, {cores} cores\n")
    print("| device pass | device sessions | preprocess inst. | grouping inst. | server cores | img/s "
          "| server CPU ms/img | load avg | notes")
    print("|---|---|---|---|---|---|---|---|---")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "images.json")  # (written by the first case)
        for pass_ms, sessions, pre, grp, pin in CASES:
            if pin and pin >= cores:
                continue
            r = measure(pass_ms, sessions, pre, grp, pin, data)
            ips, used = r["ips"], pin or cores
            if pass_ms:
                note = f"{ips / cap:.3f} of the device cap {cap:.1f} img/s (goal >= 0.97)"
            else:
                note = f"host side alone: {ips / used:.1f} img/s per core" + (
                    "" if pin else " (goal >= 110 img/s on 2 cores)")
            if not r["stable"]:
                note += f", NOT STABLE at -s {r['stability']}"
            elif r["stability"] != 10:
                note += f" (stable at -s {r['stability']})"
            print(f"| {pass_ms:g} ms | {sessions if pass_ms else '-'} | {pre} | {grp} | {pin or 'all'} | {ips:.1f} "
                  f"| {r['cpu_ms']:.1f} | {os.getloadavg()[0]:.1f} | {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
