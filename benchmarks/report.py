"""Turns the suite's results into target ratios and a Markdown report."""
from __future__ import annotations

from benchmarks.plan import CLASSIFIER, DETECTOR


def _ok(data, prefix):
    return [c for c in data["cases"] if c["id"].startswith(prefix) and c["status"] == "ok"]


def _train_rate(case, name="ours"):
    return case["result"]["runs"][name]["images_per_second"]["median"]


def _best_train(data, model):
    cases = [c for c in _ok(data, f"train/{model}@")
             if "amp" not in c["spec"]["id"] and "bf16" not in c["spec"]["id"]]
    return max(cases, key=_train_rate) if cases else None


def targets(data):
    """The issue's targets as measured ratios (None where a case did not run)."""
    out = []
    inputs = {c["spec"]["pipeline"] + f"@{c['spec']['image_size']}": c for c in _ok(data, "input/")}

    def add(name, ratio, goal, detail, noise=0.0):
        out.append({"target": name, "ratio": ratio, "goal": goal,
                    "holds": None if ratio is None else ratio >= goal, "detail": detail,
                    "within_noise": ratio is not None and ratio < goal <= ratio * (1 + noise)})

    for key, model in (("detection", DETECTOR), ("classification", CLASSIFIER)):
        step = _best_train(data, model)
        for pipe_key, pipe in sorted(inputs.items()):
            if not pipe_key.startswith(key):
                continue
            rate = pipe["result"]["images_per_second"]["median"]
            ratio = rate / _train_rate(step) if step else None
            note = "" if not step or pipe["spec"]["image_size"] == step["spec"]["image_size"] else \
                " (train step measured at its own training size)"
            add(f"input {pipe_key} / {model} train step", ratio, 3.0,
                f"{rate:.2f} img/s vs {_train_rate(step):.2f} img/s ({step['spec']['id']}){note}"
                if step else "train step not measured")
    for case in _ok(data, f"train/{CLASSIFIER}@"):
        runs = case["result"]["runs"]
        if "keras_reference" in runs:
            ours, ref = _train_rate(case), _train_rate(case, "keras_reference")
            noise = max(runs[n]["images_per_second"]["rel_spread"] / 2 for n in ("ours", "keras_reference"))
            add(f"{case['id']} ours / keras.applications", ours / ref, 1.0,
                f"{ours:.3f} vs {ref:.3f} img/s (ratio of medians, interleaved)", noise)
    for case in _ok(data, f"infer/{CLASSIFIER}@"):
        rows = case["result"]["rows"]
        for row in rows:
            if row["model"] != "ours":
                continue
            ref = [r for r in rows if r["model"] == "keras_reference" and r["part"] == row["part"]
                   and r["batch_size"] == row["batch_size"]]
            if ref:
                a = row["round_images_per_second"]["median"]
                b = ref[0]["round_images_per_second"]["median"]
                noise = max(r["round_images_per_second"]["rel_spread"] / 2 for r in (row, ref[0]))
                add(f"{case['id']} {row['part']} batch {row['batch_size']} ours / keras.applications",
                    a / b, 1.0, f"{a:.2f} vs {b:.2f} img/s", noise)
    for model in (DETECTOR, CLASSIFIER):
        plain = [c for c in _ok(data, f"train/{model}@") if c["spec"]["id"].endswith("/fp32")]
        xla = [c for c in _ok(data, f"train/{model}@") if c["spec"]["id"].endswith("/xla")]
        if plain and xla:
            ratio = _train_rate(xla[0]) / _train_rate(plain[0])
            out.append({"target": f"{model} train: XLA / no XLA", "ratio": ratio, "goal": None,
                        "holds": None,
                        "detail": f"XLA {'faster' if ratio > 1 else 'slower'} here: "
                                  f"recommended runtime.use_xla={'true' if ratio > 1 else 'false'} "
                                  "on this machine (runtime default: false)"})
    return out


def _fmt(value, digits=2):
    return "—" if value is None else f"{value:.{digits}f}"


def _spread(stats):
    return f"±{100 * stats['rel_spread'] / 2:.0f}%"


