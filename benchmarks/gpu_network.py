"""Times the pure networks (EfficientDet-D0, EfficientNetV2-S) on whatever
accelerator JAX sees, with Keras 3 on the JAX backend and no TensorFlow.

The networks of :mod:`efficientdet.builder` and :mod:`efficientnet_v2.network`
are Keras 3 layers and ``keras.ops`` only, so they build under
``KERAS_BACKEND=jax`` with neither TensorFlow nor PyYAML installed. This script
needs nothing but ``keras``, ``jax`` and ``jaxlib`` (and ``numpy``, which they
bring); the toolkit need not be installed: the repository root is put on
``sys.path``. On a GPU machine::

    pip install keras==3.15.1 "jax[cuda12]==0.7.2"
    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false \\
        python benchmarks/gpu_network.py --output_json gpu.json

    # CPU smoke test: D0 at 128², V2-S at 64², batch 1, float32 (add --policies for more),
    # XLA's optimisation lowered so that it compiles 2-4x faster (its times mean nothing)
    python benchmarks/gpu_network.py --quick --output_json quick.json
    # a subset, TF32 off (true float32 matmuls and convolutions)
    python benchmarks/gpu_network.py --models efficientdet-d0 --batch_sizes 8 \\
        --policies float32 --modes train --precision highest

What is timed, per case (model x image size x batch x policy x mode):

* ``forward``: ``jax.jit`` of ``model.stateless_call(trainable, non_trainable,
  images, training=False)``.
* ``train``: ``jax.jit(jax.value_and_grad(loss, has_aux=True))`` where ``loss``
  runs ``stateless_call(..., training=True)`` (returning the updated
  non-trainable state, i.e. the batch-norm statistics) and the float32 loss:
  for D0 the EfficientDet focal loss (alpha 0.25, gamma 1.5) + 50 x Huber
  (delta 0.1) box loss on seeded synthetic targets (about 1 % positive
  anchors), the same values as :func:`efficientdet.losses.detection_loss`;
  for V2-S softmax cross-entropy with label smoothing 0.1. The gradients are
  computed and returned, **no optimizer update is applied** (so a real train
  step costs a little more: the update is one elementwise pass over the
  weights). Under ``mixed_float16`` the loss is multiplied by a static scale
  (``2**15``) and the float32 gradients are divided by it again, so a real
  float16 step is timed; ``grads_finite`` in the JSON says whether any
  gradient overflowed.
* Policies (``keras.mixed_precision.set_global_policy`` before building each
  model): ``float32``, ``mixed_bfloat16``, ``mixed_float16``.

Reported: the compile time (trace + lower + XLA compile of the jitted
function, ahead of time), then ``--warmup`` calls, then ``--steps`` timed
calls, each ended by ``jax.block_until_ready``: median and minimum ms per step
and images/s (batch / median). Memory: XLA's own estimate of the compiled
step (arguments + outputs + temporaries, ``compiled.memory_analysis()``) and,
on GPU, ``peak_bytes_in_use`` of ``jax.local_devices()[0].memory_stats()``,
which is the process-wide high-water mark so far (JAX cannot reset it), so it
is exact for the first case and an upper bound for later ones; null on CPU.

**TF32 on Ampere/Hopper.** With JAX's default matmul precision, float32
convolutions and matmuls on NVIDIA GPUs since Ampere may run in TF32 (10-bit
mantissa). ``--precision highest`` sets ``jax_default_matmul_precision`` to
true float32; the precision in effect is recorded in the JSON environment.

Optional comparison, same run, same device: when ``torch`` and ``timm`` import,
timm's ``tf_efficientnetv2_s`` (``pretrained=False``: no download) is timed
forward and forward+backward (loss + ``backward()``, no optimizer step) in
float32 and under ``torch.autocast`` float16 / bfloat16, at the same batch and
size; when ``effdet`` (rwightman/efficientdet-pytorch) imports, its D0 too
(``pretrained_backbone=False``), with the same focal + Huber loss. On CPU they
only run with ``--quick``. A missing package is a printed note, not an error.
They run after the JAX cases, in the same process: JAX's allocator keeps the
device memory it reserved, so on a small GPU a PyTorch row may run out of
memory (recorded as that row's error; ``--no_compare`` skips them). PyTorch's
batch norm refuses a 1x1 feature map at batch 1 in training, so effdet's D0
train row fails at the ``--quick`` size and batch (recorded).
The table then gets the ratio ours / theirs of images/s per matching row
(> 1: the Keras-on-JAX network is faster).

Output: versions and devices first, a Markdown table at the end, and with
``--output_json`` all results + the environment (rewritten atomically after
every case, so an interrupted run keeps what it measured). A failing case
(e.g. float16 unsupported on a device) is recorded with its error and the run
goes on; the exit code is 0 when every requested case has a result or a
recorded error.

Run it as a script (``python benchmarks/gpu_network.py``) from anywhere. The
loss functions (:func:`focal_loss`, :func:`huber`, :func:`detection_loss`,
:func:`classification_loss`) are plain ``keras.ops`` and work on any Keras
backend; importing this module imports neither jax nor keras.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

DETECTOR_DEFAULTS = {"image_size": 512, "batch_sizes": (8, 32)}
CLASSIFIER_DEFAULTS = {"image_size": 300, "batch_sizes": (32,)}
QUICK_SIZES = {"efficientdet": 128, "efficientnet": 64}
QUICK_BATCH = 1
# --quick (a smoke test: its times mean nothing) trades XLA's code quality for compile
# time, which dominates a run on a small CPU: the train steps compile 2-4x faster.
QUICK_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
                   "--xla_cpu_use_fusion_emitters=false")
DEFAULT_MODELS = ("efficientdet-d0", "efficientnetv2-s")
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
MODES = ("forward", "train")
FLOAT16_LOSS_SCALE = 2.0**15
NUM_DETECTION_CLASSES = 90
NUM_IMAGENET_CLASSES = 1000
POSITIVE_FRACTION = 0.01
TRAIN_NOTE = ("train = forward + backward (jax.value_and_grad of the float32 loss, "
              "batch-norm statistics updated); gradients only, no optimizer update")


# --------------------------------------------------------------------------- losses (keras.ops)

def focal_loss(logits, labels, alpha=0.25, gamma=1.5):
    """Element-wise sigmoid focal loss in float32, the formula of
    :func:`efficientdet.losses.focal_loss`: with ``u = logits * (2 labels - 1)``
    (the logit of ``p_t``), ``-log p_t = softplus(-u)`` and ``(1 - p_t)^gamma =
    exp(-gamma (softplus(-u) + u))``; ``alpha_t = alpha`` for positives, ``1 -
    alpha`` for negatives."""
    from keras import ops

    logits = ops.cast(logits, "float32")
    labels = ops.cast(labels, "float32")
    u = logits * (2.0 * labels - 1.0)
    neg_log_p_t = ops.softplus(-u)
    alpha_t = labels * (2.0 * alpha - 1.0) + (1.0 - alpha)
    modulator = ops.exp(-gamma * (neg_log_p_t + u))
    return alpha_t * modulator * neg_log_p_t


def huber(errors, delta=0.1):
    """Element-wise Huber loss: ``0.5 x^2`` for ``|x| <= delta``, else
    ``delta (|x| - delta / 2)``."""
    from keras import ops

    abs_err = ops.abs(errors)
    return ops.where(abs_err <= delta, 0.5 * ops.square(errors), delta * abs_err - 0.5 * delta**2)


def detection_loss(class_outputs, box_outputs, cls_targets, box_targets, num_classes,
                   alpha=0.25, gamma=1.5, delta=0.1, box_loss_weight=50.0):
    """The EfficientDet loss over every level, float32, as
    :func:`efficientdet.losses.detection_loss` without label smoothing / IoU loss.

    Args:
        class_outputs: per level ``[B, H, W, A * num_classes]`` logits.
        box_outputs: per level ``[B, H, W, A * 4]`` box codes.
        cls_targets: per level int ``[B, H, W, A]``: class id of a positive
            anchor, -1 negative, -2 ignored (no loss at all).
        box_targets: per level ``[B, H, W, A * 4]``.
        num_classes: classes per anchor.

    Returns:
        ``(total, cls_loss, box_loss)``: ``cls_loss = sum(focal) / (P + 1)``,
        ``box_loss = sum(huber over positives) / ((P + 1) * 4)``, ``total =
        cls_loss + box_loss_weight * box_loss``, with ``P`` the number of
        positive anchors of the batch.
    """
    from keras import ops

    positives = [ops.cast(ops.greater_equal(labels, 0), "float32") for labels in cls_targets]
    normalizer = sum(ops.sum(p) for p in positives) + 1.0
    cls_sum = 0.0
    box_sum = 0.0
    for logits, codes, labels, box_t, positive in zip(
            class_outputs, box_outputs, cls_targets, box_targets, positives):
        labels = ops.cast(labels, "int32")
        shape = tuple(labels.shape)
        logits = ops.reshape(ops.cast(logits, "float32"), shape + (num_classes,))
        # one-hot by comparison: -1 (negative) and -2 (ignored) give all zeros
        one_hot = ops.cast(ops.equal(ops.expand_dims(labels, -1),
                                     ops.arange(num_classes, dtype="int32")), "float32")
        keep = ops.cast(ops.not_equal(labels, -2), "float32")
        cls_sum = cls_sum + ops.sum(focal_loss(logits, one_hot, alpha, gamma)
                                    * ops.expand_dims(keep, -1))
        codes = ops.reshape(ops.cast(codes, "float32"), shape + (4,))
        box_t = ops.reshape(ops.cast(box_t, "float32"), shape + (4,))
        box_sum = box_sum + ops.sum(huber(codes - box_t, delta) * ops.expand_dims(positive, -1))
    cls_loss = cls_sum / normalizer
    box_loss = box_sum / (normalizer * 4.0)
    return cls_loss + box_loss_weight * box_loss, cls_loss, box_loss


def classification_loss(logits, labels, num_classes, label_smoothing=0.1):
    """Mean softmax cross-entropy in float32 with label smoothing
    (``y = one_hot (1 - s) + s / num_classes``)."""
    from keras import ops

    one_hot = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype="float32")
    target = one_hot * (1.0 - label_smoothing) + label_smoothing / num_classes
    log_p = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    return -ops.mean(ops.sum(target * log_p, axis=-1))


def synthetic_detection_targets(level_shapes, num_anchors, seed=0,
                                positive_fraction=POSITIVE_FRACTION,
                                num_classes=NUM_DETECTION_CLASSES):
    """Seeded numpy targets per level: ``cls`` int32 ``[B, H, W, A]`` (about
    ``positive_fraction`` positives with a random class, the rest -1) and
    ``box`` float32 ``[B, H, W, A * 4]`` codes ~ N(0, 0.5)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cls_targets, box_targets = [], []
    for batch, height, width in level_shapes:
        shape = (batch, height, width, num_anchors)
        positive = rng.random(shape) < positive_fraction
        classes = rng.integers(0, num_classes, shape)
        cls_targets.append(np.where(positive, classes, -1).astype(np.int32))
        box_targets.append(rng.normal(0.0, 0.5, shape[:3] + (num_anchors * 4,)).astype(np.float32))
    return cls_targets, box_targets


