"""sim.functional: every core opcode against a numpy expectation, memories, errors, a program."""

from __future__ import annotations

import math

import numpy as np
import pytest

from isa import (ISA_VERSION, Addr, DType, Instr, MachineView, MemorySpace, Program, QueueConfig,
                 Symbol, verify)
from isa.opcodes import VEC_BINARY, VEC_FUNCS
from sim.functional import FunctionalError, FunctionalExecutor, Memory
from isa.numerics import from_storage, to_storage

pytestmark = pytest.mark.filterwarnings("error")  # no numpy warning may leak

SPACES = {"dram": 1 << 16, "sram": 1 << 14, "acc": 1 << 14}
rng = np.random.default_rng(2024)


def run(instrs: list[Instr], memory: Memory) -> FunctionalExecutor:
    """Execute `instrs` in program order (each test keeps queues consistent with that)."""
    program = Program("test", ISA_VERSION, tuple(SPACES), (), tuple(instrs))
    executor = FunctionalExecutor(program, memory)
    for index in range(len(instrs)):
        executor.execute(index)
    return executor


def random_bytes(memory: Memory, space: str) -> np.ndarray:
    data = rng.integers(0, 256, memory.spaces[space], dtype=np.uint8)
    memory.write_bytes(f"{space}[0x0]", data)
    return data


def random_values(shape: tuple[int, ...], dtype: DType, low: float = -4,
                  high: float = 4) -> np.ndarray:
    """Random values exactly representable in `dtype` (float64 or int64)."""
    if dtype in (DType.int8, DType.int32):
        bound = 128 if dtype is DType.int8 else 1 << 20
        return rng.integers(-bound, bound, size=shape).astype(np.int64)
    return from_storage(to_storage(rng.uniform(low, high, size=shape), dtype), dtype)


# ---- Memory ------------------------------------------------------------------------------------

def test_memory_reads_and_writes_typed_tiles() -> None:
    memory = Memory(SPACES)
    assert memory.spaces == SPACES
    values = random_values((3, 4), DType.bf16)
    memory.write("sram[0x11]", values, "bf16")  # unaligned addresses are fine
    np.testing.assert_array_equal(memory.read(Addr("sram", 0x11), (3, 4), DType.bf16), values)
    assert memory.read("sram[0x0]", 1, "fp32").tolist() == [0.0]
    assert memory.read_bytes("sram[0x11]", 2).tolist() == \
        list(to_storage(values[:1, :1], "bf16").reshape(-1).view(np.uint8))


def test_memory_loads_program_data_into_symbols() -> None:
    weights = to_storage(rng.normal(size=(4, 8)), "bf16")
    table = rng.integers(-5, 5, size=(16,)).astype(np.int32)
    symbols = (Symbol("w", "dram", 0x100, (4, 8), DType.bf16),
               Symbol("t", "sram", 0x40, (16,), DType.int32))
    program = Program("test", ISA_VERSION, tuple(SPACES), symbols, data={"w": weights, "t": table})
    memory = Memory(SPACES)
    memory.load_program_data(program)
    np.testing.assert_array_equal(memory.read_symbol(program, "w"), from_storage(weights, "bf16"))
    assert memory.read_symbol(program, "t").tolist() == table.tolist()


@pytest.mark.parametrize(("data", "message"), [
    ({"w": np.zeros((4, 4), np.uint16)}, r"data w: shape \(4, 4\) but the symbol is \(4, 8\)"),
    ({"w": np.zeros((4, 8), np.float32)},
     r"data w: dtype float32 but a bf16 symbol is stored as uint16"),
    ({"v": np.zeros((4, 8), np.uint16)}, r"data v: no symbol of that name"),
])
def test_memory_rejects_bad_program_data(data: dict, message: str) -> None:
    program = Program("test", ISA_VERSION, tuple(SPACES), (Symbol("w", "dram", 0, (4, 8), DType.bf16),),
                      data=data)
    with pytest.raises(FunctionalError, match=message):
        Memory(SPACES).load_program_data(program)


def test_memory_validates_spaces_and_ranges() -> None:
    with pytest.raises(FunctionalError, match=r"memory space sram: size -1 must be"):
        Memory({"sram": -1})
    memory = Memory({"sram": 64})
    with pytest.raises(FunctionalError, match=r"read: address range sram\[0x3e, 0x42\) "
                                              r"exceeds space sram of 64 bytes"):
        memory.read("sram[0x3e]", 1, "fp32")
    with pytest.raises(FunctionalError, match=r"write: no memory space dram \(spaces: sram\)"):
        memory.write("dram[0x0]", np.zeros(1), "fp32")


