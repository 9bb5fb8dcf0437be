"""Precision: gains and biases keep fp32, every other value takes the operand type."""
from compiler.frontend import load_model
from compiler.ir import DType
from compiler.passes.precision import precision
from compiler.passes.storage import plan_storage
from compiler.phase import decode


def test_gains_and_biases_keep_fp32_and_storage_follows():
    graph = load_model("gpt2").graph(decode(2))
    p = precision(graph, DType.bf16)
    assert {"h.0.ln_1.weight", "h.0.ln_1.bias", "h.0.attn.c_attn.bias", "ln_f.weight"} <= p.fp32
    assert "h.0.attn.c_attn.weight" not in p.fp32 and "wte.weight" not in p.fp32
    plan = plan_storage(graph, p.dtype, p.fp32)
    assert plan.buffers["h.0.ln_1.weight"].dtype is DType.fp32
    assert plan.buffers["h.0.attn.c_attn.weight"].dtype is DType.bf16
    assert p.dump().splitlines()[:2] == ["operand and storage type: bf16",
                                         f"kept in fp32 ({len(p.fp32)} parameters: gains and biases):"]