# --------------------------------------------------------------------------- set-up

def _fail(message, code=2):
    print(f"gpu_network: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _family(model_name):
    if model_name.startswith("efficientdet"):
        return "efficientdet"
    if model_name.startswith("efficientnet"):
        return "efficientnet"
    raise ValueError(f"unknown model {model_name!r}: expected efficientdet-* or efficientnet*")


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()] if text else []


def _parse_image_sizes(text, models):
    """``"384"`` (every model) or ``"efficientdet-d0=640,efficientnetv2-s=384"``."""
    sizes = {}
    for item in _csv(text):
        if "=" in item:
            name, value = item.split("=", 1)
            if name.strip() not in models:
                raise ValueError(f"--image_size names {name.strip()!r}, not one of --models {models}")
            sizes[name.strip()] = int(value)
        else:
            sizes.update({name: int(item) for name in models})
    if any(size <= 0 for size in sizes.values()):
        raise ValueError("--image_size values must be positive")
    return sizes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Run with KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false on a GPU.")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma list of model names (efficientdet-d*, efficientnetv2-*, ...)")
    parser.add_argument("--image_size", default=None,
                        help="one size for every model or name=size pairs "
                             "(default: D* 512 / classifiers 300; --quick: 128 / 64)")
    parser.add_argument("--batch_sizes", default=None,
                        help="comma list for every model (default: D* 8,32 / classifiers 32; --quick: 1)")
    parser.add_argument("--policies", default=None,
                        help=f"comma list of {POLICIES} (default: all; --quick: float32)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of {MODES}")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls after compiling (default 5; --quick 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed calls (default 20; --quick 1)")
    parser.add_argument("--precision", default=None, choices=("default", "high", "highest",
                                                                "bfloat16", "tensorfloat32", "float32"),
                        help="jax_default_matmul_precision (default: leave JAX's default)")
    parser.add_argument("--output_json", default=None, help="write results + environment here")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke test: D* 128², classifiers 64², batch 1, 1 warmup, 1 step, "
                             "float32, XLA optimisation lowered for compile speed")
    parser.add_argument("--no_fast_compile", action="store_true",
                        help="with --quick: keep XLA's default optimisation (slower compiles)")
    parser.add_argument("--no_compare", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        args.models = _csv(args.models)
        if not args.models:
            raise ValueError("--models is empty")
        for name in args.models:
            _family(name)
        args.policies = _csv(args.policies) or list(POLICIES[:1] if args.quick else POLICIES)
        bad = [p for p in args.policies if p not in POLICIES]
        if bad:
            raise ValueError(f"--policies: unknown {bad}; choose from {POLICIES}")
        args.modes = _csv(args.modes)
        bad = [m for m in args.modes if m not in MODES]
        if bad or not args.modes:
            raise ValueError(f"--modes: unknown {bad or 'empty'}; choose from {MODES}")
        args.batch_sizes = [int(b) for b in _csv(args.batch_sizes)]
        if any(b <= 0 for b in args.batch_sizes):
            raise ValueError("--batch_sizes must be positive")
        args.image_sizes = _parse_image_sizes(args.image_size, args.models)
    except ValueError as error:
        parser.error(str(error))
    args.warmup = (1 if args.quick else 5) if args.warmup is None else args.warmup
    args.steps = (1 if args.quick else 20) if args.steps is None else args.steps
    if args.warmup < 0 or args.steps < 1:
        parser.error("--warmup must be >= 0 and --steps >= 1")
    return args


def case_plan(args):
    """``[(model, image_size, [batch sizes])]`` for the requested models."""
    plan = []
    for name in args.models:
        family = _family(name)
        defaults = DETECTOR_DEFAULTS if family == "efficientdet" else CLASSIFIER_DEFAULTS
        size = args.image_sizes.get(name) or (QUICK_SIZES[family] if args.quick else defaults["image_size"])
        batches = args.batch_sizes or ([QUICK_BATCH] if args.quick else list(defaults["batch_sizes"]))
        plan.append((name, size, batches))
    return plan


def _importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def environment(args):
    import jax
    import jaxlib
    import keras
    import numpy as np

    devices = jax.devices()
    env = {
        "python": platform.python_version(), "platform": platform.platform(),
        "jax": jax.__version__, "jaxlib": jaxlib.__version__, "keras": keras.__version__,
        "numpy": np.__version__, "keras_backend": keras.backend.backend(),
        "device_platform": devices[0].platform, "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
        "float16_loss_scale": FLOAT16_LOSS_SCALE, "train_mode": TRAIN_NOTE,
        "tensorflow_importable": _importable("tensorflow"),
        "warmup": args.warmup, "steps": args.steps, "quick": args.quick,
    }
    return env


def _write_json(path, payload):
    """Writes ``payload`` to ``path`` atomically (temporary file + ``os.replace``)."""
    if not path:
        return
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".gpu_network.", suffix=".json", dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(payload, out, indent=2, default=str)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def _error_text(error):
    text = f"{type(error).__name__}: {error}".strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first[:500]


# --------------------------------------------------------------------------- JAX cases

def _device_memory():
    import jax

    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # noqa: BLE001  (not implemented on some platforms)
        return None
    return stats or None


def _round(x, digits=4):
    """``x`` to ``digits`` significant digits (a slow CPU step is not 0.0 images/s)."""
    return float(f"{x:.{digits}g}")


def _mib(n):
    return None if n is None else round(n / 2**20, 1)


def _build(name, size, policy):
    import keras

    keras.mixed_precision.set_global_policy(policy)
    if _family(name) == "efficientdet":
        from efficientdet.builder import build_efficientdet

        return build_efficientdet(name, num_classes=NUM_DETECTION_CLASSES, image_size=size)
    from efficientnet_v2.network import build_classifier

    return build_classifier(name, num_classes=NUM_IMAGENET_CLASSES, image_size=(size, size))


def _batch(model, name, size, batch, seed):
    """Device arrays ``(images, targets)`` for one case and the loss ``f(outputs, targets)``."""
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 1.0, (batch, size, size, 3)).astype(np.float32)
    if _family(name) == "efficientdet":
        cls_shapes = [tuple(t.shape) for t in model.output["class_outputs"]]
        num_anchors = cls_shapes[0][-1] // NUM_DETECTION_CLASSES
        level_shapes = [(batch, s[1], s[2]) for s in cls_shapes]
        cls_t, box_t = synthetic_detection_targets(level_shapes, num_anchors, seed=seed + 1)
        targets = {"cls": cls_t, "box": box_t}

        def loss_of(outputs, targets):
            return detection_loss(outputs["class_outputs"], outputs["box_outputs"],
                                  targets["cls"], targets["box"], NUM_DETECTION_CLASSES)[0]
    else:
        targets = rng.integers(0, NUM_IMAGENET_CLASSES, (batch,)).astype(np.int32)

        def loss_of(outputs, labels):
            return classification_loss(outputs, labels, NUM_IMAGENET_CLASSES)
    return jax.device_put(images), jax.device_put(targets), loss_of


