"""Epoch loop, checkpoints and resume, with a tiny model and in-memory data."""
import json
import os
import pty
import sys
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.checkpoints import restore_for_inference
from common.training.checkpoints import CheckpointState
from common.training.ema import ExponentialMovingAverage
from common.training.logger import MetricLogger
from common.training.loop import TrainingDivergedError, TrainingLoop, TrainingStage
from common.training.optimizers import build_optimizer
from common.training.schedules import WarmupDecaySchedule
from common.training.train_step import TrainStep

STEPS_PER_EPOCH = 4
EPOCHS = 4


class Task:
    def compute_loss(self, outputs, labels):
        loss = tf.reduce_mean(tf.square(outputs - labels))
        return {"total_loss": loss}


def _dataset(poison=False):
    rng = np.random.RandomState(3)
    x = rng.rand(64, 5).astype("float32")
    y = (x @ rng.rand(5, 2)).astype("float32")
    if poison:
        y[:] = np.nan
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()


def _setup(model_dir, poison=False):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    schedule = WarmupDecaySchedule(0.05, STEPS_PER_EPOCH * EPOCHS, warmup_steps=2)
    optimizer = build_optimizer("sgd", schedule, momentum=0.9)
    ema = ExponentialMovingAverage(model.weights, 0.9)
    step = TrainStep(model, Task(), optimizer, ema=ema)
    state = CheckpointState(str(model_dir), model, optimizer, ema, max_to_keep=3,
                            step=step.global_step)
    logger = MetricLogger(str(model_dir))
    loop = TrainingLoop(step, state, logger, STEPS_PER_EPOCH, 8, learning_rate_fn=schedule,
                        log_every_n_steps=2)
    # An epoch-structured stream: epoch e starts at batch e * STEPS_PER_EPOCH.
    stages = [TrainingStage(0, 0, EPOCHS, lambda first=0, skip=0: _dataset(poison).skip(
        first * STEPS_PER_EPOCH + skip))]
    return model, ema, state, loop, stages, logger


def test_resume_gives_the_same_step_count_and_weights(tmp_path):
    model, _, state, loop, stages, logger = _setup(tmp_path / "straight")
    loop.run(stages, EPOCHS)
    logger.close()
    straight = [np.asarray(v) for v in model.weights]
    assert state.step == EPOCHS * STEPS_PER_EPOCH

    _, _, state, loop, stages, logger = _setup(tmp_path / "resumed")
    loop.run(stages, 2)  # stop after 2 epochs
    logger.close()
    model, _, state, loop, stages, logger = _setup(tmp_path / "resumed")
    assert state.restore_latest() is not None
    assert int(state.epoch.numpy()) == 2 and state.step == 2 * STEPS_PER_EPOCH
    loop.run(stages, EPOCHS)
    logger.close()
    assert state.step == EPOCHS * STEPS_PER_EPOCH
    resumed = [np.asarray(v) for v in model.weights]
    # The stream continues where the checkpoint left it: the same batches, the same weights.
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_checkpoints_keep_last_k_and_log_dllogger_lines(tmp_path):
    _, _, state, loop, stages, logger = _setup(tmp_path)
    loop.run(stages, EPOCHS)
    logger.close()
    assert len(state.manager.checkpoints) == 3
    lines = (tmp_path / "dllogger.json").read_text().splitlines()
    assert lines and all(line.startswith("DLLL {") for line in lines)
    record = json.loads(lines[-1][5:])
    assert {"timestamp", "type", "step", "data"} <= set(record)
    assert "train.total_loss" in record["data"] and "train.learning_rate" in record["data"]
    assert (tmp_path / "tensorboard").is_dir()


