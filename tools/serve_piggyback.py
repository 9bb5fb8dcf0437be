"""SARATHI's decode-maximal batching on the GPU baseline: the throughput of decodes that
piggyback on a prefill chunk (a mixed step's time less the chunk's own) against decode-only
steps of the same decodes (tessel/serve's GPU step prices; docs/validation.md).

    .venv/bin/python tools/serve_piggyback.py --model llama-3.1-8b --gpu gpu-rtx-a6000
"""
from __future__ import annotations

import argparse

from arch import load_arch
from compiler.frontend import load_model
from tessel.serve import StepShape
from tessel.serve.simulated import GpuCosts
from tessel.table import render_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="llama-3.1-8b")
    p.add_argument("--gpu", default="gpu-rtx-a6000")
    p.add_argument("--context", type=int, default=1024, help="the decodes' KV length")
    p.add_argument("--chunks", default="256,512", help="prefill chunk sizes")
    p.add_argument("--batches", default="1,4,8,16,32", help="decodes per step")
    args = p.parse_args()
    costs = GpuCosts(load_model(args.model), load_arch(args.gpu))
    rows = []
    for chunk in map(int, args.chunks.split(",")):
        alone = costs.cost(StepShape((("prefill", chunk, 0),))).seconds
        for batch in map(int, args.batches.split(",")):
            decodes = (("decode", 1, args.context),) * batch
            only = costs.cost(StepShape(decodes)).seconds
            mixed = costs.cost(StepShape(tuple(sorted(decodes + (("prefill", chunk, 0),))))).seconds
            rows.append((chunk, batch, f"{only * 1e3:.2f}", f"{mixed * 1e3:.2f}",
                         f"{batch / only:,.0f}", f"{batch / (mixed - alone):,.0f}",
                         f"{only / (mixed - alone):.1f}x"))
    print(f"{args.model} on {args.gpu}, decodes at KV {args.context}")
    print(render_table(("chunk", "decodes", "decode-only ms", "mixed ms", "decode-only tok/s",
                        "piggybacked tok/s", "gain"), rows))


if __name__ == "__main__":
    main()