def _step_function(model, mode, policy, loss_of):
    import jax
    import jax.numpy as jnp

    if mode == "forward":
        def forward(trainable, non_trainable, images):
            outputs, _ = model.stateless_call(trainable, non_trainable, images, training=False)
            return outputs
        return jax.jit(forward), False

    scale = FLOAT16_LOSS_SCALE if policy == "mixed_float16" else 1.0

    def scaled_loss(trainable, non_trainable, images, targets):
        outputs, new_non_trainable = model.stateless_call(
            trainable, non_trainable, images, training=True)
        loss = loss_of(outputs, targets)
        return loss * scale, (loss, new_non_trainable)

    grad_fn = jax.value_and_grad(scaled_loss, has_aux=True)

    def train(trainable, non_trainable, images, targets):
        (_, (loss, new_non_trainable)), grads = grad_fn(trainable, non_trainable, images, targets)
        if scale != 1.0:
            grads = jax.tree.map(lambda g: g / scale, grads)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        return loss, grads, new_non_trainable, finite
    return jax.jit(train), True


def time_case(model, name, size, batch, policy, mode, args):
    """Compiles and times one case; returns the result fields."""
    import jax

    images, targets, loss_of = _batch(model, name, size, batch, args.seed)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    function, is_train = _step_function(model, mode, policy, loss_of)
    call_args = (trainable, non_trainable, images) + ((targets,) if is_train else ())

    start = time.perf_counter()
    compiled = function.lower(*call_args).compile()
    compile_s = time.perf_counter() - start
    xla_bytes = None
    try:
        analysis = compiled.memory_analysis()
        if analysis is not None:
            xla_bytes = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                         + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
    except Exception:  # noqa: BLE001  (not every backend reports it)
        pass

    result = None
    for _ in range(args.warmup):
        result = jax.block_until_ready(compiled(*call_args))
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        result = jax.block_until_ready(compiled(*call_args))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    fields = {
        "compile_s": round(compile_s, 3),
        "median_ms": round(median * 1e3, 3), "min_ms": round(min(times) * 1e3, 3),
        "images_per_s": _round(batch / median),
        "xla_step_mib": _mib(xla_bytes),
    }
    if is_train:
        fields["loss"] = float(result[0])
        fields["grads_finite"] = bool(result[3])
    stats = _device_memory()
    fields["peak_device_mib"] = _mib(stats.get("peak_bytes_in_use")) if stats else None
    del result, compiled, function
    return fields


