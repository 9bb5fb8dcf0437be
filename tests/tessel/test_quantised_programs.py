"""Programs that store weights quantised (compiler/passes/quantised.py): their logits against
the quantised reference, their bytes against the formats', their loops against the flat
program, and the one-line refusals of what the targets cannot run yet."""
import json

import numpy as np
import pytest

from arch import load_arch
from compiler.frontend import load_model
from compiler.passes.quantised import stored_data, stored_formats
from compiler.phase import decode, prefill
from compiler.quant import plan, quantise, resolve_recipe
from compiler.targets.emit import Emitter
from compiler.targets.sweep import flat_emission
from isa import DType
from isa.packing import unpack_rows
from tessel.cli import main
from tessel.driver import compile_model_graph, run
from tessel.request import make_request
from tessel.targets import target

FP32_TOLERANCE = 1e-4           # fp32 programs against the float64 quantised reference
BF16_TOLERANCE = 3e-2           # as tests/tessel/test_systolic_end_to_end.py


def _plan(model, graph, recipe):
    return plan(graph, resolve_recipe(recipe), model.config.n_layer)


def test_stored_codes_and_scales_read_back_as_the_reference_weights(tiny_hf):
    model = load_model(str(tiny_hf))
    q = quantise(model, "w4a16:g16")
    formats = stored_formats(model.graph(prefill(4)), q.plan(model.graph(prefill(4))))
    name = "h.0.mlp.c_fc.weight"
    fmt = formats[name]
    assert (fmt.bits, fmt.group, fmt.per_tensor, fmt.shape) == (4, 16, False, (64, 256))
    codes, scales = stored_data(q.weights.stored[name], fmt)
    assert codes.shape == (64, 128) and scales.shape == (4, 256) and scales.dtype == np.float16
    values = unpack_rows(codes.view(np.uint8), 4, 256) * np.repeat(scales.astype(np.float64), 16, axis=0)
    np.testing.assert_array_equal(values, q.weights[name])


@pytest.mark.parametrize("name", ["systolic", "pim"])
def test_a_program_with_data_needs_the_recipes_codes(tiny_hf, name):
    """Compiling with data from full-precision weights under a recipe is refused: the codes
    and scales come only from the quantised weights (compile time), never made up here."""
    from compiler.errors import CompileError
    from compiler.driver import token_feeds
    model = load_model(str(tiny_hf))
    graph = model.graph(prefill(4))
    with pytest.raises(CompileError, match=r"is planned quantised, and the weights given hold "
                                           r"no codes for it: pass the recipe's quantised weights"):
        compile_model_graph(model, graph, name, load_arch(TARGETS.get(name, "pim-gpt")),
                            feeds=token_feeds([1, 2, 3, 4]), quant=_plan(model, graph, "w8a16"))


def test_a_tile_is_split_where_its_scale_group_ends():
    from compiler.passes.quantised import StoredFormat
    from compiler.targets.emit import Matrix
    from isa import Addr, Symbol
    em = Emitter("systolic")
    fmt = StoredFormat("int4", (96, 64), 32, False)
    codes, scales = Symbol("w", "dram", 0, fmt.code_shape, DType.int8), Symbol("w.qscales", "dram", 4096, fmt.scale_shape, DType.fp16)
    em.place_quantised(codes, scales, fmt, DType.bf16)
    em.load("dma0", Addr("sram", 0), Matrix("w", 0, 96, 64, 64).block(16, 40, 32, 32))  # rows 16..55
    loads = [i for i in em.instructions if i.opcode in ("qcfg", "loadq")]
    assert [(i.opcode, i["rows"] if i.opcode == "loadq" else i["scales"].addr) for i in loads] == [
        ("qcfg", 4096 + 2 * 32), ("loadq", 16),           # rows 16..31: scale row 0
        ("qcfg", 4096 + 2 * (64 + 32)), ("loadq", 24)]    # rows 32..55: scale row 1
    assert loads[1]["src"].addr == 16 * 32 + 32 * 4 // 8 and loads[3]["dst"].addr == 16 * 32 * 2


