#!/usr/bin/env python3
"""Prints a Markdown table of a `backwork sweep`'s runs.jsonl: one row per model, one column
per (preset, threshold), each cell the fooled images of each seed, the median of the runs'
median steps, the lowest p(label), the mean distance of an image to its nearest training
image in pixel space, and the largest PNG re-classification gap; with the models' test
accuracy (zoo.json, or the weights file's metadata).

    python3 scripts/sweep_table.py SWEEP_DIR_OR_JSONL... [--zoo zoo/zoo.json] [--only lr=0.08]

Where the rows hold several Adam rates or stall rules, each gets its own columns; `--only
KEY=VALUE` keeps the rows whose setting KEY has that value (or one of a comma list), `--rename COLUMN=NAME` heads a
column with another name (both repeatable).
"""
import argparse, collections, json, os, statistics, struct

HERE = os.path.dirname(os.path.abspath(__file__))


def recorded_accuracy(model):
    """The test accuracy a weights file's metadata records (backwork train and
    scripts/pytorch_zoo.py both write it), or None."""
    path = os.path.join(HERE, "..", "assets", "models", "mnist-cnn.safetensors") if model == "shipped" else model
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            return float(json.loads(f.read(n))["__metadata__"]["test_accuracy"])
    except (OSError, KeyError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+",
                    help="sweep folders (their runs.jsonl are read) or runs.jsonl files")
    ap.add_argument("--zoo", default="", help="zoo.json of scripts/pytorch_zoo.py")
    ap.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                    help="keep rows whose setting KEY is VALUE (or one of VALUE,VALUE,…)")
    ap.add_argument("--rename", action="append", default=[], metavar="COLUMN=NAME",
                    help="show column COLUMN (such as 'custom hybrid') as NAME")
    a = ap.parse_args()
    zoo = json.load(open(a.zoo)) if a.zoo and os.path.exists(a.zoo) else {}
    rows = []
    for d in a.dirs:
        with open(d if os.path.isfile(d) else os.path.join(d, "runs.jsonl")) as f:
            rows += [json.loads(l) for l in f if l.strip()]
    for kv in a.only:
        key, values = kv.split("=", 1)
        rows = [r for r in rows if str(r["settings"].get(key)) in values.split(",")]
    # A column is a preset at a threshold; where the rows hold several Adam rates (a sweep
    # of --lr) or stall rules, the rate and the rule too.
    many_lr = len({r["settings"]["lr"] for r in rows}) > 1
    many_stall = len({r["settings"]["stall"] for r in rows}) > 1

    # Renamed columns that end up with one name are one column (rows of a custom setting that
    # later became the default preset, shown beside that preset's own rows).
    names = dict(kv.split("=", 1) for kv in a.rename)

    def column(r):
        lr = f" lr {r['settings']['lr']:g}" if many_lr else ""
        stall = f" {r['settings']['stall']}" if many_stall else ""
        name = r["preset"] + lr + stall
        return (names.get(name, name), r["settings"]["threshold"])

    cols = sorted({column(r) for r in rows},
                  key=lambda c: (c[1], not c[0].startswith("original"), c[0]))
    cells = collections.defaultdict(list)
    models = []
    paths = {}
    for r in rows:
        name = os.path.basename(r["model"]).replace(".safetensors", "")
        if name not in models:
            models.append(name)
            paths[name] = r["model"]
        cells[(name, *column(r))].append(r)
    head = ["model", "test accuracy"] + [f"{p} @ {t}" for p, t in cols]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for m in models:
        acc = zoo.get(m, {}).get("test_accuracy") or recorded_accuracy(paths[m])
        line = [m, f"{acc * 100:.2f}%" if acc else "–"]
        for p, t in cols:
            rs = sorted(cells[(m, p, t)], key=lambda r: r["seed"])
            if not rs:
                line.append("–")
                continue
            fooled = "/".join(str(r["fooled"]) for r in rs)
            meds = [r["median_steps"] for r in rs if r["median_steps"] is not None]
            med = f"{statistics.median(meds):.0f}" if meds else "–"
            minp = min(r["min_p"] for r in rs)
            gap = max(r["png_gap"] for r in rs)
            dist = statistics.mean(r["nearest_distance"]["inputs"] for r in rs)
            line.append(f"{fooled} of {rs[0]['images']}; median {med} steps; min p {minp:.4f}; "
                        f"pixel distance {dist:.3f}; PNG Δ {gap:.0e}")
        print("| " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
