"""The `tessel` command line: graph, run, compile, sim, asm, disasm, sweep.

Exit 0 on success. Bad input exits 2 with one line `error: ...` on stderr naming the
file, field, line:column or argument — never a traceback, never a half-written file.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

import isa
from compiler.cost import graph_cost
from compiler.driver import decode_logits, prefill_logits
from compiler.frontend import Model, load_model, to_text
from compiler.ir import GraphError
from compiler.phase import Phase
from arch import ArchError
from compiler.targets import TARGETS, CompileError
from sim.engine import EngineError
from sim.functional import FunctionalError
from sim.gpu import CalibrationError
from tessel.files import atomic_write
from tessel.sweep import SweepError
from tessel.table import render_table

USER_ERRORS: tuple[type[Exception], ...] = (GraphError, isa.IsaError, ArchError, CompileError,
                                            EngineError, FunctionalError, CalibrationError, SweepError)
# Numeric simulation is on by default up to this many parameters (gpt2-medium and below).
FUNCTIONAL_DEFAULT_MAX_PARAMS = 400_000_000


class UsageError(ValueError):
    """A bad command-line argument (reported like every other user error)."""


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error format."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _token_list(text: str) -> list[int]:
    try:
        tokens = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    return tokens


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_phase_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--phase", choices=("prefill", "decode"), help="default prefill")
    p.add_argument("--seq", type=_positive, help="prompt tokens for prefill (default 128)")
    p.add_argument("--kv", type=_positive, help="KV-cache length for decode (default 128)")
    p.add_argument("--batch", type=_positive, help="sequences per batch (default 1)")


def _phase(args: argparse.Namespace, model: Model, tokens: list[int] | None = None) -> Phase | None:
    given = [f"--{n}" for n in ("phase", "seq", "kv", "batch") if getattr(args, n) is not None]
    if model.config is None:
        if given:
            raise GraphError(f"{given[0]} does not apply to a .graph file (its shapes are fixed)")
        return None
    kind = args.phase or "prefill"
    if kind == "prefill" and args.kv is not None:
        raise GraphError("--kv applies to --phase decode only")
    if kind == "decode" and args.seq is not None:
        raise GraphError("--seq applies to --phase prefill only (decode takes one token)")
    batch = args.batch or 1
    if tokens is not None:
        if batch != 1:
            raise GraphError("--tokens runs one sequence: --batch must be 1")
        n = len(tokens) if kind == "prefill" else len(tokens) - 1
        given = args.seq if kind == "prefill" else args.kv
        if given is not None and given != n:
            raise GraphError(f"--tokens gives {len(tokens)} tokens, which does not match "
                             f"--{'seq' if kind == 'prefill' else 'kv'} {given}")
        if n < 1:
            raise GraphError("decode needs at least 2 tokens: a cache and the new token")
        return Phase(kind, n if kind == "prefill" else 1, 0 if kind == "prefill" else n, 1)
    if kind == "prefill":
        return Phase("prefill", args.seq or 128, 0, batch)
    return Phase("decode", 1, args.kv or 128, batch)


def cmd_graph(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    phase = _phase(args, model)
    graph = model.graph(phase)
    cost = graph_cost(graph)
    if args.emit:
        atomic_write(Path(args.emit), to_text(graph).encode())
    if args.json:
        print(json.dumps(cost.to_json()))
        return 0
    print(f"model {model.name}" + (f", {phase}" if phase else "") + f": {len(cost.ops)} ops")
    rows = [(op.name, op.kind, "x".join(map(str, op.output)), f"{op.flops:,}", f"{op.bytes:,}")
            for op in cost.ops]
    rows.append(("total", "", "", f"{cost.total_flops:,}", f"{cost.total_bytes:,}"))
    print(render_table(("op", "kind", "output", "FLOPs", "bytes"), rows))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    run = decode_logits if args.phase == "decode" else prefill_logits
    logits = run(model, args.tokens).astype(np.float32)
    atomic_write(Path(args.logits), _npy_bytes(logits))
    print(f"wrote {args.logits}: float32 {list(logits.shape)} logits of {model.name} "
          f"({args.phase or 'prefill'}, reference executor)")
    return 0


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="systolic", choices=sorted(TARGETS))
    p.add_argument("--arch", help="preset name or .toml file (default: the target's preset)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one architecture field (repeatable; dotted keys for tables)")
    p.add_argument("--dtype", choices=("bf16", "fp32"),
                   help="operand and storage type (default: the architecture's)")


def cmd_compile(args: argparse.Namespace) -> int:
    from tessel.driver import compile_model, load_target_arch, model_feeds
    out = Path(args.output)
    if out.suffix not in (".tbin", ".tasm"):
        raise isa.IsaError(f"{out}: output must be a .tbin or .tasm file")
    model = load_model(args.model)
    phase = _phase(args, model, args.tokens)
    arch = load_target_arch(args.target, args.arch, args.set)
    feeds = model_feeds(model, phase, args.tokens) if args.with_data else None
    _, lowered = compile_model(model, phase, args.target, arch, _dtype(args), feeds)
    isa.verify(lowered.program, arch.machine_view())
    isa.save(lowered.program, out)
    print(f"wrote {out}: {len(lowered.program.instructions):,} instructions for {arch.name}"
          + (" with weights and inputs" if feeds else ""))
    return 0


def _dtype(args: argparse.Namespace) -> isa.DType | None:
    return isa.DType(args.dtype) if args.dtype else None


def cmd_sim(args: argparse.Namespace) -> int:
    from tessel.baselines import parse_gpus
    from tessel.driver import load_target_arch, run, simulate_file
    from tessel.report import render_result
    if (args.program is None) == (args.model is None):
        raise GraphError("give either --model M or a PROGRAM.tbin file")
    if args.program is not None:
        if args.logits or args.tokens:
            raise GraphError("--logits and --tokens need --model (a program file has no graph)")
        result = simulate_file(Path(args.program), args.arch, args.set, not args.no_functional)
        title = f"tessel sim: {args.program}"
    else:
        model = load_model(args.model)
        phase = _phase(args, model, args.tokens)
        arch = load_target_arch(args.target, args.arch, args.set)
        functional = not args.no_functional
        big = model.config is None or model.config.n_params > FUNCTIONAL_DEFAULT_MAX_PARAMS
        int8 = getattr(arch, "dtype", None) == "int8" and not args.dtype
        if not (args.functional or args.tokens or args.logits) and (big or int8 or (phase and phase.batch > 1)):
            functional = False                 # timing only unless numerics are asked for
        if args.logits and not functional:
            raise GraphError("--logits needs a numeric simulation (drop --no-functional)")
        outcome = run(model, phase, args.target, arch, functional=functional, dtype=_dtype(args),
                      tokens=args.tokens, gpus=parse_gpus(args.gpu), gpu_mode=args.gpu_mode,
                      gpu_calibration=Path(args.gpu_calibration) if args.gpu_calibration else None)
        result = outcome.result
        if args.logits:
            logits = outcome.logits if phase.kind == "prefill" else outcome.logits[-1:]
            atomic_write(Path(args.logits), _npy_bytes(logits))
        title = (f"tessel sim: {model.name}, {phase or 'fixed graph'}, on {arch.name}"
                 + ("" if functional else " (timing only)"))
    if args.json:
        atomic_write(Path(args.json), json.dumps(result.to_json(), indent=1).encode())
    print(render_result(result, title))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tessel.baselines import parse_gpus
    from tessel.compare import render_comparison
    from tessel.driver import load_target_arch, run
    model = load_model(args.model)
    phase = _phase(args, model)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise UsageError(f"--targets: unknown target '{unknown[0] if unknown else ''}' "
                         f"(targets: {', '.join(TARGETS)})")
    functional = not args.no_functional and model.config is not None \
        and model.config.n_params <= FUNCTIONAL_DEFAULT_MAX_PARAMS and (phase is None or phase.batch == 1)
    results = [run(model, phase, t, load_target_arch(t, None, []), functional=functional,
                   gpus=parse_gpus(args.gpu)).result for t in targets]
    if args.json:
        atomic_write(Path(args.json), json.dumps({t: r.to_json() for t, r in zip(targets, results)},
                                                 indent=1).encode())
    tokens = (phase.seq if phase.kind == "prefill" else 1) * phase.batch if phase else 1
    print(render_comparison(f"tessel compare: {model.name}, {phase or 'fixed graph'}"
                            + ("" if functional else " (timing only)"), targets, results, tokens))
    return 0


# A GPU switching models reloads weights from host memory over PCIe, per direction
# (reference/dataflow.md: Gen4 x16 about 32 GB/s, Gen5 x16 about 64 GB/s).
PCIE_GBPS = {"gen4": 32.0, "gen5": 64.0}
# Llama-3.1-8B in BF16: 14.9 GB of weights (reference/dataflow.md, [kl] worked example; GiB).
SIZE_ONLY_EXPERTS = {"llama-3.1-8b": int(14.9 * 2**30)}


def _expert(name: str) -> tuple[str, int]:
    """(name, BF16 weight bytes) of a GPT-2-family preset or a size-only expert."""
    if name in SIZE_ONLY_EXPERTS:
        return name, SIZE_ONLY_EXPERTS[name]
    model = load_model(name)
    if model.config is None:
        raise GraphError(f"expert '{name}' is a .graph file: experts are GPT-2 models or "
                         f"{', '.join(SIZE_ONLY_EXPERTS)}")
    return name, model.config.n_params * 2


def cmd_coe(args: argparse.Namespace) -> int:
    from compiler.targets.dataflow_coe import switch_program
    from sim.machines import MACHINES
    from sim.simulate import simulate
    from tessel.driver import load_target_arch
    arch = load_target_arch("dataflow", args.arch, args.set)
    experts = [_expert(n.strip()) for n in args.models.split(",") if n.strip()]
    if not experts:
        raise GraphError("--models: give at least one expert")
    result = simulate(switch_program(experts, arch), MACHINES["dataflow"](arch), functional=False).result
    span = {o.name: o.cycles / result.clock_hz for o in result.ops}   # op "switch.i": the i-th switch
    pcie = PCIE_GBPS[args.pcie] * 1e9
    rows, records = [], []
    for i, (name, size) in enumerate(experts):
        df_s, gpu_s = span[f"switch.{i}"], size / pcie
        rows.append((name, f"{size:,}", f"{df_s * 1e3:.4g} ms", f"{gpu_s * 1e3:.4g} ms", f"{gpu_s / df_s:.3g}x"))
        records.append({"expert": name, "weight_bytes": size, "switch_s": df_s, "gpu_pcie_s": gpu_s})
    if args.json:
        atomic_write(Path(args.json), json.dumps({"arch": arch.name, "pcie": args.pcie,
                                                  "switches": records}, indent=1).encode())
    print(f"tessel coe: experts in DDR, switched into HBM on {arch.name} "
          f"(DDR {arch.ddr_bw_gbps:g} GB/s -> HBM) vs a GPU reloading over PCIe {args.pcie} "
          f"({PCIE_GBPS[args.pcie]:g} GB/s)")
    print(render_table(("expert", "weight bytes", "switch (dataflow)", f"GPU PCIe {args.pcie}", "speedup"), rows))
    return 0


def cmd_asm(args: argparse.Namespace) -> int:
    program = isa.load(Path(args.input))
    out = Path(args.output)
    if out.suffix != ".tbin":
        raise isa.IsaError(f"{out}: output of asm must be a .tbin file")
    isa.save(program, out)
    print(f"wrote {out}: {len(program.instructions)} instructions")
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    program = isa.load(Path(args.input))
    if args.output is None:
        sys.stdout.write(isa.disassemble(program))
        return 0
    out = Path(args.output)
    if out.suffix != ".tasm":
        raise isa.IsaError(f"{out}: output of disasm must be a .tasm file")
    isa.save(program, out)
    print(f"wrote {out}: {len(program.instructions)} instructions")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tessel.sweep import default_out_dir, load_spec, run_sweep
    spec = load_spec(args.spec)
    summary = run_sweep(spec, Path(args.out) if args.out else default_out_dir(spec),
                        workers=args.workers, dask=args.dask)
    print("\n".join(summary.lines()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tessel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_help = "preset (gpt2 ... gpt3-xl), Hugging Face GPT-2 directory, or .graph file"

    p = sub.add_parser("graph", help="print a model's graph: ops, shapes, FLOPs, bytes")
    p.add_argument("--model", required=True, help=model_help)
    _add_phase_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--emit", metavar="OUT.graph", help="also write the graph in .graph text form")
    p.set_defaults(handler=cmd_graph)

    p = sub.add_parser("run", help="run the numpy reference executor and save logits")
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--tokens", required=True, type=_token_list, help="comma-separated token ids")
    p.add_argument("--phase", choices=("prefill", "decode"),
                   help="prefill: logits of every token; decode: last token against the cache "
                        "of the others")
    p.add_argument("--logits", required=True, metavar="OUT.npy", help="where to write the logits")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("compile", help="compile a model to a tile-ISA program")
    p.add_argument("--model", required=True, help=model_help)
    _add_phase_args(p)
    _target_args(p)
    p.add_argument("--tokens", type=_token_list, help="token ids for the data (with --with-data)")
    p.add_argument("--with-data", action="store_true",
                   help="include weights and inputs so the program can be simulated numerically")
    p.add_argument("-o", "--output", required=True, metavar="OUT.tbin|OUT.tasm")
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("sim", help="compile and simulate a model, or simulate a program file")
    p.add_argument("program", nargs="?", metavar="PROGRAM.tbin")
    p.add_argument("--model", help=model_help)
    _add_phase_args(p)
    _target_args(p)
    p.add_argument("--tokens", type=_token_list, help="token ids (default: seeded random)")
    p.add_argument("--logits", metavar="OUT.npy", help="write the simulated logits")
    p.add_argument("--json", metavar="OUT.json", help="write the full result as JSON")
    p.add_argument("--gpu", metavar="NAMES",
                   help="GPUs to compare with, comma-separated (t4, v100, a100-40gb, a100-80gb, "
                        "rtx-a6000, h100-sxm, h200; default all; 'none' for no comparison)")
    p.add_argument("--gpu-mode", choices=("graph", "eager"), default="graph",
                   help="GPU execution: graph (launch cost per kernel) or eager (framework "
                        "overhead per operator); default graph")
    p.add_argument("--gpu-calibration", metavar="FILE.json",
                   help="a measurement from baselines/measure_gpu.py: adds a calibrated row")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--no-functional", action="store_true", help="timing only, no numerics")
    mode.add_argument("--functional", action="store_true",
                      help="numerics even for models over 400 M parameters")
    p.set_defaults(handler=cmd_sim)

    p = sub.add_parser("compare", help="one model and phase on several targets, a column each")
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--targets", default=",".join(TARGETS),
                   help=f"comma-separated targets, each on its default preset (default {','.join(TARGETS)})")
    _add_phase_args(p)
    p.add_argument("--gpu", metavar="NAMES", default="t4", help="GPUs for the ratio rows (default t4)")
    p.add_argument("--json", metavar="OUT.json", help="write every target's result as JSON")
    p.add_argument("--no-functional", action="store_true", help="timing only, no numerics")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("coe", help="composition of experts: model switch times, DDR -> HBM vs GPU PCIe")
    p.add_argument("--models", required=True,
                   help="experts in switch order, comma-separated (GPT-2 presets, llama-3.1-8b)")
    p.add_argument("--arch", help="dataflow preset or .toml file (default sn40l)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one architecture field (repeatable)")
    p.add_argument("--pcie", choices=sorted(PCIE_GBPS), default="gen5",
                   help="the GPU's host link (default gen5)")
    p.add_argument("--json", metavar="OUT.json", help="write the switch times as JSON")
    p.set_defaults(handler=cmd_coe)

    p = sub.add_parser("asm", help="assemble .tasm text into a .tbin binary")
    p.add_argument("input", metavar="IN.tasm")
    p.add_argument("-o", "--output", required=True, metavar="OUT.tbin")
    p.set_defaults(handler=cmd_asm)

    p = sub.add_parser("disasm", help="disassemble a .tbin binary into .tasm text")
    p.add_argument("input", metavar="IN.tbin")
    p.add_argument("-o", "--output", metavar="OUT.tasm", help="default: standard output")
    p.set_defaults(handler=cmd_disasm)

    p = sub.add_parser("sweep", help="evaluate a design-space sweep spec (docs/sweeps.md)")
    p.add_argument("spec", metavar="SPEC.toml")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive, help="local worker processes (default: the CPU cores)")
    where.add_argument("--dask", metavar="ADDRESS|local:N",
                       help="run the points on a dask.distributed scheduler, or on N local Dask workers")
    p.add_argument("--out", metavar="DIR", help="results directory (default out/sweeps/<spec name>/)")
    p.set_defaults(handler=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (UsageError, *USER_ERRORS) as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"{e.filename or ''}: {e.strerror}".lstrip(": "))
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
