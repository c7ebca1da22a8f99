"""Summarizes a tf.profiler trace (``*.xplane.pb``) without TensorBoard.

``python -m benchmarks.trace_summary DIR [--top 25]`` prints, per host thread
line, the total time of each op / event name, largest first, and the events
that reveal waste: host↔device copies (``MemcpyD2H``/``MemcpyH2D``,
``_Send``/``_Recv``), casts (``Cast``), Python-side function tracing
(``__inference_`` retraces), and non-fused batch norm ops
(``FusedBatchNorm`` vs separate ``Mul``/``Add``/``Rsqrt`` chains).
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import sys

WATCH = ("Memcpy", "_Send", "_Recv", "Cast", "FusedBatchNorm", "Rsqrt", "Retrac", "Trac",
         "IteratorGetNext", "EagerExecute", "ReadVariableOp", "AssignVariableOp")


def load(path):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    return space


def summarize(space):
    """``{plane/line: Counter(event name → picoseconds)}`` and counts."""
    totals = collections.defaultdict(collections.Counter)
    counts = collections.defaultdict(collections.Counter)
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            key = f"{plane.name}/{line.name}"
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                totals[key][name] += event.duration_ps
                counts[key][name] += 1
    return totals, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(args.logdir, "**", "*.xplane.pb"), recursive=True))
    if not paths:
        print(f"No *.xplane.pb under {args.logdir}", file=sys.stderr)
        return 1
    totals, counts = summarize(load(paths[-1]))
    watched = collections.Counter()
    watched_n = collections.Counter()
    for key in sorted(totals):
        grand = sum(totals[key].values())
        if grand == 0:
            continue
        print(f"\n== {key}: {grand / 1e9:.1f} ms in {sum(counts[key].values())} events")
        for name, ps in totals[key].most_common(args.top):
            print(f"  {ps / 1e9:10.1f} ms  {counts[key][name]:6d}x  {name[:110]}")
        for name, ps in totals[key].items():
            for word in WATCH:
                if word.lower() in name.lower():
                    watched[f"{key} :: {word}"] += ps
                    watched_n[f"{key} :: {word}"] += counts[key][name]
    print("\n== watched event families (possible waste)")
    for key, ps in watched.most_common():
        print(f"  {ps / 1e9:10.1f} ms  {watched_n[key]:6d}x  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
