"""An independent PyTorch reference of the FID Inception, run in its own process (torch only).

Writes to argv[1] an .npz with a random pytorch-fid-layout state dict (keys prefixed `sd:`),
uint8 images `images` (N, 32, 32, 3) and the reference pool3 `pool3` of those images after
pytorch-fid's preprocessing (half-pixel bilinear resize to argv[2] pixels, then x / 127.5 - 1).
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F


def unit(name, cin, cout, k, stride=1, pad=(0, 0)):
    """One conv + BN + ReLU: (name, in, out, kernel (h, w), stride, padding (h, w))."""
    return (name, cin, cout, k, stride, pad)


STEM = [unit("Conv2d_1a_3x3", 3, 32, (3, 3), 2), unit("Conv2d_2a_3x3", 32, 32, (3, 3)),
        unit("Conv2d_2b_3x3", 32, 64, (3, 3), 1, (1, 1)), "maxpool", unit("Conv2d_3b_1x1", 64, 80, (1, 1)),
        unit("Conv2d_4a_3x3", 80, 192, (3, 3)), "maxpool"]


def block_a(cin, pool):
    return {"b1": [unit("branch1x1", cin, 64, (1, 1))],
            "b5": [unit("branch5x5_1", cin, 48, (1, 1)), unit("branch5x5_2", 48, 64, (5, 5), 1, (2, 2))],
            "b3": [unit("branch3x3dbl_1", cin, 64, (1, 1)), unit("branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1)),
                   unit("branch3x3dbl_3", 96, 96, (3, 3), 1, (1, 1))],
            "avg": [unit("branch_pool", cin, pool, (1, 1))]}


def block_c(c7):
    return {"b1": [unit("branch1x1", 768, 192, (1, 1))],
            "b7": [unit("branch7x7_1", 768, c7, (1, 1)), unit("branch7x7_2", c7, c7, (1, 7), 1, (0, 3)),
                   unit("branch7x7_3", c7, 192, (7, 1), 1, (3, 0))],
            "bd": [unit("branch7x7dbl_1", 768, c7, (1, 1)), unit("branch7x7dbl_2", c7, c7, (7, 1), 1, (3, 0)),
                   unit("branch7x7dbl_3", c7, c7, (1, 7), 1, (0, 3)),
                   unit("branch7x7dbl_4", c7, c7, (7, 1), 1, (3, 0)),
                   unit("branch7x7dbl_5", c7, 192, (1, 7), 1, (0, 3))],
            "avg": [unit("branch_pool", 768, 192, (1, 1))]}


def block_e(cin):
    return {"b1": [unit("branch1x1", cin, 320, (1, 1))], "b3": [unit("branch3x3_1", cin, 384, (1, 1))],
            "b3_split": [unit("branch3x3_2a", 384, 384, (1, 3), 1, (0, 1)),
                         unit("branch3x3_2b", 384, 384, (3, 1), 1, (1, 0))],
            "bd": [unit("branch3x3dbl_1", cin, 448, (1, 1)), unit("branch3x3dbl_2", 448, 384, (3, 3), 1, (1, 1))],
            "bd_split": [unit("branch3x3dbl_3a", 384, 384, (1, 3), 1, (0, 1)),
                         unit("branch3x3dbl_3b", 384, 384, (3, 1), 1, (1, 0))],
            "pool": [unit("branch_pool", cin, 192, (1, 1))]}


BLOCKS = [
    ("Mixed_5b", "A", block_a(192, 32)), ("Mixed_5c", "A", block_a(256, 64)), ("Mixed_5d", "A", block_a(288, 64)),
    ("Mixed_6a", "B", {"b3": [unit("branch3x3", 288, 384, (3, 3), 2)],
                       "bd": [unit("branch3x3dbl_1", 288, 64, (1, 1)),
                              unit("branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1)),
                              unit("branch3x3dbl_3", 96, 96, (3, 3), 2)]}),
    ("Mixed_6b", "C", block_c(128)), ("Mixed_6c", "C", block_c(160)), ("Mixed_6d", "C", block_c(160)),
    ("Mixed_6e", "C", block_c(192)),
    ("Mixed_7a", "D", {"b3": [unit("branch3x3_1", 768, 192, (1, 1)), unit("branch3x3_2", 192, 320, (3, 3), 2)],
                       "b7": [unit("branch7x7x3_1", 768, 192, (1, 1)),
                              unit("branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3)),
                              unit("branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0)),
                              unit("branch7x7x3_4", 192, 192, (3, 3), 2)]}),
    ("Mixed_7b", "E", block_e(1280)), ("Mixed_7c", "E", block_e(2048)),
]


def random_state_dict(rng):
    units = [u for u in STEM if u != "maxpool"]
    for block, _, branches in BLOCKS:
        units += [(f"{block}.{u[0]}",) + u[1:] for branch in branches.values() for u in branch]
    state = {}
    for name, cin, cout, (kh, kw), _, _ in units:
        state[f"{name}.conv.weight"] = rng.standard_normal((cout, cin, kh, kw)) * np.sqrt(2.0 / (cin * kh * kw))
        state[f"{name}.bn.weight"] = 1.0 + 0.1 * rng.standard_normal(cout)
        state[f"{name}.bn.bias"] = 0.1 * rng.standard_normal(cout)
        state[f"{name}.bn.running_mean"] = 0.1 * rng.standard_normal(cout)
        state[f"{name}.bn.running_var"] = rng.uniform(0.5, 1.5, cout)
        state[f"{name}.bn.num_batches_tracked"] = np.array(0)
    state["fc.weight"] = 0.01 * rng.standard_normal((1008, 2048))
    state["fc.bias"] = np.zeros(1008)
    return {k: torch.tensor(v, dtype=torch.float32 if v.dtype.kind == "f" else torch.int64) for k, v in state.items()}


def forward(state, x):
    def run(x, name, cin, cout, k, stride, pad):
        x = F.conv2d(x, state[f"{name}.conv.weight"], stride=stride, padding=pad)
        x = F.batch_norm(x, state[f"{name}.bn.running_mean"], state[f"{name}.bn.running_var"],
                         state[f"{name}.bn.weight"], state[f"{name}.bn.bias"], eps=1e-3)
        return F.relu(x)

    def chain(x, block, units):
        for u in units:
            x = run(x, f"{block}.{u[0]}", *u[1:])
        return x

    for u in STEM:
        x = F.max_pool2d(x, 3, 2) if u == "maxpool" else run(x, *u)
    for block, kind, b in BLOCKS:
        if kind in ("A", "C"):
            pooled = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
            x = torch.cat([chain(x, block, units) for key, units in b.items() if key != "avg"]
                          + [chain(pooled, block, b["avg"])], 1)
        elif kind in ("B", "D"):
            x = torch.cat([chain(x, block, units) for units in b.values()] + [F.max_pool2d(x, 3, 2)], 1)
        else:  # E: the pool branch averages in Mixed_7b and takes the max in Mixed_7c (the graph's quirk)
            y3, yd = chain(x, block, b["b3"]), chain(x, block, b["bd"])
            pooled = (F.max_pool2d(x, 3, 1, 1) if block == "Mixed_7c"
                      else F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
            x = torch.cat([chain(x, block, b["b1"])] + [chain(y3, block, [u]) for u in b["b3_split"]]
                          + [chain(yd, block, [u]) for u in b["bd_split"]] + [chain(pooled, block, b["pool"])], 1)
    return x.mean((2, 3))


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    state = random_state_dict(rng)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    x = torch.tensor(images, dtype=torch.float32).permute(0, 3, 1, 2)
    size = int(sys.argv[2])
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) / 127.5 - 1.0
    with torch.no_grad():
        pool3 = forward(state, x).numpy()
    np.savez(sys.argv[1], images=images, pool3=pool3, **{f"sd:{k}": v.numpy() for k, v in state.items()})
