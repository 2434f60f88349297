#!/usr/bin/env python3
"""Trains the ALGORITHM.md §1 network in PyTorch, measures its test accuracy in PyTorch, and saves
it with the §1 names, so that `backwork eval --model OUT` can be compared with PyTorch's figure.

    pip install torch safetensors numpy
    python3 scripts/pytorch_crosscheck.py --out tests/fixtures/pytorch-cnn.safetensors
    cargo run --release -- eval --model tests/fixtures/pytorch-cnn.safetensors

It reads the embedded MNIST files in assets/mnist/ (pixels / 255, as backwork does).
"""
import argparse, gzip, os, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.join(HERE, "..", "assets", "mnist")


def idx(name, offset):
    with gzip.open(os.path.join(MNIST, name + ".gz")) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def test_correct(net, xte, yte):
    """How many test images `net` classifies correctly."""
    with torch.no_grad():
        pred = torch.cat([net(xte[s:s + 500]).argmax(1) for s in range(0, len(xte), 500)])
    return int((pred == yte).sum())


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv1 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc = nn.Linear(3136, 1024)
        self.softmax = nn.Linear(1024, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv0(x)), 2)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.softmax(F.relu(self.fc(x.flatten(1))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    xtr = torch.tensor(idx("train-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    ytr = torch.tensor(idx("train-labels-idx1-ubyte", 8), dtype=torch.long)
    xte = torch.tensor(idx("t10k-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    yte = torch.tensor(idx("t10k-labels-idx1-ubyte", 8), dtype=torch.long)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t = time.time()
    for step in range(a.steps):
        i = torch.randint(0, len(xtr), (64,))
        loss = F.cross_entropy(net(xtr[i]), ytr[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    correct = test_correct(net, xte, yte)
    print(f"trained {a.steps} steps in {time.time() - t:.0f} s; PyTorch test accuracy {correct / 100:.2f}% ({correct} / 10000)")
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(sd, a.out, metadata={
        "dataset": "MNIST",
        "trained_with": f"PyTorch {torch.__version__} (scripts/pytorch_crosscheck.py, {a.steps} Adam steps, seed {a.seed})",
        "pytorch_test_correct": str(correct),
        "test_accuracy": f"{correct / 10000:.4f}",
    })


if __name__ == "__main__":
    main()
