"""main.py as a user runs it: exact resume after kill -9, the recorded recipe, divergence,
and one-line errors (exit 2) that leave the model directory as it was."""
import hashlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

REPO = pathlib.Path(__file__).resolve().parents[2]
# Small but real: the quickstart D0 recipe on the sample data, 2 images a step.
SMALL = ["--batch_size", "2", "--steps_per_epoch", "6", "--num_epochs", "2"]


@pytest.fixture(scope="module")
def sample(demo_sample_data):
    """The sample datasets as main.py makes them for the quickstart (128 px): the
    session's ``demo_sample_data`` (tests/conftest.py), made once; read only here."""
    return demo_sample_data


@pytest.fixture(scope="module")
def sample_dir(sample):
    return sample["root"]


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def _main(*args, sample_dir=None, timeout=900):
    extra = ["--sample_data_dir", str(sample_dir)] if sample_dir else []
    return subprocess.run([sys.executable, "main.py", *args, *extra], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


# absl's error lines from Python code (TensorFlow's C++ start-up noise is "E0000 ... .cc:").
_PY_ERROR = re.compile(r"^E\d{4} [\d:.]+ +\d+ [\w.]+\.py:\d+\] ")


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if _PY_ERROR.match(line)]


def _assert_one_line_error(result, *needles, code=2):
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, errors
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _tree_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(pathlib.Path(root).rglob("*")) if p.is_file()}


def _checkpoint_values(model_dir):
    reader = tf.train.load_checkpoint(str(model_dir))
    names = [n for n in reader.get_variable_to_shape_map() if not n.startswith("_CHECKPOINTABLE")
             and "save_counter" not in n]
    return {n: reader.get_tensor(n) for n in names}


