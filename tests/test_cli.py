"""The tessel command line: outputs, and one-line errors with exit status 2."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tessel.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_graph_prints_one_line_per_op_and_totals(capsys):
    code, out, _ = run(capsys, "graph", "--model", "gpt2", "--phase", "decode", "--kv", "16")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "model gpt2, decode kv=16 batch=1: 305 ops, 124,439,808 parameters"
    assert any(line.startswith("h.11.mlp.c_fc") and "linear" in line and "1x1x3072" in line for line in lines)
    assert lines[-1].startswith("total")


def test_graph_json_totals_are_the_sum_of_the_ops(capsys):
    code, out, _ = run(capsys, "graph", "--model", "gpt2", "--seq", "8", "--json")
    data = json.loads(out)
    assert code == 0 and set(data) >= {"ops", "total_flops", "total_bytes"}
    assert data["total_flops"] == sum(op["flops"] for op in data["ops"])
    assert data["total_bytes"] == sum(op["bytes"] for op in data["ops"])


def test_graph_emit_writes_a_parseable_graph(capsys, tmp_path):
    out = tmp_path / "g.graph"
    assert run(capsys, "graph", "--model", "gpt2", "--seq", "4", "--emit", str(out))[0] == 0
    code, text, _ = run(capsys, "graph", "--model", str(out), "--json")
    assert code == 0 and json.loads(text)["graph"] == "gpt2-prefill"


def test_run_writes_float32_logits_for_every_position(capsys, tmp_path, tiny_hf):
    out = tmp_path / "logits.npy"
    tokens = json.loads((tiny_hf / "tokens.json").read_text())["tokens"]
    code, _, _ = run(capsys, "run", "--model", str(tiny_hf), "--tokens", ",".join(map(str, tokens)),
                     "--logits", str(out))
    logits = np.load(out)
    expected = np.load(tiny_hf / "expected_logits.npy")
    assert code == 0 and logits.dtype == np.float32 and logits.shape == (24, 512)
    assert np.abs(logits - expected).max() / np.abs(expected).max() < 1e-4


def test_run_quantised_writes_the_quantised_reference_logits(capsys, tmp_path, tiny_hf):
    from compiler.driver import decode_logits
    from compiler.frontend import load_model
    from compiler.quant import quantise
    out = tmp_path / "logits.npy"
    tokens = json.loads((tiny_hf / "tokens.json").read_text())["tokens"]
    code, text, _ = run(capsys, "run", "--model", str(tiny_hf), "--tokens", ",".join(map(str, tokens)),
                        "--phase", "decode", "--quant", "w4a8:g32+kv:bfp8", "--logits", str(out))
    model = load_model(str(tiny_hf))
    expected = decode_logits(model, tokens, variant=quantise(model, "w4a8:g32+kv:bfp8")).astype(np.float32)
    assert code == 0 and "recipe w4a8:g32+kv:bfp8" in text
    assert np.array_equal(np.load(out), expected)
    assert not np.array_equal(expected, decode_logits(model, tokens).astype(np.float32))


@pytest.mark.parametrize("argv, message", [
    (["graph", "--model", "gpt5"], "error: unknown model 'gpt5': not a preset (gpt2, gpt2-medium"),
    (["graph", "--model", "no/such/dir"], "error: model directory 'no/such/dir' does not exist"),
    (["graph", "--model", "missing.graph"], "error: graph file 'missing.graph' does not exist"),
    (["graph", "--model", "gpt2", "--seq", "0"], "error: tessel graph: argument --seq: expected a positive integer, got 0"),
    (["graph", "--model", "gpt2", "--kv", "4"], "error: --kv applies to --phase decode only"),
    (["graph", "--model", "gpt2", "--phase", "decode", "--kv", "1024"], "error: gpt2: 1025 positions exceed the context of 1024"),
    (["graph", "--model", "examples/gemm.graph", "--seq", "4"], "error: --seq does not apply to a .graph file"),
    (["run", "--model", "gpt2", "--tokens", "1,x", "--logits", "o.npy"], "error: tessel run: argument --tokens: expected comma-separated integers, got '1,x'"),
    (["run", "--model", "gpt2", "--tokens", "5,99999", "--logits", "o.npy"], "error: token id 99999 at position 1 is out of range for vocab size 50257"),
    (["frobnicate"], "error: tessel: argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(__import__("pathlib").Path(__file__).parents[1] / "examples", tmp_path / "examples")
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith(message), err
    assert err.count("\n") == 1
    assert not (tmp_path / "o.npy").exists()


def _hf_copy(src, tmp_path, edit):
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    edit(dst)
    return dst


@pytest.mark.parametrize("edit, message", [
    (lambda d: (d / "config.json").write_text(json.dumps({"n_layer": 2, "n_head": 4, "vocab_size": 512, "n_positions": 128})),
     "config.json: missing field 'n_embd'"),
    (lambda d: (d / "config.json").write_text('{"n_layer": 2,\n "n_head": }'),
     "config.json:2:12: invalid JSON"),
    (lambda d: (d / "config.json").unlink(), "ckpt: no config.json"),
    (lambda d: (d / "model.safetensors").unlink(), "ckpt: no model.safetensors"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}"),
     "model.safetensors: not a readable safetensors file"),
    (lambda d: (d / "config.json").write_text(json.dumps({"n_layer": 2, "n_head": 4, "n_embd": 64, "vocab_size": 500, "n_positions": 128})),
     "model.safetensors: tensor 'transformer.wte.weight' has shape [512, 64], config.json implies [500, 64]"),
])
def test_bad_checkpoints_exit_2_naming_file_and_field(capsys, tmp_path, tiny_hf, edit, message):
    ckpt = _hf_copy(tiny_hf, tmp_path, edit)
    code, _, err = run(capsys, "graph", "--model", str(ckpt))
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.slow
def test_console_script_reports_errors_without_traceback(tmp_path):
    tessel = shutil.which("tessel") or str(__import__("pathlib").Path(sys.executable).parent / "tessel")
    proc = subprocess.run([tessel, "graph", "--model", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown model 'nope'") and "Traceback" not in proc.stderr


# Start-up is part of every command's time: a model's simulation reads no .graph or .tasm
# text (lark), draws no bar when piped (tqdm), plots nothing, runs no sweep (dask), loads no
# checkpoint (safetensors) and quantises nothing (ml_dtypes: 0.6 s). docs/validation.md,
# "Speed against SCALE-Sim".
UNUSED_BY_SIM = ("lark", "tqdm", "matplotlib", "dask", "distributed", "hypothesis", "safetensors",
                 "ml_dtypes")


@pytest.mark.slow      # a process of its own: start-up is the slow tier's concern
def test_sim_of_a_model_imports_only_what_it_uses():
    code = ("import sys; from tessel.cli import main; "
            "status = main(['sim', '--model', 'gpt2', '--phase', 'prefill', '--seq', '4', "
            "'--no-functional', '--gpu', 'none', '--json', '/dev/null']); "
            f"print(status, sorted(m for m in {UNUSED_BY_SIM!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.splitlines()[-1] == "0 []", proc.stderr[-2000:]


OTHER_TARGETS = {"pim": ("compiler.targets.systolic", "compiler.targets.dataflow",
                         "sim.machines.systolic", "sim.machines.dataflow"),
                 "systolic": ("compiler.targets.pim", "compiler.targets.dataflow",
                              "sim.machines.pim", "sim.machines.dataflow")}


@pytest.mark.slow      # a process of its own
@pytest.mark.parametrize("target", sorted(OTHER_TARGETS))
def test_sim_on_one_target_imports_no_other_targets_lowering_or_machine(target):
    """tessel/targets.py imports a target's lowering and machine when a run first asks."""
    code = ("import sys; from tessel.cli import main; "
            f"status = main(['sim', '--model', 'gpt2', '--target', '{target}', '--phase', "
            "'decode', '--kv', '4', '--no-functional', '--gpu', 'none', '--json', '/dev/null']); "
            f"print(status, sorted(m for m in {OTHER_TARGETS[target]!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.splitlines()[-1] == "0 []", proc.stderr[-2000:]


EXAMPLE_TASM = __import__("pathlib").Path(__file__).parents[1] / "examples" / "gemm_tile.tasm"


def test_asm_then_disasm_gives_back_the_canonical_text(capsys, tmp_path):
    tbin, tasm = tmp_path / "p.tbin", tmp_path / "p.tasm"
    assert run(capsys, "asm", str(EXAMPLE_TASM), "-o", str(tbin))[0] == 0
    assert run(capsys, "disasm", str(tbin), "-o", str(tasm))[0] == 0
    body = [l for l in EXAMPLE_TASM.read_text().splitlines() if l and not l.startswith("#")]
    assert tasm.read_text().splitlines() == body
    code, out, _ = run(capsys, "disasm", str(tbin))
    assert code == 0 and out.splitlines() == body


def test_truncated_tbin_exits_2(capsys, tmp_path):
    tbin = tmp_path / "p.tbin"
    run(capsys, "asm", str(EXAMPLE_TASM), "-o", str(tbin))
    tbin.write_bytes(tbin.read_bytes()[:-40])
    code, _, err = run(capsys, "disasm", str(tbin))
    assert code == 2 and err.startswith(f"error: {tbin}: truncated") and err.count("\n") == 1


def test_malformed_tasm_names_line_and_column(capsys, tmp_path):
    bad = tmp_path / "bad.tasm"
    bad.write_text(".target systolic\n.isa 3\n.spaces dram sram\ndma0 load dst=sram[0x0] src=dram[0x0] rows=64 rowbytes=128\n")
    code, _, err = run(capsys, "asm", str(bad), "-o", str(tmp_path / "o.tbin"))
    assert code == 2 and err.startswith(f"error: {bad}:4:") and "has no field 'rowbytes'" in err
    assert not (tmp_path / "o.tbin").exists()


def test_compile_dump_after_prints_the_step_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "compile", "--model", "gpt2", "--phase", "decode", "--kv", "4",
                       "--target", "systolic", "--dump-after", "sram")
    assert code == 0 and out.startswith("mx_a: sram[0x0] 2 x ") and "dma0 -> mxu0" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--dump-after", "lower"], "error: unknown step 'lower' for target 'dataflow' "
                                "(steps: precision, storage, attention, sections, placement, emit)\n"),
    ([], "error: tessel compile: the following arguments are required: -o/--output (unless --dump-after)\n"),
    (["--dump-after", "emit", "--unroll"], "error: tessel compile: --unroll chooses how a program is "
                                           "written (-o); --dump-after writes none\n"),
])
def test_compile_without_output_or_with_an_unknown_step_exits_2(capsys, argv, message):
    code, _, err = run(capsys, "compile", "--model", "gpt2", "--seq", "4", "--target", "dataflow", *argv)
    assert code == 2 and err == message


