"""``--runmode benchmark``: latency and throughput of a model, network and end to end.

The measuring rules are in :data:`METHODOLOGY`, which is also printed with
every run and stored in the JSON report.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time

import numpy as np
import tensorflow as tf

from common.atomic_files import write_text

METHODOLOGY = (
    "Inputs are made once before timing and stay in memory (no input pipeline). Each "
    "(variant, part, batch size) row first runs `warmup` untimed calls (tracing, XLA "
    "compilation and allocator warm-up happen there), then `runs` calls, each timed on its "
    "own with time.perf_counter with its outputs copied to host memory, so asynchronous "
    "execution cannot hide work. Latency percentiles (p50/p90/p95/p99, linear interpolation) "
    "are per call, i.e. per batch; throughput = batch size x runs / total timed seconds. "
    "'network' = the pure network on already-normalized images; 'end_to_end' = uint8 images "
    "-> preprocessing -> network -> post-processing (NMS or softmax/top-k)."
)
PERCENTILES = (50, 90, 95, 99)


@dataclasses.dataclass
class BenchmarkResult:
    """One row of the benchmark table (latencies in milliseconds per batch)."""

    variant: str
    part: str
    batch_size: int
    runs: int
    warmup: int
    throughput_images_per_s: float
    latency_ms: dict

    def as_dict(self):
        return dataclasses.asdict(self)


def _fetch(outputs):
    """Forces results to host memory (works for tensors, arrays and dicts of them)."""
    for value in tf.nest.flatten(outputs):
        np.asarray(value)


def time_calls(function, inputs, warmup=5, runs=20):
    """Calls ``function(inputs)`` ``warmup`` + ``runs`` times; returns the timed seconds."""
    for _ in range(warmup):
        _fetch(function(inputs))
    latencies = []
    for _ in range(runs):
        start = time.perf_counter()
        _fetch(function(inputs))
        latencies.append(time.perf_counter() - start)
    return latencies


def summarize(latencies, batch_size):
    """Throughput (images / s) and latency statistics (ms) of per-call timings."""
    seconds = np.asarray(latencies, np.float64)
    latency = {"mean": float(seconds.mean() * 1e3), "min": float(seconds.min() * 1e3),
               "max": float(seconds.max() * 1e3)}
    for p in PERCENTILES:
        latency[f"p{p}"] = float(np.percentile(seconds, p) * 1e3)
    return batch_size * len(seconds) / float(seconds.sum()), latency


def run_benchmarks(targets, batch_sizes, warmup=5, runs=20, log=print):
    """Times every target at every batch size.

    Args:
        targets: list of ``(variant, part, make)`` where ``make(batch_size)``
            returns ``(function, inputs)``, or None when the target cannot run
            that batch size (skipped with a note).
        batch_sizes: e.g. ``(1, 8)``.
        warmup: untimed calls per row.
        runs: timed calls per row.
        log: progress printer.

    Returns:
        A list of :class:`BenchmarkResult`.
    """
    results = []
    for variant, part, make in targets:
        for batch_size in batch_sizes:
            made = make(batch_size)
            if made is None:
                log(f"skip {variant} {part} batch {batch_size}: not supported by this format")
                continue
            function, inputs = made
            latencies = time_calls(function, inputs, warmup, runs)
            throughput, latency = summarize(latencies, batch_size)
            results.append(BenchmarkResult(variant, part, batch_size, runs, warmup,
                                           throughput, latency))
            log(f"{variant:>14} {part:>10} batch {batch_size:>3}: {throughput:9.2f} img/s, "
                f"p50 {latency['p50']:.2f} ms")
    return results


def format_table(results):
    """A fixed-width text table of the results."""
    header = (f"{'variant':<16}{'part':<12}{'batch':>6}{'img/s':>11}"
              + "".join(f"{'p' + str(p) + ' ms':>11}" for p in PERCENTILES))
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.variant:<16}{r.part:<12}{r.batch_size:>6}"
                     f"{r.throughput_images_per_s:>11.2f}"
                     + "".join(f"{r.latency_ms[f'p{p}']:>11.2f}" for p in PERCENTILES))
    return "\n".join(lines)


def report(results, **meta):
    """The JSON-ready benchmark report: environment, methodology, results."""
    return {
        **meta,
        "methodology": METHODOLOGY,
        "environment": {
            "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
        },
        "results": [r.as_dict() for r in results],
    }


def write_report(path, data):
    """Writes :func:`report` output as indented JSON (complete or not at all)."""
    write_text(path, json.dumps(data, indent=2))
