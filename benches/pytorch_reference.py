"""PyTorch's own losses, forward+backward, timed the way `wgloss bench` times wgloss.

For BENCHMARKS.md: run it on the same machine (and GPU) as `wgloss bench`, at the same N.

    python benches/pytorch_reference.py --n 67108864 --threads 2 [--device cuda]

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
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(args.n, generator=g).to(dev)
    y = torch.rand(args.n, generator=g).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
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
