#!/usr/bin/env python3
"""The ALGORITHM.md §1 network trained as most PyTorch MNIST code trains it: on inputs
normalised by transforms.Normalize((0.1307,), (0.3081,)) (PyTorch's own MNIST example does), and
saved as a state_dict. backwork feeds a network pixels in [0, 1] and has no input normalisation,
so this measures what a user who brings such a network gets: its test accuracy in PyTorch on the
inputs it was trained on, and on the pixels backwork gives it (compare `backwork eval`).

    pip install torch numpy
    python3 scripts/pytorch_normalized.py --out /tmp/norm/normalized.pt
    backwork eval --model /tmp/norm/normalized.pt
    backwork eval --model /tmp/norm/normalized.pt --input-mean 0.1307 --input-std 0.3081

With --count FILE.pt it trains nothing and prints how many test images PyTorch classifies
correctly with that state_dict on normalised inputs (tests/torch.rs checks backwork's count
with --input-mean/--input-std against it).
"""
import argparse, time

import torch
import torch.nn.functional as F

from pytorch_crosscheck import Net, idx, test_correct

MEAN, STD = 0.1307, 0.3081


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--count", help="a state_dict to count, instead of training")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=21)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    load = lambda n, o: torch.tensor(idx(n, o).copy())
    xtr = load("train-images-idx3-ubyte", 16).float().view(-1, 1, 28, 28) / 255
    ytr = load("train-labels-idx1-ubyte", 8).long()
    xte = load("t10k-images-idx3-ubyte", 16).float().view(-1, 1, 28, 28) / 255
    yte = load("t10k-labels-idx1-ubyte", 8).long()
    norm = lambda x: (x - MEAN) / STD
    if a.count:
        state = {k: v.float() for k, v in torch.load(a.count).items()}
        net = Net()
        # The file's own names (scripts/pytorch_pt.py), in §1's order.
        net.load_state_dict(dict(zip(net.state_dict().keys(), state.values())))
        print(f"{test_correct(net, norm(xte), yte)}/10000 on normalised inputs, "
              f"{test_correct(net, xte, yte)}/10000 on pixels in [0, 1]")
        return
    net = Net()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    t = time.time()
    for _ in range(a.epochs):
        for i in torch.randperm(len(xtr)).split(64):
            opt.zero_grad()
            F.cross_entropy(net(norm(xtr[i])), ytr[i]).backward()
            opt.step()
    net.eval()
    on_norm = test_correct(net, norm(xte), yte)
    on_raw = test_correct(net, xte, yte)
    torch.save(net.state_dict(), a.out)
    print(f"trained {a.epochs} epoch(s) in {time.time() - t:.0f} s; test correct: "
          f"{on_norm}/10000 on normalised inputs, {on_raw}/10000 on pixels in [0, 1]")


if __name__ == "__main__":
    main()