def test_memory_holds_only_the_bytes_asked_and_refuses_beyond_them() -> None:
    memory = Memory({"dram": 1 << 40, "sram": 64}, held={"dram": 256})   # a 1 TiB space
    assert memory.spaces == {"dram": 1 << 40, "sram": 64}
    assert memory.held == {"dram": 256, "sram": 0}
    memory.write("dram[0xfc]", np.ones(1), "fp32")
    assert memory.read("dram[0xfc]", 1, "fp32").tolist() == [1.0]
    with pytest.raises(FunctionalError, match=r"read: address range dram\[0xfe, 0x102\) is "
                                              r"beyond the 256 bytes held for space dram"):
        memory.read("dram[0xfe]", 1, "fp32")
    with pytest.raises(FunctionalError, match=r"write: address range dram\[0x[0-9a-f]+, "
                                              r"0x[0-9a-f]+\) exceeds space dram of 1099511627776"):
        memory.write(f"dram[{(1 << 40) - 2:#x}]", np.ones(1), "fp32")
    with pytest.raises(FunctionalError, match=r"memory space sram: held 65 must be an int in \[0, 64\]"):
        Memory({"sram": 64}, held={"sram": 65})
    with pytest.raises(FunctionalError, match=r"held: no memory space hbm \(spaces: sram\)"):
        Memory({"sram": 64}, held={"hbm": 1})


def test_gather_past_the_held_table_is_an_error_not_zeros() -> None:
    memory = Memory(SPACES, held={"dram": 0x200, "sram": SPACES["sram"], "acc": 0})
    memory.write("sram[0x0]", np.array([1, 8]), "int32")        # row 8 ends past dram's 0x200
    program = [Instr.make("dmacfg", "dma0", src_stride=64, dst_stride=0),
               Instr.make("gather", "dma0", dst=Addr("sram", 0x100), table=Addr("dram", 0),
                          idx=Addr("sram", 0), n=2)]
    with pytest.raises(FunctionalError, match=r"table: address range dram\[0x0, 0x240\) is "
                                              r"beyond the 512 bytes held"):
        run(program, memory)


def test_executor_needs_every_program_space() -> None:
    program = Program("test", ISA_VERSION, ("dram", "hbm"))
    with pytest.raises(FunctionalError, match=r"program: space hbm is not in memory"):
        FunctionalExecutor(program, Memory({"dram": 16}))


# ---- data movement ------------------------------------------------------------------------------

def strided(data: np.ndarray, start: int, rows: int, row_bytes: int, pitch: int) -> np.ndarray:
    return np.stack([data[start + r * pitch:start + r * pitch + row_bytes] for r in range(rows)])


@pytest.mark.parametrize(("src_stride", "dst_stride"), [
    (0, 0), (96, 0), (0, 80), (100, 72),
    (40, 64),  # source rows overlap
    (0, 48),  # destination rows overlap: later rows win
])
@pytest.mark.parametrize("opcode", ["load", "store"])
def test_load_and_store_copy_strided_rows(opcode: str, src_stride: int, dst_stride: int) -> None:
    memory = Memory(SPACES)
    src_space, dst_space = ("dram", "sram") if opcode == "load" else ("sram", "dram")
    source = random_bytes(memory, src_space)
    before = random_bytes(memory, dst_space).copy()
    rows, row_bytes, src_at, dst_at = 9, 64, 0x123, 0x40
    run([Instr.make("dmacfg", "dma0", src_stride=src_stride, dst_stride=dst_stride),
         Instr.make(opcode, "dma0", dst=Addr(dst_space, dst_at), src=Addr(src_space, src_at),
                    rows=rows, row_bytes=row_bytes)], memory)
    expected = before.copy()
    moved = strided(source, src_at, rows, row_bytes, src_stride or row_bytes)
    for r in range(rows):  # the pseudo-code, row by row
        at = dst_at + r * (dst_stride or row_bytes)
        expected[at:at + row_bytes] = moved[r]
    np.testing.assert_array_equal(memory.read_bytes(f"{dst_space}[0x0]", before.size), expected)


