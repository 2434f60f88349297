#!/usr/bin/env python3
"""The PyTorch side of issue 14's side-by-side: the shipped network (ALGORITHM.md §1) trained,
evaluated and run over the training set on this CPU, with the same batch sizes as `backwork
bench train` and `backwork bench eval`. `scripts/core_bench.sh` runs
both sides in one go and prints the ratios.

    pip install torch safetensors numpy
    python3 scripts/pytorch_core_bench.py [--steps 30]

Prints one JSON object: train_images_per_s (batch 64, Adam 1e-3, steady state), eval_images_per_s
(the 10,000 test images, the better of batch 128 and 500), threads. The reference sets are timed
by scripts/pytorch_backwork_bench.py (cache_s), which builds them as backwork does.
"""
import argparse, gzip, json, os, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def idx(name, offset):
    with gzip.open(os.path.join(ROOT, "assets", "mnist", name + ".gz")) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv1 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc = nn.Linear(3136, 1024)
        self.softmax = nn.Linear(1024, 10)

    def taps(self, x):
        x = x.view(-1, 1, 28, 28)
        c0 = F.max_pool2d(F.relu(self.conv0(x)), 2)
        c1 = F.max_pool2d(F.relu(self.conv1(c0)), 2)
        fc = self.fc(c1.flatten(1))
        return [x, c0, c1, fc], self.softmax(F.relu(fc))

    def forward(self, x):
        return self.taps(x)[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    a = ap.parse_args()
    torch.manual_seed(0)
    xtr = torch.tensor(idx("train-images-idx3-ubyte", 16).reshape(-1, 784), dtype=torch.float32) / 255
    ytr = torch.tensor(idx("train-labels-idx1-ubyte", 8)).long()
    xte = torch.tensor(idx("t10k-images-idx3-ubyte", 16).reshape(-1, 784), dtype=torch.float32) / 255
    net = Net()
    net.load_state_dict(load_file(os.path.join(ROOT, "assets", "models", "mnist-cnn.safetensors")))

    # Training: batch 64, Adam, the first five steps (allocations) left out as backwork's
    # bench does.
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    perm = torch.randperm(len(xtr))
    times = []
    for s in range(a.steps + 5):
        i = perm[s * 64:(s + 1) * 64]
        t = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(net(xtr[i]), ytr[i]).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    train = 64 / (sum(times[5:]) / a.steps)

    net.load_state_dict(load_file(os.path.join(ROOT, "assets", "models", "mnist-cnn.safetensors")))
    with torch.no_grad():
        # PyTorch at its best batch of two (backwork's is 128).
        ev = 0
        for bs in (128, 500):
            net(xte[:bs])  # warm-up
            t = time.perf_counter()
            for s in range(0, len(xte), bs):
                net(xte[s:s + bs]).argmax(1)
            ev = max(ev, len(xte) / (time.perf_counter() - t))
    print(json.dumps({
        "impl": f"PyTorch {torch.__version__}",
        "train_images_per_s": train,
        "eval_images_per_s": ev,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
