#!/usr/bin/env python3
"""Images that creep below the reinit cap: perturb them or start them afresh? (issue 11, README
"Images that creep below the cap")

On some label-smoothing networks an image climbs fast to p(label) 0.75-0.95 and then creeps:
its distance terms pull almost nothing (0.001-0.015 against the log-odds' 0.5-0.7), so the
question is one of maximising the log-odds ln(p / (1 - p)) inside the pixel box. This runs the
engine's stall rule on the log-odds alone, as `walk_study.py` does, from STARTS random starts:
Adam on the pixels (TensorFlow's defaults, as the engine), clipped to [0, 1]; an image whose p
has not risen by 1e-4 for WINDOW steps (15) while below the threshold is stalled. The rule:

  rule=perturb  (the engine's `--stall perturb`) adds uniform noise of +-amp (0.2) to it;
  rule=hybrid   (`--stall hybrid`) starts it from fresh noise while its best p over the run is
                below the reinit cap (0.99), and perturbs it once its best has reached the cap;
  rule=now      as hybrid, with the cap read on its current p instead of its best.

Each SPEC is comma-separated key=value pairs (rule, amp, below_amp: the noise under `perturb`
below the cap, lr, b2: Adam's beta2, cap, window); "" is the engine's default. Prints how many
starts passed the threshold within STEPS steps, and quartiles of the steps they took.

    python3 scripts/creep_study.py MODEL.safetensors LABEL SPEC... [--starts 64] [--steps 1500]
    python3 scripts/creep_study.py torch-adam-smooth-shift-3ep.safetensors 1 rule=perturb \\
        rule=hybrid rule=perturb,below_amp=0.5 rule=perturb,lr=0.16 --seed 0
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from box_ceiling import logits  # noqa: E402
from safetensors.torch import load_file  # noqa: E402


def run(w, label, starts, steps, seed, thr, rule="perturb", amp=0.2, below_amp=None, lr=0.08,
        b2=0.999, cap=0.99, window=15, tol=1e-4):
    def odds(x):
        lp = logits(w, x).log_softmax(1)
        others = torch.cat([lp[:, :label], lp[:, label + 1:]], 1).logsumexp(1)
        return lp[:, label] - others

    below_amp = amp if below_amp is None else below_amp
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(starts, 784, generator=g)
    m1, m2, t = torch.zeros_like(x), torch.zeros_like(x), torch.zeros(starts, 1)
    best = torch.full((starts,), -1e9)
    passed_at = torch.full((starts,), -1)
    run_best = torch.full((starts,), -1.0)  # best p over the run (the engine's kept best)
    stall_best = torch.full((starts,), -1.0)  # best p since the last stall
    since = torch.zeros(starts)
    lthr = torch.logit(torch.tensor(thr, dtype=torch.float64)).item()
    for step in range(steps):
        xr = x.clone().requires_grad_(True)
        o = odds(xr)
        (grad,) = torch.autograd.grad(-o.sum(), xr)
        od = o.detach()
        best = torch.maximum(best, od)
        passed_at[(passed_at < 0) & (od > lthr)] = step + 1
        t += 1
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = b2 * m2 + (1 - b2) * grad * grad
        x = (x - lr * (m1 / (1 - 0.9 ** t)) / ((m2 / (1 - b2 ** t)).sqrt() + 1e-7)).clamp(0, 1)
        p = torch.sigmoid(od)
        run_best = torch.maximum(run_best, p)
        rose = (stall_best < 0) | (p > stall_best + tol)
        stall_best = torch.where(rose, torch.maximum(stall_best, p), stall_best)
        since = torch.where(rose, torch.zeros_like(since), since + 1)
        due = (since >= window) & (p <= thr) & (passed_at < 0)
        if not due.any():
            continue
        low = due & ((p if rule == "now" else run_best) < cap)
        noise = torch.rand(starts, 784, generator=g) * 2 - 1
        fresh = torch.rand(starts, 784, generator=g)
        if rule == "perturb":
            lo = (x + noise * below_amp).clamp(0, 1)
        else:
            lo = fresh
        hi = (x + noise * amp).clamp(0, 1)
        x = torch.where(low.unsqueeze(1), lo, torch.where(due.unsqueeze(1), hi, x))
        d = due.unsqueeze(1)
        m1, m2, t = torch.where(d, 0.0, m1), torch.where(d, 0.0, m2), torch.where(d, 0.0, t)
        stall_best = torch.where(due, -1.0, stall_best)
        since = torch.where(due, 0.0, since)
    return passed_at, torch.sigmoid(best)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("label", type=int)
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--starts", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.999)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    w = load_file(a.model)
    for spec in a.specs:
        kw = {}
        for kv in filter(None, spec.split(",")):
            k, v = kv.split("=")
            kw[k] = v if k == "rule" else int(v) if k == "window" else float(v)
        t0 = time.time()
        passed_at, p = run(w, a.label, a.starts, a.steps, a.seed, a.threshold, **kw)
        ok = passed_at[passed_at > 0].float()
        q = [f"{ok.quantile(f).item():.0f}" if len(ok) else "-" for f in (0.25, 0.5, 0.75)]
        print(f"{spec or 'default'}: passed {int((passed_at > 0).sum())} of {a.starts}, steps "
              f"q25/50/75 {'/'.join(q)}, median best p {p.median().item():.5f} "
              f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
