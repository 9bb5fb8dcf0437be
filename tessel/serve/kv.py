"""A paged KV cache as vLLM's block manager (PagedAttention, SOSP'23): the device's KV memory
is `capacity_blocks` blocks of `block_size` tokens; each request holds a whole number of
blocks (its block table; the count is all the cost depends on), taken as its tokens grow and
given back at once when it finishes or is preempted.

The capacity is the caller's: the blocks the target's memory holds after the weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from tessel.serve.errors import ServeError
from tessel.serve.workload import Request

__all__ = ["KVConfig", "BlockManager", "DEFAULT_BLOCK_SIZE"]

DEFAULT_BLOCK_SIZE = 16   # tokens per block: vLLM's default --block-size (vLLM engine-args docs)


@dataclass(frozen=True, slots=True)
class KVConfig:
    """The device's KV cache: how many blocks, of how many tokens each."""

    capacity_blocks: int
    block_size: int = DEFAULT_BLOCK_SIZE

    def __post_init__(self) -> None:
        for name in ("capacity_blocks", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ServeError(f"KV cache: {name} must be an integer >= 1, got {value!r}")

    def blocks_for(self, tokens: int) -> int:
        """Blocks that hold `tokens` tokens (the last one partly filled)."""
        return -(-tokens // self.block_size)

    def refusal(self, request: Request) -> str | None:
        """Why `request` can never be served by this cache, or None when it can: at its longest
        it holds its prompt and all but its last output token."""
        need = self.blocks_for(request.kv_tokens_max)
        if need <= self.capacity_blocks:
            return None
        return (f"needs {need} KV blocks ({request.kv_tokens_max} tokens) but the cache holds "
                f"{self.capacity_blocks} blocks of {self.block_size} tokens")


class BlockManager:
    """The blocks each request holds now; never more than the capacity in all (asserted)."""

    __slots__ = ("config", "_held", "_used")

    def __init__(self, config: KVConfig) -> None:
        self.config = config
        self._held: dict[int, int] = {}
        self._used = 0

    @property
    def used_blocks(self) -> int:
        return self._used

    @property
    def free_blocks(self) -> int:
        return self.config.capacity_blocks - self._used

    def held(self, request_id: int) -> int:
        return self._held.get(request_id, 0)

    def can_admit(self, tokens: int, *, reserved_blocks: int = 0) -> bool:
        """Whether a new table of `tokens` tokens fits beside `reserved_blocks` promised elsewhere."""
        return self.config.blocks_for(tokens) + reserved_blocks <= self.free_blocks

    def growth(self, request_id: int, tokens: int) -> int:
        """Blocks a request must take to hold `tokens` tokens in all (0 when it holds enough)."""
        return max(self.config.blocks_for(tokens) - self.held(request_id), 0)

    def allocate(self, request_id: int, blocks: int) -> None:
        """A new table of `blocks` blocks (a prefill's whole prompt, or a swapped table coming back)."""
        assert request_id not in self._held, f"request {request_id} already holds KV blocks"
        self._take(request_id, blocks)

    def grow(self, request_id: int, tokens: int) -> int:
        """Take the blocks to hold `tokens` tokens in all; the number taken."""
        assert request_id in self._held, f"request {request_id} holds no KV blocks"
        blocks = self.growth(request_id, tokens)
        self._take(request_id, blocks)
        return blocks

    def free(self, request_id: int) -> int:
        """Give back every block of a request; the number given back."""
        blocks = self._held.pop(request_id)
        self._used -= blocks
        return blocks

    def _take(self, request_id: int, blocks: int) -> None:
        assert blocks <= self.free_blocks, (f"request {request_id} takes {blocks} KV blocks, "
                                            f"{self.free_blocks} free")
        self._held[request_id] = self._held.get(request_id, 0) + blocks
        self._used += blocks