def test_strided_rows_may_end_at_the_end_of_a_space() -> None:
    memory = Memory(SPACES)
    source = random_bytes(memory, "dram")
    rows, row_bytes, pitch = 4, 16, 256
    src_at = SPACES["dram"] - (rows - 1) * pitch - row_bytes  # last row ends at the last byte
    run([Instr.make("dmacfg", "dma0", src_stride=pitch, dst_stride=0),
         Instr.make("load", "dma0", dst="sram[0x0]", src=Addr("dram", src_at), rows=rows,
                    row_bytes=row_bytes)], memory)
    np.testing.assert_array_equal(memory.read_bytes("sram[0x0]", rows * row_bytes),
                                  strided(source, src_at, rows, row_bytes, pitch).reshape(-1))


def test_gather_picks_rows_by_int32_index() -> None:
    memory = Memory(SPACES)
    table = random_bytes(memory, "dram")
    row_bytes, base = 48, 0x200
    indices = np.array([5, 0, 5, 17, 3], dtype=np.int32)
    memory.write("sram[0x1000]", indices, "int32")
    run([Instr.make("dmacfg", "dma0", src_stride=row_bytes, dst_stride=0),
         Instr.make("gather", "dma0", dst="sram[0x10]", table=Addr("dram", base),
                    idx="sram[0x1000]", n=len(indices))], memory)
    expected = np.stack([table[base + i * row_bytes:base + (i + 1) * row_bytes] for i in indices])
    np.testing.assert_array_equal(memory.read_bytes("sram[0x10]", expected.size),
                                  expected.reshape(-1))


def test_gather_takes_a_column_slice_of_each_row_with_dst_stride() -> None:
    """dst_stride = 16 of 48-byte rows, from byte 8 of each: the slices land dense."""
    memory = Memory(SPACES)
    table = random_bytes(memory, "dram")
    pitch, width, base = 48, 16, 0x200 + 8
    indices = np.array([5, 0, 5, 17, 3], dtype=np.int32)
    memory.write("sram[0x1000]", indices, "int32")
    run([Instr.make("dmacfg", "dma0", src_stride=pitch, dst_stride=width),
         Instr.make("gather", "dma0", dst="sram[0x10]", table=Addr("dram", base),
                    idx="sram[0x1000]", n=len(indices))], memory)
    expected = np.stack([table[base + i * pitch:base + i * pitch + width] for i in indices])
    np.testing.assert_array_equal(memory.read_bytes("sram[0x10]", expected.size), expected.reshape(-1))


@pytest.mark.parametrize(("index", "message"), [
    (-1, r"instruction 1 \(dma0 gather\): idx: index -1 is negative"),
    (4096, r"instruction 1 \(dma0 gather\): table: row 4096 at dram\[0x10000, 0x10010\) "
           r"exceeds space dram of 65536 bytes"),
])
def test_gather_rejects_indices_outside_the_table(index: int, message: str) -> None:
    memory = Memory(SPACES)
    memory.write("sram[0x0]", np.array([1, index]), "int32")
    with pytest.raises(FunctionalError, match=message) as caught:
        run([Instr.make("dmacfg", "dma0", src_stride=16, dst_stride=0),
             Instr.make("gather", "dma0", dst="sram[0x100]", table="dram[0x0]", idx="sram[0x0]",
                        n=2)], memory)
    assert caught.value.index == 1


# ---- gemm ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("dtype", "acc"), [(DType.bf16, DType.fp32), (DType.bf16, DType.bf16),
                                            (DType.fp32, DType.fp32), (DType.fp16, DType.fp32),
                                            (DType.int8, DType.int32)])