def markdown(data):
    """The report: machine, settings, tables, targets, methodology."""
    m = data["machine"]
    lines = [f"# Benchmark results ({data['mode']} mode)", "",
             f"Machine: {m.get('cpu_model', m.get('processor'))}, {m.get('cpus')} CPUs, "
             f"{m.get('memory_gib', '?')} GiB, no GPU unless listed; load average at start "
             f"{', '.join(f'{x:.1f}' for x in m.get('load_average_at_start', []))}. "
             f"TensorFlow {data['tensorflow']}, Python {m['python']}. "
             f"Command: `{data['command']}`. Total {data['total_minutes']:.1f} min.", "",
             "Spread = half the (max − min) range over repetitions, relative to the median.", "",
             "## Input pipelines (training: decode + augment [+ anchor targets])", "",
             "| pipeline | size | batch | images/s | spread | peak host MiB |",
             "|---|---|---|---|---|---|"]
    for c in data["cases"]:
        if not c["id"].startswith("input/"):
            continue
        s = c["spec"]
        if c["status"] != "ok":
            lines.append(f"| {s['pipeline']} | {s['image_size']} | {s['batch_size']} | "
                         f"{c['status']} | | |")
            continue
        r = c["result"]["images_per_second"]
        lines.append(f"| {s['pipeline']} | {s['image_size']}² | {s['batch_size']} | "
                     f"{r['median']:.1f} | {_spread(r)} | {c['peak_host_memory_mib']:.0f} |")
    lines += ["", "## Train step", "",
              "| model | size | batch | variant | images/s | spread | train GFLOP/s | "
              "vs keras.applications | peak host MiB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in data["cases"]:
        if not c["id"].startswith("train/"):
            continue
        s = c["spec"]
        variant = c["id"].rsplit("/", 1)[1]
        head = f"| {s['model']} | {s['image_size']}² | {s['batch_size']} | {variant} |"
        if c["status"] != "ok":
            lines.append(f"{head} {c['status']}: {c.get('reason', c.get('error', ''))[:80]} "
                         "| | | | |")
            continue
        runs = c["result"]["runs"]
        ours = runs["ours"]
        ratio = "—"
        if "keras_reference" in runs:
            ref = runs["keras_reference"]
            ratio = (f"{ours['images_per_second']['median'] / ref['images_per_second']['median']:.2f}×"
                     f" (ref {ref['images_per_second']['median']:.2f} img/s)")
        lines.append(f"{head} {ours['images_per_second']['median']:.3f} | "
                     f"{_spread(ours['images_per_second'])} | {ours['train_gflops_per_second']:.1f} | "
                     f"{ratio} | {c['peak_host_memory_mib']:.0f} |")
    lines += ["", "## Inference (network = pure network; end_to_end = uint8 → pre-processing → "
              "network → post-processing incl. NMS)", "",
              "| model | size | variant | part | batch | images/s | spread | p50 ms | p90 ms | "
              "GFLOP/s | peak host MiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in data["cases"]:
        if not c["id"].startswith("infer/"):
            continue
        s = c["spec"]
        variant = c["id"].rsplit("/", 1)[1]
        if c["status"] != "ok":
            lines.append(f"| {s['model']} | {s['image_size']}² | {variant} | | | {c['status']}: "
                         f"{c.get('reason', c.get('error', ''))[:80]} | | | | | |")
            continue
        for r in c["result"]["rows"]:
            name = s["model"] if r["model"] == "ours" else "keras.applications V2-S"
            lines.append(f"| {name} | {s['image_size']}² | {variant} | {r['part']} | "
                         f"{r['batch_size']} | {r['round_images_per_second']['median']:.2f} | "
                         f"{_spread(r['round_images_per_second'])} | {r['latency_ms']['p50']:.1f} | "
                         f"{r['latency_ms']['p90']:.1f} | {r['gflops_per_second']:.1f} | "
                         f"{c['peak_host_memory_mib']:.0f} |")
    # Notes of the cases that ran (a skipped case's row already gives its reason).
    notes = [f"* `{c['id']}`: {c['spec']['note']}" for c in data["cases"]
             if c["id"].startswith(("infer/", "train/")) and c["spec"].get("note")
             and c["status"] != "skipped"]
    if notes:
        lines += [""] + notes
    lines += ["", "## Targets (ratios measured in this run)", "",
              "| target | ratio | goal | holds | detail |", "|---|---|---|---|---|"]
    for t in data["targets"]:
        holds = {True: "yes", False: "**no**", None: "—"}[t["holds"]]
        if t.get("within_noise"):
            holds += " (within the spread)"
        goal = "—" if t["goal"] is None else f"≥ {t['goal']:g}×"
        lines.append(f"| {t['target']} | {_fmt(t['ratio'])}× | {goal} | {holds} | {t['detail']} |")
    if data.get("ab"):
        from benchmarks.baseline import markdown as ab_markdown

        lines.append(ab_markdown(data["ab"]))
    lines += ["", "## Methodology", "", data["methodology"], ""]
    return "\n".join(lines)
