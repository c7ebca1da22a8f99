"""The benchmark suite writes its JSON and Markdown reports (tiny sizes; not a timed test)."""
import json
import os

import pytest

from benchmarks import plan, report
from benchmarks.run import run_suite
from benchmarks.timing import interleaved, spread


def test_plan_lists_every_case_of_the_issue():
    data = {"train_file_pattern": "d/*", "classification_train_file_pattern": "c/*"}
    ids = [c["id"] for c in plan.build_plan("full", data)]
    assert "input/detection@512" in ids
    assert {"input/classification@300", "input/classification@384"} <= set(ids)
    for variant in ("fp32", "xla", "amp", "amp+xla", "bf16"):
        assert f"train/efficientdet-d0@512/{variant}" in ids
        assert f"train/efficientnetv2-s@300/{variant}" in ids
        assert f"infer/efficientdet-d0@512/{variant}" in ids
        assert f"infer/efficientnetv2-s@384/{variant}" in ids
    skipped = {c["id"] for c in plan.build_plan("full", data) if c.get("skip")}
    assert skipped == {i for i in ids if "amp" in i}  # labelled, not dropped
    assert not any(c.get("skip") for c in plan.build_plan("full", data, include_amp=True))
    # bfloat16 runs everywhere, labelled with what it measures on this machine.
    bf16 = {c["id"]: c for c in plan.build_plan("full", dict(data, cpu_flags=["avx512_bf16"]))
            if c["id"].endswith("/bf16")}
    assert bf16 and all(c["precision"] == "mixed_bfloat16" for c in bf16.values())
    assert all("AVX512_BF16 (oneDNN)" in c["note"] for c in bf16.values())
    emulated = plan.build_plan("full", dict(data, cpu_flags=["avx2"]))
    assert all("WITHOUT" in c["note"] for c in emulated if c["id"].endswith("/bf16"))


def test_xla_inference_runs_batch_1_only_without_a_gpu():
    data = {"train_file_pattern": "d/*", "classification_train_file_pattern": "c/*"}
    for gpus, xla_batches in ((0, [1]), (1, [1, 8])):
        cases = {c["id"]: c for c in plan.build_plan("full", dict(data, gpus=gpus))}
        for model in ("efficientdet-d0@512", "efficientnetv2-s@384"):
            assert cases[f"infer/{model}/fp32"]["batch_sizes"] == [1, 8]
            xla = cases[f"infer/{model}/xla"]
            assert xla["batch_sizes"] == xla_batches
            assert bool(xla["note"]) == (gpus == 0)  # labelled in the report


def test_interleaving_alternates_and_reports_the_spread():
    order = []
    result = interleaved([("a", lambda: order.append("a"), 2), ("b", lambda: order.append("b"), 2)],
                         warmup=1, repeats=3, log=lambda _: None)
    assert order == ["a", "b"] + ["a", "b"] * 3
    assert result["a"]["images_per_second"]["n"] == 3
    stats = spread([1.0, 2.0, 3.0])
    assert stats["median"] == 2.0 and stats["rel_spread"] == pytest.approx(1.0)


def _fake_results():
    def rate(x):
        return {"images_per_second": spread([x, x * 1.1, x * 0.9])}

    cases = [
        {"id": "input/detection@128", "status": "ok", "peak_host_memory_mib": 500.0,
         "spec": {"pipeline": "detection", "image_size": 128, "batch_size": 1},
         "result": rate(30.0)},
        {"id": "train/efficientdet-d0@128/fp32", "status": "ok", "peak_host_memory_mib": 900.0,
         "spec": {"id": "train/efficientdet-d0@128/fp32", "model": "efficientdet-d0",
                  "image_size": 128, "batch_size": 1},
         "result": {"runs": {"ours": dict(rate(2.0), train_gflops_per_second=1.0)}}},
        {"id": "train/efficientnetv2-s@64/fp32", "status": "ok", "peak_host_memory_mib": 900.0,
         "spec": {"id": "train/efficientnetv2-s@64/fp32", "model": "efficientnetv2-s",
                  "image_size": 64, "batch_size": 2},
         "result": {"runs": {"ours": dict(rate(4.0), train_gflops_per_second=1.0),
                             "keras_reference": dict(rate(2.0), train_gflops_per_second=1.0)}}},
        {"id": "train/efficientnetv2-s@64/amp", "status": "skipped", "reason": "no GPU",
         "spec": {"model": "efficientnetv2-s", "image_size": 64, "batch_size": 2}},
    ]
    return {"mode": "smoke", "command": "python -m benchmarks.run", "tensorflow": "2.18.1",
            "machine": {"python": "3.11", "cpus": 2}, "methodology": "m", "total_minutes": 1.0,
            "cases": cases}


