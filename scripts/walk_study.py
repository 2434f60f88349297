#!/usr/bin/env python3
"""How should a stuck image be moved at the paper's bar? (issue 11, README "The pixel box and
the paper's bar")

Near p = 0.9999 the softmax term's pull dwarfs the distance terms' (300 to 1 on
torch-adam-smooth-2ep), so the question is one of maximising the log-odds ln(p / (1 - p)) inside
the pixel box [0, 1]. Every image there ends on a local maximum. This runs what the engine's
stall rule does, on the log-odds alone: Adam on the pixels (TensorFlow's defaults, as the
engine), clipped to the box; every PERIOD steps Adam's moments are cleared and uniform noise
of +-AMP is added, either to the current image (`walk`, the engine's `perturb`) or to the best
image so far (`hop`, basin hopping with greedy acceptance); or, as the engine's stall rule
does, to the current image once its p has not risen by 1e-4 for PERIOD steps (`stall`).
Prints the share of STARTS random starts whose best p passes 0.9999 within STEPS steps, with
the median and the best p.

    python3 scripts/walk_study.py MODEL.safetensors LABEL:MODE:PERIOD:AMP:LR ...
    python3 scripts/walk_study.py zoo/torch-adam-smooth-2ep.safetensors 0:walk:100:0.1:0.01 \\
        0:walk:30:0.2:0.01 0:hop:30:0.2:0.01 0:walk:30:0.2:0.02
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from box_ceiling import logits  # noqa: E402
from safetensors.torch import load_file  # noqa: E402


STALL_TOL = 1e-4


def run(w, label, mode, period, amp, lr, starts, steps, seed):
    def odds(x):
        lp = logits(w, x).log_softmax(1)
        others = torch.cat([lp[:, :label], lp[:, label + 1:]], 1).logsumexp(1)
        return lp[:, label] - others

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(starts, 784, generator=g)
    m1, m2, t = torch.zeros_like(x), torch.zeros_like(x), torch.zeros(starts, 1)
    best, best_x = torch.full((starts,), -1e9), x.clone()
    # `stall`: the engine's rule, per start: perturbed when its p has not risen by STALL_TOL
    # above its best since the last perturbation for PERIOD steps.
    run_best = torch.full((starts,), -1.0)
    since = torch.zeros(starts)
    for step in range(steps):
        xr = x.clone().requires_grad_(True)
        o = odds(xr)
        (grad,) = torch.autograd.grad(-o.sum(), xr)
        better = o.detach() > best
        best = torch.where(better, o.detach(), best)
        best_x[better] = x[better]
        t += 1
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = 0.999 * m2 + 0.001 * grad * grad
        x = (x - lr * (m1 / (1 - 0.9 ** t)) / ((m2 / (1 - 0.999 ** t)).sqrt() + 1e-8)).clamp(0, 1)
        if mode == "stall":
            p_now = torch.sigmoid(o.detach())
            rose = (run_best < 0) | (p_now > run_best + STALL_TOL)
            run_best = torch.where(rose, torch.maximum(run_best, p_now), run_best)
            since = torch.where(rose, torch.zeros_like(since), since + 1)
            due = (since >= period) & (p_now <= 0.9999)
            if due.any():
                d = due.unsqueeze(1)
                m1 = torch.where(d, 0.0, m1)
                m2 = torch.where(d, 0.0, m2)
                t = torch.where(d, 0.0, t)
                noise = (torch.rand(starts, 784, generator=g) * 2 - 1) * amp
                x = torch.where(d, (x + noise).clamp(0, 1), x)
                run_best = torch.where(due, -1.0, run_best)
                since = torch.where(due, 0.0, since)
        elif period and (step + 1) % period == 0:
            m1.zero_()
            m2.zero_()
            t.zero_()
            base = best_x if mode == "hop" else x
            x = (base + (torch.rand(starts, 784, generator=g) * 2 - 1) * amp).clamp(0, 1)
    p = torch.sigmoid(best)
    return (p > 0.9999).float().mean().item(), p.median().item(), p.max().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("specs", nargs="+", help="LABEL:MODE:PERIOD:AMP:LR, MODE walk, hop or stall")
    ap.add_argument("--starts", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    w = load_file(a.model)
    for spec in a.specs:
        label, mode, period, amp, lr = spec.split(":")
        t0 = time.time()
        share, median, top = run(w, int(label), mode, int(period), float(amp), float(lr),
                                 a.starts, a.steps, a.seed)
        print(f"{spec}: past 0.9999 {share:.2f} of {a.starts} starts, median p {median:.6f}, "
              f"best {top:.6f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
