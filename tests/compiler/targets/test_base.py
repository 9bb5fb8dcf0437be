"""The lowering contract: one handler per compute op kind, abstract where targets differ."""
import pytest

from compiler.ir import OpKind
from compiler.targets.base import HANDLERS, GemmLowering, TargetLowering


def test_every_compute_op_kind_has_a_handler_on_the_contract():
    compute = {k for k in OpKind if not (k.is_source or k.is_layout or k.is_routed)}
    assert set(HANDLERS) == compute
    assert all(callable(getattr(TargetLowering, name, None)) for name in HANDLERS.values())


def test_the_target_specific_handlers_are_abstract():
    assert TargetLowering.__abstractmethods__ == {"add_constant", "op_linear", "op_matmul",
                                                  "op_embedding", "op_kv_append"}


def test_a_lowering_missing_a_handler_cannot_be_built():
    class NoKvAppend(TargetLowering):
        def add_constant(self, name, shape): ...
        def op_linear(self, op): ...
        def op_matmul(self, op): ...
        def op_embedding(self, op): ...

    with pytest.raises(TypeError, match="abstract method.*op_kv_append"):
        NoKvAppend(graph=None, plan=None, em=None, vector=None)


def test_a_gemm_target_implements_gemm_instead_of_linear_and_matmul():
    assert GemmLowering.__abstractmethods__ == {"add_constant", "gemm", "op_embedding", "op_kv_append"}
