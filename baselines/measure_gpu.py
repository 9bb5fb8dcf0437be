#!/usr/bin/env python3
"""Time GPT-2 (124M) kernels and per-token latencies on a real GPU; write a calibration JSON.

Standalone: needs PyTorch with a CUDA device and nothing of Tessel, which never imports it.
sim.gpu.load_calibration reads the JSON; sim.gpu.calibrate turns it into measured
efficiencies and overheads for a preset:

    python baselines/measure_gpu.py --out a100.json
    .venv/bin/python tools/gpu_calibration_table.py --measured a100.json --gpu gpu-a100-80gb

Kernels: every kernel of one GPT-2 block, the embedding, final layer norm and LM head, for a
prefill of 128 tokens and a decode step at KV 128, plus the reference GEMMs of
reference/gpu.md. Each is timed after warm-up with CUDA events, two ways:
  eager_us  R back-to-back eager calls / R: PyTorch's per-operator cost when it is the
            bottleneck (small ops), device time otherwise;
  graph_us  R calls captured in one CUDA graph and replayed, / R: device time plus the
            graph's per-kernel launch.
Operands rotate over enough copies to exceed the L2 cache, so weights stream from DRAM as
they do in a forward pass. FLOPs and bytes follow Tessel's conventions
(docs/graph-format.md) at 2 bytes per element. Per-token latencies: a whole GPT-2 forward
(decode at KV 128, eager and CUDA graph; prefill of 128, eager), random weights.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import tempfile
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("measure_gpu.py: PyTorch is not installed; install torch with CUDA support")

D, H, FF, V, POSITIONS, LAYERS = 768, 12, 3072, 50257, 1024, 12      # GPT-2 124M
DH = D // H
ELEM = 2                                                             # fp16 / bf16 bytes
REFERENCE_GEMMS = ((64, 12288, 12288), (128, 12288, 12288), (512, 12288, 12288),
                   (8192, 12288, 12288), (8192, 8192, 8192), (16384, 16384, 16384),
                   (8192, 128, 128))                                 # reference/gpu.md
BUDGET_S = 0.02            # timed work per measurement
DEV = "cuda"
DTYPE = torch.float16      # --dtype sets it


def rand(*shape: int, dtype=None) -> "torch.Tensor":
    return torch.randn(*shape, device=DEV, dtype=dtype or DTYPE) * 0.02


def linear(name: str, m: int, k: int, n: int):
    def make():
        x, w, b = rand(m, k), rand(k, n), rand(n)
        return lambda: torch.addmm(b, x, w)
    kind = "gemv" if m <= 16 else "gemm"
    return (name, kind, m, n, k, 1, 2 * m * n * k + m * n, ELEM * (m * k + k * n + n + m * n), make)


def block_kernels(prefix: str, s: int, kv: int) -> list:
    """(name, kind, m, n, k, batch, flops, bytes, make) for one pass of S tokens at KV kv."""
    t = kv + s
    scale = 1 / math.sqrt(DH)

    def vector(name, kind, flops, n_bytes, make):
        return (f"{prefix}.{name}", kind, 1, 1, 1, 1, flops, n_bytes, make)

    def embedding():
        ids, table = torch.randint(0, V, (s,), device=DEV), rand(V, D)
        return lambda: F.embedding(ids, table)

    def add(n):
        def make():
            a, b = rand(s, n), rand(s, n)
            return lambda: a + b
        return make

    def layernorm():
        x, g, b = rand(s, D), rand(D), rand(D)
        return lambda: F.layer_norm(x, (D,), g, b)

    def kv_append():
        cache, new = rand(H, t, DH), rand(H, s, DH)
        return lambda: cache[:, kv:t].copy_(new)

    def scores():
        q, k, zero = rand(H, s, DH), rand(H, DH, t), torch.zeros(1, 1, 1, device=DEV, dtype=DTYPE)
        return lambda: torch.baddbmm(zero, q, k, beta=0, alpha=scale)

    def softmax():
        x = rand(H, s, t)
        return lambda: torch.softmax(x, -1)

    def context():
        p, v = rand(H, s, t), rand(H, t, DH)
        return lambda: torch.bmm(p, v)

    def gelu():
        x = rand(s, FF)
        return lambda: F.gelu(x, approximate="tanh")

    def lm_head():
        x, wte = rand(s, D), rand(V, D)
        return lambda: torch.matmul(x, wte.t())

    ln = (7 * s * D, ELEM * (2 * s * D + 2 * D), layernorm)
    rows = [vector("embed.tokens", "embedding", 0, 2 * s + 2 * ELEM * s * D, embedding),
            vector("embed", "elementwise", s * D, 3 * ELEM * s * D, add(D)),
            vector("h.ln_1", "layernorm", *ln),
            linear(f"{prefix}.h.attn.c_attn", s, D, 3 * D)]
    if kv:
        rows += [vector(f"h.attn.{x}_all", "copy", 0, 2 * ELEM * H * s * DH, kv_append) for x in "kv"]
    rows += [(f"{prefix}.h.attn.scores", "attention-matmul", s, t, DH, H, 2 * H * s * t * DH,
              ELEM * H * (s * DH + t * DH + s * t), scores),
             vector("h.attn.probs", "softmax", 5 * H * s * t, 2 * ELEM * H * s * t, softmax),
             (f"{prefix}.h.attn.context", "attention-matmul", s, DH, t, H, 2 * H * s * t * DH,
              ELEM * H * (s * t + t * DH + s * DH), context),
             linear(f"{prefix}.h.attn.c_proj", s, D, D),
             vector("h.attn.residual", "elementwise", s * D, 3 * ELEM * s * D, add(D)),
             vector("h.ln_2", "layernorm", *ln),
             linear(f"{prefix}.h.mlp.c_fc", s, D, FF),
             vector("h.mlp.act", "elementwise", 8 * s * FF, 2 * ELEM * s * FF, gelu),
             linear(f"{prefix}.h.mlp.c_proj", s, FF, D),
             vector("h.mlp.residual", "elementwise", s * D, 3 * ELEM * s * D, add(D)),
             vector("ln_f", "layernorm", *ln),
             (f"{prefix}.lm_head", "gemv" if s <= 16 else "gemm", s, V, D, 1, 2 * s * V * D,
              ELEM * (s * D + V * D + s * V), lm_head)]
    return rows


def reference_kernels() -> list:
    def gemm(m, n, k):
        def make():
            a, b = rand(m, k), rand(k, n)
            return lambda: torch.matmul(a, b)
        return make
    return [(f"ref.gemm-{m}x{n}x{k}", "gemm", m, n, k, 1, 2 * m * n * k,
             ELEM * (m * k + k * n + m * n), gemm(m, n, k)) for m, n, k in REFERENCE_GEMMS]


def events_s(fn, reps: int) -> float:
    """Seconds per call of `fn` over `reps` back-to-back calls, by CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3 / reps


