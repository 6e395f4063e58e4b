#!/usr/bin/env python3
"""wgloss against Burn 0.22's own losses on the same wgpu adapter, side by side.

Runs `wgloss bench --backend gpu --json` and this crate's `burn_peer --json` for the same
loss and shape, alternately (wgloss, Burn, wgloss, Burn, ...) so that both see the same drifts
of the machine, and prints one markdown table of medians over the rounds:

    python3 benches/burn_peer/compare.py                 # from the repository root
    python3 benches/burn_peer/compare.py --rounds 3 --out results.json

What is timed: wgloss, the recorded forward+backward of the loss on resident operands (GPU
timestamps where the adapter has them, and the host's submit-to-completion wall time); Burn,
forward + `backward()` + the input's gradient to `device.sync()` (wall time, host to host).
Both at mean reduction, f32. The wall column is the like-for-like one.

Needs: cargo, and the two binaries built (this script builds them, once, unless --no-build).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEER = os.path.join(ROOT, "benches", "burn_peer")

# (loss, wgloss size flags, burn_peer size flags, repetitions)
CASES = [
    ("mse", ["--n", "4194304"], ["--n", "4194304"], 15),
    ("cross_entropy", ["--shape", "1024x4096"], ["--shape", "1024x4096"], 15),
    ("cross_entropy", ["--shape", "1024x32768"], ["--shape", "1024x32768"], 5),
    ("cross_entropy", ["--shape", "4096x32768"], ["--shape", "4096x32768"], 5),
    ("triplet_margin", ["--shape", "16384x256"], ["--shape", "16384x256"], 15),
    ("triplet_margin", ["--shape", "65536x256"], ["--shape", "65536x256"], 7),
    ("triplet_margin", ["--shape", "4096x1024"], ["--shape", "4096x1024"], 7),
    ("triplet_margin", ["--shape", "65536x64"], ["--shape", "65536x64"], 7),
    ("ctc", ["--shape", "500x32x100x100"], ["--shape", "500x32x100x100"], 5),
    ("cosine_embedding", ["--shape", "16384x256"], ["--shape", "16384x256"], 15),
    ("cosine_embedding", ["--shape", "65536x256"], ["--shape", "65536x256"], 7),
    # CLIP's symmetric loss: wgloss's tiles against Burn's matmul + two cross-entropies.
    ("info_nce", ["--shape", "1024x256"], ["--shape", "1024x256"], 5),
    ("info_nce", ["--shape", "4096x256"], ["--shape", "4096x256"], 1),
]


def run_json(cmd, cwd, may_fail=False):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        # Burn reports an allocation it could not make (its largest buffer on lavapipe is
        # 128 MiB) when the result is read back: say so rather than time nothing.
        if may_fail:
            cause = [l for l in done.stderr.replace("\\n", "\n").splitlines() if l.strip()]
            why = [l.strip() for l in cause if "can't" in l] or cause[-1:] or ["failed"]
            return {"error": why[0].strip('"')}
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    out = done.stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if len(rows) != 1:
        sys.exit(f"expected one JSON row from {' '.join(cmd)}, got {len(rows)}:\n{out}")
    return rows[0]


def target_dir(cwd):
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(meta)["target_directory"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternations per case (default 3)")
    ap.add_argument("--out", help="also write every run's JSON here")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--loss", action="append", default=[], help="only these losses")
    args = ap.parse_args()

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--features", "cli"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release"], cwd=PEER, check=True)
    wgloss = os.path.join(target_dir(ROOT), "release", "wgloss")
    burn = os.path.join(target_dir(PEER), "release", "burn_peer")

    runs = []
    table = []
    for loss, wflags, bflags, reps in CASES:
        if args.loss and loss not in args.loss:
            continue
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(run_json(
                [wgloss, "bench", "--backend", "gpu", "--loss", loss, *wflags,
                 "--reps", str(reps), "--json"], ROOT))
            theirs.append(run_json(
                [burn, "--loss", loss, *bflags, "--reps", str(reps), "--json"], ROOT,
                may_fail=True))
        runs.append({"loss": loss, "wgloss": ours, "burn": theirs})
        med = lambda rows, key: statistics.median(r[key] for r in rows)
        shape = "x".join(str(d) for d in ours[0]["shape"])
        failed = [r["error"] for r in theirs if "error" in r]
        burn_ms = f"fails: {failed[0]}" if failed else med(theirs, "median_ms")
        table.append((
            loss, shape, med(ours, "median_ms"), med(ours, "wall_median_ms"),
            med(ours, "ratio_to_copy"), burn_ms, ours[0]["adapter"],
        ))

    print(f"adapter: {table[0][6]}; medians of {args.rounds} alternating rounds\n")
    print("| loss | shape | wgloss (GPU time) | wgloss (wall) | of copy | Burn 0.22 (wall) | wgloss is |")
    print("|---|---|---|---|---|---|---|")
    for loss, shape, gpu, wall, ratio, burn_ms, _ in table:
        ours = f"| `{loss}` | {shape} | {gpu:.2f} ms | {wall:.2f} ms | {100 * ratio:.0f}% "
        if isinstance(burn_ms, str):
            print(ours + f"| {burn_ms} | runs |")
        else:
            verdict = (f"**{burn_ms / wall:.1f}x** faster" if burn_ms >= wall
                       else f"**{wall / burn_ms:.1f}x** slower")
            print(ours + f"| {burn_ms:.2f} ms | {verdict} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
