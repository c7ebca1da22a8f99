"""Peak training memory with and without gradient checkpointing.

``python -m benchmarks.memory --output_dir runs/memory`` runs the train step of
each model at its native size, for two batch sizes and each
``train.gradient_checkpointing`` mode, every case alone in a fresh process
(:mod:`benchmarks.cases`' ``train`` case on the synthetic sample data, float32,
no XLA). A case's peak memory is its process's peak resident memory
(``ru_maxrss``): TensorFlow itself, the variables, optimizer slots and EMA, and
the step's activations. Two batch sizes split it into a fixed part and a part
per image (``peak(b2) - peak(b1)`` per ``b2 - b1`` images), the numbers to pick
a batch size with. Step times are medians of the timed steps; cases of one model
run back to back, so their ratios are "in one run".

On a CPU this is host memory under TensorFlow's CPU allocator; a GPU holds the
same tensors (plus cuDNN workspaces, minus the host-side runtime), so the per-image
part carries over as an estimate, not a guarantee.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from benchmarks.run import _run_alone, machine
from common.atomic_files import atomic_write, write_text

NATIVE_SIZES = {"efficientdet-d0": 512, "efficientdet-d1": 640, "efficientdet-d2": 768,
                "efficientdet-d3": 896, "efficientdet-d4": 1024, "efficientdet-d5": 1280,
                "efficientdet-d6": 1280, "efficientdet-d7": 1536}


def plan(models, batches, modes, data, repeats=2):
    """The train specs: every model × batch × mode (native image size)."""
    specs = []
    for model in models:
        size = NATIVE_SIZES[model]
        for batch in batches:
            for mode in modes:
                specs.append(dict(
                    id=f"memory/{model}@{size}/b{batch}/{mode}", kind="train", model=model,
                    image_size=size, batch_size=batch, xla=False, amp=False, reference=False,
                    gradient_checkpointing=mode, train_file_pattern=data["train_file_pattern"],
                    warmup=1, repeats=repeats, steps_per_repeat=1))
    return specs


def summarize(results):
    """Per model and mode: fixed MiB, MiB per image, and the ratios to ``none``."""
    rows = {}
    for entry in results:
        if entry.get("status") != "ok":
            continue
        spec = entry["spec"]
        step = entry["result"]["runs"]["ours"]["images_per_second"]["median"]
        key = (spec["model"], spec["gradient_checkpointing"])
        rows.setdefault(key, {})[spec["batch_size"]] = dict(
            peak_mib=entry["peak_host_memory_mib"], images_per_second=step)
    table = []
    for (model, mode), by_batch in rows.items():
        batches = sorted(by_batch)
        row = dict(model=model, mode=mode, image_size=NATIVE_SIZES[model], batches=by_batch)
        if len(batches) >= 2:
            low, high = batches[0], batches[-1]
            per_image = (by_batch[high]["peak_mib"] - by_batch[low]["peak_mib"]) / (high - low)
            row.update(per_image_mib=per_image,
                       fixed_mib=by_batch[low]["peak_mib"] - per_image * low)
        plain = rows.get((model, "none"), {})
        for batch, values in by_batch.items():
            if batch in plain and mode != "none":
                values["peak_vs_none"] = values["peak_mib"] / plain[batch]["peak_mib"]
                values["step_time_vs_none"] = (plain[batch]["images_per_second"]
                                               / values["images_per_second"])
        table.append(row)
    return table


def markdown(data):
    lines = [f"Peak training memory (host, float32, no XLA) on {data['machine'].get('cpu_model', '?')}"
             f" ({data['machine'].get('cpus')} CPUs); fixed + per image from batches "
             f"{data['batches']}.", "",
             "| model | size | gradient checkpointing | fixed GiB | GiB per image | "
             + " | ".join(f"peak GiB b{b} (vs none)" for b in data["batches"])
             + " | step time vs none |",
             "|---|---|---|---|---|" + "---|" * len(data["batches"]) + "---|"]
    for row in data["summary"]:
        cells = []
        for batch in data["batches"]:
            values = row["batches"].get(batch)
            if values is None:
                cells.append("—")
                continue
            ratio = f" ({values['peak_vs_none']:.2f}×)" if "peak_vs_none" in values else ""
            cells.append(f"{values['peak_mib'] / 1024:.2f}{ratio}")
        times = [f"{v['step_time_vs_none']:.2f}×" for b, v in sorted(row["batches"].items())
                 if "step_time_vs_none" in v]
        fixed = f"{row['fixed_mib'] / 1024:.2f}" if "fixed_mib" in row else "—"
        per_image = f"{row['per_image_mib'] / 1024:.3f}" if "per_image_mib" in row else "—"
        lines.append(f"| {row['model']} | {row['image_size']} | {row['mode']} | {fixed} | "
                     f"{per_image} | " + " | ".join(cells) + f" | {', '.join(times) or '—'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/memory")
    parser.add_argument("--models", default="efficientdet-d0,efficientdet-d1,efficientdet-d2,"
                                            "efficientdet-d3,efficientdet-d4")
    parser.add_argument("--batches", default="1,2", help="Two (or more) batch sizes.")
    parser.add_argument("--modes", default="none,all",
                        help="train.gradient_checkpointing values; 'none' is the reference.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed steps per case.")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in NATIVE_SIZES]
    if unknown:
        parser.error(f"--models: {unknown} not among {sorted(NATIVE_SIZES)}")
    batches = sorted(int(b) for b in args.batches.split(","))
    modes = [m for m in args.modes.split(",") if m]
    os.makedirs(args.output_dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="memory_", dir=args.output_dir)
    prepare = dict(kind="prepare", data_dir=os.path.join(args.output_dir, "sample_data"),
                   num_images=8, detection_image_size=640, classification_image_size=160)
    data, error, _, _, _ = _run_alone(prepare, os.path.join(workdir, "prepare"), print)
    if data is None:
        raise SystemExit(f"Could not make the sample data: {error}")
    results = []
    for index, spec in enumerate(plan(models, batches, modes, data, args.repeats)):
        print(f"[run ] {spec['id']}", flush=True)
        result, error, peak_mib, seconds, _ = _run_alone(
            spec, os.path.join(workdir, f"case{index:02d}"), print)
        results.append(dict(id=spec["id"], spec=spec, peak_host_memory_mib=peak_mib,
                            case_seconds=seconds, status="ok" if result else "failed",
                            result=result, error=error))
        print(f"       peak {peak_mib / 1024:.2f} GiB, {seconds:.0f} s"
              + (f", FAILED: {error}" if error else ""), flush=True)
    output = dict(command=" ".join(["python", "-m", "benchmarks.memory"] + (argv or sys.argv[1:])),
                  machine=machine(), batches=batches, cases=results, summary=summarize(results))
    with atomic_write(os.path.join(args.output_dir, "results.json")) as handle:
        json.dump(output, handle, indent=2)
    table = markdown(output)
    write_text(os.path.join(args.output_dir, "results.md"), table)
    print(table)
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
