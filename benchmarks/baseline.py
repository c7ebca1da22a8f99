"""A/B mode of the suite (``python -m benchmarks.run --baseline REF``): every selected
case is also run by another checkout of this project, interleaved, and reported
as a ratio "this checkout / REF" measured in the same run.

The other checkout is a temporary ``git worktree`` of ``REF`` (removed at the
end). For each case the two checkouts alternate whole case processes
(``ours, baseline, ours, baseline, ...``, one process at a time, ``rounds``
each), every process running that checkout's own ``benchmarks.cases`` on the
same spec and the same synthetic data, so a change of machine load hits both
alike. A case's metric is the median over its processes of each process's
median; the ratio is ours / baseline (throughputs: higher is better for us;
latencies are reported as baseline / ours, so > 1 means we are faster too).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile

from benchmarks.timing import spread


class BaselineError(RuntimeError):
    """The baseline checkout cannot be made (unknown ref, not a git checkout)."""


@contextlib.contextmanager
def baseline_checkout(ref, root, parent):
    """A detached ``git worktree`` of ``ref`` of the repository at ``root``, in a new
    folder under ``parent``; removed (with its git bookkeeping) on exit.

    Yields:
        ``(path, commit)``: the checkout's root and the full commit id of ``ref``.
    """
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--verify", f"{ref}^{{commit}}"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise BaselineError(f"--baseline {ref!r} is not a commit of the repository at {root} "
                            f"({detail.strip()}); give a branch, tag or commit id.") from None
    path = tempfile.mkdtemp(prefix="baseline_", dir=parent)
    os.rmdir(path)  # git worktree add wants to create it
    subprocess.run(["git", "-C", root, "worktree", "add", "--detach", path, commit],
                   capture_output=True, text=True, check=True)
    try:
        yield path, commit
    finally:
        subprocess.run(["git", "-C", root, "worktree", "remove", "--force", path],
                       capture_output=True, text=True, check=False)


def metrics(spec, result):
    """``{metric name: (value, higher_is_better)}`` of one case process's result."""
    if spec["kind"] == "train":
        return {"train images/s": (result["runs"]["ours"]["images_per_second"]["median"], True)}
    if spec["kind"] == "input":
        return {"input images/s": (result["images_per_second"]["median"], True)}
    if spec["kind"] == "infer":
        out = {}
        for row in result["rows"]:
            if row["model"] != "ours":
                continue
            key = f"{row['part']} batch {row['batch_size']}"
            out[f"{key} images/s"] = (row["round_images_per_second"]["median"], True)
            out[f"{key} p50 ms"] = (row["latency_ms"]["p50"], False)
        return out
    return {}


def compare(spec, ours, baseline):
    """The A/B entry of one case from the per-process results of both checkouts.

    Args:
        spec: the case spec.
        ours, baseline: lists of result dicts, one per process.

    Returns:
        ``{"id", "rounds", "metrics": [{"metric", "ours", "baseline", "ratio",
        "faster"}]}``; ``ratio`` is ours / baseline for throughputs and
        baseline / ours for latencies, so > 1 always means this checkout is faster.
    """
    rows = []
    a_runs = [metrics(spec, r) for r in ours]
    b_runs = [metrics(spec, r) for r in baseline]
    for name in (a_runs[0] if a_runs else {}):
        a = spread([m[name][0] for m in a_runs if name in m])
        b_values = [m[name][0] for m in b_runs if name in m]
        if not b_values:
            continue
        b = spread(b_values)
        higher = a_runs[0][name][1]
        ratio = a["median"] / b["median"] if higher else b["median"] / a["median"]
        rows.append({"metric": name, "ours": a, "baseline": b, "ratio": ratio,
                     "higher_is_better": higher})
    return {"id": spec["id"], "rounds": len(ours), "metrics": rows}


def run_ab(specs, baseline_root, run_case, rounds, log):
    """Alternates whole case processes of both checkouts for every spec.

    Args:
        specs: the case specs to compare.
        baseline_root: the baseline checkout's root.
        run_case: ``(spec, cwd, tag) -> (result or None, error)``, one process to its end.
        rounds: processes per checkout and case.
        log: progress lines.

    Returns:
        ``(entries, failures)``: one :func:`compare` entry per case both sides ran at
        least once; ``failures`` lists ``(case id, side, error)``.
    """
    entries, failures = [], []
    for spec in specs:
        results = {"ours": [], "baseline": []}
        for index in range(rounds):
            for side, cwd in (("ours", None), ("baseline", baseline_root)):
                log(f"[a/b ] {spec['id']} {side} {index + 1}/{rounds}")
                result, error = run_case(spec, cwd, f"{side}{index}")
                if result is None:
                    failures.append((spec["id"], side, error))
                    log(f"[FAIL] {spec['id']} ({side}): {error}")
                else:
                    results[side].append(result)
        if results["ours"] and results["baseline"]:
            entry = compare(spec, results["ours"], results["baseline"])
            entries.append(entry)
            for row in entry["metrics"]:
                log(f"  {spec['id']} {row['metric']}: ours {row['ours']['median']:.3f} "
                    f"baseline {row['baseline']['median']:.3f} -> {row['ratio']:.3f}x")
    return entries, failures


def markdown(ab):
    """The A/B section of the report."""
    lines = ["", f"## A/B against {ab['ref']} ({ab['commit'][:10]}), same run", "",
             "Ratio > 1: this checkout is faster (throughput ours / baseline, latency "
             f"baseline / ours). {ab['rounds']} alternating processes per side and case.", "",
             "| case | metric | ours | baseline | ratio |", "|---|---|---|---|---|"]
    for entry in ab["cases"]:
        for row in entry["metrics"]:
            lines.append(f"| {entry['id']} | {row['metric']} | {row['ours']['median']:.3f} | "
                         f"{row['baseline']['median']:.3f} | **{row['ratio']:.2f}×** |")
    for case_id, side, error in ab["failures"]:
        lines.append(f"| {case_id} | failed ({side}) | {error.splitlines()[0][:80]} | | |")
    return "\n".join(lines)