def run_jax(args, plan, payload):
    import keras

    results = payload["results"]
    for name, size, batches in plan:
        for policy in args.policies:
            base = {"framework": "keras-jax", "model": name, "image_size": size, "policy": policy}
            model, build_error, build_s = None, None, None
            try:
                start = time.perf_counter()
                model = _build(name, size, policy)
                build_s = round(time.perf_counter() - start, 2)
                print(f"built {name} @{size} {policy} in {build_s} s "
                      f"({model.count_params():,} parameters)", flush=True)
            except Exception as error:  # noqa: BLE001  (record, go on)
                build_error = "build: " + _error_text(error)
                print(f"  {name} {policy}: {build_error}", flush=True)
            for batch in batches:
                for mode in args.modes:
                    row = dict(base, batch=batch, mode=mode, build_s=build_s)
                    if build_error:
                        row["error"] = build_error
                    else:
                        try:
                            row.update(time_case(model, name, size, batch, policy, mode, args))
                        except Exception as error:  # noqa: BLE001
                            row["error"] = _error_text(error)
                    results.append(row)
                    print("  " + _row_line(row), flush=True)
                    _write_json(args.output_json, payload)
            del model
            keras.backend.clear_session()
            gc.collect()
    keras.mixed_precision.set_global_policy("float32")