@pytest.mark.parametrize("transpose_b", [0, 1])
@pytest.mark.parametrize("accumulate", [0, 1])
def test_gemm_matches_numpy(dtype: DType, acc: DType, transpose_b: int, accumulate: int) -> None:
    m, n, k = 5, 7, 24
    memory = Memory(SPACES)
    a = random_values((m, k), dtype)
    b = random_values((n, k) if transpose_b else (k, n), dtype)
    if acc is DType.int32:  # near the top of int32 so that the sum wraps
        c = rng.integers(2**31 - 1000, 2**31, size=(m, n))
    else:
        c = random_values((m, n), acc)
    memory.write("sram[0x0]", a, dtype)
    memory.write("sram[0x1000]", b, dtype)
    memory.write("acc[0x40]", c, acc)
    run([Instr.make("mcfg", "mxu0", m=m, n=n, k=k, dtype=dtype, acc=acc),
         Instr.make("gemm", "mxu0", c="acc[0x40]", a="sram[0x0]", b="sram[0x1000]",
                    accumulate=accumulate, transpose_b=transpose_b, stream=0, preloaded=0)], memory)
    product = a.astype(np.float64) @ (b.T if transpose_b else b).astype(np.float64)
    if acc is DType.int32:
        product = product.astype(np.int64)  # exact: |sum| < 2**53
    expected = to_storage(product + (from_storage(to_storage(c, acc), acc) if accumulate else 0),
                          acc)
    got = to_storage(memory.read("acc[0x40]", (m, n), acc), acc)
    np.testing.assert_array_equal(got, expected)


def test_int32_gemm_is_exact_modulo_2_32() -> None:
    memory = Memory(SPACES)
    a = np.array([[2**30, 3]], dtype=np.int64)
    b = np.array([[2**30], [5]], dtype=np.int64)
    memory.write("sram[0x0]", a, "int32")
    memory.write("sram[0x100]", b, "int32")
    run([Instr.make("mcfg", "mxu0", m=1, n=1, k=2, dtype="int32", acc="int32"),
         Instr.make("gemm", "mxu0", c="acc[0x0]", a="sram[0x0]", b="sram[0x100]", accumulate=0,
                    transpose_b=0, stream=0, preloaded=0)], memory)
    assert memory.read("acc[0x0]", 1, "int32").tolist() == [15]  # 2**60 + 15 wraps to 15


# ---- vec and red --------------------------------------------------------------------------------

def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


EXPECTED = {
    "add": lambda a, b, imm: a + b, "sub": lambda a, b, imm: a - b,
    "mul": lambda a, b, imm: a * b, "div": lambda a, b, imm: a / b,
    "max": lambda a, b, imm: np.maximum(a, b),
    "addi": lambda a, b, imm: a + imm, "muli": lambda a, b, imm: a * imm,
    "exp": lambda a, b, imm: np.exp(a), "rsqrt": lambda a, b, imm: 1 / np.sqrt(a),
    "recip": lambda a, b, imm: 1 / a, "gelu": lambda a, b, imm: gelu(a),
    "tanh": lambda a, b, imm: np.tanh(a), "copy": lambda a, b, imm: a,
}
B_SHAPES = {"none": (3, 8), "row": (3, 1), "col": (1, 8), "scalar": (1, 1)}


def run_vec(func: str, bcast: str, dtype: DType, out: DType, a: np.ndarray, b: np.ndarray,
            imm: float = 0.75) -> np.ndarray:
    rows, cols = a.shape
    memory = Memory(SPACES)
    memory.write("sram[0x0]", a, dtype)
    memory.write("sram[0x1000]", b, dtype)
    run([Instr.make("vcfg", "vpu0", rows=rows, cols=cols, dtype=dtype, out=out, imm=imm),
         Instr.make("vec", "vpu0", func=func, bcast=bcast, dst="sram[0x2000]", a="sram[0x0]",
                    b="sram[0x1000]")], memory)
    return memory.read("sram[0x2000]", (rows, cols), out)


@pytest.mark.parametrize("func", VEC_FUNCS)
@pytest.mark.parametrize(("dtype", "out"), [(DType.bf16, DType.fp32), (DType.fp32, DType.bf16),
                                            (DType.fp16, DType.fp16)])
def test_vec_funcs_match_numpy(func: str, dtype: DType, out: DType) -> None:
    low = 0.25 if func in ("rsqrt", "recip", "div") else -3  # keep away from 0 and negatives
    a = random_values((3, 8), dtype, low, 3)
    b = random_values((3, 8), dtype, low, 3)
    expected = from_storage(to_storage(EXPECTED[func](a, b, 0.75), out), out)
    np.testing.assert_array_equal(run_vec(func, "none", dtype, out, a, b), expected)


