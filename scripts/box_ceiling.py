"""How confident can a network be on images in the pixel box [0, 1]? (issue 11, the 0.9999 bar)

Maximises the log-odds of each label, ln(p / (1 - p)), over images in [0, 1]^784 by projected
sign-gradient ascent (PGD, the strongest simple attack on a box) from many random starts, with
no distance terms at all: an upper estimate of what any cost can reach inside the box. Prints,
per label, the best p and the share of starts whose p passes 0.999 and 0.9999.

    python3 scripts/box_ceiling.py MODEL.safetensors [--labels 0,1,7] [--starts 64] [--steps 1500]
        [--start noise|train|top-train|other|dark|bright] [--objective odds|margin|logit]

--start chooses where the ascent begins: uniform noise (the default), the label's own training
images (random ones, or the ones the network is surest of), training images of other labels,
or noise near black or near white. --objective chooses what the first half of the ascent
climbs (the log-odds, the logit margin over the best other label, or the label's logit alone);
the second half always climbs the log-odds. Neither has changed where the ceiling is on the
networks measured (README, "Held-out networks"): the ceiling is the box's, not the start's.
"""
import argparse

import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def logits(w, x):
    x = x.view(-1, 1, 28, 28)
    c0 = F.max_pool2d(F.relu(F.conv2d(x, w["conv0.weight"], w["conv0.bias"], padding=2)), 2)
    c1 = F.max_pool2d(F.relu(F.conv2d(c0, w["conv1.weight"], w["conv1.bias"], padding=2)), 2)
    fc = F.relu(c1.flatten(1) @ w["fc.weight"].T + w["fc.bias"])
    return fc @ w["softmax.weight"].T + w["softmax.bias"]


def log_odds(z, label):
    lp = z.log_softmax(1)
    # ln p - ln(1 - p), with ln(1 - p) as the log-sum-exp of the other classes.
    others = torch.cat([lp[:, :label], lp[:, label + 1:]], 1).logsumexp(1)
    return lp[:, label] - others


def margin(z, label):
    others = torch.cat([z[:, :label], z[:, label + 1:]], 1).max(1).values
    return z[:, label] - others


OBJECTIVES = {"odds": log_odds, "margin": margin, "logit": lambda z, label: z[:, label]}


def starts(kind, n, label, w):
    if kind == "noise":
        return torch.rand(n, 784)
    if kind == "dark":
        return torch.rand(n, 784) * 0.1
    if kind == "bright":
        return 1 - torch.rand(n, 784) * 0.1
    from pytorch_crosscheck import idx
    x = torch.tensor(idx("train-images-idx3-ubyte", 16).reshape(-1, 784), dtype=torch.float32) / 255
    y = torch.tensor(idx("train-labels-idx1-ubyte", 8), dtype=torch.long)
    if kind == "other":
        pool = x[y != label]
        return pool[torch.randperm(len(pool))[:n]].clone()
    pool = x[y == label]
    if kind == "train":
        return pool[torch.randperm(len(pool))[:n]].clone()
    with torch.no_grad():
        p = logits(w, pool).softmax(1)[:, label]
    return pool[p.argsort(descending=True)[:n]].clone()


def ascend(w, x, label, objective, steps):
    x = x.clone().requires_grad_(True)
    for t in range(steps):
        (g,) = torch.autograd.grad(objective(logits(w, x), label).sum(), x)
        step = 0.02 * (1 - t / steps) + 1e-3
        with torch.no_grad():
            x += step * g.sign()
            x.clamp_(0, 1)
    return x.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--labels", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--starts", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--start", default="noise",
                    choices=["noise", "train", "top-train", "other", "dark", "bright"])
    ap.add_argument("--objective", default="odds", choices=sorted(OBJECTIVES))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    w = load_file(a.model)
    for label in [int(v) for v in a.labels.split(",")]:
        x = starts(a.start, a.starts, label, w)
        if a.objective == "odds":
            x = ascend(w, x, label, log_odds, a.steps)
        else:
            x = ascend(w, x, label, OBJECTIVES[a.objective], a.steps // 2)
            x = ascend(w, x, label, log_odds, a.steps - a.steps // 2)
        with torch.no_grad():
            p = logits(w, x).softmax(1)[:, label]
        print(f"label {label}: best p {p.max().item():.6f}, median {p.median().item():.6f}, "
              f"past 0.999 {(p > 0.999).float().mean().item():.2f}, "
              f"past 0.9999 {(p > 0.9999).float().mean().item():.2f}", flush=True)


if __name__ == "__main__":
    main()