def _row_line(row):
    head = f"{row['model']}@{row['image_size']} b{row['batch']} {row['policy']} {row['mode']}"
    if row["framework"] != "keras-jax":
        head = f"[{row['framework']} {row['arch']} on {row['device']}] {head}"
    if "error" in row:
        return f"{head}: FAILED {row['error']}"
    first = (f"compile {row['compile_s']:.1f} s" if "compile_s" in row
             else f"first call {row['first_call_s']:.1f} s")
    return f"{head}: {first}, median {row['median_ms']:.2f} ms, {row['images_per_s']:.4g} images/s"


# --------------------------------------------------------------------------- PyTorch comparison

_TORCH_MODELS = {"efficientnetv2-s": ("timm", "tf_efficientnetv2_s"),
                 "efficientdet-d0": ("effdet", "tf_efficientdet_d0")}


def _torch_detection_loss(torch, class_outputs, box_outputs, cls_t, box_t, num_classes):
    """The same focal + Huber loss on effdet's NCHW outputs (float32)."""
    functional = torch.nn.functional
    positives = [(t >= 0).float() for t in cls_t]
    normalizer = sum(p.sum() for p in positives) + 1.0
    cls_sum, box_sum = 0.0, 0.0
    for logits, codes, labels, box, positive in zip(class_outputs, box_outputs, cls_t, box_t, positives):
        shape = tuple(labels.shape)
        logits = logits.float().permute(0, 2, 3, 1).reshape(shape + (num_classes,))
        one_hot = (labels[..., None] == torch.arange(num_classes, device=labels.device)).float()
        u = logits * (2.0 * one_hot - 1.0)
        neg_log_p_t = functional.softplus(-u)
        alpha_t = one_hot * (2 * 0.25 - 1.0) + 0.75
        cls_sum = cls_sum + (alpha_t * torch.exp(-1.5 * (neg_log_p_t + u)) * neg_log_p_t).sum()
        codes = codes.float().permute(0, 2, 3, 1).reshape(shape + (4,))
        box_loss = functional.huber_loss(codes, box.reshape(shape + (4,)), reduction="none", delta=0.1)
        box_sum = box_sum + (box_loss * positive[..., None]).sum()
    return cls_sum / normalizer + 50.0 * box_sum / (normalizer * 4.0)