@pytest.mark.parametrize("func", VEC_BINARY)
@pytest.mark.parametrize("bcast", list(B_SHAPES))
def test_vec_broadcasts_b(func: str, bcast: str) -> None:
    a = random_values((3, 8), DType.fp32, 0.5, 3)
    b = random_values(B_SHAPES[bcast], DType.fp32, 0.5, 3)
    expected = from_storage(to_storage(EXPECTED[func](a, b, 0), "bf16"), "bf16")
    np.testing.assert_array_equal(run_vec(func, bcast, DType.fp32, DType.bf16, a, b), expected)


def test_vec_handles_infinities_without_warnings() -> None:
    a = np.array([[-np.inf, np.inf, 0.0, -1.0, 1e30, -1e30, 2.0, 0.0]])
    b = np.full((1, 8), -np.inf)
    assert run_vec("exp", "none", DType.fp32, DType.fp32, a, b)[0].tolist() == \
        [0.0, np.inf, 1.0, to_f32(math.exp(-1.0)), np.inf, 0.0, to_f32(math.exp(2.0)), 1.0]
    g = run_vec("gelu", "none", DType.fp32, DType.fp32, a, b)[0]
    assert g[:2].tolist() == [0.0, np.inf] and g[4] == to_f32(1e30) and g[5] == 0.0
    assert run_vec("max", "scalar", DType.fp32, DType.fp32, a, b)[0].tolist() == \
        [-np.inf, np.inf, 0.0, -1.0, to_f32(1e30), to_f32(-1e30), 2.0, 0.0]
    r = run_vec("rsqrt", "none", DType.fp32, DType.fp32, a, b)[0]
    assert r[2] == np.inf and np.isnan(r[3]) and r[1] == 0.0
    assert run_vec("recip", "none", DType.fp32, DType.bf16, a, b)[0][2] == np.inf
    assert run_vec("add", "none", DType.fp32, DType.int8, a, b)[0].tolist() == [0] * 8


def test_unary_and_immediate_vec_do_not_read_b() -> None:
    memory = Memory(SPACES)
    memory.write("sram[0x0]", np.array([1.0, -2.0]), "fp32")
    run([Instr.make("vcfg", "vpu0", rows=1, cols=2, dtype="fp32", out="fp32", imm=3.0),
         Instr.make("vec", "vpu0", func="addi", bcast="none", dst="sram[0x8]", a="sram[0x0]",
                    b="sram[0x3fff]"),
         Instr.make("vec", "vpu0", func="tanh", bcast="none", dst="sram[0x10]", a="sram[0x0]",
                    b="sram[0x3fff]")], memory)
    assert memory.read("sram[0x8]", 2, "fp32").tolist() == [4.0, 1.0]
    assert memory.read("sram[0x10]", 2, "fp32").tolist() == \
        [to_f32(math.tanh(1.0)), to_f32(math.tanh(-2.0))]


def to_f32(x: float) -> float:
    return float(np.float32(x))


def test_vec_integer_tiles_wrap_on_store() -> None:
    a = np.array([[100, -100, 7, 127]])
    b = np.array([[100, -100, 3, 1]])
    assert run_vec("add", "none", DType.int8, DType.int8, a, b)[0].tolist() == [-56, 56, 10, -128]
    assert run_vec("mul", "none", DType.int8, DType.int32, a, b)[0].tolist() == \
        [10000, 10000, 21, 127]
    assert run_vec("div", "none", DType.int8, DType.int8, a, b)[0].tolist() == [1, 1, 2, 127]
    assert run_vec("muli", "none", DType.int8, DType.fp32, a, b, imm=0.5)[0].tolist() == \
        [50.0, -50.0, 3.5, 63.5]


@pytest.mark.parametrize(("dtype", "out"), [(DType.fp32, DType.fp32), (DType.bf16, DType.fp32),
                                            (DType.fp32, DType.bf16), (DType.int8, DType.int32)])
@pytest.mark.parametrize("func", ["sum", "max"])
def test_red_reduces_each_row(func: str, dtype: DType, out: DType) -> None:
    rows, cols = 6, 33
    x = random_values((rows, cols), dtype)
    if dtype is not DType.int8:
        x[2] = -np.inf  # a fully masked row (softmax)
    memory = Memory(SPACES)
    memory.write("sram[0x0]", x, dtype)
    run([Instr.make("vcfg", "vpu0", rows=rows, cols=cols, dtype=dtype, out=out, imm=0.0),
         Instr.make("red", "vpu0", func=func, dst="sram[0x2000]", src="sram[0x0]")], memory)
    reduced = x.sum(axis=1) if func == "sum" else x.max(axis=1)
    expected = from_storage(to_storage(reduced, out), out)
    np.testing.assert_array_equal(memory.read("sram[0x2000]", rows, out), expected)


