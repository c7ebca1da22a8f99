"""Entry point of the benchmark suite: ``python -m benchmarks.run [--quick] --output_dir DIR``.

Runs every case of :mod:`benchmarks.plan` in its own subprocess
(:mod:`benchmarks.cases`), several at a time with only their untimed set-up
overlapping (:mod:`benchmarks.gate`), reads each child's peak resident memory from the
kernel (``os.wait4`` rusage ``ru_maxrss``), and writes ``DIR/results.json``
and ``DIR/results.md`` (the table, the target ratios, the machine and the
methodology). ``make bench`` / ``make bench-quick`` call it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from benchmarks import baseline as baseline_lib
from benchmarks import plan as plan_lib
from benchmarks import report
from benchmarks.gate import take_shared
from common.atomic_files import atomic_write, write_text
from common.progress import NoProgress, progress

METHODOLOGY = (
    "Each case runs in a fresh Python subprocess; its peak host memory is the child's "
    "ru_maxrss (os.wait4), so it includes TensorFlow itself (~0.4-0.6 GB). Warm-up calls "
    "(tracing, XLA compilation, autotuning) are excluded from every timing. Up to `jobs` "
    "cases set up at once (import, model building, tracing, warm-up; `max_processes` "
    "bounds the processes alive, counting those waiting for their turn), but a case "
    "times while holding an exclusive file lock that every other case's set-up and "
    "timing also need, so nothing else runs during a timed section. Input pipelines: "
    "the project's training pipelines (decode + augment [+ anchor targets for detection]) "
    "on synthetic TFRecords, `repeats` timings of `batches` batches each after warm-up "
    "batches (dataset.benchmark_input.measure). Train steps: the project's TrainStep with the "
    "recipe's optimizer, L2, clipping and EMA, fed one real batch from the experiment's own "
    "training pipeline repeated from memory (the step alone; the pipeline has its own rows); "
    "each repetition runs `steps` steps and reads the loss once on the host. The Keras "
    "reference (keras.applications.EfficientNetV2S, weights=None) is trained in the same "
    "process by a plain tf.function with the same optimizer, loss, L2, EMA, batch tensors and "
    "XLA setting; ours and the reference are interleaved (A B A B ...) and their ratio is the "
    "ratio of medians. Inference: common.export.benchmark.time_calls on the inference "
    "wrapper (network only, and end to end with pre/post-processing and NMS), rounds of "
    "`runs` calls interleaved over all targets of the case, outputs copied to host per call. "
    "Reported: median over repetitions, with min/max and relative spread (max-min)/median. "
    "GFLOP/s = 2 x forward multiply-adds (common.model_stats) x images/s, x3 for training "
    "(backward ~ 2x forward)."
)


class _Child:
    """One case in its own subprocess (``python -m benchmarks.cases SPEC OUT [LOCK_FD
    STATUS]``, or ``command``); its files live in ``workdir`` (one per case, fresh).
    ``lock_fd``: the shared lock of :func:`benchmarks.gate.take_shared`, handed to
    the child and closed here."""

    def __init__(self, spec, workdir, command=None, lock_fd=None, cwd=None):
        os.makedirs(workdir, exist_ok=True)
        self.spec_path = os.path.join(workdir, "spec.json")
        self.out_path = os.path.join(workdir, "out.json")
        self.stderr_path = os.path.join(workdir, "stderr.txt")
        self.status_path = os.path.join(workdir, "gate_status")
        with open(self.spec_path, "w") as handle:
            json.dump(spec, handle)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        root = cwd or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        command = command or [sys.executable, "-m", "benchmarks.cases", self.spec_path,
                              self.out_path] + (
            [] if lock_fd is None else [str(lock_fd), self.status_path])
        self.tick = time.perf_counter()
        try:
            with open(self.stderr_path, "w") as stderr:
                self.process = subprocess.Popen(
                    command, cwd=root, env=env, stdout=stderr, stderr=subprocess.STDOUT,
                    pass_fds=() if lock_fd is None else (lock_fd,))
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # the child holds the lock now
        self.status = self.usage = self.seconds = None
        self.stopped = False

    def setting_up(self):
        """True while the case works untimed (not waiting for, nor holding, the
        exclusive lock of :mod:`benchmarks.gate`)."""
        try:
            with open(self.status_path) as handle:
                return handle.read() in ("setup", "")
        except FileNotFoundError:
            return True  # not yet started

    def poll(self):
        """True once the process has ended (then reaped: exit status, rusage, seconds)."""
        if self.status is None:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self._reaped(status, usage)
        return self.status is not None

    def stop(self):
        """Kills the process (the suite's time limit) and reaps it."""
        if self.status is None:
            self.process.kill()
            _, status, usage = os.wait4(self.process.pid, 0)
            self._reaped(status, usage)
            self.stopped = True

    def _reaped(self, status, usage):
        self.status, self.usage = status, usage
        self.seconds = time.perf_counter() - self.tick
        self.process.returncode = os.waitstatus_to_exitcode(status)

    def outcome(self, log):
        """After :meth:`poll` or :meth:`stop`: logs the child's progress lines; returns
        ``(result or None, error text, peak RSS MiB, seconds, stopped)``."""
        peak_mib = self.usage.ru_maxrss / 1024.0  # Linux reports KiB
        with open(self.stderr_path) as handle:
            text = handle.read()
        for line in text.splitlines():
            if line.startswith("  "):
                log(line)
        if self.stopped:
            return None, f"stopped after {self.seconds / 60:.1f} min", peak_mib, self.seconds, True
        if self.process.returncode != 0 or not os.path.exists(self.out_path):
            tail = "\n".join(text.splitlines()[-15:])
            return (None, f"exit code {self.process.returncode}: {tail}", peak_mib, self.seconds,
                    False)
        with open(self.out_path) as handle:
            return json.load(handle), None, peak_mib, self.seconds, False


def _run_alone(spec, workdir, log, cwd=None):
    """Runs one case to its end (in the checkout at ``cwd``, default this one);
    returns :meth:`_Child.outcome`."""
    child = _Child(spec, workdir, cwd=cwd)
    while not child.poll():
        time.sleep(0.2)
    return child.outcome(log)


def machine():
    """What the numbers were measured on."""
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as handle:
            names = [l.split(":", 1)[1].strip() for l in handle if l.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
        with open("/proc/meminfo") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def run_suite(output_dir, mode="full", only=None, include_amp=False, budget_minutes=None,
              threads=0, profile=False, keep_previous=False, sample_dir=None, jobs=None,
              max_processes=None, baseline=None, ab_rounds=3, log=print):
    """Runs the suite; writes ``results.json`` and ``results.md`` into ``output_dir``.

    Args:
        output_dir: created if needed; also holds the sample data cache.
        mode: ``full``, ``quick`` or ``smoke`` (:mod:`benchmarks.plan`).
        only: optional list of substrings; only cases whose id contains one run.
        include_amp: time the mixed-precision variants on a CPU too.
        budget_minutes: the suite's time limit: cases that would start after it are
            skipped and a case still running at it is stopped (both labelled), so
            the whole run ends within it plus start-up and report writing.
        threads: tf.data private thread pool size for the pipelines (0 = shared).
        profile: also write a tf.profiler trace of a few train steps per train case.
        keep_previous: cases not run now (not selected by ``only``, or over the budget)
            keep their successful result from ``output_dir/results.json`` of an
            earlier run of the same mode (marked ``from_previous_run``), so a long
            suite can be completed in parts.
        sample_dir: where the synthetic TFRecords are generated and cached
            (default ``output_dir/sample_data``).
        jobs: cases that may set up at once; only untimed work overlaps
            (:mod:`benchmarks.gate`). 1 runs them one after another.
        max_processes: case processes alive at once, including those waiting for
            their turn to time (a bound on host memory); at least ``jobs``.
            ``jobs`` / ``max_processes`` None take the mode's setting
            (:data:`benchmarks.plan.MODES`).
        baseline: a git ref: A/B mode (:mod:`benchmarks.baseline`): every selected
            case runs alternately in this checkout and in a temporary worktree of
            ``baseline``, one process at a time, ``ab_rounds`` processes per side;
            the tables show this checkout's first process, the A/B section the
            ratios.

    Returns:
        The results dict (as written to ``results.json``).
    """
    jobs = plan_lib.MODES[mode]["jobs"] if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    max_processes = max(jobs, max_processes or plan_lib.MODES[mode]["max_processes"])
    # Absolute: the case processes of an A/B baseline run in the baseline's checkout.
    output_dir = os.path.abspath(output_dir)
    sample_dir = sample_dir and os.path.abspath(sample_dir)
    os.makedirs(output_dir, exist_ok=True)
    start = time.perf_counter()
    log("Methodology: " + METHODOLOGY)
    workdir = tempfile.mkdtemp(prefix="bench_", dir=output_dir)
    full = mode == "full"
    prepare = dict(kind="prepare", data_dir=sample_dir or os.path.join(output_dir, "sample_data"),
                   num_images=48 if full else 8, detection_image_size=640 if full else 256,
                   classification_image_size=384 if full else 160)
    data, error, _, _, _ = _run_alone(prepare, os.path.join(workdir, "prepare"), log)
    if data is None:
        raise RuntimeError(f"Could not make the sample data: {error}")
    cases = plan_lib.build_plan(mode, data, include_amp=include_amp, threads=threads)
    shared = dict(flops_cache=os.path.join(output_dir, "multiply_adds_cache.json"))
    lock_path = os.path.join(workdir, "timing.lock")
    previous = {}
    previous_path = os.path.join(output_dir, "results.json")
    if keep_previous and os.path.exists(previous_path):
        with open(previous_path) as handle:
            earlier = json.load(handle)
        if earlier.get("mode") == mode:
            previous = {c["id"]: dict(c, from_previous_run=True) for c in earlier["cases"]
                        if c["status"] == "ok"}
    deadline = start + 60.0 * budget_minutes if budget_minutes else None
    slots, queue = [], []  # results in plan order; (slot, spec) still to run
    for spec in cases:
        if only and not any(o in spec["id"] for o in only):
            if spec["id"] in previous:
                slots.append(previous[spec["id"]])
            continue
        spec = dict(spec, **shared)
        if profile and spec["kind"] == "train" and not spec.get("skip"):
            spec["profile_dir"] = os.path.join(output_dir, "profile", spec["id"].replace("/", "_"))
        if spec.get("skip"):
            slots.append(dict(id=spec["id"], spec=spec, status="skipped",
                              reason="mixed precision on a CPU (meaningful only on a GPU; "
                                     "pass --include_amp to time it anyway)"))
            log(f"[skip] {spec['id']}: mixed precision, no GPU")
            continue
        slots.append(None)
        queue.append((len(slots) - 1, spec))
    ab = None
    if baseline:
        ab = _run_ab(baseline, ab_rounds, slots, queue, workdir, log)
        queue = []
    running = []  # (slot, spec, child)
    bar = progress(len(queue), "benchmark cases", "case") if queue else NoProgress()
    if bar.enabled and log is print:
        log = bar.write  # lines above the bar, not through it
    while queue or running:
        while (queue and len(running) < max_processes
               and sum(child.setting_up() for _, _, child in running) < jobs):
            slot, spec = queue.pop(0)
            elapsed = (time.perf_counter() - start) / 60.0
            if budget_minutes and elapsed > budget_minutes:
                slots[slot] = previous.get(spec["id"]) or dict(
                    id=spec["id"], spec=spec, status="skipped",
                    reason=f"time budget of {budget_minutes} min used up")
                log(f"[skip] {spec['id']}: budget")
                bar.update(1)
                continue
            lock_fd = take_shared(lock_path)
            if lock_fd is None:  # a case is timing: start this one later
                queue.insert(0, (slot, spec))
                break
            log(f"[run ] {spec['id']} ({elapsed:.1f} min elapsed)")
            running.append((slot, spec, _Child(spec, os.path.join(workdir, f"case{slot:02d}"),
                                               lock_fd=lock_fd)))
        time.sleep(0.2)
        if deadline is not None and time.perf_counter() >= deadline:
            for _, _, child in running:
                child.stop()
        for item in [r for r in running if r[2].poll()]:
            running.remove(item)
            slot, spec, child = item
            slots[slot] = _entry(spec, child.outcome(log), previous, budget_minutes, log)
            bar.update(1)
            with atomic_write(os.path.join(output_dir, "partial_results.json")) as handle:
                json.dump([s for s in slots if s is not None], handle, indent=2)
    bar.close()
    results = [s for s in slots if s is not None]
    import tensorflow as tf  # only for the version string, after the children ran

    data = {"mode": mode, "command": " ".join(["python", "-m", "benchmarks.run"] + sys.argv[1:]),
            "tensorflow": tf.__version__, "machine": machine(), "methodology": METHODOLOGY,
            "settings": dict(plan_lib.MODES[mode], jobs=jobs, max_processes=max_processes),
            "total_minutes": (time.perf_counter() - start) / 60, "cases": results}
    if ab is not None:
        data["ab"] = ab
    data["targets"] = report.targets(data)
    with atomic_write(os.path.join(output_dir, "results.json")) as handle:
        json.dump(data, handle, indent=2)
    table = report.markdown(data)
    write_text(os.path.join(output_dir, "results.md"), table)
    log(table)
    return data


def _run_ab(ref, rounds, slots, queue, workdir, log):
    """Runs the queued cases in A/B mode against ``ref``; fills their ``slots`` with
    this checkout's first result; returns the ``ab`` section of the results."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    first = {}

    def run_case(spec, cwd, tag):
        result, error, peak_mib, seconds, _ = _run_alone(
            spec, os.path.join(workdir, f"{spec['id'].replace('/', '_')}-{tag}"), log, cwd=cwd)
        if cwd is None and spec["id"] not in first:
            first[spec["id"]] = (result, error, peak_mib, seconds, False)
        return result, error

    with baseline_lib.baseline_checkout(ref, root, workdir) as (path, commit):
        log(f"A/B against {ref} ({commit[:10]}) checked out in {path}")
        entries, failures = baseline_lib.run_ab([spec for _, spec in queue], path, run_case,
                                                rounds, log)
    for slot, spec in queue:
        slots[slot] = _entry(spec, first[spec["id"]], {}, None, log)
    return {"ref": ref, "commit": commit, "rounds": rounds, "cases": entries,
            "failures": [list(f) for f in failures]}


def _entry(spec, outcome, previous, budget_minutes, log):
    """The results entry of a finished (or stopped) case."""
    result, error, peak_mib, seconds, stopped = outcome
    entry = dict(id=spec["id"], spec=spec, peak_host_memory_mib=peak_mib, case_seconds=seconds)
    if stopped:
        if spec["id"] in previous:
            return previous[spec["id"]]
        entry.update(status="stopped", reason=f"time budget of {budget_minutes} min reached: {error}")
        log(f"[stop] {spec['id']}: time budget reached, {error}")
    elif result is None:
        entry.update(status="failed", error=error)
        log(f"[FAIL] {spec['id']}: {error}")
    else:
        entry.update(status="ok", result=result)
    return entry


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/bench")
    parser.add_argument("--quick", action="store_true",
                        help="Small sizes, fp32, batch-1 inference; under 2 minutes on a 2-core CPU.")
    parser.add_argument("--mode", choices=sorted(plan_lib.MODES), default=None,
                        help="full / quick / smoke (overrides --quick).")
    parser.add_argument("--only", default=None,
                        help="Comma-separated substrings of case ids, e.g. 'input,train/efficientnetv2'.")
    parser.add_argument("--include_amp", action="store_true",
                        help="Time mixed-precision variants even without a GPU.")
    parser.add_argument("--budget_minutes", type=float, default=None,
                        help="Time limit: skip (and label) cases that would start after it and "
                             "stop the one running at it (default: 14 full, 4 quick).")
    parser.add_argument("--threads", type=int, default=0,
                        help="tf.data private_threadpool_size for the pipelines (0 = shared pool).")
    parser.add_argument("--keep_previous", action="store_true",
                        help="Keep earlier results (OUTPUT_DIR/results.json) of cases not run now.")
    parser.add_argument("--sample_dir", default=None,
                        help="Cache of the synthetic TFRecords (default OUTPUT_DIR/sample_data).")
    parser.add_argument("--jobs", type=int, default=None,
                        help="Cases setting up at once (untimed work overlaps, timed parts "
                             "never do); 1 = one after another. Default: 2.")
    parser.add_argument("--max_processes", type=int, default=None,
                        help="Case processes alive at once, incl. those waiting to time "
                             "(host memory bound). Default: 2 full, 6 quick.")
    parser.add_argument("--profile", action="store_true",
                        help="Also write tf.profiler traces of a few train steps (output_dir/profile).")
    parser.add_argument("--baseline", default=None, metavar="GIT_REF",
                        help="A/B mode: also run every selected case in a temporary worktree "
                             "of GIT_REF, alternating processes, and report the ratios.")
    parser.add_argument("--ab_rounds", type=int, default=3,
                        help="With --baseline: processes per side and case (default 3).")
    args = parser.parse_args(argv)
    mode = args.mode or ("quick" if args.quick else "full")
    budget = args.budget_minutes if args.budget_minutes is not None else (
        {"full": 14.0, "quick": 4.0}.get(mode))
    if args.ab_rounds < 1:
        parser.error(f"--ab_rounds must be at least 1, got {args.ab_rounds}")
    try:
        data = run_suite(args.output_dir, mode, args.only.split(",") if args.only else None,
                         args.include_amp, budget, args.threads, args.profile, args.keep_previous,
                         args.sample_dir, args.jobs, args.max_processes, args.baseline,
                         args.ab_rounds)
    except baseline_lib.BaselineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = [c["id"] for c in data["cases"] if c["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
