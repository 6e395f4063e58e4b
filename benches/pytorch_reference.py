"""PyTorch's own losses, forward+backward, timed the way `wgloss bench` times wgloss.

For BENCHMARKS.md: run it on the same machine (and GPU) as `wgloss bench`, at the same N.

    python benches/pytorch_reference.py --n 67108864 --threads 2 [--device cuda]
    python benches/pytorch_reference.py --ce 4096x32768 --ce 256x131072 --threads 2

Each measurement: the loss (mean) and its gradient with respect to the input, as
`loss.backward()` computes it; the median of --reps runs after one warm-up. Bytes are the same
minimum traffic wgloss reports (12 per element: two reads and one write).
"""
import argparse, json, statistics, time

import torch
import torch.nn.functional as F

LOSSES = {
    "mse": lambda x, y: F.mse_loss(x, y),
    "huber": lambda x, y: F.huber_loss(x, y),
    "bce_with_logits": lambda x, y: F.binary_cross_entropy_with_logits(x, y),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1 << 26)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--ce", action="append", default=[], metavar="ROWSxCLASSES",
                   help="cross-entropy (class-index targets, mean) at these shapes instead")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if args.ce:
        for shape in args.ce:
            rows, classes = (int(v) for v in shape.split("x"))
            g = torch.Generator().manual_seed(0)
            x0 = (torch.randn(rows, classes, generator=g) * 3).to(dev)
            t = torch.randint(0, classes, (rows,), generator=g).to(dev)
            times = []
            peak = 0
            for rep in range(args.reps + 1):
                x = x0.clone().requires_grad_(True)
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                sync()
                s = time.perf_counter()
                F.cross_entropy(x, t).backward()
                sync()
                if rep > 0:
                    times.append(time.perf_counter() - s)
                if dev.type == "cuda":
                    peak = max(peak, torch.cuda.max_memory_allocated() - base)
            ms = statistics.median(times) * 1e3
            n = rows * classes
            print(json.dumps({
                "loss": "cross_entropy", "backend": f"pytorch-{dev.type}", "torch": torch.__version__,
                "threads": torch.get_num_threads(), "rows": rows, "classes": classes,
                "bytes": 8 * n + 4 * rows, "median_ms": ms, "gbps": (8 * n + 4 * rows) / ms / 1e6,
                "peak_extra_bytes": peak if dev.type == "cuda" else None,
            }))
        return
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(args.n, generator=g).to(dev)
    y = torch.rand(args.n, generator=g).to(dev)
    for name, f in LOSSES.items():
        times = []
        for rep in range(args.reps + 1):
            x = x0.clone().requires_grad_(True)
            sync()
            t = time.perf_counter()
            f(x, y).backward()
            sync()
            if rep > 0:
                times.append(time.perf_counter() - t)
        ms = statistics.median(times) * 1e3
        print(json.dumps({
            "loss": name, "backend": f"pytorch-{dev.type}", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "n": args.n, "bytes": 12 * args.n,
            "median_ms": ms, "gbps": 12 * args.n / ms / 1e6,
        }))


if __name__ == "__main__":
    main()
