"""`make bench`: the HRNet pipeline's cost, stage by stage, in process and through the server.

One table, measured in one run on this machine: the network pass at 512x512 (and its share of the
CPU's FP32 peak), preprocess and grouping as a share of the pass, the whole pipeline in process,
the same through the server over gRPC, and their ratio.
"""

import argparse
import glob
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GFLOP_PER_PASS = 81.6  # HRNet-W32 AE at 1x3x512x512 (2 x 40.8 GMAC)
FAST_REPEAT = 15  # repeats of the stages that take milliseconds


def cpu_peak_gflops() -> tuple[float, str]:
    """cores x nominal clock x FP32 FLOP/cycle: 64 with AVX-512 (two 16-wide FMA units), 32 with
    AVX2 FMA, 16 otherwise. Turbo clocks can take a pass above it."""
    cores = os.cpu_count() or 1
    mhz = 0.0
    model = platform.processor() or "cpu"
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz") and not mhz:
                    mhz = float(line.split(":")[1])
                elif line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            mhz = max(mhz, int(f.read()) / 1000)
    except OSError:
        pass
    per_cycle, isa = (64, "AVX-512") if "avx512f" in flags else (32, "AVX2") if {"avx2", "fma"} <= flags else (16, "SSE")
    return cores * (mhz / 1000) * per_cycle, f"{model}, {cores} cores @ {mhz / 1000:.2f} GHz, {isa} ({per_cycle} FLOP/cycle)"


