"""One markdown table from `wgloss bench --json` and benches/pytorch_reference.py rows.

    python3 benches/device/table.py wgloss.jsonl pytorch.jsonl > table.md

Rows are matched by loss, dtype and shape; wgloss's time is its GPU time (timestamps where the
adapter has them), PyTorch's the wall time of forward+backward between synchronisations.
"""
import json
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def dtype_name(d):
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(d, d)


def main():
    ours, theirs = rows(sys.argv[1]), rows(sys.argv[2])
    torch_by = {(r["loss"], dtype_name(r["dtype"]), tuple(r["shape"])): r for r in theirs}
    adapter = ours[0]["adapter"] if ours else "?"
    device = theirs[0].get("device", "?") if theirs else "?"
    print(f"wgloss on {adapter}; PyTorch {theirs[0]['torch'] if theirs else '?'} on {device}\n")
    print("| loss | dtype | shape | wgloss | GB/s | of copy | PyTorch | PyTorch extra memory "
          "| PyTorch time / wgloss time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in ours:
        key = (r["loss"], r["dtype"], tuple(r["shape"]))
        shape = "x".join(str(d) for d in r["shape"])
        t = torch_by.get(key)
        if t and "error" in t:
            torch_ms, t = f"no kernel ({t['error'][:60]})", None
        else:
            torch_ms = f"{t['median_ms']:.3f} ms" if t else "-"
        extra = (f"{t['peak_extra_bytes'] / 2**20:.0f} MiB"
                 if t and t.get("peak_extra_bytes") is not None else "-")
        ratio = f"{t['median_ms'] / r['median_ms']:.2f}" if t else "-"
        print(f"| `{r['loss']}` | {r['dtype']} | {shape} | {r['median_ms']:.3f} ms "
              f"| {r['gbps']:.0f} | {100 * r['ratio_to_copy']:.0f}% | {torch_ms} | {extra} "
              f"| {ratio} |")


if __name__ == "__main__":
    main()
