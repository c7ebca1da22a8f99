"""tf.distribute for real: MirroredStrategy on 2 logical CPUs, 2 multi-worker processes."""
import json
import os
import signal
import sys

import numpy as np
import pytest


def _assert_equals_combined_batch(toy, snapshots, grad_accum_steps, sync_bn=False):
    reference = toy.reference_weights(2, grad_accum_steps, sync_bn=sync_bn)
    initial, _, _, _ = toy.build(seed=toy.SEED, sync_bn=sync_bn)
    for snapshot in snapshots:
        for kind in ("weights", "ema"):
            for got, expected in zip(snapshot[kind], reference[kind]):
                np.testing.assert_allclose(got, expected, atol=2e-6, err_msg=(
                    f"{kind} of 2 replicas differ from one device on the combined batch"))
    # Training moved every variable far beyond the tolerance.
    moved = [np.abs(e - np.asarray(s)).max() for e, s in zip(reference["weights"], initial.weights)]
    assert min(moved) > 1e-4 and max(moved) > 1e-1, moved


MIRRORED_CASES = [
    (1, []),
    (2, []),
    # Synchronized batch norm over 2 replicas = batch norm over the combined batch.
    (1, ["sync_bn"]),
    (1, ["xla"]),
]


@pytest.fixture(scope="module")
def mirrored_runs(jobs, tmp_path_factory):
    """Every ``MIRRORED_CASES`` worker, all started at once (each its own process, as
    before; importing TensorFlow and tracing are mostly single-threaded, so they
    overlap on 2 cores): ``{(grad_accum_steps, *options): (code, output, out_dir)}``."""
    started = []
    try:
        for grad_accum_steps, options in MIRRORED_CASES:
            out_dir = tmp_path_factory.mktemp(f"mirrored_{grad_accum_steps}_{'_'.join(options)}")
            started.append(((grad_accum_steps, *options), out_dir, jobs.start(
                [sys.executable, jobs.HERE / "_worker_mirrored.py", out_dir, grad_accum_steps,
                 *options])))
        return {case: (*jobs.finish(process, timeout=300), out_dir)
                for case, out_dir, process in started}
    finally:
        for _, _, process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()


@pytest.mark.parametrize("grad_accum_steps, options", MIRRORED_CASES)
def test_mirrored_on_two_logical_cpus_equals_one_device(mirrored_runs, jobs, toy,
                                                        grad_accum_steps, options):
    code, output, out_dir = mirrored_runs[(grad_accum_steps, *options)]
    assert code == 0, jobs.quiet_tail(output)
    report = json.loads((out_dir / "mirrored.json").read_text())
    assert report["replicas"] == 2
    assert report["copies_identical"], "the replicas' weight or EMA shadow copies diverged"
    assert report["iterations"] == toy.STEPS
    _assert_equals_combined_batch(toy, [toy.load_npz(out_dir / "mirrored.npz")],
                                  grad_accum_steps, sync_bn="sync_bn" in options)


@pytest.mark.slow
def test_multi_worker_from_tf_config(jobs, toy, tmp_path):
    ports = jobs.free_ports(2)
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": index}})
        processes.append(jobs.start([sys.executable, jobs.HERE / "_worker_multi_worker.py",
                                     tmp_path], env=jobs.job_env(TF_CONFIG=tf_config)))
    results = [jobs.finish(process, timeout=120) for process in processes]
    for code, output in results:
        assert code == 0, jobs.quiet_tail(output)
    reports = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    for index, report in enumerate(reports):
        assert (report["rank"], report["size"], report["num_shards"]) == (index, 2, 2)
        assert report["is_chief"] == (index == 0)
        assert report["iterations"] == toy.STEPS
        toy.assert_collectives(report)
        assert report["broadcast"] == [1.0, -1.0], "worker 0's values must reach every worker"
    _assert_equals_combined_batch(
        toy, [toy.load_npz(tmp_path / f"worker{i}.npz") for i in range(2)], 1)