def session(repo: str):
    """hrnet_om as the server runs it: its config.pbtxt's ONNX Runtime settings, all cores."""
    import onnxruntime as ort
    from backend import config as config_util
    from backend.backends.onnxruntime_backend import session_options
    model_dir = os.path.join(repo, "hrnet_om")
    opts = session_options(config_util.read_config(model_dir), os.cpu_count() or 1, 1)
    return ort.InferenceSession(os.path.join(model_dir, "1", "model.onnx"), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def ort_default_session(onnx_path: str):
    """The network in an ONNX Runtime session with its defaults (threads, spinning)."""
    import onnxruntime as ort
    return ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    p.add_argument("--repo", default=os.path.join(ROOT, "model_repository"))
    p.add_argument("--images", default=os.path.join(ROOT, "data", "coco_mini", "val2017"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from bench.timing import timed, timed_pair
    from hrnet import grouping, preprocess
    from hrnet.synthetic import CENTER, MAPS, SCALE, network_like
    from tests.serverproc import start_server, wait_ready
    import tritonclient.grpc as grpcclient

    onnx_path = os.path.join(args.repo, "hrnet_om", "1", "model.onnx")
    sess = session(args.repo)
    images = [open(f, "rb").read() for f in sorted(glob.glob(os.path.join(args.images, "*.jpg")))]
    params = grouping.GroupingParams()

    x512 = np.random.default_rng(0).standard_normal((1, 3, 512, 512), dtype=np.float32)
    t_pass, _ = timed(lambda: sess.run(["output1"], {"input": x512}), args.repeat)
    peak, cpu = cpu_peak_gflops()

    # Per image: preprocess, network (batch 2 with flip), grouping; summed over the image set. The
    # stages of a few milliseconds are repeated more: their medians settle on a noisy machine.
    fast_repeat = max(args.repeat, FAST_REPEAT)
    t_pre = t_net = t_group = 0.0
    for data in images:
        t, (inp, center, scale) = timed(lambda: preprocess.preprocess(preprocess.decode_image(data)), fast_repeat)
        t_pre += t
        t, (out,) = timed(lambda: sess.run(["output1"], {"input": inp}), args.repeat)
        t_net += t
        t_group += timed(lambda: grouping.group(out, center, scale, params), fast_repeat)[0]

    # Grouping on trained-like maps too: random weights give noise tags (std ~10) that bounds
    # prune badly, unlike a trained network's smooth ones (hrnet/synthetic.py imitates those).
    # (60: a crowded scene, more persons than max_num_people: each joint matched against all of them)
    scenes = {people: network_like(np.random.default_rng(people), *MAPS, people) for people in (3, 10, 60)}
    t_scene = {people: timed(lambda: grouping.group(out, CENTER, SCALE, params), fast_repeat)[0]
               for people, out in scenes.items()}
    weights = sess.get_modelmeta().custom_metadata_map.get("weights", "unknown")

    def pipeline_inprocess():
        for data in images:
            inp, center, scale = preprocess.preprocess(preprocess.decode_image(data))
            out = sess.run(["output1"], {"input": inp})[0]
            grouping.group(out, center, scale, params)

    # ONNX Runtime's defaults (its threads spin after a pass: a pause lets them stop before the next
    # measurement), the reference for the served network below
    default_sess = ort_default_session(onnx_path)

    def default_pass():
        default_sess.run(["output1"], {"input": x512})
        time.sleep(0.3)

    # The whole pipeline in process and through the server, in turns (the idle one sleeps: ONNX
    # Runtime's threads stop spinning after each pass, per hrnet_om's config).
    with start_server(args.repo) as srv:
        client = wait_ready(srv.url, "hrnet_pose")
        om_input = grpcclient.InferInput("input", list(x512.shape), "FP32")
        om_input.set_data_from_numpy(x512)

        def served_pass():
            client.infer("hrnet_om", [om_input])
            time.sleep(0.3)
        t_default, t_served = timed_pair(default_pass, served_pass, args.repeat)

        def pipeline_server():
            for data in images:
                inp = grpcclient.InferInput("IMAGE", [1], "BYTES")
                inp.set_data_from_numpy(np.array([data], dtype=np.object_))
                client.infer("hrnet_pose", [inp])
        t_inproc, t_server = timed_pair(pipeline_inprocess, pipeline_server, args.repeat)
        client.close()
    t_default, t_served = t_default - 0.3, t_served - 0.3

    n = len(images)
    rows = [
        ("model pass 1x3x512x512", t_pass * 1e3, f"{GFLOP_PER_PASS / t_pass:.1f} GFLOP/s = "
         f"{100 * GFLOP_PER_PASS / t_pass / peak:.1f}% of {peak:.0f} GFLOP/s FP32 peak at nominal clock"),
        ("hrnet_om via server (gRPC) 1x3x512x512", t_served * 1e3,
         f"{t_default / t_served:.3f} of the img/s of ONNX Runtime's default session in process "
         f"({t_default * 1e3:.1f} ms; goal >= 0.95); {t_pass / t_served:.3f} of the server's settings in process"),
        ("network per image (flip: batch 2)", t_net / n * 1e3, "preprocessed COCO mini images"),
        ("preprocess per image", t_pre / n * 1e3, f"{100 * t_pre / n / t_pass:.2f}% of a model pass (goal <= 2%)"),
        (f"grouping per image ({'random-weight' if weights == 'random-init' else 'model'} maps)", t_group / n * 1e3,
         f"{100 * t_group / n / t_pass:.2f}% of a model pass (goal <= 2%)"),
        *((f"grouping, trained-like maps, {p} people", t * 1e3,
           f"{100 * t / t_pass:.2f}% of a model pass (hrnet/synthetic.py, 128x208 maps"
           f"{'; crowded, goal <= 2%' if p > 30 else ''})") for p, t in t_scene.items()),
        ("pipeline in process per image", t_inproc / n * 1e3, "decode+preprocess+network+grouping"),
        ("pipeline via server (gRPC) per image", t_server / n * 1e3,
         f"ratio in-process/server = {t_inproc / t_server:.3f} (goal >= 0.95)"),
    ]
    print(f"\nHRNet-W32 AE pipeline benchmark — {time.strftime('%Y-%m-%d')} — {cpu}")
    print(f"onnx: {onnx_path}; {n} images; median of {args.repeat} runs ({fast_repeat} for preprocess and grouping; "
          f"in process and via server in turns)\n")
    print(f"| {'stage':<40} | {'ms':>9} | notes")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 60}")
    for name, ms, note in rows:
        print(f"| {name:<40} | {ms:>9.2f} | {note}")
    print(f"\nthroughput via server: {n / t_server:.2f} images/s (batch 1, sequential)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
