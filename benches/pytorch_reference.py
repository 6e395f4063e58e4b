"""PyTorch's own losses, forward+backward, timed the way `wgloss bench` times wgloss.

For BENCHMARKS.md and benches/device/run.sh: run it on the same machine (and GPU) as
`wgloss bench`, at the same sizes, and compare the medians row by row (loss, shape, dtype).

    python benches/pytorch_reference.py --n 67108864 --threads 2            # 3 losses, CPU
    python benches/pytorch_reference.py --all --n 4194304 --shape 1024x8192 --device cuda
    python benches/pytorch_reference.py --ce 4096x32768 --ce 256x131072 --dtype bfloat16
    python benches/pytorch_reference.py --loss triplet_margin --loss cosine_embedding \
        --shape 65536x256 --threads 2                      # pair losses: ROWSxDIM

Each measurement: the loss (mean) and its gradient with respect to the input, as
`loss.backward()` computes it (the input a fresh leaf each time, the other operands resident);
the median of --reps runs after one warm-up, with `torch.cuda.synchronize()` around each on a
GPU. The losses PyTorch lacks (msle, log_cosh, cauchy, sigmoid_focal, hinge, squared_hinge,
the penalties, multiclass_svm, multiclass_hinge) are the formulas of LOSSES.md written as a
PyTorch user would write them, from tensor operations: the composed baseline. `bytes` is the
minimum traffic wgloss reports for the same call (operands read once, gradient written once).
On CUDA, `peak_extra_bytes` is the memory the call allocated beyond its operands.
"""
import argparse
import json
import math
import statistics
import time
import warnings

import torch
import torch.nn.functional as F


def log_cosh(d):
    a = d.abs()
    return a + F.softplus(-2 * a) - math.log(2.0)