@pytest.mark.parametrize("r0, expected", [
    (0, [(32, 32, 64, 96)]),                  # three groups, one pair: scale rows step by 64
    (16, [(32, 0, 0, 16), (64 + 32, 32, 64, 64)]),  # to the first boundary, then the rest
    # (scales at column 32 of each [.., 64] scale row: the tile's columns)
])
def test_a_tile_over_several_groups_steps_its_scale_rows(r0, expected):
    from compiler.passes.quantised import StoredFormat
    from compiler.targets.emit import Matrix
    from isa import Addr, Symbol
    em = Emitter("systolic")
    fmt = StoredFormat("int4", (128, 64), 32, False)
    codes, scales = Symbol("w", "dram", 0, fmt.code_shape, DType.int8), Symbol("w.qscales", "dram", 4096, fmt.scale_shape, DType.fp16)
    em.place_quantised(codes, scales, fmt, DType.bf16)
    em.load("dma0", Addr("sram", 0), Matrix("w", 0, 128, 64, 64).block(r0, 96 - r0 if r0 else 96, 32, 32))
    qcfgs = [i for i in em.instructions if i.opcode == "qcfg"]
    rows = [i["rows"] for i in em.instructions if i.opcode == "loadq"]
    assert [((q["scales"].addr - 4096) // 2, q["group"], q["pitch"], n) for q, n in zip(qcfgs, rows)] == expected


# small buffers: many tiles per GEMM
TARGETS = {"systolic": "systolic-32", "dataflow": "dataflow-small"}


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("recipe", ["w8a16", "w4a16:g32", "w3a16:g16", "w2a16"])
@pytest.mark.parametrize("phase", [prefill(10), decode(9)], ids=str)
def test_compiled_logits_equal_the_quantised_reference(tiny_hf, name, recipe, phase):
    arch = load_arch(TARGETS[name], ["dtype=fp32"])
    outcome = run(make_request(load_model(str(tiny_hf)), name, arch, phase, numerics=True,
                               quant=recipe))
    assert outcome.result.logits_rel_error < FP32_TOLERANCE
    model = load_model(str(tiny_hf))
    full = run(make_request(model, name, arch, phase, numerics=True))
    assert not np.allclose(outcome.reference, full.reference)     # the reference is quantised


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("fixture", ["tiny-mixtral", "tiny-qwen3-moe"])
def test_mixture_of_experts_keeps_its_router_and_equals_the_reference(fixture, name):
    """The experts' weights are quantised, the router is not (plan.py): the plan is made on
    the unrouted graph, whose moe op names its router, and compiled on the routed one."""
    from pathlib import Path
    model = load_model(str(Path(__file__).parents[1] / "fixtures" / fixture))
    outcome = run(make_request(model, name, load_arch(TARGETS[name], ["dtype=fp32"]), prefill(6),
                               numerics=True, quant="w4a16"))
    assert outcome.result.logits_rel_error < FP32_TOLERANCE
    graph = model.graph(prefill(6))
    moes = [op for op in graph.ops if op.kind.name == "MOE"]
    stored = stored_formats(graph, _plan(model, graph, "w4a16"))
    assert moes and not {op.inputs[1] for op in moes} & set(stored)      # routers stay full
    assert {name for op in moes for name in op.inputs[2:]} <= set(stored)  # every expert's weights
    assert outcome.result.workload["quantised_weights"]["count"] == len(stored)


def _weights_only(tmp_path, fmt: str) -> str:
    """A recipe file: `fmt` weights, the LM head kept (the named fp8 and MX recipes quantise
    the activations too, which the targets do not run yet)."""
    path = tmp_path / f"{fmt}.toml"
    path.write_text(f'[weights]\nformat = "{fmt}"\n[[exceptions]]\nlayers = ["lm_head"]\nweights = "none"\n')
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2", "mxfp8_e4m3", "mxfp6_e3m2", "mxfp6_e2m3",
                                 "mxfp4", "mxint8", "bfp8", "bfp4", "bfp6:b16", "bfp2:b8"])
