"""Timing helpers shared by the benchmark cases: repetitions, interleaving, statistics."""
from __future__ import annotations

import contextlib
import statistics
import time

import numpy as np


def spread(values):
    """Median and spread of per-repetition measurements.

    Returns:
        ``{"median", "min", "max", "iqr", "rel_spread", "n", "values"}``;
        ``rel_spread`` is ``(max - min) / median``.
    """
    values = [float(v) for v in values]
    median = statistics.median(values)
    q1, q3 = (np.percentile(values, [25, 75]) if len(values) > 1 else (values[0], values[0]))
    return {"median": median, "min": min(values), "max": max(values), "iqr": float(q3 - q1),
            "rel_spread": (max(values) - min(values)) / median if median else 0.0,
            "n": len(values), "values": values}


def interleaved(runners, warmup, repeats, log=print, exclusive=contextlib.nullcontext):
    """Times several step functions alternately: ``A B A B …``.

    Each runner is ``(name, run, items)``: ``run()`` does one timed unit of work
    (and must return only after the work is done, e.g. by reading a result on
    the host) and ``items`` is the number of images it processes. All runners
    first get ``warmup`` untimed calls (tracing, XLA compilation, allocator
    warm-up), then ``repeats`` rounds in which each runner is timed once, so a
    change of machine load hits all of them alike. The rounds run inside
    ``exclusive()`` (:meth:`benchmarks.gate.TimingGate.exclusive` in the suite).

    Returns:
        ``{name: {"seconds": [...], "images_per_second": spread(...)}}``.
    """
    results = {name: [] for name, _, _ in runners}
    for name, run, _ in runners:
        tick = time.perf_counter()
        for _ in range(warmup):
            run()
        log(f"  {name}: warm-up {warmup} call(s) {time.perf_counter() - tick:.1f} s")
    with exclusive():
        for index in range(repeats):
            for name, run, _ in runners:
                tick = time.perf_counter()
                run()
                results[name].append(time.perf_counter() - tick)
            log(f"  round {index + 1}/{repeats}: "
                + ", ".join(f"{n} {results[n][-1]:.2f} s" for n, _, _ in runners))
    return {name: {"seconds": results[name],
                   "images_per_second": spread([items / s for s in results[name]])}
            for name, _, items in runners}