def _listed_checkpoints(model_dir):
    state = tf.train.get_checkpoint_state(str(model_dir))
    return [] if state is None else list(state.all_model_checkpoint_paths)


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, sample_dir):
    """kill -9 right after the first (mid-epoch) checkpoint, then ``--resume`` with no
    other flag: the recipe comes from config.yaml and, under --deterministic, every
    variable ends bit-identical to an uninterrupted run's.

    The uninterrupted run is independent of the other two, so it runs beside them
    (its own process, as before): start-up and tracing are mostly single-threaded."""
    common = ["--mode", "train", *SMALL, "--checkpoint_every_n_steps", "2", "--deterministic"]
    straight = tmp_path / "straight"
    # Its log goes to a file: a full pipe would stall it while the others run.
    with open(tmp_path / "straight.log", "w") as straight_log:
        uninterrupted = subprocess.Popen(
            [sys.executable, "main.py", *common, "--model_dir", str(straight),
             "--sample_data_dir", str(sample_dir)], cwd=REPO, env=_env(),
            stdout=subprocess.DEVNULL, stderr=straight_log)
    try:
        killed = tmp_path / "killed"
        process = subprocess.Popen([sys.executable, "main.py", *common, "--model_dir", str(killed),
                                    "--sample_data_dir", str(sample_dir)], cwd=REPO, env=_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 900
        while (not _listed_checkpoints(killed) and process.poll() is None
               and time.time() < deadline):
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kept = _listed_checkpoints(killed)
        assert kept, "the run ended before its first checkpoint"
        recorded = (killed / "config.yaml").read_text()

        # What a save killed half-way leaves: TensorFlow's temporary folder, never listed.
        (killed / f"ckpt-{len(kept) * 2 + 1}_temp").mkdir()
        (killed / f"ckpt-{len(kept) * 2 + 1}_temp" / "part-00000-of-00001.index").write_text("x")
        resumed = _main("--mode", "train", "--model_dir", str(killed), "--resume")
        assert uninterrupted.wait(timeout=900) == 0, \
            (tmp_path / "straight.log").read_text()[-3000:]
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()
            uninterrupted.wait()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Using the recipe recorded in {killed}/config.yaml unchanged" in resumed.stderr
    step = int(kept[-1].rsplit("-", 1)[1])
    if step % 6:
        assert f"Continuing epoch 1 after step {step} of 6" in resumed.stderr
    assert (killed / "config.yaml").read_text() == recorded
    assert "left by a checkpoint save that was interrupted" in resumed.stderr
    assert not list(killed.glob("*_temp"))

    want, got = _checkpoint_values(straight), _checkpoint_values(killed)
    assert set(want) == set(got)
    differing = {n for n in want if not np.array_equal(want[n], got[n])}
    # Every model variable (weights and batch-norm statistics), EMA shadow, optimizer
    # slot and counter is bit-identical.
    assert not differing, sorted(differing)[:10]
    assert int(got["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 12
    # ... and the checkpoint holds every model variable by path, batch-norm
    # statistics of inner layers included (not only their EMA shadows).
    assert _saved_model_variables(killed) == _model_variable_paths(killed)


def _model_variable_paths(model_dir):
    from common.config import build_network, load_config

    model = build_network(load_config(str(model_dir / "config.yaml")))
    return {v.path for v in model.weights}


def _saved_model_variables(model_dir):
    prefix = "model_weights/by_path/"
    return {n[len(prefix):].split("/.ATTRIBUTES")[0].replace(".S", "/")
            for n in _checkpoint_values(model_dir) if n.startswith(prefix)}


@pytest.fixture(scope="module")
def failing_trainings(tmp_path_factory, sample, sample_dir, side_by_side):
    """The two long failing runs of this module, side by side (``run_side_by_side`` in
    tests/conftest.py): ``{name: (CompletedProcess, model_dir)}``. ``exploding``:
    learning rate 1e6; ``class_id``: a 2-class model on the 3-class sample data."""
    root = tmp_path_factory.mktemp("failing_trainings")
    runs = {
        "exploding": ["--mode", "train", "--model_dir", root / "exploding", "--batch_size", "2",
                      "--steps_per_epoch", "12", "--num_epochs", "1",
                      "--override", "train.learning_rate=1e6", "--sample_data_dir", sample_dir],
        "class_id": ["--mode", "train", "--model_dir", root / "class_id",
                     "--train_file_pattern", sample["train_file_pattern"],
                     "--hparams", "num_classes=2", "--batch_size", "2",
                     "--steps_per_epoch", "40", "--num_epochs", "1"],
    }
    results = side_by_side("main.py", *runs.values(), env=_env())
    return {name: (result, root / name) for name, result in zip(runs, results)}


@pytest.mark.slow
def test_exploding_loss_stops_before_any_checkpoint(failing_trainings):
    result, model_dir = failing_trainings["exploding"]
    line = _assert_one_line_error(result, "Last good checkpoint: none", "clip_gradients_norm=10",
                                  code=3)
    assert "exploded from step" in line or "NaN/Inf from step" in line
    # Clipping is on in the recipe: the advice is to lower the rate, not to turn it on.
    assert "already on" in line and "train.learning_rate=100000" in line
    assert not list(model_dir.glob("ckpt-*")), "a diverged run saved its weights"


def test_resume_without_checkpoint_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    result = _main("--mode", "train", "--model_dir", str(tmp_path / "run"), "--resume")
    _assert_one_line_error(result, "--resume: no checkpoint in", "drop --resume")
    assert not any((tmp_path / "run").iterdir())


def _fake_run(model_dir, config_text):
    """A model directory with one checkpoint and its recipe (what a trained run leaves)."""
    model_dir.mkdir(parents=True)
    tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(model_dir),
                               max_to_keep=1).save(checkpoint_number=8)
    (model_dir / "config.yaml").write_text(config_text)


def _recorded_recipe(sample, model_dir):
    from common.config import dump_config, load_config

    config = load_config(str(REPO / "configs" / "quickstart-detection.yaml"), overrides=[
        f"data.train_file_pattern={sample['train_file_pattern']}",
        f"data.val_file_pattern={sample['val_file_pattern']}",
        f"runtime.model_dir={model_dir}", "train.learning_rate=0.01", "image_size=256"])
    return dump_config(config)


def test_resume_refuses_model_changes_and_leaves_the_recipe(tmp_path, sample):
    model_dir = tmp_path / "run"
    _fake_run(model_dir, _recorded_recipe(sample, model_dir))
    before = _tree_hashes(model_dir)
    result = _main("--mode", "train", "--model_dir", str(model_dir), "--resume",
                   "--hparams", "num_classes=5", "--batch_size", "4")
    _assert_one_line_error(result, "model.num_classes: 3 -> 5", "train.batch_size: 8 -> 4",
                           "Nothing was changed")
    assert _tree_hashes(model_dir) == before


def test_fresh_run_into_a_trained_directory_is_refused(tmp_path, sample, sample_dir):
    model_dir = tmp_path / "run"
    _fake_run(model_dir, _recorded_recipe(sample, model_dir))
    before = _tree_hashes(model_dir)
    result = _main("--mode", "train", "--model_dir", str(model_dir), sample_dir=sample_dir)
    _assert_one_line_error(result, "already holds checkpoints", "--resume")
    assert _tree_hashes(model_dir) == before


def test_unquoted_glob_is_refused_with_the_fix(tmp_path, sample):
    shards = sorted(tf.io.gfile.glob(sample["train_file_pattern"]))
    assert len(shards) >= 2
    result = _main("--mode", "train", "--model_dir", str(tmp_path / "run"),
                   "--train_file_pattern", *shards)
    _assert_one_line_error(result, "Unexpected argument", "quote the pattern")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_model_dir_that_is_a_file(tmp_path, sample_dir, mode, side_by_side):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cases = ((blocker, "is a file"), (blocker / "run", "cannot be created"))
    results = side_by_side("main.py", *(["--mode", mode, "--model_dir", model_dir,
                                         "--sample_data_dir", sample_dir]
                                        for model_dir, _ in cases), env=_env())
    for (model_dir, needle), result in zip(cases, results):
        _assert_one_line_error(result, str(model_dir), needle)
    assert blocker.read_text() == "not a directory"


def test_classification_records_for_the_detector(tmp_path, sample):
    result = _main("--mode", "train", "--model_dir", str(tmp_path / "run"),
                   "--train_file_pattern", sample["classification_train_file_pattern"],
                   "--hparams", "num_classes=3")
    _assert_one_line_error(result, "classification", "create_coco_tfrecord")


def test_out_of_memory_is_one_message():
    from common.config import load_config
    from common.training.user_errors import user_errors as _user_errors

    config = load_config(str(REPO / "configs" / "quickstart-detection.yaml"))
    with pytest.raises(Exception) as raised:
        with _user_errors(config, []):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    message = str(raised.value)
    assert "Out of memory" in message and "train.batch_size 8" in message
    assert "--batch_size (e.g. 4)" in message and "--grad_accum_steps (e.g. 2)" in message


def test_resume_continues_the_example_stream(sample):
    """The examples (ids and augmentation) of a stream rebuilt at (epoch, skipped
    batches) are the uninterrupted stream's from that point."""
    from common.config import family_of, load_config
    from common.training.distribution import SingleProcess

    config = load_config(str(REPO / "configs" / "quickstart-detection.yaml"), overrides=[
        f"data.train_file_pattern={sample['train_file_pattern']}", "train.seed=3",
        "image_size=128"])
    experiment = family_of(config.model.name).make_experiment(config, SingleProcess())
    batches_per_epoch, batch = 5, 2
    stage = experiment.stages(None, 3, batch, seed=3, batches_per_epoch=batches_per_epoch)[0]

    def take(dataset, count):
        ids, pixels = [], []
        for images, labels in dataset.take(count):
            ids += [int(i) for i in labels["source_ids"].numpy()]
            pixels.append(images.numpy())
        return ids, np.concatenate(pixels)

    full_ids, full_pixels = take(stage.make_dataset(0, 0), 3 * batches_per_epoch)
    assert len(full_ids) == 3 * batches_per_epoch * batch
    # Epochs differ from each other (a new order every epoch).
    per_epoch = batches_per_epoch * batch
    assert full_ids[:per_epoch] != full_ids[per_epoch:2 * per_epoch]
    for epoch, skip in ((0, 3), (1, 0), (1, 2), (2, 4)):
        start = (epoch * batches_per_epoch + skip) * batch
        ids, pixels = take(stage.make_dataset(epoch, skip), 3 * batches_per_epoch)
        assert ids == full_ids[start:], (epoch, skip)
        np.testing.assert_array_equal(pixels, full_pixels[start:])


def test_progressive_stages_continue_their_stream(sample):
    """EfficientNetV2's progressive stages: a stage rebuilt mid-way yields the same
    pictures and labels (augmentation included) as the uninterrupted stage."""
    from common.config import build_network, family_of, load_config
    from common.training.distribution import SingleProcess

    config = load_config(str(REPO / "configs" / "quickstart-classification.yaml"), overrides=[
        f"data.train_file_pattern={sample['classification_train_file_pattern']}",
        f"model.num_classes={sample['classification_num_classes']}", "train.seed=5",
        "model.progressive.n_stages=2", "model.progressive.base_image_size=32",
        "image_size=64", "model.train_image_size=64", "model.progressive.mixup_alpha=0.2"])
    experiment = family_of(config.model.name).make_experiment(config, SingleProcess())
    stages = experiment.stages(build_network(config), 4, 2, seed=5, batches_per_epoch=3)
    assert [s.start_epoch for s in stages] == [0, 2]
    last = stages[1]

    def take(dataset):
        images, labels = zip(*[(i.numpy(), l.numpy()) for i, l in dataset])
        return np.concatenate(images), np.concatenate(labels)

    images, labels = take(last.make_dataset())
    assert images.shape[0] == 2 * 3 * 2 and images.shape[1] == 64
    resumed_images, resumed_labels = take(last.make_dataset(3, 1))
    start = ((3 - 2) * 3 + 1) * 2  # epoch 3 is the stage's second; one batch of 2 done
    np.testing.assert_array_equal(resumed_images, images[start:])
    np.testing.assert_array_equal(resumed_labels, labels[start:])


def _copy_shards(sample, tmp_path):
    shards = sorted(tf.io.gfile.glob(sample["train_file_pattern"]))
    target = tmp_path / "data"
    target.mkdir()
    for shard in shards:
        (target / pathlib.Path(shard).name).write_bytes(pathlib.Path(shard).read_bytes())
    return sorted(target.iterdir())


def test_truncated_record_file_is_named(tmp_path, sample):
    shards = _copy_shards(sample, tmp_path)
    data = shards[-1].read_bytes()
    shards[-1].write_bytes(data[:len(data) - 1000])  # a copy cut short
    result = _main("--mode", "train", "--model_dir", str(tmp_path / "run"),
                   "--train_file_pattern", str(tmp_path / "data" / "*"), "--batch_size", "2")
    _assert_one_line_error(result, str(shards[-1]), "truncated")


def test_empty_record_files_with_steps_per_epoch(tmp_path):
    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"")
    result = _main("--mode", "train", "--model_dir", str(tmp_path / "run"),
                   "--train_file_pattern", str(tmp_path / "train-*"), "--steps_per_epoch", "4")
    _assert_one_line_error(result, "empty", "train-00000-of-00001.tfrecord")


@pytest.mark.slow
def test_class_id_above_num_classes_is_one_line(failing_trainings):
    """The sample data has 3 classes; a 2-class model meets class id 3 mid-run."""
    result, model_dir = failing_trainings["class_id"]
    _assert_one_line_error(result, "class id", "num_classes")
    assert not list(model_dir.glob("ckpt-*"))