def test_float_and_mx_weights_equal_the_quantised_reference(tmp_path, tiny_hf, name, fmt):
    arch = load_arch(TARGETS[name], ["dtype=fp32"])
    outcome = run(make_request(load_model(str(tiny_hf)), name, arch, decode(9), numerics=True,
                               quant=_weights_only(tmp_path, fmt)))
    assert outcome.result.logits_rel_error < FP32_TOLERANCE
    from isa.formats import bits_per_element
    facts = outcome.result.workload["quantised_weights"]     # codes and their scales, exactly
    elements = facts["full_bytes"] // 4
    per = bits_per_element(fmt, elements=elements if fmt.startswith("fp8") else None)
    assert facts["stored_bytes"] * 8 == pytest.approx(elements * per, abs=8 * 4 * 8)


def test_pim_refuses_float_codes(capsys, tmp_path, tiny_hf):
    assert main(["sim", "--model", str(tiny_hf), "--target", "pim", "--seq", "4", "--no-functional",
                 "--gpu", "none", "--quant", _weights_only(tmp_path, "mxfp4")]) == 2
    assert "in mxfp4: the PIM MAC lanes take 2-, 4- or 8-bit integer codes" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["w8a16", "w4a16", "w8a16:g64"])
@pytest.mark.parametrize("phase", [prefill(10), decode(9)], ids=str)
def test_pim_logits_equal_the_quantised_reference_to_bf16(tiny_hf, recipe, phase):
    """The PIM target computes in bf16: its codes x inputs are exact in fp32, the ASIC scales
    each output's sum (or each group's, g64: the MLP's 256-long reduction in 4 groups), so the
    logits stay as close to the quantised reference as the full-precision program's stay to
    the full-precision one."""
    model = load_model(str(tiny_hf))
    outcome = run(make_request(model, "pim", load_arch("pim-gpt"), phase, numerics=True, quant=recipe))
    full = run(make_request(model, "pim", load_arch("pim-gpt"), phase, numerics=True))
    assert outcome.result.logits_rel_error < max(BF16_TOLERANCE / 3, 2 * full.result.logits_rel_error)
    assert (outcome.result.target_report.dram_commands["MAC_ALL"]
            < full.result.target_report.dram_commands["MAC_ALL"])


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("fixture", ["tiny-llama3-tied", "tiny-qwen3"])
def test_llama_family_logits_in_bf16(fixture, name):
    from pathlib import Path
    model = load_model(str(Path(__file__).parents[1] / "fixtures" / fixture))
    outcome = run(make_request(model, name, load_arch(TARGETS[name]), prefill(8),
                               numerics=True, quant="w4a16:g32"))
    assert outcome.result.logits_rel_error < BF16_TOLERANCE


@pytest.mark.slow
def test_w4a16_g128_weights_take_their_share_of_bf16_bytes_exactly():
    model = load_model("gpt2")
    arch = load_arch("systolic-128")
    result = run(make_request(model, "systolic", arch, decode(64), numerics=False,
                              quant="w4a16:g128")).result
    facts = result.workload["quantised_weights"]
    assert facts["count"] == 48                             # 4 linears x 12 layers; not the LM head
    assert facts["stored_bytes"] * 16 == facts["full_bytes"] * (4 + 16 / 128)
    full = run(make_request(model, "systolic", arch, decode(64), numerics=False)).result
    assert result.cycles < full.cycles and result.bytes["dram_read"] < full.bytes["dram_read"]


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("recipe", ["w4a16:g32", "w3a16:g16"])
def test_compact_quantised_program_times_as_the_flat_one(tiny_hf, recipe, name):
    # the dataflow target rolls layers into loops on gpt2's 12 layers, not on the fixture's 2
    model = load_model(str(tiny_hf) if name == "systolic" else "gpt2")
    graph = model.graph(prefill(16) if name == "systolic" else decode(16))
    arch = load_arch(TARGETS[name] if name == "systolic" else "sn40l")
    compact = compile_model_graph(model, graph, name, arch, quant=_plan(model, graph, recipe))
    with flat_emission():
        flat = compile_model_graph(model, graph, name, arch, quant=_plan(model, graph, recipe))
    assert len(compact.program.instructions) < len(flat.program.instructions)
    a, b = (target(name).simulate(lo.program, arch, functional=False).result
            for lo in (compact, flat))
    assert (a.cycles, a.ops, a.energy_j, a.unit_busy_cycles) == (b.cycles, b.ops, b.energy_j, b.unit_busy_cycles)


