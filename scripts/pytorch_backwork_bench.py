#!/usr/bin/env python3
"""The backwork step (ALGORITHM.md §3-§4) written directly in PyTorch with the matrix-product
formulation, timed on the same machine as `backwork bench backwork`, for the side-by-side in
the README. It loads the shipped model's weights and the embedded MNIST.

    pip install torch safetensors numpy
    python3 scripts/pytorch_backwork_bench.py [--steps 100]

Prints one JSON object: step_ms_10x8, step_ms_1x8, cache_s.
"""
import argparse, gzip, json, os, time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")


def idx(name, offset):
    with gzip.open(os.path.join(ROOT, "assets", "mnist", name + ".gz")) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def taps(w, x):
    x = x.view(-1, 1, 28, 28)
    c0 = F.max_pool2d(F.relu(F.conv2d(x, w["conv0.weight"], w["conv0.bias"], padding=2)), 2)
    c1 = F.max_pool2d(F.relu(F.conv2d(c0, w["conv1.weight"], w["conv1.bias"], padding=2)), 2)
    fc = c1.flatten(1) @ w["fc.weight"].T + w["fc.bias"]
    logits = F.relu(fc) @ w["softmax.weight"].T + w["softmax.bias"]
    return [x.flatten(1), c0.flatten(1), c1.flatten(1), fc], logits.softmax(1)


def group_cost(a_taps, probs, refs, label, c=(1e-5, 1e-4, 1e-3, 1e-2, 10.0), prev=0.5, sim=0.5):
    total = 0.0
    for k, a in enumerate(a_taps):
        b, bn = refs[k]
        n, d = a.shape
        if k == 3:  # fc, per neuron: nearest training value, by binary search in sorted columns
            cols = refs[4]  # 1024 x R, each row sorted
            q = a.T.contiguous()  # 1024 x N
            i = torch.searchsorted(cols, q.detach()).clamp(1, cols.shape[1] - 1)
            lo, hi = cols.gather(1, i - 1), cols.gather(1, i)
            near = torch.where((q.detach() - lo).abs() <= (hi - q.detach()).abs(), lo, hi)
            ref = ((q - near) ** 2).mean()
        else:  # nearest training image via |a|^2 + |b|^2 - 2ab
            d2 = (a * a).sum(1, keepdim=True) + bn - 2 * a @ b.T
            best = d2.argmin(1)
            ref = ((a - b[best]) ** 2).mean()
        simd = 2 * a.var(0, unbiased=False).sum() / d
        total = total + c[k] * (prev / ref + sim / simd)
    return total + c[4] * (1 - probs[:, label]).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args()
    torch.manual_seed(0)
    w = load_file(os.path.join(ROOT, "assets", "models", "mnist-cnn.safetensors"))
    xtr = torch.tensor(idx("train-images-idx3-ubyte", 16).reshape(-1, 784), dtype=torch.float32) / 255
    ytr = torch.tensor(idx("train-labels-idx1-ubyte", 8))
    t = time.time()
    refs = {}
    with torch.no_grad():
        for l in range(10):
            xs = xtr[ytr == l]
            parts = [taps(w, xs[s:s + 500])[0] for s in range(0, len(xs), 500)]
            bs = [torch.cat([p[k] for p in parts]) for k in range(4)]
            refs[l] = [(b, (b * b).sum(1)) for b in bs] + [bs[3].T.sort(1).values.contiguous()]
    cache_s = time.time() - t

    def time_steps(labels):
        x = torch.rand(len(labels) * 8, 784, requires_grad=True)
        opt = torch.optim.Adam([x], lr=0.01)

        def step():
            opt.zero_grad()
            a_taps, probs = taps(w, x)
            cost = sum(group_cost([t[g * 8:(g + 1) * 8] for t in a_taps], probs[g * 8:(g + 1) * 8], refs[l], l)
                       for g, l in enumerate(labels))
            cost.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)

        step()
        t = time.time()
        for _ in range(a.steps):
            step()
        return 1000 * (time.time() - t) / a.steps

    print(json.dumps({
        "impl": f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads",
        "step_ms_10x8": time_steps(list(range(10))),
        "step_ms_1x8": time_steps([0]),
        "cache_s": cache_s,
    }))


if __name__ == "__main__":
    main()
