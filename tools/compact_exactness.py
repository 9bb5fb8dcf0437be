"""Compact programs report exactly what their unrolled equivalents report, on real models.

For each model, phase and target: compile the program as `tessel compile` does (tile sweeps
emitted as loops, compiler/targets/sweep.py, then the roll pass) and the flat program
(`flat_emission`), check that the compact one unrolls to the flat one, simulate both, timing
only (the compact one per pattern when the machine allows, sim/periodic.py; else, on a machine
whose state times each instruction, from its executed shell: Machine.start_shell), and compare
every field of the two results' JSON.
Prints a table (words, executed instructions, how the compact one was timed, seconds each) and
exits 1 on any difference.

    .venv/bin/python tools/compact_exactness.py                       # gpt2 and gpt2-xl
    .venv/bin/python tools/compact_exactness.py --models gpt2 --targets systolic
"""
from __future__ import annotations

import argparse
import sys
import time

import isa
from compiler.frontend import load_model
from compiler.phase import decode, prefill
from compiler.roll import roll
from compiler.targets.sweep import flat_emission
from sim.compact_costs import PatternCosts, timing_plan
from sim.machines import Machine
from sim.simulate import simulate
from tessel.table import render_table
from tessel.targets import TARGETS


def check(model: str, phase, target: str) -> tuple:
    spec = TARGETS[target]
    arch = spec.load_arch()
    graph = load_model(model).graph(phase)
    compact = roll(spec.compile(graph, arch).program, arch.machine_view().limits)
    with flat_emission():
        flat = spec.compile(graph, arch).program
    if isa.unroll(compact) != flat:
        return (model, target, "", "", "", "", "", "DIFFER: unrolled program")
    machine = spec.machine(arch)
    plan = timing_plan(machine, compact)
    how = ("per pattern" if isinstance(plan, PatternCosts) else
           "from its executed shell" if type(machine).start_shell is not Machine.start_shell
           else f"unrolled ({plan})")
    start = time.perf_counter()
    a = simulate(compact, machine, functional=False).result.to_json()
    middle = time.perf_counter()
    b = simulate(flat, machine, functional=False).result.to_json()
    end = time.perf_counter()
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return (f"{model} {phase.kind}-{phase.seq if phase.kind == 'prefill' else phase.kv}", target,
            f"{len(compact.instructions):,}", f"{len(flat.instructions):,}", how,
            f"{middle - start:.2f}", f"{end - middle:.2f}", "equal" if not differ else
            "DIFFER: " + " ".join(differ))


def _phase(parser: argparse.ArgumentParser, text: str):
    """`prefill-N` or `decode-N` (N > 0), else a one-line usage error."""
    kind, _, size = text.partition("-")
    if kind not in ("prefill", "decode") or not size.isdigit() or int(size) < 1:
        parser.error(f"--phases: {text!r} is not prefill-N or decode-N with N >= 1")
    return prefill(int(size)) if kind == "prefill" else decode(int(size))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,gpt2-xl")
    parser.add_argument("--targets", default="systolic,dataflow,pim")
    parser.add_argument("--phases", default="prefill-128,decode-128")
    args = parser.parse_args(argv)
    targets = args.targets.split(",")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"--targets: unknown target {unknown[0]!r} (targets: {', '.join(TARGETS)})")
    phases = [_phase(parser, text) for text in args.phases.split(",")]
    rows = []
    for model in args.models.split(","):
        for phase in phases:
            for target in targets:
                rows.append(check(model, phase, target))
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print(render_table(("workload", "target", "words", "executed", "compact timed",
                        "compact s", "unrolled s", "report"), rows))
    return 0 if all(r[-1] == "equal" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