def _torch_model(torch, name, size):
    package, arch = _TORCH_MODELS[name]
    if package == "timm":
        import timm

        return timm.create_model(arch, pretrained=False, num_classes=NUM_IMAGENET_CLASSES), timm.__version__
    from importlib import metadata

    from effdet import EfficientDet, get_efficientdet_config

    config = get_efficientdet_config(arch)
    config.update({"num_classes": NUM_DETECTION_CLASSES, "image_size": (size, size)})
    try:
        version = metadata.version("effdet")
    except metadata.PackageNotFoundError:
        version = "?"
    return EfficientDet(config, pretrained_backbone=False), version


def run_torch(args, plan, payload):
    """Times the timm / effdet counterparts of the planned cases when importable."""
    try:
        import torch
    except ImportError:
        print("note: torch not importable: PyTorch comparison skipped", flush=True)
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.quick:
        print("note: no CUDA device for torch; the PyTorch comparison runs on CPU only with --quick", flush=True)
        return
    payload["environment"]["torch"] = torch.__version__
    payload["environment"]["torch_device"] = (torch.cuda.get_device_name(0) if device == "cuda" else "cpu")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    amp = {"float32": None, "mixed_float16": torch.float16, "mixed_bfloat16": torch.bfloat16}
    for name, size, batches in plan:
        if name not in _TORCH_MODELS:
            continue
        package, arch = _TORCH_MODELS[name]
        try:
            model, version = _torch_model(torch, name, size)
        except ImportError:
            print(f"note: {package} not importable: {name} PyTorch comparison skipped", flush=True)
            continue
        except Exception as error:  # noqa: BLE001
            print(f"note: {package} {arch} failed to build: {_error_text(error)}", flush=True)
            continue
        payload["environment"][package] = version
        model = model.to(device).to(memory_format=torch.channels_last)
        for batch in batches:
            gen = torch.Generator().manual_seed(args.seed)
            images = torch.randn(batch, 3, size, size, generator=gen).to(device)
            images = images.contiguous(memory_format=torch.channels_last)
            targets = None
            if package == "timm":
                targets = torch.randint(0, NUM_IMAGENET_CLASSES, (batch,), generator=gen).to(device)
            for policy in args.policies:
                for mode in args.modes:
                    row = {"framework": f"torch/{package}", "model": name, "arch": arch,
                           "image_size": size, "batch": batch, "policy": policy, "mode": mode,
                           "device": device}
                    try:
                        if package == "effdet" and targets is None:
                            with torch.no_grad():
                                outs = model.eval()(images[:1])
                            levels = [(batch, o.shape[2], o.shape[3]) for o in outs[0]]
                            anchors = outs[0][0].shape[1] // NUM_DETECTION_CLASSES
                            cls_t, box_t = synthetic_detection_targets(levels, anchors, seed=args.seed + 1)
                            targets = ([torch.from_numpy(t).to(device) for t in cls_t],
                                       [torch.from_numpy(t).to(device) for t in box_t])
                        row.update(_torch_time(torch, model, package, mode, amp[policy], device,
                                               images, targets, sync, args))
                    except Exception as error:  # noqa: BLE001
                        row["error"] = _error_text(error)
                    payload["torch_results"].append(row)
                    print("  " + _row_line(row), flush=True)
                    _write_json(args.output_json, payload)
        del model
        gc.collect()


