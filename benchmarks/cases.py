"""One benchmark case, run in a child process by :mod:`benchmarks.run`.

``python -m benchmarks.cases SPEC.json RESULT.json [LOCK_FD STATUS]``: ``SPEC`` says what to
measure (``kind`` = ``prepare`` | ``input`` | ``train`` | ``infer``); the
result is written as JSON. Every case reuses the project's own code paths: the
input pipelines (:mod:`dataset.detection_input`,
:mod:`dataset.classification_input`, timed by
:func:`dataset.benchmark_input.measure`), the one train step
(:class:`common.training.train_step.TrainStep`, with the model, optimizer and
EMA of :func:`common.training.setup.build_training_setup`, fed by the
experiment's own training dataset) and the inference wrappers and timers of
:mod:`common.export.benchmark`.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def _log(message):
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- helpers

def _config(spec):
    from common.config import load_config

    overrides = [f"runtime.use_xla={bool(spec.get('xla'))}", "runtime.mixed_precision=false",
                 f"runtime.precision={_policy(spec)}"]
    if spec["model"].startswith("efficientdet"):
        recipe = "configs/efficientdet-d0-coco.yaml"
        overrides += [f"model.image_size={spec['image_size']}"]
    else:
        recipe = "configs/efficientnetv2-s-imagenet.yaml"
        overrides += [f"model.train_image_size={spec['image_size']}",
                      f"model.image_size={spec['image_size']}"]
    if spec.get("train_file_pattern"):
        overrides.append(f"data.train_file_pattern={spec['train_file_pattern']}")
    if spec.get("batch_size"):
        overrides.append(f"train.batch_size={spec['batch_size']}")
    if spec.get("gradient_checkpointing"):
        overrides.append(f"train.gradient_checkpointing={spec['gradient_checkpointing']}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # The recipe's settings, for the spec's model (D0's recipe also serves D1-D7).
    return load_config(os.path.join(root, recipe), model_name=spec["model"],
                       overrides=overrides)


def _multiply_adds(model, image_size, cache_path, key):
    """Forward multiply-adds per image (:func:`common.model_stats.count_multiply_adds`),
    cached across cases because tracing a large model takes a while."""
    from common.model_stats import count_multiply_adds

    def read():
        if cache_path and os.path.exists(cache_path):
            with open(cache_path) as handle:
                return json.load(handle)
        return {}

    cache = read()
    if key not in cache:
        value = count_multiply_adds(model, tuple(image_size))
        if cache_path:  # cases run side by side: merge with what others wrote, replace atomically
            cache = dict(read(), **{key: value})
            partial = f"{cache_path}.{os.getpid()}"
            with open(partial, "w") as handle:
                json.dump(cache, handle, indent=2)
            os.replace(partial, cache_path)
        return value
    return cache[key]


def _policy(spec):
    """The case's Keras dtype policy: ``precision`` if given, else float16 for ``amp``."""
    return spec.get("precision") or ("mixed_float16" if spec.get("amp") else "float32")


def _set_policy(policy):
    import keras

    keras.mixed_precision.set_global_policy(policy)


def _device_source(batch):
    """An endless dataset repeating one batch, placed on the accelerator when there is one."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        dataset = dataset.apply(tf.data.experimental.prefetch_to_device(gpus[0].name, 2))
    return dataset


# --------------------------------------------------------------------------- cases

def prepare(spec, gate):
    """Generates (or reuses) the synthetic TFRecords every other case reads."""
    from dataset.make_sample_dataset import make_sample_datasets

    sample = make_sample_datasets(spec["data_dir"], num_train=spec["num_images"], num_val=8,
                                  image_size=spec["detection_image_size"],
                                  classification_num_train=spec["num_images"],
                                  classification_num_val=8,
                                  classification_image_size=spec["classification_image_size"])
    import tensorflow as tf

    found = {k: v for k, v in sample.items() if isinstance(v, (str, int, float))}
    return dict(found, gpus=len(tf.config.list_physical_devices("GPU")), cpu_flags=_cpu_flags())


def _cpu_flags():
    """The CPU's instruction-set flags that decide low-precision speed (Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle
                          if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma")))


def input_pipeline(spec, gate):
    """Images/second of one training input pipeline (decode + augment [+ anchor targets]).
    The pipeline's own warm-up batches are inside the timed (exclusive) section."""
    from benchmarks.timing import spread
    from dataset.benchmark_input import measure

    common = dict(seed=None, repeat=True, drop_remainder=True,
                  private_threadpool_size=spec.get("private_threadpool_size", 0))
    if spec["pipeline"] == "detection":
        from dataset.detection_input import build_detection_dataset

        dataset = build_detection_dataset(spec["file_pattern"], spec["image_size"], True,
                                          spec["batch_size"], num_classes=spec["num_classes"],
                                          **common)
    else:
        from dataset.classification_input import build_classification_dataset

        dataset = build_classification_dataset(
            spec["file_pattern"], spec["image_size"], True, spec["batch_size"],
            num_classes=spec["num_classes"], randaug_magnitude=spec.get("randaug_magnitude"),
            **common)
    with gate.exclusive():
        stats = measure(dataset, spec["batch_size"], spec["batches"], spec["warmup"],
                        spec["repeats"])
    return {"images_per_second": spread(stats["repeats"])}


