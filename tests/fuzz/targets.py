"""Fuzz targets for the parsers a user's files reach: `.graph` models, `.tasm` assembly,
`.tbin` binaries, Hugging Face `config.json` (every family) and `.safetensors` headers. Each target writes one mutated input to a file and runs it the way the
command line does; the only exceptions allowed out are the project's own user errors
(tessel.errors.USER_ERRORS), which the command line turns into one line and exit status 2.

The mutations start from valid inputs (the examples and small compiled programs) so they
reach deep into each parser, not just its first byte check. `tests/fuzz/test_parsers.py` runs
a few hundred inputs per parser in the suite; `tools/fuzz_parsers.py N` runs N outside it.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from hypothesis import strategies as st

import isa
from compiler.cost import graph_cost
from compiler.frontend import build_graph, load_model, to_text
from compiler.frontend.hf import load_config
from compiler.frontend.safetensors_file import FLOAT_DTYPES, read_header, read_tensor
from compiler.phase import decode, prefill
from tessel.errors import USER_ERRORS
from tessel.targets import TARGETS

ROOT = Path(__file__).parents[2]
GRAPH_VOCAB = ("graph", "input", "param", "output", "=", "(", ")", "[", "]", ",", ":", "{", "}",
               "fp32", "bf16", "int32", "linear", "matmul", "softmax", "gelu", "add", "mul",
               "layernorm", "embedding", "reshape", "transpose", "slice", "kv_append", "causal",
               "scale", "shape", "perm", "axis", "start", "stop", "eps", "transpose_b", "true",
               "false", "0", "-1", "1e309", "nan", "65536", "4294967296", "x", "\n", " ", "#", "\"")
TASM_VOCAB = (".target", ".isa", ".spaces", ".symbol", ".data", "dma0", "dma1", "mxu0", "vpu0",
              "pim0", "asic0", "load", "store", "gemm", "vec", "red", "vquant", "signal", "wait",
              "halt", "mcfg", "vcfg", "dmacfg", "pim.act_all", "pim.mac_all", "sem=", "rows=",
              "dst=", "src=", "dram[", "sram[", "acc[", "]", "0x", "-1", "65536", "1e40", "nan",
              "bf16", "fp32", "int8", "\n", " ", "=", "x", "#")


CONFIG_VOCAB = ("\"architectures\"", "\"LlamaForCausalLM\"", "\"MixtralForCausalLM\"", "\"model_type\"",
                "\"rope_scaling\"", "\"rope_parameters\"", "\"rope_type\"", "\"llama3\"", "\"yarn\"",
                "\"factor\"", "\"head_dim\"", "\"num_key_value_heads\"", "\"sliding_window\"",
                "\"use_sliding_window\"", "\"layer_types\"", "\"mlp_only_layers\"",
                "\"decoder_sparse_step\"", "\"num_experts\"", "null", "true", "false", "0", "-1",
                "1e309", "NaN", "Infinity", "[]", "{}", "65537", ":", ",", "\"", "[", "]", "{", "}")
FIXTURES = ROOT / "tests" / "fixtures"


@functools.cache
def config_seeds() -> tuple[str, ...]:
    return tuple(p.read_text() for p in sorted(FIXTURES.glob("tiny-*/config.json")))


@functools.cache
def safetensors_seeds() -> tuple[bytes, ...]:
    """Each fixture file's header and the first bytes of its data (the parser's domain)."""
    out = []
    for path in sorted(FIXTURES.glob("tiny-*/*.safetensors"))[:6]:
        data = path.read_bytes()
        out.append(data[:8 + int.from_bytes(data[:8], "little") + 256])
    return tuple(out)


@functools.cache
def graph_seeds() -> tuple[str, ...]:
    return tuple(p.read_text() for p in sorted((ROOT / "examples").glob("*.graph")))


@functools.cache
def tasm_seeds() -> tuple[str, ...]:
    compiled = [isa.disassemble(_small_program(t)) for t in TARGETS]
    return (*(p.read_text() for p in sorted((ROOT / "examples").glob("*.tasm"))), *compiled)


@functools.cache
def tbin_seeds() -> tuple[bytes, ...]:
    import tempfile
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in TARGETS:
            path = Path(tmp) / f"{name}.tbin"
            isa.save(_small_program(name), path)
            out.append(path.read_bytes())
    return tuple(out)


def _small_program(target: str) -> isa.Program:
    """A real compiled program, kept small: a 1-layer GPT-2 decode step."""
    from compiler.frontend import GPT2Config
    from compiler.frontend.gpt2 import build_graph
    config = GPT2Config("fuzz", n_layer=1, n_head=2, n_embd=64, vocab_size=96, n_positions=32)
    t = TARGETS[target]
    return t.compile(build_graph(config, decode(4)), t.load_arch()).program


def _mutated_text(draw, seeds: tuple[str, ...], vocab: tuple[str, ...]) -> str:
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 6))):
        n = len(text)
        at = draw(st.integers(0, n))
        kind = draw(st.sampled_from(("insert", "delete", "replace", "duplicate", "random", "truncate")))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(vocab)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        elif kind == "replace":
            text = text[:at] + draw(st.text(max_size=3)) + text[at + 1:]
        elif kind == "duplicate":
            end = min(n, at + draw(st.integers(1, 80)))
            text = text[:end] + text[at:end] + text[end:]
        elif kind == "random":
            text = text[:at] + draw(st.text(max_size=20)) + text[at:]
        else:
            text = text[:at]
    return text


@st.composite
def graph_inputs(draw) -> bytes:
    text = _mutated_text(draw, graph_seeds(), GRAPH_VOCAB)
    raw = text.encode("utf-8", "surrogatepass")
    return raw if draw(st.booleans()) else _bytes_noise(draw, raw)


@st.composite
def tasm_inputs(draw) -> bytes:
    text = _mutated_text(draw, tasm_seeds(), TASM_VOCAB)
    raw = text.encode("utf-8", "surrogatepass")
    return raw if draw(st.booleans()) else _bytes_noise(draw, raw)


@st.composite
def tbin_inputs(draw) -> bytes:
    """Damaged files (the checksum must catch them), and files damaged and then re-sealed
    with a valid checksum, so that the header and word checks behind it are reached too."""
    raw = _bytes_noise(draw, draw(st.sampled_from(tbin_seeds())))
    if draw(st.booleans()) and len(raw) > 32:
        body = raw[:-32]
        raw = body + hashlib.sha256(body).digest()
    return raw


@st.composite
def config_inputs(draw) -> bytes:
    text = _mutated_text(draw, config_seeds(), CONFIG_VOCAB)
    raw = text.encode("utf-8", "surrogatepass")
    return raw if draw(st.booleans()) else _bytes_noise(draw, raw)


@st.composite
def safetensors_inputs(draw) -> bytes:
    return _bytes_noise(draw, draw(st.sampled_from(safetensors_seeds())))


def _bytes_noise(draw, raw: bytes) -> bytes:
    """Bit flips, byte overwrites, truncation or splices of random bytes."""
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(("flip", "byte", "truncate", "splice")))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(max_size=16))
    return bytes(data)


def run_graph(path: Path, data: bytes) -> None:
    """`tessel graph --model PATH`: load, cost every op, print it back as text."""
    path.write_bytes(data)
    try:
        graph = load_model(str(path)).graph()
        graph_cost(graph)
        to_text(graph)
    except USER_ERRORS:
        pass


def run_tasm(path: Path, data: bytes) -> None:
    """`tessel asm IN.tasm -o OUT.tbin`, then load the binary back."""
    path.write_bytes(data)
    try:
        program = isa.load(path)
        out = path.with_suffix(".tbin")
        isa.save(program, out)
        isa.load(out)
    except USER_ERRORS:
        pass


def run_tbin(path: Path, data: bytes) -> None:
    """`tessel disasm IN.tbin`."""
    path.write_bytes(data)
    try:
        isa.disassemble(isa.load(path))
    except USER_ERRORS:
        pass


def run_config(path: Path, data: bytes) -> None:
    """`tessel graph --model DIR` up to the weights: config.json of DIR, then the graph."""
    directory = path.with_suffix("")
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_bytes(data)
    try:
        config = load_config(directory)
        if config.n_layer * config.n_embd <= 1 << 16:     # build small graphs only
            build_graph(config, prefill(2))
    except USER_ERRORS:
        pass


def run_safetensors(path: Path, data: bytes) -> None:
    """Read a weights file's header, then every floating-point tensor it describes."""
    path.write_bytes(data)
    try:
        for tensor in read_header(path).values():
            if tensor.dtype in FLOAT_DTYPES:
                read_tensor(tensor)
    except USER_ERRORS:
        pass


TARGETS_BY_SUFFIX = {".graph": (graph_inputs, run_graph), ".tasm": (tasm_inputs, run_tasm),
                     ".tbin": (tbin_inputs, run_tbin), ".json": (config_inputs, run_config),
                     ".safetensors": (safetensors_inputs, run_safetensors)}
