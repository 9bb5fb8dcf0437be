"""Serving capacity under a P99 time-between-tokens SLO, as Sarathi-Serve measures it: the
highest sustainable request rate whose run keeps the P99 TBT within the SLO (sustainable: the
P90 time to first token under 2 s, Vidur's search SLO, reference/serving.md; without it a
scheduler that never stalls decodes meets any TBT SLO while its queue grows without bound),
found by bisection, for vLLM-style continuous batching (whole prefills) and Sarathi-Serve's
chunked prefill on the GPU baseline (tessel/serve). Prints the capacities and their ratio
(docs/validation.md).

    .venv/bin/python tools/serve_capacity.py --model mistral-7b --gpu gpu-a100-80gb --slo 0.1
"""
from __future__ import annotations

import argparse

from arch import load_arch
from compiler.frontend import load_model
from tessel.progress import QUIET
from tessel.serve import KVConfig, Memo, Scheduler, serve, summarize, synthetic
from tessel.serve.simulated import GpuCosts, device_memory_bytes, kv_capacity_tokens


def meets(model, memo, kv, scheduler, rate, args) -> bool:
    """Whether a run at `rate` keeps the P99 TBT within the SLO and the P90 TTFT under the
    sustainability bound."""
    requests = synthetic(args.requests, rate, args.prompt, args.output, seed=args.seed)
    result = serve(requests, memo, scheduler=scheduler, kv=kv, progress=QUIET,
                   context_tokens=model.config.n_positions)
    summary = summarize(result)
    tbt, ttft = summary["tbt_s"], summary["ttft_s"]
    return (tbt is not None and tbt["p99"] <= args.slo
            and ttft is not None and ttft["p90"] <= args.ttft)


def capacity(model, memo, kv, scheduler, args) -> float:
    """The highest rate (requests/s, to 2 %) that `meets` the SLOs."""
    low, high = 0.0, args.max_rate
    while high - low > 0.02 * max(high, 1e-9):
        mid = (low + high) / 2
        if meets(model, memo, kv, scheduler, mid, args):
            low = mid
        else:
            high = mid
    return low


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mistral-7b")
    p.add_argument("--gpu", default="gpu-a100-80gb")
    p.add_argument("--slo", type=float, default=0.1, help="P99 TBT SLO in seconds (strict: 0.1)")
    p.add_argument("--budget", type=int, default=512, help="Sarathi-Serve's token budget")
    p.add_argument("--ttft", type=float, default=2.0, help="P90 TTFT bound of a sustainable load, s")
    p.add_argument("--requests", type=int, default=512)
    p.add_argument("--prompt", default="lognormal:1024,0.8,8192")
    p.add_argument("--output", default="lognormal:256,0.8,2048")
    p.add_argument("--max-rate", type=float, default=16.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    model, gpu = load_model(args.model), load_arch(args.gpu)
    memo = Memo(GpuCosts(model, gpu))
    kv = KVConfig(kv_capacity_tokens(model, device_memory_bytes(gpu), 2) // 16, 16)
    schedulers = {"continuous (vLLM)": Scheduler("continuous", 128, 8192, 512),
                  "sarathi (chunked)": Scheduler("sarathi", 128, args.budget, args.budget)}
    found = {name: capacity(model, memo, kv, s, args) for name, s in schedulers.items()}
    for name, rate in found.items():
        print(f"{name}: {rate:.2f} requests/s within P99 TBT {args.slo} s and P90 TTFT {args.ttft} s")
    base, chunked = found.values()
    print(f"capacity ratio sarathi / continuous: {chunked / base:.2f}x" if base else
          "continuous meets the SLO at no rate tried")


if __name__ == "__main__":
    main()
