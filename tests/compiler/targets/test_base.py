"""The lowering contract: one handler per compute op kind, abstract where targets differ."""
import pytest

from compiler.ir import OpKind
from isa.opcodes import COLL_KINDS
from compiler.targets.base import HANDLERS, GemmLowering, TargetLowering
from compiler.errors import CompileError
from compiler.targets.movement import gather_block_rows


def test_every_compute_op_kind_has_a_handler_on_the_contract():
    compute = {k for k in OpKind if not (k.is_source or k.is_layout or k.is_routed)}
    assert set(HANDLERS) == {k for k in compute if not k.is_collective}
    assert all(callable(getattr(TargetLowering, name, None)) for name in HANDLERS.values())
    assert callable(TargetLowering.op_collective)       # every collective, on the link
    assert {k.coll_kind for k in compute if k.is_collective} <= set(COLL_KINDS)


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


@pytest.mark.parametrize("row_bytes, slot_bytes, rows", [
    (1536, 1600, 1),        # one row and its id padded to 64 bytes
    (1000, 2064, 2),        # 2 x 1000 + 64: the padded ids leave no room for a third row
    (1000, 3012, 2),        # 3 x (1000 + 4) fits unpadded, not with the 64-byte id block
    (100, 1 << 20, 255),    # gather moves at most 255 rows
])
def test_gather_blocks_fit_their_padded_ids(row_bytes, slot_bytes, rows):
    assert gather_block_rows("e", 1000, row_bytes, slot_bytes, 64) == rows


def test_gather_block_too_small_for_one_row():
    with pytest.raises(CompileError, match=r"op 'e' \(embedding\): one row needs 1600 bytes of the "
                                           r"gather slot \(its id padded to 64\), which holds 1599 bytes"):
        gather_block_rows("e", 10, 1536, 1599, 64)