def train(spec, gate):
    """Images/second of the train step (ours, and optionally Keras' V2-S interleaved).
    ``gate``: a :class:`benchmarks.gate.TimingGate`; the rounds (and the profile) hold it
    exclusively."""
    import dataclasses

    import keras
    import tensorflow as tf

    from common.config import family_of
    from common.training.distribution import SingleProcess
    from common.training.schedules import build_schedule
    from common.training.setup import build_optimizer_and_ema, build_training_setup
    from benchmarks.timing import interleaved

    _set_policy(_policy(spec))
    keras.utils.set_random_seed(0)
    config = _config(spec)
    batch = spec["batch_size"]
    # The schedule assumes 1000 steps per epoch (no records are counted) and one
    # micro-batch per step: each timed step is one in-memory batch.
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, steps_per_epoch=1000, grad_accum_steps=1))
    train_cfg = config.train
    distribution = SingleProcess()
    experiment = family_of(config.model.name).make_experiment(config, distribution)
    # The run's own assembly (amp / xla come from the spec through the config);
    # no model_dir, so no checkpoint state.
    setup = build_training_setup(config, distribution, experiment.task)
    model, step = setup.model, setup.step
    # One real batch from the experiment's own training pipeline, then repeated from
    # memory: the step is timed alone (the pipeline has its own cases).
    stage = experiment.stages(model, 1, batch, seed=0, batches_per_epoch=1)[-1]
    if stage.on_enter is not None:
        stage.on_enter()
    data = next(iter(stage.make_dataset()))
    iterator = iter(_device_source(data))
    steps = spec["steps_per_repeat"]

    def run_ours():
        for _ in range(steps):
            losses = step.run(iterator)
        float(np.asarray(losses["total_loss"]))  # the only host sync, once per timed unit

    runners = [("ours", run_ours, steps * batch)]
    size = (spec["image_size"],) * 2
    flops = {"ours": _multiply_adds(model, size, spec.get("flops_cache"),
                                    f"{config.model.name}@{spec['image_size']}")}
    if spec.get("reference"):
        from benchmarks.reference import ReferenceTrainStep, build_reference_classifier

        reference = build_reference_classifier(size, config.model.num_classes)
        ref_optimizer, ref_ema = build_optimizer_and_ema(
            config, reference, build_schedule(train_cfg, setup.steps_per_epoch, batch))
        ref_step = ReferenceTrainStep(reference, experiment.task, ref_optimizer, ref_ema,
                                      use_xla=bool(spec.get("xla")),
                                      weight_decay=train_cfg.weight_decay,
                                      weight_decay_exclude=train_cfg.weight_decay_exclude)
        images, labels = data

        def run_reference():
            for _ in range(steps):
                loss = ref_step.run(images, labels)
            float(np.asarray(loss))

        runners.append(("keras_reference", run_reference, steps * batch))
        flops["keras_reference"] = _multiply_adds(reference, size, spec.get("flops_cache"),
                                                  f"keras.EfficientNetV2S@{spec['image_size']}")
    timed = interleaved(runners, spec["warmup"], spec["repeats"], log=_log,
                        exclusive=gate.exclusive)
    # Retracing check: the step must have been traced exactly once for all calls.
    result = {"runs": {}, "train_step_traces": int(step._step.experimental_get_tracing_count())}
    for name, stats in timed.items():
        median = stats["images_per_second"]["median"]
        # Training ≈ 3x the forward multiply-adds (backward = 2x forward), 2 FLOPs each.
        result["runs"][name] = dict(stats, forward_multiply_adds=flops[name],
                                    train_gflops_per_second=6.0 * flops[name] * median / 1e9)
    if spec.get("profile_dir"):
        with gate.exclusive():
            tf.profiler.experimental.start(spec["profile_dir"])
            for _ in range(spec.get("profile_steps", 2)):
                with tf.profiler.experimental.Trace(
                        "train", step_num=int(step.global_step.numpy()), _r=1):
                    losses = step.run(iterator)
            float(np.asarray(losses["total_loss"]))
            tf.profiler.experimental.stop()
        result["profile_dir"] = spec["profile_dir"]
    return result