def sigmoid_focal(x, y, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    a_t = alpha * y + (1 - alpha) * (1 - y)
    return (a_t * (1 - p_t) ** gamma * ce).mean()


# Elementwise: name -> (loss of (x, y, side), how x is drawn, how y is drawn, side operand).
# Draws: "normal", "unit" (uniform [0, 1)), "pos" (uniform [0.1, 3)), "sign" (+-1).
ELEMENTWISE = {
    "mse": (lambda x, y, s: F.mse_loss(x, y), "normal", "normal", None),
    "l1": (lambda x, y, s: F.l1_loss(x, y), "normal", "normal", None),
    "huber": (lambda x, y, s: F.huber_loss(x, y), "normal", "normal", None),
    "smooth_l1": (lambda x, y, s: F.smooth_l1_loss(x, y), "normal", "normal", None),
    "msle": (lambda x, y, s: F.mse_loss(torch.log1p(x.clamp_min(1e-7)),
                                        torch.log1p(y.clamp_min(1e-7))), "pos", "pos", None),
    "log_cosh": (lambda x, y, s: log_cosh(x - y).mean(), "normal", "normal", None),
    "cauchy": (lambda x, y, s: torch.log1p((x - y) ** 2).mean(), "normal", "normal", None),
    "poisson_nll": (lambda x, y, s: F.poisson_nll_loss(x, y), "normal", "pos", None),
    "gaussian_nll": (lambda x, y, s: F.gaussian_nll_loss(x, y, s), "normal", "normal", "pos"),
    "bce": (lambda x, y, s: F.binary_cross_entropy(x, y), "unit", "unit", None),
    "bce_with_logits": (lambda x, y, s: F.binary_cross_entropy_with_logits(x, y),
                        "normal", "unit", None),
    "sigmoid_focal": (lambda x, y, s: sigmoid_focal(x, y), "normal", "unit", None),
    "hinge": (lambda x, y, s: (1 - x * y).clamp_min(0).mean(), "normal", "sign", None),
    "squared_hinge": (lambda x, y, s: ((1 - x * y).clamp_min(0) ** 2).mean(),
                      "normal", "sign", None),
    "soft_margin": (lambda x, y, s: F.soft_margin_loss(x, y), "normal", "sign", None),
    "l1_penalty": (lambda x, y, s: x.abs().sum(), "normal", None, None),
    "l2_penalty": (lambda x, y, s: 0.5 * (x ** 2).sum(), "normal", None, None),
}


def multiclass_svm(x, t, margin=1.0):
    x_y = x.gather(1, t[:, None])
    h = (x - x_y + margin).clamp_min(0)
    return (h.sum(1) - margin).mean()  # minus the j = y term, which is exactly margin


def multiclass_hinge(x, t, margin=1.0):
    others = x.scatter(1, t[:, None], float("-inf"))
    return (margin + others.amax(1) - x.gather(1, t[:, None])[:, 0]).clamp_min(0).mean()


# Class dimension: name -> (loss of (logits, target), target kind).
CLASS = {
    "cross_entropy": (lambda x, t: F.cross_entropy(x, t), "index"),
    "nll": (lambda x, t: F.nll_loss(x, t), "index"),
    # wgloss bench's kl_div is reduction mean, as PyTorch's default (which warns about it).
    "kl_div": (lambda x, t: F.kl_div(x, t, reduction="mean"), "probs"),
    "multi_margin": (lambda x, t: F.multi_margin_loss(x, t), "index"),
    "multiclass_svm": (multiclass_svm, "index"),
    "multiclass_hinge": (multiclass_hinge, "index"),
    "multilabel_soft_margin": (lambda x, t: F.multilabel_soft_margin_loss(x, t), "multi_hot"),
    "multilabel_margin": (lambda x, t: F.multilabel_margin_loss(x, t), "lists"),
}

DTYPES = {"float32": torch.float32, "f32": torch.float32,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "f16": torch.float16}


def draw(kind, shape, g, dtype, dev):
    if kind == "normal":
        v = torch.randn(shape, generator=g)
    elif kind == "unit":
        v = torch.rand(shape, generator=g).clamp(1e-3, 1 - 1e-3)
    elif kind == "pos":
        v = torch.rand(shape, generator=g) * 2.9 + 0.1
    elif kind == "sign":
        v = torch.randint(0, 2, shape, generator=g).float() * 2 - 1
    else:
        raise ValueError(kind)
    return v.to(dtype).to(dev)


def class_target(kind, rows, classes, g, dtype, dev):
    if kind == "index":
        return torch.randint(0, classes, (rows,), generator=g).to(dev)
    if kind == "probs":
        return torch.softmax(torch.randn(rows, classes, generator=g), 1).to(dtype).to(dev)
    if kind == "multi_hot":
        return (torch.rand(rows, classes, generator=g) < 0.1).to(dtype).to(dev)
    # Up to four leading class indices per row, then -1 (as wgloss's samples).
    t = torch.full((rows, classes), -1, dtype=torch.long)
    t[:, :4] = torch.randint(0, classes, (rows, 4), generator=g)
    return t.to(dev)


def contrastive(x1, x2, y, margin=1.0):
    d = F.pairwise_distance(x1, x2)
    return (0.5 * (y * d ** 2 + (1 - y) * (margin - d).clamp_min(0) ** 2)).mean()


# Pair and GAN losses: name -> (loss of the operands, differentiable operands, operands, the
# target's draw or None). Every differentiable operand is a fresh leaf each run.
PAIR = {
    "triplet_margin": (lambda a, p, n: F.triplet_margin_loss(a, p, n), 3, 3, None),
    "contrastive": (lambda a, b, t: contrastive(a, b, t), 2, 2, "label"),
    "cosine_embedding": (lambda a, b, t: F.cosine_embedding_loss(a, b, t), 2, 2, "sign"),
    "cosine_distance": (lambda a, b: (1 - F.cosine_similarity(a, b)).mean(), 1, 2, None),
    "margin_ranking": (lambda a, b, t: F.margin_ranking_loss(a, b, t), 2, 2, "sign"),
    "hinge_embedding": (lambda a, t: F.hinge_embedding_loss(a, t), 1, 1, "sign"),
}
GAN = {
    "gan_discriminator": (lambda r, f: 0.5 * (F.binary_cross_entropy_with_logits(
        r, torch.ones_like(r)) + F.softplus(f).mean()), 2),
    "gan_generator": (lambda f: F.softplus(-f).mean(), 1),
}


# Contrastive losses as PyTorch computes them, materialising the n x m logits (CLIP's
# open_clip ClipLoss, SigLIP's sigmoid loss, SimCLR's NT-Xent): name -> (loss of x1, x2 (or
# the 2n views), scale). The scale is a learned leaf, as in training.
def clip_loss(x1, x2, scale):
    logits = x1 @ x2.T * scale
    labels = torch.arange(x1.shape[0], device=x1.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def siglip_loss(x1, x2, scale, bias=-10.0):
    logits = x1 @ x2.T * scale + bias
    z = 2 * torch.eye(x1.shape[0], device=x1.device, dtype=x1.dtype) - 1
    return -F.logsigmoid(z * logits).sum() / x1.shape[0]


def nt_xent_loss(x, temperature=0.5):
    x = F.normalize(x, dim=1)
    n2 = x.shape[0]
    sim = (x @ x.T) / temperature
    sim = sim.masked_fill(torch.eye(n2, dtype=torch.bool, device=x.device), float("-inf"))
    positives = (torch.arange(n2, device=x.device) + n2 // 2) % n2
    return F.cross_entropy(sim, positives)


CONTRASTIVE = {
    "info_nce": lambda x1, x2, s: clip_loss(x1, x2, s),
    "siglip": lambda x1, x2, s: siglip_loss(x1, x2, s),
    "nt_xent": lambda x, s: nt_xent_loss(x),
}


def time_many(f, xs0, rest, reps, dev):
    """f(*leaves, *rest).backward(), every one of xs0 a fresh leaf each run."""
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times, peak = [], 0
    for rep in range(reps + 1):
        xs = [x.clone().requires_grad_(True) for x in xs0]
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        sync()
        s = time.perf_counter()
        f(*xs, *rest).backward()
        sync()
        if rep > 0:
            times.append(time.perf_counter() - s)
        if dev.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated() - base)
        del xs
    return statistics.median(times) * 1e3, (peak if dev.type == "cuda" else None)


def measure(f, x0, reps, dev):
    """(median ms, peak extra bytes, None), or (None, None, why) where PyTorch has no kernel
    for the call (e.g. multi_margin in bfloat16 on the CPU)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ms, peak = time_call(f, x0, reps, dev)
        return ms, peak, None
    except (NotImplementedError, RuntimeError) as e:
        return None, None, str(e).splitlines()[0]


def time_call(f, x0, reps, dev):
    return time_many(f, [x0], [], reps, dev)


def result(ms, nbytes, peak, error):
    if error:
        return {"error": error}
    return {"median_ms": ms, "gbps": nbytes / ms / 1e6, "peak_extra_bytes": peak}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1 << 26, help="elements (elementwise losses)")
    p.add_argument("--shape", action="append", default=[], metavar="ROWSxCLASSES",
                   help="class-dimension shapes (with --all or --loss of a class loss; "
                        "NxMxD for the contrastive losses, TxNxCxS for ctc)")
    p.add_argument("--ce", action="append", default=[], metavar="ROWSxCLASSES",
                   help="cross-entropy alone at these shapes")
    p.add_argument("--all", action="store_true", help="every loss of the catalogue")
    p.add_argument("--loss", action="append", default=[], help="these losses (repeatable)")
    p.add_argument("--dtype", action="append", default=[], choices=sorted(DTYPES),
                   help="operand type (repeatable; default float32)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dtypes = [DTYPES[d] for d in (args.dtype or ["float32"])]

    if args.ce:
        losses, shapes = ["cross_entropy"], args.ce
    else:
        losses = args.loss or (list(ELEMENTWISE) + list(CLASS) + list(PAIR) + list(GAN)
                               + list(CONTRASTIVE) + ["ctc"]
                               if args.all
                               else ["mse", "huber", "bce_with_logits"])
        shapes = args.shape or ["1024x8192"]
    for dtype in dtypes:
        dname = str(dtype).replace("torch.", "")
        common = {"backend": f"pytorch-{dev.type}", "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "dtype": dname,
                  "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
        size = torch.finfo(dtype).bits // 8
        for name in losses:
            g = torch.Generator().manual_seed(0)
            if name in ELEMENTWISE:
                f, xk, yk, sk = ELEMENTWISE[name]
                n = args.n
                x0 = draw(xk, (n,), g, dtype, dev)
                y = draw(yk, (n,), g, dtype, dev) if yk else None
                side = draw(sk, (n,), g, dtype, dev) if sk else None
                ms, peak, error = measure(lambda x: f(x, y, side), x0, args.reps, dev)
                reads = 1 + (yk is not None) + (sk is not None)
                nbytes = (reads + 1) * size * n
                print(json.dumps({"loss": name, "n": n, "shape": [n], "bytes": nbytes,
                                  **result(ms, nbytes, peak, error), **common}))
                continue
            if name in PAIR:
                f, grads, count, tk = PAIR[name]
                for shape in shapes:
                    rows, dim = (int(v) for v in shape.split("x"))
                    per_element = name in ("margin_ranking", "hinge_embedding")
                    full = (rows * dim,) if per_element else (rows, dim)
                    ops = [draw("normal", full, g, dtype, dev) for _ in range(count)]
                    rest = ops[grads:]
                    if tk == "label":
                        rest.append(torch.randint(0, 2, full[:1], generator=g).to(dtype).to(dev))
                    elif tk:
                        rest.append(draw("sign", full[:1], g, dtype, dev))
                    ms, peak = time_many(f, ops[:grads], rest, args.reps, dev)
                    n = rows * dim
                    nbytes = (count + grads) * size * n + (size * full[0] if tk else 0)
                    print(json.dumps({"loss": name, "rows": rows, "dim": dim,
                                      "shape": [rows, dim], "bytes": nbytes,
                                      **result(ms, nbytes, peak, None), **common}))
                continue
            if name in CONTRASTIVE:
                f = CONTRASTIVE[name]
                for shape in shapes:
                    dims = [int(v) for v in shape.split("x")]
                    n, m, d = dims if len(dims) == 3 else (dims[0], dims[0], dims[1])
                    sd = d ** -0.5
                    if name == "nt_xent":
                        ops = [draw("normal", (n, d), g, dtype, dev) * sd]
                    else:
                        ops = [draw("normal", (n, d), g, dtype, dev) * sd,
                               draw("normal", (m, d), g, dtype, dev) * sd]
                    ops.append(torch.tensor(1 / 0.07, dtype=dtype, device=dev))
                    ms, peak = time_many(f, ops, [], args.reps, dev)
                    nbytes = 2 * size * (n + (0 if name == "nt_xent" else m)) * d
                    print(json.dumps({"loss": name, "shape": [n, m, d], "bytes": nbytes,
                                      "materialised_logits_bytes": size * n * m,
                                      **result(ms, nbytes, peak, None), **common}))
                continue
            if name == "ctc":
                # F.ctc_loss on a log-softmax of normal logits (scale 2, the blank a little
                # likelier), every sequence at full length: T frames, S labels.
                # TxNxCxS shapes only (the others are the other families'); default the
                # issue's 500x32x100x100.
                ctc_shapes = [v for v in shapes if v.count("x") == 3] or ["500x32x100x100"]
                for shape in ctc_shapes:
                    t, n, c, s = (int(v) for v in shape.split("x"))
                    logits = torch.randn(t, n, c, generator=g) * 2
                    logits[..., 0] += 2
                    x0 = F.log_softmax(logits, -1).to(dtype).to(dev)
                    targets = torch.randint(1, c, (n, s), generator=g).to(dev)
                    il = torch.full((n,), t, dtype=torch.long)
                    tl = torch.full((n,), s, dtype=torch.long)
                    f = lambda x: F.ctc_loss(x, targets, il, tl, blank=0, reduction="mean")
                    ms, peak, error = measure(f, x0, args.reps, dev)
                    nbytes = 2 * size * t * n * c + 4 * n * s
                    print(json.dumps({"loss": name, "shape": [t, n, c, s], "bytes": nbytes,
                                      **result(ms, nbytes, peak, error), **common}))
                continue
            if name in GAN:
                f, count = GAN[name]
                n = args.n
                ops = [draw("normal", (n,), g, dtype, dev) for _ in range(count)]
                ms, peak = time_many(f, ops, [], args.reps, dev)
                nbytes = 2 * count * size * n
                print(json.dumps({"loss": name, "n": n, "shape": [n], "bytes": nbytes,
                                  **result(ms, nbytes, peak, None), **common}))
                continue
            if name not in CLASS:
                raise SystemExit(f"unknown loss {name!r}")
            f, kind = CLASS[name]
            for shape in shapes:
                rows, classes = (int(v) for v in shape.split("x"))
                x0 = (torch.randn(rows, classes, generator=g) * 3).to(dtype).to(dev)
                t = class_target(kind, rows, classes, g, dtype, dev)
                ms, peak, error = measure(lambda x: f(x, t), x0, args.reps, dev)
                n = rows * classes
                target_bytes = {"index": 4 * rows, "lists": 4 * n}.get(kind, size * n)
                nbytes = 2 * size * n + target_bytes
                print(json.dumps({"loss": name, "rows": rows, "classes": classes,
                                  "shape": [rows, classes], "bytes": nbytes,
                                  **result(ms, nbytes, peak, error), **common}))


if __name__ == "__main__":
    main()