def test_only_the_program_entry_sets_the_allocator_policy(monkeypatch, capsys):
    """`main()` run as a program (no argv) keeps freed memory for reuse (tessel/allocator.py);
    `main(argv)`, as tests and library callers run it in their own process, leaves the
    allocator alone."""
    import tessel.cli as cli
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["sim", "--model", "no-such-model"]) == 2
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["tessel", "sim", "--model", "no-such-model"])
    assert cli.main() == 2
    assert calls == [1]
    capsys.readouterr()


@pytest.mark.slow          # two interpreters with numpy
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc, /proc")
def test_freed_arrays_stay_in_the_process_under_the_policy():
    """Under keep_freed_memory a freed 64 MiB array stays resident for the next one to reuse
    (no fresh page faults); without it glibc gives it back to the kernel at once."""
    code = ("import sys, numpy as np\n"
            "from tessel.allocator import keep_freed_memory\n"
            "took = keep_freed_memory() if sys.argv[1] == '1' else None\n"
            "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096\n"
            "a = np.ones(64 << 20, np.uint8); before = rss(); del a\n"
            "print(took, before - rss())\n")
    freed = {}
    for policy in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code, policy], capture_output=True,
                             text=True, check=True).stdout.split()
        freed[policy] = (out[0], int(out[1]))
    assert freed["1"][0] == "True"
    assert freed["0"][1] > 60 << 20 and freed["1"][1] < 1 << 20