def _torch_time(torch, model, package, mode, dtype, device, images, targets, sync, args):
    scale = FLOAT16_LOSS_SCALE if dtype == torch.float16 else 1.0
    autocast = lambda: torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None)  # noqa: E731

    def forward():
        with torch.no_grad(), autocast():
            return model(images)

    def train():
        model.zero_grad(set_to_none=True)
        with autocast():
            outputs = model(images)
        if package == "timm":
            loss = torch.nn.functional.cross_entropy(outputs.float(), targets, label_smoothing=0.1)
        else:
            loss = _torch_detection_loss(torch, outputs[0], outputs[1], targets[0], targets[1],
                                         NUM_DETECTION_CLASSES)
        (loss * scale).backward()
        return loss

    step = forward if mode == "forward" else train
    model.train(mode == "train")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step()
    sync()
    first_s = time.perf_counter() - start
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    fields = {"first_call_s": round(first_s, 3), "median_ms": round(median * 1e3, 3),
              "min_ms": round(min(times) * 1e3, 3), "images_per_s": _round(images.shape[0] / median)}
    if device == "cuda":
        fields["peak_device_mib"] = _mib(torch.cuda.max_memory_allocated())
    return fields


# --------------------------------------------------------------------------- report

def _fmt(value, spec):
    return "–" if value is None else format(value, spec)


def _rate(value):
    return "–" if value is None else format(value, ".1f" if value >= 10 else ".3g")


