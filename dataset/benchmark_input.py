"""Measures the input pipelines alone, in images per second.

Runs on the sample data (:mod:`dataset.make_sample_dataset`, generated once
into ``--data_dir``) or on your own records (``--detection_pattern`` /
``--classification_pattern``): the detection pipeline at 512×512 (training
augmentation + anchor targets, and evaluation) and the classification pipeline
at 300 and 384 (training with RandAugment, and evaluation). Each case skips
``--warmup_batches``, then times ``--num_batches`` batches ``--repeats`` times
and reports the median. This is a measurement tool, not a test::

    python -m dataset.benchmark_input --output_json input_benchmark.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import tensorflow as tf

from common.atomic_files import atomic_write
from dataset.classification_input import build_classification_dataset
from dataset.detection_input import build_detection_dataset
from dataset.make_sample_dataset import make_sample_datasets


def measure(dataset: tf.data.Dataset, batch_size: int, num_batches: int, warmup_batches: int, repeats: int) -> dict:
    """Times ``dataset``; returns images/second per repeat and their median."""
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(num_batches):
            next(iterator)
        rates.append(num_batches * batch_size / (time.perf_counter() - start))
    return {"images_per_second": statistics.median(rates), "repeats": rates}


def run(args) -> list:
    sample = None
    if not (args.detection_pattern and args.classification_pattern):
        sample = make_sample_datasets(args.data_dir, num_train=args.num_sample_images, num_val=32,
                                      image_size=args.sample_image_size,
                                      classification_num_train=args.num_sample_images,
                                      classification_num_val=32,
                                      classification_image_size=args.sample_classification_size)
    det_pattern = args.detection_pattern or sample["train_file_pattern"]
    det_classes = args.num_classes_detection or (sample["num_classes"] if sample else 90)
    cls_pattern = args.classification_pattern or sample["classification_train_file_pattern"]
    cls_classes = args.num_classes_classification or (sample["classification_num_classes"] if sample else 1000)
    common = dict(seed=None, private_threadpool_size=args.threads, repeat=True, drop_remainder=True)
    cases = []
    for training in (True, False):
        cases.append((f"detection {'train' if training else 'eval'} 512x512", args.detection_batch_size,
                      lambda t=training: build_detection_dataset(det_pattern, 512, t, args.detection_batch_size,
                                                                 num_classes=det_classes, **common)))
    for size, training in ((300, True), (384, True), (384, False)):
        cases.append((f"classification {'train' if training else 'eval'} {size}x{size}"
                      + (f" randaug {args.randaug_magnitude:g}" if training and args.randaug_magnitude else ""),
                      args.classification_batch_size,
                      lambda s=size, t=training: build_classification_dataset(
                          cls_pattern, s, t, args.classification_batch_size, num_classes=cls_classes,
                          randaug_magnitude=args.randaug_magnitude if t else None, **common)))
    results = []
    for name, batch, build in cases:
        if args.only and args.only not in name:
            continue
        stats = measure(build(), batch, args.num_batches, args.warmup_batches, args.repeats)
        results.append({"pipeline": name, "batch_size": batch, **stats})
        print(f"{name:48s} {stats['images_per_second']:9.1f} img/s", flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "effdet_input_benchmark"),
                        help="Where the sample data is generated (cached).")
    parser.add_argument("--detection_pattern", default=None, help="Your detection TFRecords instead.")
    parser.add_argument("--classification_pattern", default=None, help="Your classification TFRecords instead.")
    parser.add_argument("--num_classes_detection", type=int, default=None)
    parser.add_argument("--num_classes_classification", type=int, default=None)
    parser.add_argument("--num_sample_images", type=int, default=128)
    parser.add_argument("--sample_image_size", type=int, default=512)
    parser.add_argument("--sample_classification_size", type=int, default=384)
    parser.add_argument("--detection_batch_size", type=int, default=8)
    parser.add_argument("--classification_batch_size", type=int, default=32)
    parser.add_argument("--randaug_magnitude", type=float, default=10.0)
    parser.add_argument("--num_batches", type=int, default=20)
    parser.add_argument("--warmup_batches", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="private_threadpool_size (0 = shared pool).")
    parser.add_argument("--only", default=None, help="Run only the cases whose name contains this text.")
    parser.add_argument("--output_json", default=None, help="Write the results here.")
    args = parser.parse_args(argv)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; median of {args.repeats} x {args.num_batches} "
          f"batches after {args.warmup_batches} warm-up batches")
    print(f"{'pipeline':48s} {'throughput':>15s}")
    results = run(args)
    if args.output_json:
        with atomic_write(args.output_json) as handle:
            json.dump({"tensorflow": tf.__version__, "cpus": os.cpu_count(), "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
