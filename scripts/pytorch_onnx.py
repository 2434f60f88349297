#!/usr/bin/env python3
"""Networks trained and exported the way PyTorch users do it, for backwork's ONNX loader
(issue 15): a LeNet-5 on MNIST, a small CNN on Fashion-MNIST, a small CNN on a 3-channel
image folder, and a file with an operator backwork does not take. Each network is exported
twice, with torch.onnx.export's default (dynamo) exporter and with the TorchScript one
(dynamo=False), since both are in use.

    pip install torch onnx onnxscript numpy
    python3 scripts/pytorch_onnx.py --out tests/data/onnx

Writes NAME.onnx, NAME-ts.onnx and onnx.json (PyTorch's test accuracy of each network on the
same test images, scaled as backwork scales them: raw / 255), and the image folder
`shapes/` (train/ and test/, one folder per class of 16x16 RGB PNGs: crosses, discs and
stripes in random colours, from a fixed seed). The tests in tests/onnx.rs load these files
and check backwork's count of correct test images against PyTorch's.
"""
import argparse, gzip, json, os, struct, zlib

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.join(HERE, "..", "assets", "mnist")
FASHION = "/usr/share/datasets/fashion-mnist"


def idx(folder, name, offset):
    with gzip.open(os.path.join(folder, name + ".gz")) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load(folder):
    xtr = torch.tensor(idx(folder, "train-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28) / 255.0,
                       dtype=torch.float32)
    ytr = torch.tensor(idx(folder, "train-labels-idx1-ubyte", 8), dtype=torch.long)
    xte = torch.tensor(idx(folder, "t10k-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28) / 255.0,
                       dtype=torch.float32)
    yte = torch.tensor(idx(folder, "t10k-labels-idx1-ubyte", 8), dtype=torch.long)
    return xtr, ytr, xte, yte


SHAPES = ["cross", "disc", "stripes"]


def png(path, rgb):
    """Writes an (h, w, 3) uint8 array as an 8-bit RGB PNG (no filter), without PIL."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def shape_image(k, rng, side=16):
    """A cross, a disc or horizontal stripes in a random bright colour on dark noise."""
    colour = rng.integers(128, 256, 3)
    cx, cy = rng.integers(4, side - 4, 2)
    y, x = np.mgrid[0:side, 0:side]
    dx, dy = x - cx, y - cy
    on = [((dx == 0) & (abs(dy) <= 4)) | ((dy == 0) & (abs(dx) <= 4)),
          dx * dx + dy * dy <= 12,
          y % 4 < 2][k]
    noise = rng.integers(0, 40, (side, side))
    img = np.repeat(noise[:, :, None], 3, axis=2)
    img[on] = colour
    return img.astype(np.uint8)


def shapes_folder(root, n_train=200, n_test=50, seed=7):
    """Writes the image folder and returns it as tensors (N, 3, 16, 16) in [0, 1]."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in [("train", n_train), ("test", n_test)]:
        xs, ys = [], []
        for k, name in enumerate(SHAPES):
            d = os.path.join(root, split, name)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                img = shape_image(k, rng)
                png(os.path.join(d, f"{i:04}.png"), img)
                xs.append(img)
                ys.append(k)
        x = torch.tensor(np.stack(xs).transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)
        out[split] = (x, torch.tensor(ys, dtype=torch.long))
    return out["train"][0], out["train"][1], out["test"][0], out["test"][1]


def rgb_cnn():
    """A small CNN for 16x16 colour images, with a final Softmax."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32), nn.ReLU(),
        nn.Linear(32, 3), nn.Softmax(dim=1),
    )


def lenet5():
    """LeNet-5 as PyTorch tutorials write it (ReLU and max-pool for the original's tanh and
    subsampling), ending in LogSoftmax as many do."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10), nn.LogSoftmax(dim=1),
    )


def fashion_cnn():
    """A small CNN for Fashion-MNIST: 3×3 convolutions, a stride-2 pool, dropout, no softmax."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


class ViewNet(nn.Module):
    """A network as many PyTorch users write one by hand: `x.view(x.size(0), -1)` (exported
    as Shape, Gather, Unsqueeze, Concat and a computed Reshape) and a matrix product with a
    bias (MatMul and Add) instead of nn.Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5, padding=2)
        self.w = nn.Parameter(torch.randn(8 * 14 * 14, 10) * 0.01)
        self.b = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        x = x.view(x.size(0), -1)
        return torch.matmul(x, self.w) + self.b