def _trained_like_statistics(network, seed=0):
    """Non-zero batch-norm shifts, as every trained checkpoint has: with the initial
    zeros the folded biases would be constant zeros that TensorFlow's graph optimizer
    deletes, timing a cheaper network than any real one."""
    from common.layers.normalization import BatchNorm

    rng = np.random.default_rng(seed)
    for layer in network._flatten_layers():
        if isinstance(layer, BatchNorm):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 0.1, channels).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.1, channels).astype("float32"))


def infer(spec, gate):
    """Latency (batch 1) and throughput (batch N) of the inference wrapper: network only
    and end to end; optionally Keras' V2-S network interleaved. Per batch size, every
    target is warmed up first, then the rounds hold ``gate`` exclusively."""
    from benchmarks.timing import spread
    from common.export import benchmark, benchmark_targets
    from common.export.factory import build_inference_module
    from common.layers.batch_norm_folding import fold_batch_norms

    policy = _policy(spec)
    config = _config(spec)
    variant = spec["id"].rsplit("/", 1)[1]
    module = build_inference_module(config, None, policy=policy, fold_batch_norm=False)
    _trained_like_statistics(module.network)
    fold_batch_norms(module.network)  # as build_inference_module does by default
    targets = [("ours", part, make) for _, part, make in
               benchmark_targets.keras_targets(lambda _amp: module, [variant])]
    size = (spec["image_size"],) * 2
    flops = {"ours": _multiply_adds(module.network, size, spec.get("flops_cache"),
                                    f"{config.model.name}@{spec['image_size']}")}
    if spec.get("reference"):
        from benchmarks.reference import build_reference_classifier
        from efficientnet_v2.inference import ClassifierInference

        _set_policy(policy)
        reference = build_reference_classifier(size, config.model.num_classes)
        _set_policy("float32")
        wrapped = ClassifierInference(reference, size, normalization=config.model.preprocessing)
        targets += [("keras_reference", part, make) for _, part, make in
                    benchmark_targets.keras_targets(lambda _amp: wrapped, [variant])]
        flops["keras_reference"] = _multiply_adds(reference, size, spec.get("flops_cache"),
                                                  f"keras.EfficientNetV2S@{spec['image_size']}")
    rows = []
    for batch_size in spec["batch_sizes"]:
        made = [(name, part, make(batch_size)) for name, part, make in targets]
        latencies = {(name, part): [] for name, part, _ in made}
        rounds = {(name, part): [] for name, part, _ in made}
        for name, part, (function, inputs) in made:
            benchmark.time_calls(function, inputs, spec["warmup"], 0)
        with gate.exclusive():
            for _ in range(spec["repeats"]):  # interleaved rounds: A B A B ...
                for name, part, (function, inputs) in made:
                    seconds = benchmark.time_calls(function, inputs, 0, spec["runs"])
                    latencies[(name, part)] += seconds
                    rounds[(name, part)].append(batch_size * len(seconds) / sum(seconds))
        for (name, part), seconds in latencies.items():
            throughput, latency = benchmark.summarize(seconds, batch_size)
            stats = spread(rounds[(name, part)])
            rows.append({"model": name, "part": part, "variant": variant, "batch_size": batch_size,
                         "calls": len(seconds), "throughput_images_per_s": throughput,
                         "round_images_per_second": stats, "latency_ms": latency,
                         "forward_multiply_adds": flops[name],
                         "gflops_per_second": 2.0 * flops[name] * stats["median"] / 1e9})
            _log(f"  {name} {part} {variant} batch {batch_size}: {stats['median']:.2f} img/s, "
                 f"p50 {latency['p50']:.1f} ms")
    return {"rows": rows, "methodology": benchmark.METHODOLOGY}


CASES = {"prepare": prepare, "input": input_pipeline, "train": train, "infer": infer}


def main(argv):
    """``argv``: ``SPEC.json RESULT.json [LOCK_FD STATUS]`` (``LOCK_FD``: the shared lock
    the runner took for this process, ``STATUS``: the gate's status file;
    :mod:`benchmarks.gate`)."""
    import model_zoo  # noqa: F401  (registers the model families: the case resolves configs)
    from benchmarks.gate import TimingGate

    spec_path, result_path = argv[:2]
    gate = TimingGate(*((int(argv[2]), argv[3]) if len(argv) > 2 else ()))
    with open(spec_path) as handle:
        spec = json.load(handle)
    tick = time.perf_counter()
    result = CASES[spec["kind"]](spec, gate)
    result["wall_seconds"] = time.perf_counter() - tick  # the lock goes with the process
    result["gate"] = {"waited_seconds": gate.waited_seconds, "timed_seconds": gate.timed_seconds}
    with open(result_path, "w") as handle:
        json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv[1:]))
