#!/usr/bin/env python3
"""Mean and 95% interval per arm of the retraining study (scripts/retrain_seeds.sh OUT).

    python3 scripts/retrain_summary.py OUT

Reads OUT/seed-*/ARM/report.json and prints a Markdown table: per arm and round, over the
seeds, the mean of the share of the 80 images fooled (past 0.999 within 300 steps), of the
median steps (over the runs where any image passed) and of the test accuracy, each with its
95% interval (Student's t over the seeds).
"""
import glob, json, math, os, statistics, sys

# Two-sided 95% quantiles of Student's t, by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval(xs):
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, float("nan")
    return m, T95.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / math.sqrt(len(xs))


def main():
    out = sys.argv[1]
    rows = {}
    seeds = sorted(glob.glob(os.path.join(out, "seed-*")))
    for s in seeds:
        for arm in ("control", "uniform", "extra-class"):
            path = os.path.join(s, arm, "report.json")
            if not os.path.exists(path):
                continue
            for r in json.load(open(path))["rounds"]:
                if r["round"] == 0 and arm != "control":
                    continue  # the same model measured by the same run in every arm
                name = "starting model" if r["round"] == 0 else f"{arm}, round {r['round']}"
                rows.setdefault(name, []).append(r)
    print(f"| model | seeds | fooled of 80 (mean ± 95%) | median steps | test accuracy |")
    print("|---|---|---|---|---|")
    for name, rs in rows.items():
        fooled = [r["reached"] for r in rs]
        steps = [r["median_steps"] for r in rs if r["median_steps"] is not None]
        acc = [100 * r["test_accuracy"] for r in rs]
        f, fi = interval(fooled)
        a, ai = interval(acc)
        st = "–" if not steps else "%.0f ± %.0f" % interval(steps)
        print(f"| {name} | {len(rs)} | {f:.1f} ± {fi:.1f} | {st} | {a:.2f} ± {ai:.2f}% |")


if __name__ == "__main__":
    main()
