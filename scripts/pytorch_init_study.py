#!/usr/bin/env python3
"""Trains the ALGORITHM.md §1 network in PyTorch from the original TensorFlow init (weights a
normal of std 0.1 truncated at ±0.2, biases 0.1), to check that fooling images converge with
the default cost on networks from that init, not only on ours (README, "Convergence").

    # the original recipe's optimiser, 1,200 steps: Adam 1e-4, batch 50, summed cross-entropy
    python3 scripts/pytorch_init_study.py --out /tmp/tf1200.safetensors --steps 1200 --lr 1e-4 --batch 50 --sum
    # backwork's own recipe: 5 epochs, Adam 1e-3 halved each epoch, batch 64
    python3 scripts/pytorch_init_study.py --out /tmp/tf5ep.safetensors --epochs 5 --lr 1e-3 --decay 0.5 --batch 64
    cargo run --release -- run --model /tmp/tf5ep.safetensors --labels all --out /tmp/fig
"""
import argparse, time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from pytorch_crosscheck import Net, idx, test_correct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=0, help="passes (0: use --steps)")
    ap.add_argument("--steps", type=int, default=0, help="Adam steps when --epochs is 0")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--decay", type=float, default=1.0, help="lr factor after each epoch")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--sum", action="store_true", help="summed cross-entropy, as the original")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    xtr = torch.tensor(idx("train-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    ytr = torch.tensor(idx("train-labels-idx1-ubyte", 8), dtype=torch.long)
    xte = torch.tensor(idx("t10k-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    yte = torch.tensor(idx("t10k-labels-idx1-ubyte", 8), dtype=torch.long)
    net = Net()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("weight"):
                nn.init.trunc_normal_(p, std=0.1, a=-0.2, b=0.2)
            else:
                p.fill_(0.1)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    per_epoch = len(xtr) // a.batch
    total = a.epochs * per_epoch if a.epochs else a.steps
    t = time.time()
    for step in range(total):
        if step % per_epoch == 0:
            if step:
                for g in opt.param_groups:
                    g["lr"] *= a.decay
            perm = torch.randperm(len(xtr))
        i = perm[(step % per_epoch) * a.batch:(step % per_epoch + 1) * a.batch]
        loss = F.cross_entropy(net(xtr[i]), ytr[i], reduction="sum" if a.sum else "mean")
        opt.zero_grad()
        loss.backward()
        opt.step()
    correct = test_correct(net, xte, yte)
    print(f"{total} Adam steps in {time.time() - t:.0f} s; PyTorch test accuracy {correct / 100:.2f}%")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, a.out, metadata={
        "dataset": "MNIST",
        "trained_with": f"PyTorch {torch.__version__} (scripts/pytorch_init_study.py)",
        "test_accuracy": f"{correct / 10000:.4f}",
    })


if __name__ == "__main__":
    main()
