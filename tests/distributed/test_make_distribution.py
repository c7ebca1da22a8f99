"""Choosing the back-end from --strategy, and the single-process identities."""
import numpy as np
import pytest

from common.training.distribution import SingleProcess
from common.training.distribution_factory import launched_by_horovodrun, make_distribution


@pytest.fixture
def no_launcher(monkeypatch):
    for name in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_auto_is_single_process_outside_horovodrun(no_launcher):
    assert not launched_by_horovodrun()
    distribution = make_distribution("auto")
    assert type(distribution) is SingleProcess
    assert (distribution.size, distribution.rank, distribution.is_chief) == (1, 0, True)
    assert (distribution.num_shards, distribution.shard_index) == (1, 0)


@pytest.mark.parametrize("variable", ["HOROVOD_RANK", "OMPI_COMM_WORLD_RANK"])
def test_launcher_variables_mean_horovod(no_launcher, monkeypatch, variable):
    monkeypatch.setenv(variable, "0")
    assert launched_by_horovodrun()
    with pytest.raises(ValueError, match="horovodrun"):
        make_distribution("mirrored")


def test_unknown_strategy_names_the_choices(no_launcher):
    with pytest.raises(ValueError, match="auto, default, horovod, mirrored, multi_worker"):
        make_distribution("nccl")


def test_fp16_allreduce_needs_horovod(no_launcher):
    with pytest.raises(ValueError, match="fp16_allreduce"):
        make_distribution("default", fp16_allreduce=True)


def test_multi_worker_without_tf_config_says_how_to_set_it(no_launcher):
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_distribution("multi_worker")


def test_multi_worker_with_broken_tf_config(no_launcher, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match="cluster.worker"):
        make_distribution("multi_worker")


def test_single_process_hooks_are_identities():
    distribution = SingleProcess()
    gradients = [np.ones(3)]
    assert distribution.allreduce_gradients(gradients) is gradients
    assert distribution.allgather_object({"a": 1}) == [{"a": 1}]
    assert distribution.run(lambda a, b: a + b, 2, 3) == 5
    with distribution.scope():
        pass
    sentinel = object()
    assert distribution.distribute_dataset(sentinel) is sentinel
    assert distribution.prepare_optimizer(sentinel) is sentinel


def test_generic_allgather_object_round_trips_through_int64_words():
    class TwoShards(SingleProcess):
        """Pretends a second process sent the same object."""

        size = 2

        def allgather(self, value):
            return np.concatenate([np.asarray(value)] * 2)

    objects = TwoShards().allgather_object({"detections": list(range(5)), "name": "é" * 3})
    assert objects == [{"detections": list(range(5)), "name": "é" * 3}] * 2


class _TwoRanks(SingleProcess):
    size = 2


class _TwoHorovodLikeRanks(_TwoRanks):
    syncs_batch_norm = False


def _sync_bn_config(*extra):
    from common.config import load_config

    return load_config(None, "efficientnetv2-b0", None, ["runtime.sync_bn=true", *extra])


def test_sync_bn_where_it_cannot_sync_is_a_clear_error():
    from common.config import ConfigError
    from common.training.runner import train

    with pytest.raises(ConfigError, match="sync_bn.*--strategy mirrored"):
        train(_sync_bn_config(), distribution=_TwoHorovodLikeRanks())
    with pytest.raises(ConfigError, match="sync_bn.*use_xla"):
        train(_sync_bn_config("runtime.use_xla=true"), distribution=_TwoRanks())
