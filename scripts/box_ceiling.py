"""How confident can a network be on images in the pixel box [0, 1]? (issue 11, the 0.9999 bar)

Maximises the log-odds of each label, ln(p / (1 - p)), over images in [0, 1]^784 by projected
sign-gradient ascent (PGD, the strongest simple attack on a box) from many random starts, with
no distance terms at all: an upper estimate of what any cost can reach inside the box. Prints,
per label, the best p and the share of starts whose p passes 0.999 and 0.9999.

    python3 scripts/box_ceiling.py MODEL.safetensors [--labels 0,1,7] [--starts 64] [--steps 1500]
"""
import argparse

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def logits(w, x):
    x = x.view(-1, 1, 28, 28)
    c0 = F.max_pool2d(F.relu(F.conv2d(x, w["conv0.weight"], w["conv0.bias"], padding=2)), 2)
    c1 = F.max_pool2d(F.relu(F.conv2d(c0, w["conv1.weight"], w["conv1.bias"], padding=2)), 2)
    fc = F.relu(c1.flatten(1) @ w["fc.weight"].T + w["fc.bias"])
    return fc @ w["softmax.weight"].T + w["softmax.bias"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--labels", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--starts", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    w = load_file(a.model)
    for label in [int(v) for v in a.labels.split(",")]:
        x = torch.rand(a.starts, 784, requires_grad=True)
        for t in range(a.steps):
            z = logits(w, x)
            lp = z.log_softmax(1)
            # ln p - ln(1 - p), with ln(1 - p) as the log-sum-exp of the other classes.
            others = torch.cat([lp[:, :label], lp[:, label + 1:]], 1).logsumexp(1)
            odds = lp[:, label] - others
            (g,) = torch.autograd.grad(odds.sum(), x)
            step = 0.02 * (1 - t / a.steps) + 1e-3
            with torch.no_grad():
                x += step * g.sign()
                x.clamp_(0, 1)
        with torch.no_grad():
            p = logits(w, x).softmax(1)[:, label]
        print(f"label {label}: best p {p.max().item():.6f}, median {p.median().item():.6f}, "
              f"past 0.999 {(p > 0.999).float().mean().item():.2f}, "
              f"past 0.9999 {(p > 0.9999).float().mean().item():.2f}", flush=True)


if __name__ == "__main__":
    main()
