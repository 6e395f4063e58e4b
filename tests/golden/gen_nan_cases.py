"""Generates nan_elementwise.json: how NaN inputs propagate through each elementwise loss.

Computed by PyTorch (float64 autograd on float32-rounded inputs), in the format of
elementwise.json. Losses PyTorch lacks are written as the PyTorch expressions of
LOSSES.md. Run: python gen_nan_cases.py > nan_elementwise.json
"""
import json, math
import torch
import torch.nn.functional as F

torch.manual_seed(7)
N = 6


def rnd(lo, hi):
    return (torch.rand(N, dtype=torch.float32) * (hi - lo) + lo).double()


def enc(t):
    out = []
    for v in t.detach().reshape(-1).tolist():
        out.append("nan" if math.isnan(v) else ("inf" if v == math.inf else ("-inf" if v == -math.inf else v)))
    return {"shape": list(t.shape), "dtype": "f32", "data": out}


def focal(x, y, alpha, gamma):
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


EPS = 1e-7
LOSSES = {
    "mse": (lambda x, y: F.mse_loss(x, y, reduction="none"), (-2, 2), (-2, 2)),
    "l1": (lambda x, y: F.l1_loss(x, y, reduction="none"), (-2, 2), (-2, 2)),
    "huber": (lambda x, y: F.huber_loss(x, y, reduction="none"), (-2, 2), (-2, 2)),
    "smooth_l1": (lambda x, y: F.smooth_l1_loss(x, y, reduction="none"), (-2, 2), (-2, 2)),
    "msle": (lambda x, y: (torch.log(torch.clamp(x, min=EPS) + 1) - torch.log(torch.clamp(y, min=EPS) + 1)) ** 2, (0, 3), (0, 3)),
    "log_cosh": (lambda x, y: (x - y).abs() + torch.log1p(torch.exp(-2 * (x - y).abs())) - math.log(2), (-2, 2), (-2, 2)),
    "cauchy": (lambda x, y: torch.log(1 + (x - y) ** 2), (-2, 2), (-2, 2)),
    "poisson_nll": (lambda x, y: F.poisson_nll_loss(x, y, reduction="none"), (-2, 2), (0, 4)),
    "bce": (lambda x, y: F.binary_cross_entropy(x, y, reduction="none"), (0.05, 0.95), (0, 1)),
    "bce_with_logits": (lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none"), (-3, 3), (0, 1)),
    "sigmoid_focal": (lambda x, y: focal(x, y, 0.25, 2.0), (-3, 3), (0, 1)),
    "hinge": (lambda x, y: torch.clamp(1.0 - x * y, min=0), (-2, 2), (-1, 1)),
    "squared_hinge": (lambda x, y: torch.clamp(1.0 - x * y, min=0) ** 2, (-2, 2), (-1, 1)),
    "soft_margin": (lambda x, y: F.soft_margin_loss(x, y, reduction="none"), (-2, 2), (-1, 1)),
}

cases = []
for name, (f, xr, yr) in LOSSES.items():
    for where in ["input", "target"]:
        if name == "bce":
            continue  # PyTorch rejects NaN in either (outside [0, 1]); so does wgloss
        for reduction in ["none", "mean"]:
            x = rnd(*xr).float().double()
            y = rnd(*yr).float().double()
            if name in ("hinge", "squared_hinge", "soft_margin"):
                y = torch.where(y > 0, 1.0, -1.0).double()
            if name in ("bce",):
                y = torch.round(y)
            (x if where == "input" else y)[2] = float("nan")
            x.requires_grad_(True)
            per = f(x, y)
            loss = per if reduction == "none" else per.mean()
            (per.sum() if reduction == "none" else loss).backward()
            cases.append({
                "name": f"{name}_nan_{where}_{reduction}",
                "loss": name,
                "options": {"reduction": reduction},
                "inputs": {"input": enc(x), "target": enc(y)},
                "expected": {"loss": enc(loss), "grad_input": enc(x.grad)},
            })

for name, f in [("l1_penalty", lambda x: x.abs().sum()), ("l2_penalty", lambda x: 0.5 * (x ** 2).sum())]:
    x = rnd(-2, 2).float().double()
    x[2] = float("nan")
    x.requires_grad_(True)
    loss = f(x)
    loss.backward()
    cases.append({"name": f"{name}_nan_input", "loss": name, "options": {"lambda": 1.0},
                  "inputs": {"input": enc(x)}, "expected": {"loss": enc(loss), "grad_input": enc(x.grad)}})

print(json.dumps({"oracle": f"PyTorch {torch.__version__}, float64 from float32 inputs",
                  "gradients": "of sum(loss) for reduction none, else of the scalar loss",
                  "cases": cases}, indent=None))