def test_eval_restores_ema_weights_that_differ_from_raw(tmp_path):
    model, ema, _, loop, stages, logger = _setup(tmp_path)
    loop.run(stages, EPOCHS)
    logger.close()
    raw = [np.asarray(v) for v in model.weights]
    shadows = [np.asarray(s) for s in ema.shadows]
    assert any(not np.allclose(r, s) for r, s in zip(raw, shadows)), "EMA must differ from raw"
    fresh = keras.models.clone_model(model)
    restore_for_inference(fresh, str(tmp_path), use_ema=True)
    for restored, shadow in zip(fresh.weights, shadows):
        np.testing.assert_allclose(np.asarray(restored), shadow)
    restore_for_inference(fresh, str(tmp_path), use_ema=False)
    for restored, value in zip(fresh.weights, raw):
        np.testing.assert_allclose(np.asarray(restored), value)


def test_nan_loss_stops_with_step_and_checkpoint(tmp_path):
    _, _, _, loop, stages, logger = _setup(tmp_path, poison=True)
    with pytest.raises(TrainingDivergedError, match=r"NaN/Inf from step 1 on .*up to step 2.*Last good checkpoint"):
        loop.run(stages, EPOCHS)
    logger.close()


def _randomized_network(config):
    """The network of ``config`` with every variable set to distinct random values."""
    from common.config import build_network

    model = build_network(config)
    rng = np.random.RandomState(7)
    for variable in model.weights:
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(variable.dtype))
    return model


def test_checkpoints_hold_every_variable_of_a_real_network(tmp_path, quickstart_config):
    """Keras 3 tracking alone reaches only a few variables of our networks (layers held in
    lists); resume and raw-weight evaluation need all of them, batch-norm statistics too."""
    config = quickstart_config("classification", tmp_path)
    model = _randomized_network(config)
    optimizer = build_optimizer("sgd", 0.1, momentum=0.9)
    ema = ExponentialMovingAverage(model.weights, 0.9)
    CheckpointState(str(tmp_path), model, optimizer, ema).save()
    want = [np.asarray(v) for v in model.weights]

    fresh = _randomized_network(config)
    for variable in fresh.weights:
        variable.assign(tf.zeros_like(variable))
    restored = CheckpointState(str(tmp_path), fresh, build_optimizer("sgd", 0.1, momentum=0.9),
                               ExponentialMovingAverage(fresh.weights, 0.9))
    assert restored.restore_latest() is not None
    for variable, value in zip(fresh.weights, want):
        np.testing.assert_array_equal(np.asarray(variable), value, err_msg=variable.path)

    raw = _randomized_network(config)
    for variable in raw.weights:
        variable.assign(tf.zeros_like(variable))
    restore_for_inference(raw, str(tmp_path), use_ema=False)
    for variable, value in zip(raw.weights, want):
        np.testing.assert_array_equal(np.asarray(variable), value, err_msg=variable.path)


def test_checkpoint_without_model_weights_restarts_statistics_from_ema(tmp_path,
                                                                      quickstart_config):
    """A checkpoint written before every model variable was saved: resuming takes the
    non-trainable variables from their EMA shadows; raw-weight evaluation is refused."""
    from common.checkpoints import CheckpointError

    config = quickstart_config("classification", tmp_path)
    model = _randomized_network(config)
    optimizer = build_optimizer("sgd", 0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    ema = ExponentialMovingAverage(model.weights, 0.9)
    for shadow in ema.shadows:
        shadow.assign(shadow * 2.0)
    legacy = tf.train.Checkpoint(model=model, optimizer=optimizer, ema=ema)
    tf.train.CheckpointManager(legacy, str(tmp_path), max_to_keep=1).save(checkpoint_number=3)

    fresh = _randomized_network(config)
    for variable in fresh.weights:
        variable.assign(tf.zeros_like(variable))
    fresh_optimizer = build_optimizer("sgd", 0.1, momentum=0.9)
    fresh_optimizer.build(fresh.trainable_variables)  # as TrainStep does before restoring
    state = CheckpointState(str(tmp_path), fresh, fresh_optimizer,
                            ExponentialMovingAverage(fresh.weights, 0.9))
    assert state.restore_latest() is not None
    trainable = {id(v) for v in model.trainable_weights}
    statistics = 0
    for saved, shadow, restored in zip(model.weights, ema.shadows, fresh.weights):
        want = saved if id(saved) in trainable else shadow
        statistics += id(saved) not in trainable
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(want), err_msg=saved.path)
    assert statistics > 4
    with pytest.raises(CheckpointError, match="eval.use_ema=true"):
        restore_for_inference(fresh, str(tmp_path), use_ema=False)


