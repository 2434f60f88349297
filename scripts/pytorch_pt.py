#!/usr/bin/env python3
"""PyTorch checkpoint files (.pt), written by torch.save as PyTorch users write them, for
backwork's state_dict reader (src/model/torch.rs, tests/torch.rs).

    pip install torch numpy
    python3 scripts/pytorch_pt.py --out tests/data/torch

Writes:
  mnist-pruned-bf16.pt  the ALGORITHM.md §1 network in a user's own names (conv1, conv2, fc1,
                        fc2), trained on MNIST (Adam 1e-3, batch 64, 1 epoch, seed 0), its fc1
                        weights pruned to the 3% largest in magnitude (so git stores the file
                        small) and saved as bfloat16;
  checkpoint.pt         {"epoch", "model_state_dict", "optimizer_state_dict"} of a tiny network
                        after one Adam step (the optimizer's state holds tensors too);
  dtypes.pt             a dict of tensors in float32, float64, float16 and bfloat16, one of them
                        a view at an offset into a storage it shares;
  tiny.pt               the tiny network's state_dict (not §1: backwork refuses it, pointing to
                        ONNX);
  whole-module.pt       torch.save(model): a pickled module, not a state_dict;
  torchscript.pt        torch.jit.save of the tiny network;
  legacy.pt             the tiny state_dict in the format before PyTorch 1.6;
  transposed.pt         a state_dict holding a non-contiguous (transposed) tensor;
  integer.pt            a state_dict holding an int64 tensor;
  torch.json            what PyTorch measured: the pruned network's correct count on the 10,000
                        MNIST test images (scaled raw / 255, as backwork scales them) and its
                        logits on two fixed images; every tensor of dtypes.pt as float32 lists.
"""
import argparse, gzip, json, os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.join(HERE, "..", "assets", "mnist")


def idx(name, offset):
    with gzip.open(os.path.join(MNIST, name + ".gz")) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


class Net(nn.Module):
    """ALGORITHM.md §1 as a PyTorch user names it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * 7 * 7, 1024)
        self.fc2 = nn.Linear(1024, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Linear(4 * 26 * 26, 3)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).flatten(1))


def fixed_images():
    """Two images backwork's test builds the same way: a ramp and a checker pattern."""
    i, j = np.mgrid[0:28, 0:28]
    ramp = ((i * 7 + j * 3) % 11) / 10.0
    checker = ((i // 4 + j // 4) % 2).astype(np.float64)
    return torch.tensor(np.stack([ramp, checker])[:, None], dtype=torch.float32)


def loader_cases(out):
    """Small files for cases a hostile round found the reader getting wrong (2026-12-05): a
    21-character stem (its first zip entry's name is 30 bytes, which the zip crate's guess of
    where the archive starts got wrong), a checkpoint with tensors of its own beside the
    state_dict, a state_dict one level further down, and every tensor a view of one flat
    storage (as after parameters_to_vector)."""
    w = torch.arange(6, dtype=torch.float32)
    torch.save({"w": w}, out("stem-of-21-characters.pt"))
    torch.save({"model": {"w": w}, "epoch": torch.tensor(3), "best_acc": torch.tensor(0.99)},
               out("checkpoint-epoch-tensor.pt"))
    torch.save({"model": {"state_dict": {"w": w}}, "epoch": 3}, out("checkpoint-nested.pt"))
    flat = torch.arange(8000, dtype=torch.float32) / 8
    torch.save({f"t{i}": flat[i * 1000:(i + 1) * 1000] for i in range(8)}, out("flat-views.pt"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--loader-cases", action="store_true",
                    help="write only the small files of loader_cases (no training)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = lambda n: os.path.join(args.out, n)
    if args.loader_cases:
        return loader_cases(out)
    torch.manual_seed(0)
    xtr = torch.tensor(idx("train-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28) / 255.0,
                       dtype=torch.float32)
    ytr = torch.tensor(idx("train-labels-idx1-ubyte", 8), dtype=torch.long)
    xte = torch.tensor(idx("t10k-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28) / 255.0,
                       dtype=torch.float32)
    yte = torch.tensor(idx("t10k-labels-idx1-ubyte", 8), dtype=torch.long)

    net = Net()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    perm = torch.randperm(len(xtr))
    for b in range(0, len(xtr), 64):
        i = perm[b:b + 64]
        opt.zero_grad()
        F.cross_entropy(net(xtr[i]), ytr[i]).backward()
        opt.step()
    with torch.no_grad():
        w = net.fc1.weight
        keep = w.abs() >= w.abs().flatten().kthvalue(int(w.numel() * 0.97)).values
        w.mul_(keep)
    sd = {k: v.to(torch.bfloat16) for k, v in net.state_dict().items()}
    torch.save(sd, out("mnist-pruned-bf16.pt"))
    # What backwork reads: the bfloat16 weights, widened to float32 exactly.
    net.load_state_dict({k: v.float() for k, v in sd.items()})
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(xte[b:b + 1000]).argmax(1) == yte[b:b + 1000]).sum())
                      for b in range(0, len(xte), 1000))
        logits = net(fixed_images()).tolist()
    print(f"pruned bf16 network: {correct} / {len(xte)} correct")

    tiny = Tiny()
    topt = torch.optim.Adam(tiny.parameters(), 1e-3)
    F.cross_entropy(tiny(torch.rand(2, 1, 28, 28)), torch.tensor([0, 2])).backward()
    topt.step()
    torch.save({"epoch": 1, "model_state_dict": tiny.state_dict(),
                "optimizer_state_dict": topt.state_dict()}, out("checkpoint.pt"))
    torch.save(tiny.state_dict(), out("tiny.pt"))
    torch.save(tiny, out("whole-module.pt"))
    torch.jit.save(torch.jit.script(tiny), out("torchscript.pt"))
    torch.save(tiny.state_dict(), out("legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save({"w": torch.arange(6.0).reshape(2, 3).t()}, out("transposed.pt"))
    torch.save({"n": torch.tensor([3, 4])}, out("integer.pt"))

    shared = torch.arange(10, dtype=torch.float32) / 4
    dtypes = {
        "f32": torch.tensor([[0.5, -1.25], [3.0, 1e-3]]),
        "f64": torch.tensor([1.0 / 3, -2.5], dtype=torch.float64),
        "f16": torch.tensor([0.1, 65504.0, -0.0], dtype=torch.float16),
        "bf16": torch.tensor([1.5, -3e38], dtype=torch.bfloat16),
        "head": shared[:3],
        "tail": shared[6:].view(2, 2),
    }
    torch.save(dtypes, out("dtypes.pt"))
    with open(out("torch.json"), "w") as f:
        json.dump({
            "torch": torch.__version__,
            "pruned": {"file": "mnist-pruned-bf16.pt", "correct": correct, "total": len(xte),
                       "logits": logits},
            "dtypes": {k: {"shape": list(v.shape), "values": v.float().flatten().tolist()}
                       for k, v in dtypes.items()},
        }, f, indent=1)


if __name__ == "__main__":
    main()
