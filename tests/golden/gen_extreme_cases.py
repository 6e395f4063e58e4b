"""Generates extreme_elementwise.json: inputs of magnitude up to 1e4 (and the f32 edges of
exp), where the mathematical loss is finite and an implementation must not overflow or
return NaN (LOSSES.md).

The reference is PyTorch in float64 on float32-rounded inputs, with each loss written in a
form that is itself stable in float64 (softplus rather than log1p(exp(.)), focal's
1 - p_t as y sigmoid(-x) + (1 - y) sigmoid(x)): the same functions as LOSSES.md, evaluated
where float64 is exact enough. Run: python gen_extreme_cases.py > extreme_elementwise.json
"""
import json, math
import torch
import torch.nn.functional as F

X = [1e4, -1e4, 100.0, -100.0, 88.8, -88.8, 30.0, -30.0, 0.0, 1e-3, 0.5, -0.5]


def focal(x, y, alpha, gamma):
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    m = y * torch.sigmoid(-x) + (1 - y) * torch.sigmoid(x)
    loss = ce * m ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def cases():
    x = torch.tensor(X, dtype=torch.float32).double()
    n = len(X)
    ones, zeros = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    soft = torch.full((n,), 0.3, dtype=torch.float64)
    signs = torch.tensor([1.0, -1.0] * (n // 2), dtype=torch.float64)
    yield "bce_with_logits", {}, ones, lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none")
    yield "bce_with_logits", {}, zeros, lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none")
    yield "bce_with_logits", {}, soft, lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none")
    yield "soft_margin", {}, signs, lambda x, y: F.softplus(-x * y)
    yield "soft_margin", {}, -signs, lambda x, y: F.softplus(-x * y)
    yield "sigmoid_focal", {"alpha": 0.25, "gamma": 2.0}, ones, lambda x, y: focal(x, y, 0.25, 2.0)
    yield "sigmoid_focal", {"alpha": 0.25, "gamma": 2.0}, zeros, lambda x, y: focal(x, y, 0.25, 2.0)
    yield "sigmoid_focal", {"alpha": 0.75, "gamma": 1.5}, ones, lambda x, y: focal(x, y, 0.75, 1.5)
    yield "log_cosh", {}, zeros, lambda x, y: (x - y).abs() + torch.log1p(torch.exp(-2 * (x - y).abs())) - math.log(2)
    yield "huber", {"delta": 1.0}, zeros, lambda x, y: F.huber_loss(x, y, reduction="none")
    yield "smooth_l1", {"beta": 0.5}, zeros, lambda x, y: F.smooth_l1_loss(x, y, reduction="none", beta=0.5)
    yield "cauchy", {"scale": 1.0}, zeros, lambda x, y: torch.log1p((x - y) ** 2)
    yield "cauchy", {"scale": 1e-16}, zeros, lambda x, y: torch.log1p(((x - y) / torch.tensor(1e-16, dtype=torch.float32).double()) ** 2)
    yield "mse", {}, zeros, lambda x, y: F.mse_loss(x, y, reduction="none")
    yield "hinge", {"margin": 1.0}, signs, lambda x, y: torch.clamp(1.0 - x * y, min=0)
    yield "squared_hinge", {"margin": 1.0}, signs, lambda x, y: torch.clamp(1.0 - x * y, min=0) ** 2


def enc(t):
    return {"shape": list(t.shape), "dtype": "f32", "data": [float(v) for v in t.detach().reshape(-1).tolist()]}


out = []
for i, (name, opts, y, f) in enumerate(cases()):
    xi = torch.tensor(X, dtype=torch.float32).double().requires_grad_(True)
    per = f(xi, y)
    per.sum().backward()
    assert torch.isfinite(per).all() and torch.isfinite(xi.grad).all(), name
    out.append({
        "name": f"{name}_extreme_{i}", "loss": name, "options": {"reduction": "none", **opts},
        "inputs": {"input": enc(xi), "target": enc(y)},
        "expected": {"loss": enc(per), "grad_input": enc(xi.grad)},
    })
print(json.dumps({"oracle": f"PyTorch {torch.__version__}, float64 from float32 inputs, stable forms",
                  "gradients": "of sum(loss) (reduction none)", "cases": out}))
