#!/usr/bin/env python3
"""Are a run's stalled images on local maxima of p(label) inside the pixel box? (issue 11,
README "The pixel box and the paper's bar")

From the images of a finished run (its images.npy, one label), tries two ways up on the
log-odds ln(p / (1 - p)) alone, with the pixels kept in [0, 1]: 600 more steps of Adam at a
few learning rates (and one decaying from 0.01 to 1e-4), and every single pixel moved to the
other end of the box (the best such flip, repeated while one helps). Prints each image's p
before and its best p after each.

    backwork run --model M --labels 0 --threshold 0.9999 --seed 0 --out run0
    python3 scripts/local_max.py M run0/images.npy 0
"""
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from box_ceiling import logits  # noqa: E402


def main():
    model, images, label = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(2)
    w = load_file(model)
    x0 = torch.tensor(np.load(images)).float().view(-1, 784)

    def odds(x):
        lp = logits(w, x).log_softmax(1)
        others = torch.cat([lp[:, :label], lp[:, label + 1:]], 1).logsumexp(1)
        return lp[:, label] - others

    def fmt(o):
        return " ".join(f"{v:.6f}" for v in torch.sigmoid(o).tolist())

    with torch.no_grad():
        start = odds(x0)
    print("start          ", fmt(start))
    for name, lr, decay in [("adam 0.01", 0.01, False), ("adam 0.003", 0.003, False),
                            ("adam 0.001", 0.001, False), ("adam decaying", 0.01, True)]:
        x = x0.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        best = start.clone()
        for t in range(600):
            if decay:
                for g in opt.param_groups:
                    g["lr"] = lr * 0.01 ** (t / 600)
            opt.zero_grad()
            (-odds(x).sum()).backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
                best = torch.maximum(best, odds(x))
        print(f"{name:15}", fmt(best))
    flipped = []
    with torch.no_grad():
        for k in range(x0.shape[0]):
            x = x0[k:k + 1].clone()
            o = odds(x).item()
            for _ in range(30):
                cand = x.repeat(784, 1)
                idx = torch.arange(784)
                cand[idx, idx] = torch.where(x[0] > 0.5, 0.0, 1.0)
                oc = odds(cand)
                j = int(oc.argmax())
                if oc[j] <= o:
                    break
                x, o = cand[j:j + 1], oc[j].item()
            flipped.append(o)
    print("pixel flips    ", fmt(torch.tensor(flipped)))


if __name__ == "__main__":
    main()
