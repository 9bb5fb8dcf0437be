"""`tessel serve`'s flags, apart from the command (tessel/serve/command.py), so that building
the command line parser imports no compiler or simulator."""
from __future__ import annotations

import argparse

from tessel.serve.kv import DEFAULT_BLOCK_SIZE
from tessel.serve.scheduler import DEFAULT_CHUNK, DEFAULT_MAX_BATCH, DEFAULT_TOKEN_BUDGET, POLICIES

__all__ = ["add_arguments", "TARGET_CHOICES", "SYNTHETIC", "SWAP_LINK", "STEP_COSTS", "CHECK_STEPS"]

TARGET_CHOICES = ("systolic", "pim", "dataflow", "gpu")     # tessel.targets.TARGETS and GPUs
# a synthetic workload's defaults; flags left out are None, so that one given where it does
# not apply (a synthetic flag with --trace, --chunk with another scheduler) can be refused
SYNTHETIC = {"requests": 100, "prompt": "lognormal:512,1.0,4096",
             "output": "lognormal:128,1.0,1024", "seed": 0}
SWAP_LINK = "pcie4-x16"
STEP_COSTS = ("parts", "whole")     # how a simulated target prices a step (tessel/serve/run.py)
CHECK_STEPS = 4     # steps simulated whole at exact lengths to measure the error of parts or buckets


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset name or Hugging Face directory")
    p.add_argument("--target", choices=TARGET_CHOICES, help="default systolic")
    p.add_argument("--arch", help="preset or .toml (a GPU preset with --target gpu; default: the "
                   "target's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one architecture field (simulated targets)")
    p.add_argument("--tp", type=int, help="tensor-parallel ranks each step runs on (default 1; "
                   "the KV cache is per rank)")
    p.add_argument("--link", metavar="PRESET", help="with --tp: how the ranks are joined "
                   "(default: the target's, or the GPU's)")
    p.add_argument("--node", metavar="PRESET", help="a node preset (sn40l-8, tpu-v4-8, dgx-h100, "
                   "...): its device, its devices as tensor-parallel ranks, its link")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--trace", metavar="CSV", help="arrival_s,prompt_tokens,output_tokens, or "
                      "the Azure LLM inference trace's TIMESTAMP,ContextTokens,GeneratedTokens")
    load.add_argument("--rate", type=float, help="synthetic Poisson arrivals, requests per second")
    p.add_argument("--requests", type=int, help=f"synthetic: how many (default {SYNTHETIC['requests']})")
    p.add_argument("--prompt", help="synthetic prompt lengths (fixed:N, uniform:LO,HI, "
                   f"lognormal:MEDIAN,SIGMA[,MAX]; default {SYNTHETIC['prompt']})")
    p.add_argument("--output", help=f"synthetic output lengths (default {SYNTHETIC['output']})")
    p.add_argument("--seed", type=int, help="synthetic: the seed (default 0)")
    p.add_argument("--scheduler", default="sarathi", choices=tuple(POLICIES))
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    p.add_argument("--token-budget", type=int, default=DEFAULT_TOKEN_BUDGET)
    p.add_argument("--chunk", type=int, help=f"sarathi: prefill tokens a step (default {DEFAULT_CHUNK})")
    p.add_argument("--preemption", default="recompute", choices=("recompute", "swap"))
    p.add_argument("--swap-link", metavar="PRESET",
                   help=f"with --preemption swap: the host link KV blocks cross (default {SWAP_LINK})")
    p.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE, help="tokens per KV block")
    p.add_argument("--kv-blocks", type=int,
                   help="KV-cache blocks (default: the device's memory after the weights)")
    p.add_argument("--kv-bucket", type=int, help="round cache lengths up to a multiple for the "
                   "step costs (default: exact)")
    p.add_argument("--step-cost", choices=STEP_COSTS, help="a simulated target's step price: "
                   "the sum of its parts, each simulated alone (default), or the whole step "
                   "simulated as one program (exact, slower)")
    p.add_argument("--token-grid", type=int, metavar="G", help="with parts: price token counts "
                   "between multiples of G by linear interpolation (default: exact)")
    p.add_argument("--check-steps", type=int, help="steps simulated whole at their exact lengths "
                   f"to measure the error of parts or --kv-bucket (default {CHECK_STEPS}; 0: none)")
    p.add_argument("--routing", help="a mixture of experts' routing policy (default uniform)")
    p.add_argument("--slo-ttft", type=float, metavar="S", help="time-to-first-token SLO, seconds")
    p.add_argument("--slo-tpot", type=float, metavar="S", help="time-per-output-token SLO, seconds")
    p.add_argument("--compare", metavar="T1,T2,...", help="the same run on each target (its "
                   "default preset) or GPU preset, a column each, e.g. systolic,dataflow,gpu-a100-80gb")
    p.add_argument("--out", metavar="DIR", help="requests.csv, summary.json, trace.json and PNGs")
    p.add_argument("--json", metavar="OUT.json", help="the summary as JSON")
