"""What `verify` needs to know about a machine; `arch/` builds these from its configs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from isa.errors import IsaError
from isa.values import NAME_RE, Queue

__all__ = ["MemorySpace", "MachineView"]


@dataclass(frozen=True, slots=True)
class MemorySpace:
    """A named, byte-addressed memory of the machine; on-chip or off-chip (for DMA direction)."""

    name: str
    size_bytes: int
    on_chip: bool

    def __post_init__(self) -> None:
        if type(self.name) is not str or NAME_RE.fullmatch(self.name) is None:
            raise IsaError(f"memory space name {self.name!r} is not an identifier")
        if type(self.size_bytes) is not int or self.size_bytes <= 0:
            raise IsaError(f"memory space {self.name}: size_bytes={self.size_bytes!r} "
                           "must be a positive int")


@dataclass(frozen=True, slots=True)
class MachineView:
    """The machine as the verifier sees it.

    spaces: name -> MemorySpace. queues: queue texts that exist (`dma0`, `pim3`).
    limits: optional bounds; a key that names a field (`bank`, `row`, `col`, `stages`...)
    requires every value of that field to be < the limit (so pass count+1 to bound a count);
    `gbuf_bytes` (PIM global buffer size) and `pim_burst_bytes` (bytes per column burst)
    size the PIM footprints; `bank`, the banks of a channel, also turns on the check of the
    pim queues' DRAM row protocol (isa/rows.py). target: when set, the program's target must
    equal it.
    """

    spaces: Mapping[str, MemorySpace]
    queues: frozenset[str]
    limits: Mapping[str, int] = field(default_factory=dict)
    target: str | None = None

    def __post_init__(self) -> None:
        spaces = dict(self.spaces)
        for name, space in spaces.items():
            if not isinstance(space, MemorySpace) or space.name != name:
                raise IsaError(f"machine space {name!r} must map to "
                               f"MemorySpace(name={name!r}, ...)")
        queues = frozenset(self.queues)
        for text in queues:
            if str(Queue.parse(text)) != text:
                raise IsaError(f"machine queue {text!r} is not canonical "
                               f"(write {Queue.parse(text)})")
        limits = dict(self.limits)
        for name, bound in limits.items():
            if type(bound) is not int or bound <= 0:
                raise IsaError(f"machine limit {name}={bound!r} must be a positive int")
        object.__setattr__(self, "spaces", MappingProxyType(spaces))
        object.__setattr__(self, "queues", queues)
        object.__setattr__(self, "limits", MappingProxyType(limits))