def test_the_loop_logs_the_best_epoch_so_far(tmp_path, caplog):
    model, ema, state, _, stages, logger = _setup(tmp_path)
    scores = {1: 0.2, 2: 0.5, 3: 0.4, 4: 0.3}
    loop = TrainingLoop(TrainStep(model, Task(), build_optimizer("sgd", 0.01), ema=ema), state,
                        logger, STEPS_PER_EPOCH, 8, evaluate_fn=lambda epoch: {"AP": scores[epoch]},
                        eval_every_n_epochs=1, primary_metric="AP")
    with caplog.at_level("INFO", logger="absl"):  # absl's own level: other tests may lower it
        loop.run(stages, EPOCHS)
    logger.close()
    assert loop.best_epoch == 2
    assert float(state.best_metric.numpy()) == pytest.approx(0.5)
    assert (f"Epoch 4: AP 0.3000; best so far 0.5000 (epoch 2, kept in {tmp_path}/best)"
            in caplog.text)


def test_eval_prints_the_per_class_table_best_first(capsys):
    import main

    main._print_metrics({"AP": 0.5, "AP_/square": 0.25, "AP_/circle": 0.75,
                         "AP_/triangle": -1.0, "num_images": 8})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["AP:", "0.5000"] and lines[1].split() == ["num_images:", "8"]
    table = lines[lines.index(next(l for l in lines if l.startswith("class"))) + 1:]
    assert [row.split() for row in table] == [["circle", "0.7500"], ["square", "0.2500"],
                                               ["triangle", "-1.0000"]]


def _read_pty(master, chunks):
    """Collects what is written to the terminal ``master`` until it closes."""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the other side closed
            return
        if not data:
            return
        chunks.append(data)


def test_training_draws_a_progress_bar_on_a_terminal(tmp_path, monkeypatch, caplog):
    """On a pseudo-terminal: one bar per epoch with step/total, ETA and the losses,
    and no per-step log lines; the metrics files get every record as before."""
    monkeypatch.delenv("EFFDET_PROGRESS", raising=False)
    master, slave = pty.openpty()
    terminal = os.fdopen(slave, "w", buffering=1)
    chunks = []
    reader = threading.Thread(target=_read_pty, args=(master, chunks), daemon=True)
    reader.start()
    monkeypatch.setattr(sys, "stderr", terminal)
    _, _, _, loop, stages, logger = _setup(tmp_path)
    with caplog.at_level("INFO", logger="absl"):  # absl's own level: other tests may lower it
        loop.run(stages, 2)
    logger.close()
    terminal.close()
    reader.join(10)
    os.close(master)
    screen = b"".join(chunks).decode()
    assert "epoch 1/2" in screen and "epoch 2/2" in screen, screen
    assert f"{STEPS_PER_EPOCH}/{STEPS_PER_EPOCH}" in screen and "step/s" in screen, screen
    assert "total_loss=" in screen and "img_s=" in screen, screen
    assert "[train]" not in caplog.text
    records = [l for l in (tmp_path / "dllogger.json").read_text().splitlines() if "train.total_loss" in l]
    assert len(records) == 2 * STEPS_PER_EPOCH // 2  # every log interval, as without a bar


def test_training_logs_lines_and_draws_nothing_without_a_terminal(tmp_path, monkeypatch, caplog,
                                                                   capsys):
    monkeypatch.delenv("EFFDET_PROGRESS", raising=False)
    _, _, _, loop, stages, logger = _setup(tmp_path)
    with caplog.at_level("INFO", logger="absl"):  # absl's own level: other tests may lower it
        loop.run(stages, 1)
    logger.close()
    captured = capsys.readouterr()
    assert "epoch 1/1" not in captured.err + captured.out and "\r" not in captured.err
    assert caplog.text.count("[train] epoch 1") == STEPS_PER_EPOCH // 2
