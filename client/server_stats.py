"""Where the server spends its time: ModelStatistics deltas over a window, per model and step.

Same arithmetic as perf_analyzer: counts and nanoseconds are differences of the cumulative
statistics taken at the window's start and end; averages are per successful request; for an
ensemble, queue and compute are the sums of the composing models' averages, and "overhead" is
what is left of the average request latency.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from client.connection import pipeline_configs

PARTS = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class ModelTimes:
    """Statistics of one model over a window (or the sum of several windows)."""

    name: str
    version: str = ""
    inference_count: int = 0
    execution_count: int = 0
    success_count: int = 0
    fail_count: int = 0
    success_ns: int = 0
    queue_count: int = 0
    queue_ns: int = 0
    compute_input_count: int = 0
    compute_input_ns: int = 0
    compute_infer_count: int = 0
    compute_infer_ns: int = 0
    compute_output_count: int = 0
    compute_output_ns: int = 0

    def __add__(self, other: ModelTimes) -> ModelTimes:
        summed = ModelTimes(self.name, self.version or other.version)
        for f in fields(self)[2:]:
            setattr(summed, f.name, getattr(self, f.name) + getattr(other, f.name))
        return summed

    def avg_us(self, part: str) -> float:
        """Average microseconds of `part` ('success' = whole request) per request."""
        count = getattr(self, f"{part}_count")
        return getattr(self, f"{part}_ns") / count / 1e3 if count else 0.0


class StatsReader:
    """Takes ModelStatistics snapshots of a model and, for an ensemble, all its steps."""

    def __init__(self, client, model: str):
        self.client = client
        self.model = model
        configs = pipeline_configs(client, model)
        self.steps = {name: [s.model_name for s in c.ensemble_scheduling.step]
                      for name, c in configs.items()}
        self.models = list(configs)

    def snapshot(self) -> dict[tuple[str, str], object]:
        """(name, version) -> ModelStatistics proto, for the models of the pipeline."""
        name = "" if len(self.models) > 1 else self.model   # "" = every model, as PA does
        response = self.client.get_inference_statistics(name)
        return {(s.name, s.version): s for s in response.model_stats if s.name in self.models}

    def delta(self, before: dict, after: dict) -> dict[str, ModelTimes]:
        """Per model name, the statistics accumulated between two snapshots."""
        return {name: model_delta(name, before, after) for name in self.models}


def model_delta(name: str, before: dict, after: dict) -> ModelTimes:
    """Delta of the version whose queue count grew (the highest one if several or none did)."""
    versions = sorted((v for n, v in after if n == name), key=version_key)
    if not versions:
        return ModelTimes(name)
    grew = [v for v in versions
            if stat_count(after[(name, v)], "queue") > stat_count(before.get((name, v)), "queue")]
    version = (grew or versions)[-1]
    end, start = after[(name, version)], before.get((name, version))
    times = ModelTimes(name, version)
    for counter in ("inference_count", "execution_count"):
        setattr(times, counter, getattr(end, counter) - (getattr(start, counter) if start else 0))
    for part in ("success", "fail") + PARTS:
        setattr(times, f"{part}_count", stat_count(end, part) - stat_count(start, part))
        setattr(times, f"{part}_ns", stat_ns(end, part) - stat_ns(start, part))
    return times


def version_key(version: str):
    return (0, int(version)) if version.isdigit() else (1, version)


def stat_count(stats, part: str) -> int:
    return getattr(stats.inference_stats, part).count if stats is not None else 0


def stat_ns(stats, part: str) -> int:
    return getattr(stats.inference_stats, part).ns if stats is not None else 0


def merge(windows: list[dict[str, ModelTimes]]) -> dict[str, ModelTimes]:
    merged = dict(windows[0])
    for window in windows[1:]:
        for name, times in window.items():
            merged[name] = merged[name] + times
    return merged


def leaf_times_us(name: str, times: dict[str, ModelTimes], steps: dict[str, list[str]]) -> dict:
    """Average queue and compute microseconds of a model; for an ensemble, summed over steps."""
    if not steps.get(name):
        t = times[name]
        return {"queue": t.avg_us("queue"),
                "compute": sum(t.avg_us(p) for p in PARTS[1:])}
    total = {"queue": 0.0, "compute": 0.0}
    for step in dict.fromkeys(steps[name]):
        for k, v in leaf_times_us(step, times, steps).items():
            total[k] += v
    return total


def format_breakdown(model: str, times: dict[str, ModelTimes], steps: dict[str, list[str]],
                     indent: str = "  ") -> list[str]:
    """perf_analyzer's 'Server:' block, plus each step's share of the ensemble's latency."""
    t = times[model]
    lines = [f"{indent}Inference count: {t.inference_count}",
             f"{indent}Execution count: {t.execution_count}",
             f"{indent}Successful request count: {t.success_count}"]
    if t.fail_count:
        lines.append(f"{indent}Failed request count: {t.fail_count}")
    if not t.success_count:
        return lines
    total = t.avg_us("success")
    if not steps.get(model):
        parts = [t.avg_us(p) for p in PARTS]
        overhead = max(0.0, total - sum(parts))
        lines.append(f"{indent}Avg request latency: {total:.0f} usec (overhead {overhead:.0f} usec"
                     f" + queue {parts[0]:.0f} usec + compute input {parts[1]:.0f} usec"
                     f" + compute infer {parts[2]:.0f} usec + compute output {parts[3]:.0f} usec)")
        return lines
    leaf = leaf_times_us(model, times, steps)
    overhead = max(0.0, total - leaf["queue"] - leaf["compute"])
    lines.append(f"{indent}Avg request latency: {total:.0f} usec (overhead {overhead:.0f} usec"
                 f" + queue {leaf['queue']:.0f} usec + compute {leaf['compute']:.0f} usec)")
    lines.append(f"{indent}Composing models:")
    for step in dict.fromkeys(steps[model]):
        share = times[step].avg_us("success") / total * 100 if total else 0.0
        lines.append(f"{indent}{step}, version: {times[step].version or '-'} "
                     f"({share:.0f}% of the request latency)")
        lines.extend(format_breakdown(step, times, steps, indent + "  "))
    return lines
