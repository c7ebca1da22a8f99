"""The whole program under ``horovodrun -np 2``: train_and_eval on the sample data.

Checks the issue's acceptance: the 2-rank run finishes (no hang at the end of
the epoch or in the gathered evaluation), writes each file once, and its COCO
metrics equal a 1-process evaluation of the checkpoint it saved.
"""
import json
import sys

import pytest

# D0 at its smallest input (128 = the P7 stride), a few steps: the cost is tracing.
COMMON_FLAGS = ["--hparams", "model.image_size=128,eval.batch_size=8", "--batch_size", "2"]


def _dllogger_records(model_dir, kind):
    records = []
    for line in (model_dir / "dllogger.json").read_text().splitlines():
        record = json.loads(line[len("DLLL "):])
        if record["type"] == kind:
            records.append(record)
    return records


@pytest.mark.slow
def test_two_rank_train_and_eval_matches_one_process_eval(horovodrun, jobs, tmp_path):
    model_dir, sample_dir = tmp_path / "model", tmp_path / "sample"
    main = jobs.REPO_ROOT / "main.py"
    code, output = jobs.run(
        [horovodrun, "-np", 2, "--gloo", sys.executable, main, "--mode", "train_and_eval",
         "--model_dir", model_dir, "--sample_data_dir", sample_dir, "--num_epochs", 1,
         "--steps_per_epoch", 2, *COMMON_FLAGS], timeout=900, env=jobs.job_env())
    assert code == 0, jobs.quiet_tail(output)

    # Only the chief wrote: one PARAMETER record, one train and one eval record.
    assert len(_dllogger_records(model_dir, "PARAMETER")) == 1
    parameters = _dllogger_records(model_dir, "PARAMETER")[0]["data"]
    assert parameters["replicas"] == 2
    assert parameters["global_batch_size"] == 4
    logs = _dllogger_records(model_dir, "LOG")
    evaluations = [r["data"] for r in logs if any(k.startswith("eval.") for k in r["data"])]
    assert len(evaluations) == 1 and len(logs) == 2
    two_ranks = {k[len("eval."):]: v for k, v in evaluations[0].items()}
    assert two_ranks["num_images"] == 64, "every validation image evaluated exactly once"
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == ["ckpt-2.index"]

    code, output = jobs.run(
        [sys.executable, main, "--mode", "eval", "--model_dir", model_dir,
         "--sample_data_dir", sample_dir, "--strategy", "default", *COMMON_FLAGS],
        timeout=600)
    assert code == 0, jobs.quiet_tail(output)
    one_process = json.loads((model_dir / "eval_results.json").read_text())
    assert one_process["num_images"] == 64
    compared = [k for k, v in one_process.items() if isinstance(v, float)]
    assert {"AP", "AP50", "ARmax100"} <= set(compared)
    assert max(abs(one_process[k]) for k in compared) > 0, "an all-zero result proves nothing"
    for key in compared:
        assert two_ranks[key] == pytest.approx(one_process[key], abs=1e-6), key