# ---- ordering-only instructions, configuration, errors -----------------------------------------

def test_control_and_config_instructions_change_no_data() -> None:
    memory = Memory(SPACES)
    before = {space: random_bytes(memory, space).copy() for space in SPACES}
    instrs = [Instr.make("signal", "dma0", sem=1), Instr.make("wait", "mxu0", sem=1),
              Instr.make("dmacfg", "dma0", src_stride=128, dst_stride=64),
              Instr.make("mcfg", "mxu0", m=2, n=3, k=4, dtype="bf16", acc="fp32"),
              Instr.make("vcfg", "vpu0", rows=2, cols=3, dtype="fp32", out="bf16", imm=2.0),
              Instr.make("halt", "vpu0")]
    executor = run(instrs, memory)
    for space, data in before.items():
        np.testing.assert_array_equal(memory.read_bytes(f"{space}[0x0]", data.size), data)
    assert executor.config("dma0") == QueueConfig(src_stride=128, dst_stride=64)
    assert executor.config("mxu0") == QueueConfig(mcfg=instrs[3])
    assert executor.config("vpu0").vcfg == instrs[4]
    assert executor.config("vpu1") == QueueConfig()


@pytest.mark.parametrize("instr", [
    Instr.make("pim.mac", "pim0", bank=0, col=0, ncols=1, gb=0),
    Instr.make("pim.act_all", "pim0", row=3),
    Instr.make("df.stream", "pmu0", dst="sram[0x0]", src="sram[0x10]", tiles=1, tile_bytes=16),
])
def test_pim_and_dataflow_opcodes_have_no_model_yet(instr: Instr) -> None:
    message = (rf"^instruction 1 \({instr.queue} {instr.opcode}\): no functional model for "
               rf"{instr.opcode} on this machine$")
    with pytest.raises(FunctionalError, match=message):
        run([Instr.make("halt", "dma0"), instr], Memory(SPACES))


def test_models_run_extension_opcodes_and_get_named_errors() -> None:
    seen: list[Instr] = []

    def act_all(instr: Instr) -> None:
        seen.append(instr)
        if instr["row"] == 9:
            raise FunctionalError("row 9 is broken")

    instrs = [Instr.make("pim.act_all", "pim0", row=3), Instr.make("pim.act_all", "pim0", row=9)]
    program = Program("test", ISA_VERSION, tuple(SPACES), (), tuple(instrs))
    executor = FunctionalExecutor(program, Memory(SPACES), models={"pim.act_all": act_all})
    executor.execute(0)
    assert seen == instrs[:1]
    with pytest.raises(FunctionalError, match=r"^instruction 1 \(pim0 pim.act_all\): row 9 is "):
        executor.execute(1)
    with pytest.raises(FunctionalError, match=r"models: 'gemm' is not an opcode without a "
                                              r"built-in model \(pim.act "):
        FunctionalExecutor(program, Memory(SPACES), models={"gemm": act_all})


@pytest.mark.parametrize(("instr", "message"), [
    (Instr.make("load", "dma0", dst="sram[0x3ff0]", src="dram[0x0]", rows=1, row_bytes=32),
     r"instruction 0 \(dma0 load\): dst: address range sram\[0x3ff0, 0x4010\) exceeds "
     r"space sram of 16384 bytes"),
    (Instr.make("gemm", "mxu0", c="acc[0x0]", a="sram[0x0]", b="sram[0x0]", accumulate=0,
                transpose_b=0, stream=0, preloaded=0), r"instruction 0 \(mxu0 gemm\): gemm before any mcfg"),
    (Instr.make("red", "vpu0", func="sum", dst="sram[0x0]", src="sram[0x0]"),
     r"instruction 0 \(vpu0 red\): red before any vcfg on this queue"),
    (Instr.make("gather", "dma0", dst="sram[0x0]", table="dram[0x0]", idx="sram[0x0]", n=1),
     r"instruction 0 \(dma0 gather\): gather needs the row size in bytes"),
    (Instr.make("load", "dma0", dst="hbm[0x0]", src="dram[0x0]", rows=1, row_bytes=4),
     r"instruction 0 \(dma0 load\): dst: no memory space hbm"),
])
def test_bad_instructions_are_named(instr: Instr, message: str) -> None:
    with pytest.raises(FunctionalError, match=message) as caught:
        run([instr], Memory(SPACES))
    assert caught.value.index == 0