def test_targets_are_ratios_of_medians():
    data = _fake_results()
    found = {t["target"]: t for t in report.targets(data)}
    pipe = found["input detection@128 / efficientdet-d0 train step"]
    assert pipe["ratio"] == pytest.approx(15.0) and pipe["holds"]
    keras_ratio = found["train/efficientnetv2-s@64/fp32 ours / keras.applications"]
    assert keras_ratio["ratio"] == pytest.approx(2.0) and keras_ratio["holds"]
    data["targets"] = report.targets(data)
    table = report.markdown(data)
    assert "| detection | 128² | 1 | 30.0 |" in table
    assert "2.00×" in table and "skipped" in table and "## Methodology" in table


def test_smoke_run_writes_json_and_markdown(tmp_path):
    """The real entry point, on the two input cases run side by side (the others are
    too slow for a unit test; ``make bench-quick`` runs them)."""
    data = run_suite(str(tmp_path), mode="smoke", only=["input/"], jobs=2, log=lambda _: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["mode"] == "smoke" and saved["methodology"] and saved["machine"]["cpus"]
    assert [c["id"] for c in saved["cases"]] == ["input/detection@128", "input/classification@64"]
    for case in saved["cases"]:
        assert case["status"] == "ok", case.get("error")
        assert case["result"]["images_per_second"]["median"] > 0
        assert case["peak_host_memory_mib"] > 100  # a TensorFlow process
    markdown = (tmp_path / "results.md").read_text()
    assert "## Input pipelines" in markdown and "| detection | 128² |" in markdown
    assert data["cases"] == saved["cases"]


def test_a_case_running_at_the_time_budget_is_stopped(tmp_path):
    """The suite's time limit is hard: a child still running at the deadline is killed
    (and reported as stopped), one that finishes before it is reaped normally."""
    import sys
    import time

    from benchmarks.run import _Child

    sleeper = _Child({}, str(tmp_path / "a"), [sys.executable, "-c", "import time; time.sleep(60)"])
    tick = time.perf_counter()
    time.sleep(1.0)
    assert not sleeper.poll()
    sleeper.stop()
    result, error, peak_mib, seconds, stopped = sleeper.outcome(lambda _: None)
    assert stopped and result is None and "stopped after" in error
    assert 1.0 <= seconds < 10.0 and time.perf_counter() - tick < 10.0 and peak_mib > 0

    quick = _Child({}, str(tmp_path / "b"), [sys.executable, "-c", "print('  done')"])
    while not quick.poll():
        time.sleep(0.05)
    lines = []
    result, error, _, _, stopped = quick.outcome(lines.append)
    assert not stopped and quick.process.returncode == 0 and lines == ["  done"]
    assert result is None and "exit code 0" in error  # it wrote no result file


def test_the_timing_gate_excludes_everything_else_while_a_case_times(tmp_path):
    """Set-ups share the lock; a timed section holds it alone, and the runner cannot
    start another case (take_shared returns None) until it is over."""
    from benchmarks.gate import TimingGate, take_shared

    path = str(tmp_path / "timing.lock")
    first, second = take_shared(path), take_shared(path)
    assert first is not None and second is not None  # two set-ups at once
    os.close(second)
    gate = TimingGate(first)
    with gate.exclusive():
        assert take_shared(path) is None  # nobody sets up or starts while this times
    third = take_shared(path)  # back to shared: set-ups go on side by side
    assert third is not None
    os.close(third)
    os.close(first)


def test_timed_sections_of_parallel_cases_never_overlap_other_work(tmp_path):
    """Two real child processes (the runner's hand-off of the locked descriptor): their
    set-ups run at the same time, and each timed section overlaps nothing of the other."""
    import sys
    import time

    from benchmarks.gate import take_shared
    from benchmarks.run import _Child

    script = (
        "import sys, time\n"
        "from benchmarks.gate import TimingGate\n"
        "gate = TimingGate(int(sys.argv[1]))\n"
        "log = open(sys.argv[2], 'w')\n"
        "def work(kind):\n"
        "    start = time.time(); time.sleep(0.6); log.write(f'{kind} {start} {time.time()}\\n')\n"
        "work('setup')\n"
        "with gate.exclusive():\n"
        "    work('timed')\n"
        "work('teardown')\n")
    path = str(tmp_path / "timing.lock")
    children = []
    for name in ("a", "b"):
        fd = take_shared(path)
        assert fd is not None
        log = str(tmp_path / f"{name}.log")
        children.append((log, _Child({}, str(tmp_path / name),
                                     [sys.executable, "-c", script, str(fd), log], lock_fd=fd)))
    deadline = time.perf_counter() + 60
    while not all(child.poll() for _, child in children) and time.perf_counter() < deadline:
        time.sleep(0.05)
    spans = []
    for index, (log, child) in enumerate(children):
        assert child.process.returncode == 0, open(child.stderr_path).read()
        for line in open(log):
            kind, start, end = line.split()
            spans.append((index, kind, float(start), float(end)))
    assert len(spans) == 6
    setups = [s for s in spans if s[1] == "setup"]
    assert setups[0][2] < setups[1][3] and setups[1][2] < setups[0][3]  # in parallel
    for who, kind, start, end in spans:
        if kind == "timed":
            for other, _, s, e in spans:
                if other != who:
                    assert e <= start or s >= end, (who, start, end, other, s, e)


def _git_checkout():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return root if os.path.exists(os.path.join(root, ".git")) else None


@pytest.mark.skipif(_git_checkout() is None, reason="A/B mode needs a git checkout")
def test_ab_mode_runs_both_checkouts_and_reports_ratios(tmp_path):
    """``--baseline HEAD``: the case runs in this tree and in a temporary worktree of HEAD,
    alternating; the report has the ratios; the worktree is gone afterwards."""
    import subprocess

    root = _git_checkout()
    lines = []
    # A relative output directory, as a user types it: the baseline's case processes run
    # in the baseline's checkout and must still find their specs and the shared data.
    data = run_suite(os.path.relpath(tmp_path), mode="smoke", only=["input/classification"],
                     jobs=1, baseline="HEAD", ab_rounds=2, log=lines.append)
    ab = data["ab"]
    assert ab["ref"] == "HEAD" and len(ab["commit"]) == 40 and not ab["failures"]
    (entry,) = ab["cases"]
    assert entry["id"] == "input/classification@64" and entry["rounds"] == 2
    (row,) = entry["metrics"]
    assert row["ours"]["n"] == row["baseline"]["n"] == 2
    assert row["ratio"] == pytest.approx(row["ours"]["median"] / row["baseline"]["median"])
    sides = [line.split()[3] for line in lines if line.startswith("[a/b ]")]
    assert sides == ["ours", "baseline", "ours", "baseline"]
    assert data["cases"][0]["status"] == "ok"
    assert "## A/B against HEAD" in (tmp_path / "results.md").read_text()
    worktrees = subprocess.run(["git", "-C", root, "worktree", "list"], capture_output=True,
                               text=True, check=True).stdout
    assert str(tmp_path) not in worktrees


def test_ab_ratio_means_faster_for_latencies_too():
    from benchmarks.baseline import compare

    spec = {"id": "infer/x", "kind": "infer"}

    def result(images_per_second, p50):
        return {"rows": [{"model": "ours", "part": "network", "batch_size": 1,
                          "round_images_per_second": {"median": images_per_second},
                          "latency_ms": {"p50": p50}}]}

    entry = compare(spec, [result(20.0, 50.0)], [result(10.0, 100.0)])
    ratios = {row["metric"]: row["ratio"] for row in entry["metrics"]}
    assert ratios == {"network batch 1 images/s": 2.0, "network batch 1 p50 ms": 2.0}


@pytest.mark.skipif(_git_checkout() is None, reason="A/B mode needs a git checkout")
def test_unknown_baseline_is_one_error_line(tmp_path, capsys):
    from benchmarks.run import main

    code = main(["--output_dir", str(tmp_path), "--mode", "smoke", "--only", "input/",
                 "--baseline", "no-such-ref-xyz"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --baseline 'no-such-ref-xyz' is not a commit")


def test_memory_table_splits_fixed_and_per_image_memory():
    from benchmarks import memory

    def entry(mode, batch, peak_mib, images_per_second):
        spec = dict(model="efficientdet-d0", gradient_checkpointing=mode, batch_size=batch)
        runs = {"ours": {"images_per_second": {"median": images_per_second}}}
        return dict(status="ok", spec=spec, peak_host_memory_mib=peak_mib,
                    result={"runs": runs})

    results = [entry("none", 1, 1800.0, 1.0), entry("none", 3, 3000.0, 2.0),
               entry("all", 1, 1500.0, 0.9), entry("all", 3, 1900.0, 1.6),
               dict(status="failed", spec={})]
    rows = {row["mode"]: row for row in memory.summarize(results)}
    assert rows["none"]["per_image_mib"] == pytest.approx(600.0)
    assert rows["none"]["fixed_mib"] == pytest.approx(1200.0)
    assert rows["all"]["per_image_mib"] == pytest.approx(200.0)
    assert rows["all"]["batches"][3]["peak_vs_none"] == pytest.approx(1900 / 3000)
    assert rows["all"]["batches"][3]["step_time_vs_none"] == pytest.approx(2.0 / 1.6)
    assert "peak_vs_none" not in rows["none"]["batches"][1]
    table = memory.markdown(dict(machine={"cpus": 2}, batches=[1, 3],
                                 summary=memory.summarize(results)))
    assert "| efficientdet-d0 | 512 | all | 1.27 | 0.195 | 1.46 (0.83×) | 1.86 (0.63×) |" in table
    assert memory.plan(["efficientdet-d3"], [1, 2], ["none"], {"train_file_pattern": "x"})[1][
        "image_size"] == 896