def capture(fn) -> "torch.cuda.CUDAGraph":
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def time_kernel(n_bytes: int, make, l2_bytes: int, quick: bool) -> tuple[float, float]:
    """(eager_us, graph_us) of one kernel, operands rotated over copies larger than L2."""
    copies = max(1, min(32, math.ceil(3 * l2_bytes / max(n_bytes, 1))))
    calls = [make() for _ in range(copies)]
    rotate = iter(range(10**12))

    def one():
        calls[next(rotate) % copies]()

    for _ in range(3):
        one()
    torch.cuda.synchronize()
    first = events_s(one, 3)
    reps = max(3, min(20 if quick else 200, round(BUDGET_S / max(first, 1e-7))))
    reps = max(copies, reps - reps % copies) if reps >= copies else reps
    eager = events_s(one, reps)

    def all_copies():
        for _ in range(reps):
            one()
    graph = capture(all_copies)
    graph.replay()
    replays = 3 if quick else 10
    per_replay = events_s(graph.replay, replays)
    del graph, calls
    return eager * 1e6, per_replay / reps * 1e6


class GPT2:
    """GPT-2 124M forward in plain PyTorch with a static KV cache (CUDA-graph capturable)."""

    def __init__(self, max_len: int) -> None:
        ones, zeros = (lambda n: torch.ones(n, device=DEV, dtype=DTYPE)), \
                      (lambda n: torch.zeros(n, device=DEV, dtype=DTYPE))
        self.wte, self.wpe = rand(V, D), rand(POSITIONS, D)
        self.blocks = [dict(ln1=(ones(D), zeros(D)), qkv=(rand(D, 3 * D), zeros(3 * D)),
                            proj=(rand(D, D), zeros(D)), ln2=(ones(D), zeros(D)),
                            fc=(rand(D, FF), zeros(FF)), fc_proj=(rand(FF, D), zeros(D)))
                       for _ in range(LAYERS)]
        self.ln_f = (ones(D), zeros(D))
        self.k = torch.zeros(LAYERS, H, max_len, DH, device=DEV, dtype=DTYPE)
        self.v = torch.zeros_like(self.k)
        self.zero = torch.zeros(1, 1, 1, device=DEV, dtype=DTYPE)
        self.mask = torch.ones(max_len, max_len, device=DEV, dtype=torch.bool).triu(1)

    def forward(self, ids: "torch.Tensor", start: int) -> "torch.Tensor":
        s = ids.shape[0]
        t = start + s
        x = F.embedding(ids, self.wte) + self.wpe[start:t]
        for i, b in enumerate(self.blocks):
            h = F.layer_norm(x, (D,), *b["ln1"])
            q, k, v = torch.addmm(b["qkv"][1], h, b["qkv"][0]).view(s, 3, H, DH).unbind(1)
            self.k[i, :, start:t] = k.transpose(0, 1)
            self.v[i, :, start:t] = v.transpose(0, 1)
            scores = torch.baddbmm(self.zero, q.transpose(0, 1), self.k[i, :, :t].transpose(1, 2),
                                   beta=0, alpha=1 / math.sqrt(DH))
            if s > 1:
                scores = scores.masked_fill(self.mask[start:t, :t], float("-inf"))
            ctx = torch.bmm(torch.softmax(scores, -1), self.v[i, :, :t])
            x = x + torch.addmm(b["proj"][1], ctx.transpose(0, 1).reshape(s, D), b["proj"][0])
            h = F.layer_norm(x, (D,), *b["ln2"])
            h = F.gelu(torch.addmm(b["fc"][1], h, b["fc"][0]), approximate="tanh")
            x = x + torch.addmm(b["fc_proj"][1], h, b["fc_proj"][0])
        return F.layer_norm(x, (D,), *self.ln_f) @ self.wte.t()


