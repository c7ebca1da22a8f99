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
    for variant in ("fp32", "xla", "amp", "amp+xla"):
        assert f"train/efficientdet-d0@512/{variant}" in ids
        assert f"train/efficientnetv2-s@300/{variant}" in ids
        assert f"infer/efficientdet-d0@512/{variant}" in ids
        assert f"infer/efficientnetv2-s@384/{variant}" in ids
    skipped = {c["id"] for c in plan.build_plan("full", data) if c.get("skip")}
    assert skipped == {i for i in ids if "amp" in i}  # labelled, not dropped
    assert not any(c.get("skip") for c in plan.build_plan("full", data, include_amp=True))


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
    """The real entry point, on the detection input case only (the others are too slow
    for a unit test; ``make bench-quick`` runs them)."""
    data = run_suite(str(tmp_path), mode="smoke", only=["input/detection"], log=lambda _: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["mode"] == "smoke" and saved["methodology"] and saved["machine"]["cpus"]
    case = next(c for c in saved["cases"] if c["id"] == "input/detection@128")
    assert case["status"] == "ok", case.get("error")
    assert case["result"]["images_per_second"]["median"] > 0
    assert case["peak_host_memory_mib"] > 100  # a TensorFlow process
    markdown = (tmp_path / "results.md").read_text()
    assert "## Input pipelines" in markdown and "| detection | 128² |" in markdown
    assert data["cases"] == saved["cases"]


def test_a_case_running_at_the_time_budget_is_stopped():
    """The suite's time limit is hard: a child still running at the deadline is killed
    (and reported as stopped), one that finishes before it is reaped normally."""
    import subprocess
    import sys
    import time

    from benchmarks.run import _wait

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    tick = time.perf_counter()
    status, usage, stopped = _wait(sleeper, deadline=tick + 1.0)
    assert stopped and 1.0 <= time.perf_counter() - tick < 10.0
    assert os.waitstatus_to_exitcode(status) != 0 and usage.ru_maxrss > 0

    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    status, _, stopped = _wait(quick, deadline=time.perf_counter() + 60.0)
    assert not stopped and os.waitstatus_to_exitcode(status) == 0