def test_a_gather_slice_wider_than_the_row_is_refused() -> None:
    memory = Memory(SPACES)
    memory.write("sram[0x0]", np.array([0]), "int32")
    with pytest.raises(FunctionalError, match=r"instruction 1 \(dma0 gather\): gather takes dst_stride = "
                                              r"32 bytes of each table row, more than the row pitch "
                                              r"src_stride = 16"):
        run([Instr.make("dmacfg", "dma0", src_stride=16, dst_stride=32),
             Instr.make("gather", "dma0", dst="sram[0x100]", table="dram[0x0]", idx="sram[0x0]", n=1)],
            memory)


def test_out_of_range_index_is_an_error() -> None:
    executor = FunctionalExecutor(Program("test", ISA_VERSION, tuple(SPACES)), Memory(SPACES))
    with pytest.raises(FunctionalError, match=r"instruction 3: out of range \(the program has 0"):
        executor.execute(3)


# ---- a whole program ----------------------------------------------------------------------------

def test_tiny_program_load_multiply_cast_store() -> None:
    """C = bf16(x[:, 16:48] @ w.T): a strided load, a gemm, a cast and a store, then numpy."""
    m, k, n = 8, 32, 16
    x = to_storage(rng.normal(size=(m, 64)), "bf16")
    w = to_storage(rng.normal(size=(n, k)), "bf16")
    symbols = (Symbol("x", "dram", 0x0, (m, 64), DType.bf16),
               Symbol("w", "dram", 0x1000, (n, k), DType.bf16),
               Symbol("y", "dram", 0x2000, (m, n), DType.bf16))
    instrs = [
        Instr.make("dmacfg", "dma0", src_stride=64 * 2, dst_stride=0),
        Instr.make("load", "dma0", dst="sram[0x0]", src="dram[0x20]", rows=m, row_bytes=k * 2),
        Instr.make("dmacfg", "dma0", src_stride=0, dst_stride=0),
        Instr.make("load", "dma0", dst="sram[0x1000]", src="dram[0x1000]", rows=n,
                   row_bytes=k * 2),
        Instr.make("signal", "dma0", sem=1),
        Instr.make("wait", "mxu0", sem=1),
        Instr.make("mcfg", "mxu0", m=m, n=n, k=k, dtype="bf16", acc="fp32"),
        Instr.make("gemm", "mxu0", c="acc[0x0]", a="sram[0x0]", b="sram[0x1000]", accumulate=0,
                   transpose_b=1, stream=0, preloaded=0),
        Instr.make("signal", "mxu0", sem=2),
        Instr.make("wait", "vpu0", sem=2),
        Instr.make("vcfg", "vpu0", rows=m, cols=n, dtype="fp32", out="bf16", imm=0.0),
        Instr.make("vec", "vpu0", func="copy", bcast="none", dst="sram[0x2000]", a="acc[0x0]",
                   b="acc[0x0]"),
        Instr.make("signal", "vpu0", sem=3),
        Instr.make("wait", "dma0", sem=3),
        Instr.make("store", "dma0", dst="dram[0x2000]", src="sram[0x2000]", rows=m,
                   row_bytes=n * 2),
        Instr.make("halt", "dma0"),
    ]
    program = Program("test", ISA_VERSION, tuple(SPACES), symbols, tuple(instrs), data={"x": x, "w": w})
    verify(program, MachineView(
        spaces={name: MemorySpace(name, size, on_chip=name != "dram")
                for name, size in SPACES.items()},
        queues=frozenset({"dma0", "mxu0", "vpu0"})))
    memory = Memory(SPACES)
    memory.load_program_data(program)
    executor = FunctionalExecutor(program, memory)
    for index in range(len(program.instructions)):
        executor.execute(index)
    a = from_storage(x, "bf16")[:, 16:48]
    accumulated = from_storage(to_storage(a @ from_storage(w, "bf16").T, "fp32"), "fp32")
    expected = from_storage(to_storage(accumulated, "bf16"), "bf16")
    np.testing.assert_array_equal(memory.read_symbol(program, "y"), expected)