def token_latencies(quick: bool) -> dict[str, float]:
    model = GPT2(max_len=256)
    tokens = torch.randint(0, V, (128,), device=DEV)
    one = tokens[:1].clone()
    reps = 10 if quick else 50
    for _ in range(3):
        model.forward(tokens, 0)
        model.forward(one, 128)
    torch.cuda.synchronize()
    prefill = events_s(lambda: model.forward(tokens, 0), reps)
    eager = events_s(lambda: model.forward(one, 128), reps)
    graph = capture(lambda: model.forward(one, 128))
    graph.replay()
    replayed = events_s(graph.replay, reps)
    return {"gpt2-prefill128-eager": prefill * 1e3, "gpt2-decode-kv128-eager": eager * 1e3,
            "gpt2-decode-kv128-graph": replayed * 1e3}


def write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def main() -> int:
    global DTYPE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON to write (default: calibration-<gpu>.json)")
    parser.add_argument("--dtype", choices=("fp16", "bf16"), default="fp16",
                        help="element type (fp16 runs everywhere; the T4 has no bf16)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("measure_gpu.py: no CUDA device found; run it on a machine with an NVIDIA GPU")
    DTYPE = torch.float16 if args.dtype == "fp16" else torch.bfloat16
    props = torch.cuda.get_device_properties(0)
    l2_bytes = getattr(props, "L2_cache_size", 50 * 2**20)
    kernels = []
    with torch.inference_mode():
        for name, kind, m, n, k, batch, flops, n_bytes, make in (
                block_kernels("prefill128", 128, 0) + block_kernels("decode-kv128", 1, 128)
                + reference_kernels()):
            eager_us, graph_us = time_kernel(n_bytes, make, l2_bytes, args.quick)
            kernels.append(dict(name=name, kind=kind, flops=flops, bytes=n_bytes, m=m, n=n, k=k,
                                batch=batch, eager_us=eager_us, graph_us=graph_us))
            print(f"{name:34s} {kind:17s} eager {eager_us:9.2f} us  graph {graph_us:9.2f} us",
                  flush=True)
        tokens = token_latencies(args.quick)
    for key, ms in tokens.items():
        print(f"{key:34s} {ms:.3f} ms", flush=True)
    out = args.out or Path(f"calibration-{props.name.replace(' ', '-')}.json")
    write_atomic(out, {"schema": 1, "date": datetime.date.today().isoformat(),
                       "gpu_name": props.name, "sms": props.multi_processor_count,
                       "l2_bytes": l2_bytes, "torch_version": torch.__version__,
                       "cuda_version": torch.version.cuda or "", "dtype": args.dtype,
                       "kernels": kernels, "tokens_ms": tokens})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
