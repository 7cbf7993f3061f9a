# Golden values for tests/resize_test.ts from PyTorch (float64, CPU): bicubic
# (align_corners=False) and adaptive average pooling at VAR's scale pairs. Input plane p of
# [1, P, H, W] holds sin(0.7·i + 0.3 + p) at flat index i; each case reports the dot product of
# the output with cos(0.37·j + 0.1) over its flat index j, and the first outputs.
# Run: python3 tools/resize_reference.py
import math

import torch
import torch.nn.functional as F

PAIRS = [((16, 16), (13, 13)), ((13, 13), (16, 16)), ((1, 1), (8, 8)), ((8, 8), (1, 1)),
         ((6, 6), (8, 8)), ((5, 3), (4, 7)), ((16, 16), (1, 1)), ((3, 16), (16, 5))]


def golden(mode):
    for (h, w), (oh, ow) in PAIRS:
        n = 2 * h * w
        x = torch.tensor([math.sin(0.7 * (i % (h * w)) + 0.3 + i // (h * w)) for i in range(n)],
                         dtype=torch.float64).reshape(1, 2, h, w)
        if mode == "bicubic":
            y = F.interpolate(x, size=(oh, ow), mode="bicubic", align_corners=False)
        else:
            y = F.adaptive_avg_pool2d(x, (oh, ow))
        flat = y.flatten()
        r = torch.tensor([math.cos(0.37 * j + 0.1) for j in range(flat.numel())], dtype=torch.float64)
        first = ", ".join(f"{v:.9g}" for v in flat[:4].tolist())
        print(f"  [[{h}, {w}], [{oh}, {ow}], {float(flat @ r):.12g}, [{first}]],")


for mode in ("bicubic", "area"):
    print(f"{mode}:")
    golden(mode)