def markdown(results, torch_results=()):
    """The Markdown table of the Keras-on-JAX rows (+ ratio to a matching PyTorch row)."""
    theirs = {(r["model"], r["image_size"], r["batch"], r["policy"], r["mode"]): r
              for r in torch_results if "error" not in r}
    compare = bool(theirs)
    header = ["model", "size", "batch", "policy", "mode", "compile s", "median ms", "min ms",
              "images/s", "XLA step MiB", "peak MiB"]
    if compare:
        header += ["torch images/s", "ours/torch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results:
        cells = [row["model"], f"{row['image_size']}²", str(row["batch"]), row["policy"], row["mode"]]
        if "error" in row:
            cells += ["FAILED: " + row["error"].replace("|", "/")[:120]] + [""] * (len(header) - 6)
        else:
            cells += [_fmt(row["compile_s"], ".1f"), _fmt(row["median_ms"], ".2f"),
                      _fmt(row["min_ms"], ".2f"), _rate(row["images_per_s"]),
                      _fmt(row.get("xla_step_mib"), ".0f"), _fmt(row.get("peak_device_mib"), ".0f")]
            if compare:
                other = theirs.get((row["model"], row["image_size"], row["batch"], row["policy"], row["mode"]))
                cells += ([_rate(other["images_per_s"]),
                           _fmt(row["images_per_s"] / other["images_per_s"], ".2f")]
                          if other else ["–", "–"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def _import_stack(args):
    """Imports keras + jax with the JAX backend, or exits with one clear line."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if args.quick and not args.no_fast_compile:
        # before jax initialises its backend; flags the user set win
        flags = os.environ.get("XLA_FLAGS", "")
        extra = [f for f in QUICK_XLA_FLAGS if f.split("=")[0] not in flags]
        os.environ["XLA_FLAGS"] = " ".join([flags] + extra).strip()
    # the repository root first; not benchmarks/ itself (its run.py, timing.py, ... would
    # shadow top-level modules of that name)
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path
                                      if os.path.abspath(p or ".") not in (str(REPO_ROOT), here)]
    try:
        import jax
        import keras
    except ImportError as error:
        _fail(f"needs keras and jax ({error}); pip install keras==3.15.1 jax==0.7.2 "
              "(GPU: 'jax[cuda12]==0.7.2')")
    if keras.backend.backend() != "jax":
        _fail(f"needs the JAX backend of Keras, got KERAS_BACKEND={keras.backend.backend()!r}; "
              "run with KERAS_BACKEND=jax")
    if args.precision:
        jax.config.update("jax_default_matmul_precision", args.precision)


def main(argv=None):
    args = parse_args(argv)
    _import_stack(args)
    plan = case_plan(args)
    env = environment(args)
    print("environment: " + ", ".join(f"{k}={env[k]}" for k in (
        "python", "jax", "jaxlib", "keras", "keras_backend", "device_platform", "device_kind",
        "device_count", "jax_default_matmul_precision")), flush=True)
    print(f"note: {TRAIN_NOTE}; mixed_float16 uses a static loss scale {FLOAT16_LOSS_SCALE:g}", flush=True)
    requested = [(name, size, batch, policy, mode) for name, size, batches in plan
                 for policy in args.policies for batch in batches for mode in args.modes]
    payload = {"environment": env, "requested": [dict(zip(("model", "image_size", "batch", "policy", "mode"), r))
                                                 for r in requested],
               "results": [], "torch_results": []}
    _write_json(args.output_json, payload)
    try:
        run_jax(args, plan, payload)
        if not args.no_compare:
            run_torch(args, plan, payload)
    except KeyboardInterrupt:
        payload["fatal"] = "interrupted"
    except Exception as error:  # noqa: BLE001  (keep what was measured)
        payload["fatal"] = _error_text(error)
    env["tensorflow_imported"] = "tensorflow" in sys.modules
    _write_json(args.output_json, payload)

    print()
    print(markdown(payload["results"], payload["torch_results"]))
    print(f"\n({TRAIN_NOTE}.)")
    if args.quick:
        print(f"(--quick: a smoke test; XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}, times are not representative.)")
    if payload["torch_results"]:
        print("\nPyTorch rows:")
        for row in payload["torch_results"]:
            print("  " + _row_line(row))
    done = {(r["model"], r["image_size"], r["batch"], r["policy"], r["mode"]) for r in payload["results"]}
    missing = [r for r in requested if r not in done]
    if payload.get("fatal") or missing:
        print(f"gpu_network: {len(missing)} requested case(s) not recorded"
              + (f"; stopped by {payload['fatal']}" if payload.get("fatal") else ""), file=sys.stderr)
        return 1
    failed = sum("error" in r for r in payload["results"])
    if failed:
        print(f"note: {failed} case(s) failed, errors recorded", flush=True)
    if args.output_json:
        print(f"wrote {os.path.abspath(args.output_json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
