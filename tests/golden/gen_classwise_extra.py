"""Generates classwise_extra.json: what the shared class-dimension cases do not cover.

cross_entropy with z_loss (PaLM: + z_loss * lse^2 per row), softcap (Gemma 2: logits ->
softcap * tanh(x / softcap)), both, with weights, label smoothing and ignored rows; every row
ignored; logits of magnitude 1e4; one class; multiclass_hinge and multilabel_margin shapes.
Computed by PyTorch in float64 on float32-rounded inputs, written as PyTorch expressions
(for z_loss and softcap, the formulas above; PyTorch lacks them). The mean of z_loss rows
divides by the same denominator as the cross-entropy (the summed weight of rows not ignored).
Run: python gen_classwise_extra.py > classwise_extra.json
"""
import json, math
import torch
import torch.nn.functional as F

torch.manual_seed(11)


def enc(t, dtype="f32"):
    data = t.detach().reshape(-1).tolist()
    out = []
    for v in data:
        if isinstance(v, float) and math.isnan(v):
            out.append("nan")
        else:
            out.append(v)
    return {"shape": list(t.shape), "dtype": dtype, "data": out}


def ce_ext(x, t, weight, ignore_index, ls, z_loss, softcap, reduction):
    z = softcap * torch.tanh(x / softcap) if softcap > 0 else x
    base = F.cross_entropy(z, t, weight=weight, ignore_index=ignore_index, label_smoothing=ls, reduction="none")
    lse = torch.logsumexp(z, dim=1)
    mask = (t != ignore_index).double()
    per_row = base + z_loss * lse ** 2 * mask
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    w_rows = weight[t.clamp(min=0)] if weight is not None else torch.ones_like(per_row)
    return per_row.sum() / (w_rows * mask).sum()


cases = []


def add(name, loss, options, x, target, expected_fn, weight=None, tdtype="i32"):
    xi = x.float().double().requires_grad_(True)
    val = expected_fn(xi)
    (val if val.dim() == 0 else val.sum()).backward()
    inputs = {"input": enc(xi), "target": enc(target, tdtype)}
    if weight is not None:
        inputs["weight"] = enc(weight)
    g = xi.grad if xi.grad is not None else torch.zeros_like(xi)
    cases.append({"name": name, "loss": loss, "options": options, "inputs": inputs,
                  "expected": {"loss": enc(val), "grad_input": enc(g)}})


R, C = 7, 11
t = torch.randint(0, C, (R,))
t[3] = -100
w = (torch.rand(C) + 0.5).float().double()
for reduction in ["mean", "sum", "none"]:
    for (zl, sc, ls, use_w) in [(1e-3, 0.0, 0.0, False), (0.1, 0.0, 0.1, True), (0.0, 5.0, 0.0, False),
                               (0.05, 3.0, 0.2, True), (0.0, 30.0, 0.0, True)]:
        x = torch.randn(R, C, dtype=torch.float64) * 4
        opts = {"reduction": reduction, "ignore_index": -100, "label_smoothing": ls, "z_loss": zl, "softcap": sc}
        ww = w if use_w else None
        add(f"ce_ext_{reduction}_z{zl}_cap{sc}_ls{ls}_w{use_w}", "cross_entropy", opts, x, t,
            lambda xi, ww=ww, zl=zl, sc=sc, ls=ls, r=reduction: ce_ext(xi, t, ww, -100, ls, zl, sc, r), weight=ww)

# Every row ignored: NaN (PyTorch) or 0 with zero_when_all_ignored; gradients 0.
tt = torch.full((4,), -100)
x = torch.randn(4, 5, dtype=torch.float64)
add("ce_all_ignored_nan", "cross_entropy", {"reduction": "mean"}, x, tt, lambda xi: F.cross_entropy(xi, tt))
add("ce_all_ignored_zero", "cross_entropy", {"reduction": "mean", "zero_when_all_ignored": True}, x, tt,
    lambda xi: F.cross_entropy(xi, tt) * 0.0 if False else (xi * 0.0).sum())

# Logits of magnitude 1e4, index and probability targets.
x = torch.tensor([[1e4, -1e4, 0.0, 5e3], [-1e4, -1e4, -1e4, -1e4], [3e3, 2e3, 1e4, -3e3]], dtype=torch.float64)
ti = torch.tensor([1, 2, 2])
for reduction in ["mean", "none"]:
    add(f"ce_big_{reduction}", "cross_entropy", {"reduction": reduction}, x, ti,
        lambda xi, r=reduction: F.cross_entropy(xi, ti, reduction=r))
    tp = torch.softmax(torch.randn(3, 4, dtype=torch.float64), 1).float().double()
    add(f"ce_big_probs_{reduction}", "cross_entropy", {"reduction": reduction}, x, tp,
        lambda xi, r=reduction, tp=tp: F.cross_entropy(xi, tp, reduction=r), tdtype="f32")

# One class.
x = torch.randn(5, 1, dtype=torch.float64)
t1 = torch.zeros(5, dtype=torch.long)
add("ce_one_class", "cross_entropy", {"reduction": "mean"}, x, t1, lambda xi: F.cross_entropy(xi, t1))
add("nll_one_class", "nll", {"reduction": "sum"}, x, t1, lambda xi: F.nll_loss(xi, t1, reduction="sum"))

print(json.dumps({"oracle": f"PyTorch {torch.__version__}, float64 from float32 inputs",
                  "gradients": "of sum(loss) for reduction none, else of the scalar loss", "cases": cases}))
