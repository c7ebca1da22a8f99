"""TFLite latency and file size of detectors at their native sizes (the phone view).

``python -m benchmarks.tflite_models --output_dir runs/tflite`` exports each
model (default EfficientDet-Lite0 … Lite4) with ``model_inspect.py --runmode
tflite`` in every requested quantization (``none`` = fp32, ``fp16``, ``int8``
with NMS inside), then times each file with ``model_inspect.py --runmode
benchmark --num_threads T`` (batch 1, end to end: uint8 image → pre-processing
→ network → NMS) for every thread count (1 = one phone core; 0 = all cores of
this machine). Every export and timing is its own process, and the timings of
one model run back to back.

Weights: ``--ckpt_dir`` may hold a trained or official checkpoint per model
(``DIR/<model>``); otherwise the random initialization is exported (latency and
size do not depend on the values; int8 is then calibrated on noise). Writes
``results.json`` and ``results.md`` (a table of p50 / p90 ms and MiB).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks.run import machine
from common.atomic_files import atomic_write, write_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LITE_MODELS = ("efficientdet-lite0", "efficientdet-lite1", "efficientdet-lite2",
               "efficientdet-lite3", "efficientdet-lite4")
QUANTIZATIONS = ("none", "fp16", "int8")


def _model_inspect(args, log):
    command = [sys.executable, os.path.join(REPO, "model_inspect.py"), *args]
    log("$ " + " ".join(command[1:]))
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"model_inspect.py {' '.join(args[:2])} failed: {' | '.join(tail)}")
    return done


def measure(model, quantizations, threads, output_dir, ckpt_dir=None, runs=20, log=print):
    """Rows ``{model, quantize, threads, p50_ms, p90_ms, images_per_second, mib}``
    of one model (files under ``output_dir``)."""
    rows = []
    weights = []
    if ckpt_dir and os.path.exists(os.path.join(ckpt_dir, model)):
        weights = ["--ckpt_path", os.path.join(ckpt_dir, model)]
    for quantize in quantizations:
        path = os.path.join(output_dir, f"{model}-{quantize}.tflite")
        _model_inspect(["--runmode", "tflite", "--model_name", model, "--quantize", quantize,
                        "--tflite_path", path, *weights], log)
        mib = os.path.getsize(path) / 2**20
        for count in threads:
            report = os.path.join(output_dir, f"{model}-{quantize}-t{count}.json")
            _model_inspect(["--runmode", "benchmark", "--model_name", model, "--tflite_path", path,
                            "--batch_sizes", "1", "--num_threads", str(count),
                            "--bench_runs", str(runs), "--output_json", report], log)
            with open(report) as handle:
                result = json.load(handle)["results"][-1]  # end to end
            latency = result["latency_ms"]
            rows.append(dict(model=model, quantize=quantize, threads=count or os.cpu_count(),
                             part=result["part"], p50_ms=latency["p50"], p90_ms=latency["p90"],
                             images_per_second=result["throughput_images_per_s"], mib=mib,
                             random_weights=not weights))
            log(f"{model} {quantize} threads={rows[-1]['threads']}: p50 {latency['p50']:.1f} ms, "
                f"{mib:.1f} MiB")
    return rows


def markdown(rows):
    """The README table: one row per model × quantization × threads (every file
    has the NMS inside)."""
    lines = ["| model | TFLite | threads | p50 ms | p90 ms | images/s | file MiB |",
             "|---|---|---|---|---|---|---|"]
    names = {"none": "fp32", "fp16": "fp16", "int8": "int8"}
    for r in rows:
        lines.append(f"| {r['model']} | {names[r['quantize']]} | {r['threads']} | "
                     f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['images_per_second']:.2f} | "
                     f"{r['mib']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/tflite")
    parser.add_argument("--models", default=",".join(LITE_MODELS))
    parser.add_argument("--quantize", default="none,int8",
                        help=f"Comma-separated, of {', '.join(QUANTIZATIONS)}.")
    parser.add_argument("--threads", default="1,0", help="Interpreter threads; 0 = all cores.")
    parser.add_argument("--runs", type=int, default=20, help="Timed calls per file and thread count.")
    parser.add_argument("--ckpt_dir", default=None,
                        help="Optional folder with a checkpoint per model (DIR/<model>).")
    args = parser.parse_args(argv)
    quantizations = [q for q in args.quantize.split(",") if q]
    bad = [q for q in quantizations if q not in QUANTIZATIONS]
    if bad:
        parser.error(f"--quantize: {bad} not among {QUANTIZATIONS}")
    try:
        threads = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        parser.error(f"--threads {args.threads!r}: comma-separated integers, e.g. 1,0")
    if any(t < 0 for t in threads):
        parser.error("--threads: counts must be >= 0 (0 = all cores)")
    os.makedirs(args.output_dir, exist_ok=True)
    rows = []
    for model in (m for m in args.models.split(",") if m):
        try:
            rows += measure(model, quantizations, threads, args.output_dir, args.ckpt_dir, args.runs)
        except RuntimeError as error:
            print(f"[FAIL] {model}: {error}", file=sys.stderr)
    data = dict(machine=machine(), command=" ".join(["python", "-m", "benchmarks.tflite_models",
                                                     *(argv or sys.argv[1:])]), rows=rows)
    with atomic_write(os.path.join(args.output_dir, "results.json")) as handle:
        json.dump(data, handle, indent=2)
    table = markdown(rows)
    write_text(os.path.join(args.output_dir, "results.md"), table)
    print(table)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