@pytest.mark.slow
def test_compact_quantised_pim_program_times_as_the_flat_one(tiny_hf):
    """The token sweep of a prefill rolls into loops with the channels' MAC mode (pim.qmode)
    part of its state; the machine times the compact program as the flat one."""
    model = load_model(str(tiny_hf))
    graph = model.graph(prefill(16))
    arch = load_arch("pim-gpt")
    compact = compile_model_graph(model, graph, "pim", arch, quant=_plan(model, graph, "w4a16"))
    with flat_emission():
        flat = compile_model_graph(model, graph, "pim", arch, quant=_plan(model, graph, "w4a16"))
    assert len(compact.program.instructions) < len(flat.program.instructions)
    assert sum(i.opcode == "pim.qmode" for i in flat.program.instructions) > 0
    a, b = (target("pim").simulate(lo.program, arch, functional=False).result
            for lo in (compact, flat))
    assert (a.cycles, a.ops, a.energy_j, a.unit_busy_cycles) == (b.cycles, b.ops, b.energy_j, b.unit_busy_cycles)


@pytest.mark.slow
def test_program_file_carries_codes_and_scales(tmp_path, tiny_hf):
    prog = tmp_path / "q.tbin"
    assert main(["compile", "--model", str(tiny_hf), "--seq", "8", "--with-data", "--quant",
                 "w4a16:g32", "-o", str(prog)]) == 0
    assert main(["sim", str(prog), "--json", str(tmp_path / "a.json")]) == 0
    assert main(["sim", "--model", str(tiny_hf), "--seq", "8", "--quant", "w4a16:g32",
                 "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["cycles"] == b["cycles"] and b["logits_rel_error"] < BF16_TOLERANCE


@pytest.mark.parametrize("argv, message", [
    (["--target", "pim", "--quant", "w4a16:g32"], "weight 'h.0.attn.c_attn.weight' in int4, a scale per 32 input channels: on the PIM target a scale group holds whole MAC columns (64 codes)"),
    (["--target", "pim", "--quant", "w3a16"], "weight 'h.0.attn.c_attn.weight' in int3: the PIM MAC lanes take 2-, 4- or 8-bit integer codes"),
    (["--target", "pim", "--quant", "w2a16"], "reduction length 64 is not a multiple of the 128 int2 codes a MAC column reads"),
    (["--set", "dtype=int8"], "--quant: weights dequantise to the operand type, and int8 operands"),
    (["--quant", "w8a8"], "'h.0.attn.c_attn' multiplies int8 inputs by int8 weights ('h.0.attn.c_attn.weight'), and systolic-128 has no int8 MACs (arch field mac_formats: none)"),
    (["--quant", "w8a8", "--arch", "systolic-32"], None),
    (["--quant", "kv:int8"], None),
    (["--quant", "kv:bfp8"], "kv 'h.0.attn.k.heads' in bfp8: a scale over 32 channels reaches across its 4 heads of 16, which is not built on the targets yet"),
    (["--quant", "kv:int4:g8:rearrange"], None),
    (["--quant", "w4a16:g8+kv:int4:g8:rearrange"], "kv 'h.0.attn.v.heads' in int4:g8:rearrange: the V order permutes the channels of each head of 16 in weight 'h.0.attn.c_proj.weight', whose int4:g8 scale groups of 8 split a head"),
    (["--quant", "kv:int4:g8:rearrange", "--target", "pim"], None),
    (["--quant", "kv:bfp4"], "kv 'h.0.attn.k.heads' in bfp4: a scale over 32 channels reaches across its 4 heads of 16"),
    (["--quant", "kv:bfp4:b16"], None),
    (["--quant", "kv:bfp12:b8"], "kv 'h.0.attn.k.heads': format bfp12:b8 has 12-bit mantissas; the targets' codes hold 2 to 8 bits (bfp2..bfp8)"),
    (["--quant", "FILE:bfp8"], None),
    (["--quant", "FILE:bfp4"], None),
    (["--quant", "FILE:bfp9"], "weights 'h.0.attn.c_attn.weight': format bfp9 has 9-bit mantissas; the targets' codes hold 2 to 8 bits (bfp2..bfp8)"),
    (["--quant", "FILE:bfp4", "--target", "pim"], "in bfp4: the PIM MAC lanes take 2-, 4- or 8-bit integer codes"),
    (["--quant", "FILE:int4"], None),
    (["--quant", "FILE:int4:head"], "'wte.weight' is one stored tensor read as embeddings"),
    (["--quant", "w4a16:nested"], None),
    (["--quant", "w4a16:nested", "--target", "pim"], "bit-nested weights are not built on the PIM target"),
    (["--quant", "w4a16:g48"], "group 48 does not divide the 64 input channels"),
    (["--quant", "w9a16"], "w9: integer widths are 2..8 bits"),
    (["--devices", "2"], "--quant: not with --devices"),
])
def test_what_the_targets_cannot_run_is_one_line(capsys, tmp_path, tiny_hf, argv, message):
    args = ["sim", "--model", str(tiny_hf), "--seq", "8", "--no-functional", "--gpu", "none"]
    if "--quant" not in argv:
        args += ["--quant", "w8a16"]
    elif argv[1].startswith("FILE:"):       # a recipe file: weights only, the LM head kept or not
        _, fmt, *head = argv[1].split(":")
        keep = "" if head else '[[exceptions]]\nlayers = ["lm_head"]\nweights = "none"\n'
        (tmp_path / "r.toml").write_text(f'[weights]\nformat = "{fmt}"\n{keep}')
        argv = ["--quant", str(tmp_path / "r.toml"), *argv[2:]]
    if message is None:
        assert main(args + argv) == 0
        return
    assert main(args + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("gpu_quant, noted", [((), True), (("--gpu-quant", "w8a16"), False)])
def test_the_report_says_when_the_gpus_run_another_recipe(capsys, tiny_hf, gpu_quant, noted):
    assert main(["sim", "--model", str(tiny_hf), "--seq", "4", "--no-functional", "--gpu", "a100-80gb",
                 "--quant", "w8a16", *gpu_quant]) == 0
    note = "note: systolic-128 runs recipe w8a16, the GPUs fp16 (--gpu-quant w8a16 prices them"
    assert (note in capsys.readouterr().out) == noted


@pytest.mark.parametrize("extra", [["-o", "P"], ["--dump-after", "precision"]])
def test_compile_refuses_what_sim_refuses(capsys, tmp_path, tiny_hf, extra):
    argv = ["compile", "--model", str(tiny_hf), "--seq", "4", "--quant", "kv:bfp8",
            *[str(tmp_path / "p.tbin") if a == "P" else a for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "reaches across its 4 heads of 16, which is not built on the targets yet" in err and "\n" not in err
    assert not (tmp_path / "p.tbin").exists()


def test_quant_with_a_program_file_is_refused(capsys, tmp_path):
    assert main(["sim", str(tmp_path / "p.tbin"), "--quant", "w8a16"]) == 2
    assert "--quant: only with --model" in capsys.readouterr().err
