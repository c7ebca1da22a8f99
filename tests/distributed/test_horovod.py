"""Horovod for real: ``horovodrun -np 2 --gloo`` on CPU, different data on each rank."""
import json

import numpy as np
import pytest


def _train_two_ranks(horovodrun, jobs, out_dir, grad_accum_steps, *extra):
    code, output = jobs.run_horovod(horovodrun, "_worker_horovod.py", out_dir, grad_accum_steps,
                                    *extra)
    assert code == 0, f"horovodrun failed:\n{jobs.quiet_tail(output)}"
    reports = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(2)]
    return reports


@pytest.fixture(scope="module")
def two_rank_run(horovodrun, jobs, tmp_path_factory):
    """One 2-rank run without accumulation, shared by the tests that inspect it."""
    out_dir = tmp_path_factory.mktemp("horovod_accum1")
    return out_dir, _train_two_ranks(horovodrun, jobs, out_dir, 1)


def _assert_ranks_equal_combined_batch(toy, out_dir, grad_accum_steps, atol=2e-6):
    ranks = [toy.load_npz(out_dir / f"rank{r}.npz") for r in range(2)]
    reference = toy.reference_weights(num_replicas=2, grad_accum_steps=grad_accum_steps)
    initial, _, _, _ = toy.build(seed=toy.SEED)
    for kind in ("weights", "ema"):
        for first, second, expected in zip(ranks[0][kind], ranks[1][kind], reference[kind]):
            np.testing.assert_array_equal(first, second, err_msg=f"{kind} differ between ranks")
            np.testing.assert_allclose(first, expected, atol=atol, err_msg=(
                f"{kind} of 2 ranks differ from one process on the combined batch"))
    # Training moved every variable far beyond the tolerance.
    moved = [np.abs(e - np.asarray(s)).max() for e, s in zip(reference["weights"], initial.weights)]
    assert min(moved) > 1e-4 and max(moved) > 1e-1, moved


def test_two_ranks_stay_identical_and_equal_one_process_on_combined_batch(two_rank_run, toy):
    out_dir, reports = two_rank_run
    _assert_ranks_equal_combined_batch(toy, out_dir, grad_accum_steps=1)
    for rank, report in enumerate(reports):
        assert report["backend"] == "HorovodDistribution", "--strategy auto must pick Horovod"
        assert (report["rank"], report["size"], report["is_chief"]) == (rank, 2, rank == 0)
        assert (report["num_shards"], report["shard_index"]) == (2, rank)
        assert report["iterations"] == report["allreduce_calls"] == toy.STEPS


@pytest.mark.slow
def test_gradient_accumulation_allreduces_once_per_optimizer_step(horovodrun, jobs, toy,
                                                                  tmp_path):
    reports = _train_two_ranks(horovodrun, jobs, tmp_path, 2)
    _assert_ranks_equal_combined_batch(toy, tmp_path, grad_accum_steps=2)
    for report in reports:
        assert report["iterations"] == toy.STEPS
        assert report["allreduce_calls"] == toy.STEPS, "one allreduce per step, not per micro-batch"


@pytest.mark.slow
def test_fp16_compressed_allreduce_stays_close(horovodrun, jobs, toy, tmp_path):
    _train_two_ranks(horovodrun, jobs, tmp_path, 1, "fp16")
    # float16 keeps ~3 significant digits of each gradient.
    _assert_ranks_equal_combined_batch(toy, tmp_path, grad_accum_steps=1, atol=1e-3)
    exact = toy.reference_weights(num_replicas=2)["weights"]
    compressed = toy.load_npz(tmp_path / "rank0.npz")["weights"]
    assert max(np.abs(a - b).max() for a, b in zip(exact, compressed)) > 1e-6, \
        "no float16 rounding visible: was the allreduce compressed?"


def test_collectives_for_evaluation(two_rank_run, toy):
    _, reports = two_rank_run
    for report in reports:
        toy.assert_collectives(report)


def test_only_the_chief_writes_files(two_rank_run):
    out_dir, _ = two_rank_run
    chief = out_dir / "model_rank0"
    assert (chief / "checkpoint").is_file() and list(chief.glob("ckpt-4.index"))
    assert "DLLL" in (chief / "dllogger.json").read_text()
    assert list((chief / "tensorboard").iterdir())
    other = out_dir / "model_rank1"
    assert not other.exists() or not any(other.rglob("*")), \
        f"rank 1 wrote {sorted(p.name for p in other.rglob('*'))}"


@pytest.mark.slow
def test_a_dying_rank_stops_the_job_instead_of_hanging(horovodrun, jobs):
    code, output = jobs.run_horovod(horovodrun, "_worker_fail.py", timeout=180)
    assert code != 0
    assert "rank 1 fails on purpose" in output
    assert "finished without noticing" not in output
