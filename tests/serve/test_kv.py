"""tessel/serve/kv.py: block counts, admission, growth, freeing, and requests that never fit."""
import pytest

from tessel.serve import BlockManager, KVConfig, Request, ServeError


def test_blocks_round_up_to_whole_blocks():
    kv = KVConfig(10, block_size=16)
    assert [kv.blocks_for(t) for t in (0, 1, 16, 17, 32)] == [0, 1, 1, 2, 2]
    assert KVConfig(10).block_size == 16                      # vLLM's default


def test_tables_take_grow_and_give_back_blocks():
    blocks = BlockManager(KVConfig(5, block_size=4))
    assert blocks.can_admit(20) and not blocks.can_admit(21)
    blocks.allocate(7, 2)                                     # a prefill of 5..8 tokens
    assert (blocks.used_blocks, blocks.free_blocks, blocks.held(7)) == (2, 3, 2)
    assert blocks.growth(7, 8) == 0 and blocks.grow(7, 8) == 0
    assert blocks.grow(7, 9) == 1 and blocks.held(7) == 3
    assert not blocks.can_admit(8, reserved_blocks=1) and blocks.can_admit(4, reserved_blocks=1)
    assert blocks.free(7) == 3 and blocks.used_blocks == 0


def test_taking_more_than_the_capacity_is_a_bug_caught_at_once():
    blocks = BlockManager(KVConfig(2, block_size=4))
    blocks.allocate(1, 2)
    with pytest.raises(AssertionError, match="takes 1 KV blocks, 0 free"):
        blocks.grow(1, 9)


def test_a_request_that_can_never_fit_is_refused_with_the_reason():
    kv = KVConfig(4, block_size=16)
    assert kv.refusal(Request(0, 0.0, 60, 5)) is None          # 64 tokens: exactly 4 blocks
    assert kv.refusal(Request(1, 0.0, 60, 6)) == ("needs 5 KV blocks (65 tokens) but the cache holds "
                                                  "4 blocks of 16 tokens")


@pytest.mark.parametrize("fields, message", [
    ((0,), r"KV cache: capacity_blocks must be an integer >= 1, got 0"),
    ((4, 0), r"KV cache: block_size must be an integer >= 1, got 0"),
    ((4.0,), r"KV cache: capacity_blocks must be an integer >= 1, got 4.0"),
])
def test_bad_kv_settings_are_refused(fields, message):
    with pytest.raises(ServeError, match=message):
        KVConfig(*fields)
