"""What each mode of the suite measures: sizes, batches, variants, repetitions.

``full`` is the issue's configuration (512×512 D0, 300 / 384 V2-S, batch 8).
``quick`` shrinks images and batches, runs fp32 only, inference at batch 1 and
the classification input at the train size, and sets up all its cases at once
(1.7 min on a quiet 2-core VM, most of it one-time graph tracing); its numbers
are only for checking that everything works and for ratios, never to quote.
``smoke`` is for the test suite. ``jobs`` is how many cases may set up side by
side (:mod:`benchmarks.gate`), ``max_processes`` how many case processes may be
alive at once, counting those that wait for their turn to time; the full mode
keeps it at 2 because its train cases peak at 5-7.5 GB of host memory each.
"""
from __future__ import annotations

MODES = {
    "full": dict(det_size=512, det_batch=8, cls_train_size=300, cls_infer_size=384, cls_batch=8,
                 input_sizes=(300, 384), input_batches=8, input_warmup=3, input_repeats=5,
                 train_warmup=1, train_repeats=3, steps_per_repeat=1, xla=(False, True),
                 infer_batches=(1, 8), infer_warmup=2, infer_runs=1, infer_repeats=7, jobs=2,
                 max_processes=2, bf16=True),
    "quick": dict(det_size=128, det_batch=2, cls_train_size=96, cls_infer_size=96, cls_batch=4,
                  input_sizes=(96,), input_batches=5, input_warmup=2, input_repeats=3,
                  train_warmup=2, train_repeats=3, steps_per_repeat=1, xla=(False,),
                  infer_batches=(1,), infer_warmup=1, infer_runs=1, infer_repeats=5, jobs=2,
                  max_processes=6, bf16=False),
    "smoke": dict(det_size=128, det_batch=1, cls_train_size=64, cls_infer_size=64, cls_batch=2,
                  input_sizes=(64,), input_batches=2, input_warmup=1, input_repeats=2,
                  train_warmup=1, train_repeats=2, steps_per_repeat=1, xla=(False,),
                  infer_batches=(1,), infer_warmup=1, infer_runs=2, infer_repeats=2, jobs=2,
                  max_processes=2, bf16=False),
}
DETECTOR = "efficientdet-d0"
CLASSIFIER = "efficientnetv2-s"


def bf16_note(data):
    """What the bfloat16 rows measure on this machine."""
    if data.get("gpus"):
        return "mixed_bfloat16 on the GPU (native on Ampere and newer)"
    flags = data.get("cpu_flags", [])
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return ("mixed_bfloat16 on a CPU with " + " and ".join(native).upper() + " (oneDNN)"
            if native else "mixed_bfloat16 on a CPU WITHOUT AVX512_BF16/AMX: emulated, slow")


def variant_name(xla, amp):
    return "+".join(v for v, on in (("amp", amp), ("xla", xla)) if on) or "fp32"


def build_plan(mode, data, include_amp=False, randaug_magnitude=10.0, threads=0):
    """Returns the list of case specs (dicts) of ``mode``.

    Args:
        mode: a key of :data:`MODES`.
        data: the ``prepare`` case's result (sample TFRecord patterns, ``gpus``).
        include_amp: also time the mixed-precision variants (always listed; without
            this flag they are marked skipped, as on a CPU they only measure
            float16 emulation).
        randaug_magnitude: RandAugment strength of the classification pipelines.
        threads: ``private_threadpool_size`` of the pipelines (0 = shared pool).
    """
    m = MODES[mode]
    det, cls = data["train_file_pattern"], data["classification_train_file_pattern"]
    cases = [dict(id=f"input/detection@{m['det_size']}", kind="input", pipeline="detection",
                  file_pattern=det, num_classes=90, image_size=m["det_size"],
                  batch_size=m["det_batch"], batches=m["input_batches"], warmup=m["input_warmup"],
                  repeats=m["input_repeats"], private_threadpool_size=threads)]
    for size in m["input_sizes"]:
        cases.append(dict(id=f"input/classification@{size}", kind="input",
                          pipeline="classification", file_pattern=cls, num_classes=1000,
                          image_size=size, batch_size=m["cls_batch"], batches=m["input_batches"],
                          warmup=m["input_warmup"], repeats=m["input_repeats"],
                          randaug_magnitude=randaug_magnitude, private_threadpool_size=threads))
    amps = (False, True)
    for model, size, batch, pattern, reference in (
            (DETECTOR, m["det_size"], m["det_batch"], det, False),
            (CLASSIFIER, m["cls_train_size"], m["cls_batch"], cls, True)):
        for amp in amps:
            for xla in m["xla"]:
                cases.append(dict(
                    id=f"train/{model}@{size}/{variant_name(xla, amp)}", kind="train", model=model,
                    image_size=size, batch_size=batch, xla=xla, amp=amp, reference=reference,
                    train_file_pattern=pattern, warmup=m["train_warmup"],
                    repeats=m["train_repeats"], steps_per_repeat=m["steps_per_repeat"],
                    skip=(amp and not include_amp)))
        if m["bf16"]:
            cases.append(dict(
                id=f"train/{model}@{size}/bf16", kind="train", model=model, image_size=size,
                batch_size=batch, xla=False, amp=False, precision="mixed_bfloat16",
                reference=reference, train_file_pattern=pattern, warmup=m["train_warmup"],
                repeats=m["train_repeats"], steps_per_repeat=m["steps_per_repeat"],
                note=bf16_note(data)))
    for model, size, reference in ((DETECTOR, m["det_size"], False),
                                   (CLASSIFIER, m["cls_infer_size"], True)):
        for amp in amps:
            for xla in m["xla"]:
                batches, note = list(m["infer_batches"]), None
                if xla and not data.get("gpus") and len(batches) > 1:
                    # XLA's CPU code is 4-7x slower here (the train rows show it); at
                    # batch 8 a single case takes longer than the whole time limit.
                    batches = batches[:1]
                    note = (f"batch {batches[0]} only: XLA inference at larger batches "
                            "takes minutes per target on a CPU (no GPU found)")
                cases.append(dict(
                    id=f"infer/{model}@{size}/{variant_name(xla, amp)}", kind="infer", model=model,
                    image_size=size, xla=xla, amp=amp, reference=reference,
                    batch_sizes=batches, warmup=m["infer_warmup"],
                    runs=m["infer_runs"], repeats=m["infer_repeats"],
                    skip=(amp and not include_amp), note=note))
        if m["bf16"]:
            cases.append(dict(
                id=f"infer/{model}@{size}/bf16", kind="infer", model=model, image_size=size,
                xla=False, amp=False, precision="mixed_bfloat16", reference=reference,
                batch_sizes=list(m["infer_batches"]), warmup=m["infer_warmup"],
                runs=m["infer_runs"], repeats=m["infer_repeats"], note=bf16_note(data)))
    # Most informative first, so a time budget cuts the least important cases:
    # inputs, fp32 train and inference, then XLA, then mixed precision.
    # Within a variant the V2-S cases (the reference ratios) come before D0.
    def priority(case):
        variant = case["id"].rsplit("/", 1)[1]
        rank = {"input": 0}.get(case["kind"], 1 + ("xla" in variant) + 1.5 * ("bf16" in variant)
                                + 2 * ("amp" in variant))
        return rank, case.get("model") != CLASSIFIER

    return sorted(cases, key=priority)