class SoftmaxOverBatch(nn.Module):
    """A softmax over the batch (axis 0), not the classes: refused."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return torch.softmax(self.fc(x.flatten(1)), dim=0)


class ScaledGemm(nn.Module):
    """torch.addmm with alpha 2 (a Gemm whose alpha backwork does not take): refused."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(784, 10) * 0.01)
        self.b = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        return torch.addmm(self.b, x.flatten(1), self.w, alpha=2.0)


class Normalised(nn.Module):
    """A network with torchvision's MNIST normalisation in its forward: the Sub and Div come
    before any layer; refused, pointing to --input-mean/--input-std."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        x = (x - 0.1307) / 0.3081
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def unsupported():
    """A network with a batch normalisation and a sigmoid: operators backwork refuses by name."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sigmoid(),
        nn.Flatten(), nn.Linear(4 * 26 * 26, 10),
    )


def train(net, data, epochs, seed):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for s in range(0, len(xtr), 64):
            b = perm[s:s + 64]
            out = net(xtr[b])
            # A network ending in Softmax is trained on its log (what PyTorch users do).
            if isinstance(net, nn.Sequential) and isinstance(net[-1], nn.Softmax):
                loss = nn.functional.nll_loss(torch.log(out + 1e-12), ytr[b])
            else:
                loss = nn.functional.cross_entropy(out, ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return correct(net, xte, yte)


def correct(net, xte, yte):
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(xte[s:s + 1000]).argmax(1) for s in range(0, len(xte), 1000)])
    return int((pred == yte).sum())


def export(net, path, dynamo, shape=(1, 28, 28)):
    net.eval()
    x = torch.zeros(1, *shape)
    torch.onnx.export(net, (x,), path, input_names=["image"], output_names=["scores"],
                      dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}},
                      opset_version=17 if not dynamo else 18, dynamo=dynamo)


def refused(out):
    """The untrained networks backwork refuses, each for its own reason."""
    torch.manual_seed(3)
    export(unsupported(), os.path.join(out, "unsupported.onnx"), False)
    export(SoftmaxOverBatch(), os.path.join(out, "softmax-axis0.onnx"), False)
    export(ScaledGemm(), os.path.join(out, "gemm-alpha.onnx"), False)
    export(Normalised(), os.path.join(out, "normalised.onnx"), False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--refused-only", action="store_true",
                    help="write only the untrained files backwork refuses (no training)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    if args.refused_only:
        return refused(args.out)
    report = {}
    mnist = load(MNIST)
    fashion = load(FASHION)
    shapes = shapes_folder(os.path.join(args.out, "shapes"))
    for name, make, data, epochs, seed in [
        ("lenet5-mnist", lenet5, mnist, 2, 1),
        ("cnn-fashion", fashion_cnn, fashion, 2, 2),
        ("cnn-shapes", rgb_cnn, shapes, 30, 4),
        ("view-mnist", ViewNet, mnist, 1, 5),
    ]:
        torch.manual_seed(seed)
        net = make()
        n = train(net, data, epochs, seed)
        report[name] = {"correct": n, "test_images": len(data[3]), "accuracy": n / len(data[3]),
                        "epochs": epochs, "seed": seed, "torch": torch.__version__}
        print(name, n, "of", len(data[3]))
        shape = tuple(data[0].shape[1:])
        export(net, os.path.join(args.out, name + ".onnx"), True, shape)
        export(net, os.path.join(args.out, name + "-ts.onnx"), False, shape)
    refused(args.out)
    with open(os.path.join(args.out, "onnx.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
