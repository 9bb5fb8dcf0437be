"""Does a run fit in this machine's memory? Decided before it starts, refused with the estimate.

A run's peak is about BASE_BYTES + instructions x SIM_BYTES_PER_INSTRUCTION (the program,
its per-instruction costs and the event engine's arrays; docs/performance.md has the
breakdown) + for numeric runs the program's data and the simulated memory (each space up to
what its symbols reach). The instruction count is exact once the program is compiled: the
simulation is refused there, before it allocates anything. Compilation itself is stopped as
soon as it has emitted more instructions than the simulation could hold (checked at each op
boundary), so an impossible request fails in seconds instead of exhausting the machine
inside the compiler.

Available memory: /proc/meminfo MemAvailable (else physical memory), the address-space
limit (RLIMIT_AS, `ulimit -v`) and a cgroup v2 memory limit, whichever leaves least, plus
what this process already holds (the estimate counts it too).
"""
from __future__ import annotations

import contextlib
import os
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import isa
from isa.unroll import executed_count
from compiler.errors import InstructionLimitError
from compiler.targets.emit import instruction_limit

__all__ = ["MemoryBudgetError", "available_bytes", "check_simulation", "compile_guard",
           "numeric_reserve_bytes", "out_of_memory_is_an_error", "peak_rss_bytes", "SIM_BYTES_PER_INSTRUCTION",
           "PERIODIC_BYTES_PER_INSTANCE", "COMPILE_BYTES_PER_INSTRUCTION",
           "BASE_BYTES"]

# Measured with tracemalloc and peak RSS on gpt2 prefill-32/128 (PIM, 1.5 M / 6.1 M
# instructions): simulate() peaks at ~100 bytes an instruction, RSS at ~104; 128 leaves room
# for allocator fragmentation without refusing runs that fit.
SIM_BYTES_PER_INSTRUCTION = 128
# Compilation alone peaks at ~46 bytes an instruction (the program and the emitter's list).
COMPILE_BYTES_PER_INSTRUCTION = 64
# The periodic engine logs the op and end cycle of each instance it starts one by one (12 bytes
# in C arrays); at worst, no period found, that is every executed instance.
PERIODIC_BYTES_PER_INSTANCE = 16
# Interpreter, numpy, BLAS, the model's graph: ~60 MiB measured, with headroom.
BASE_BYTES = 128 << 20

_FIX = "simulate timing only (--no-functional), a shorter --seq or --kv, or a smaller model"


class MemoryBudgetError(ValueError):
    """A run that would need more memory than the machine has; the message gives both."""


def available_bytes() -> int:
    """Bytes a run in this process may use: what it holds now (resident), plus the least of
    the memory the kernel reports available, the room under RLIMIT_AS and the room under a
    cgroup v2 limit."""
    room = [_meminfo_available()]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        room.append(max(0, soft - _status_bytes("VmSize")))
    cgroup = _cgroup_room()
    if cgroup is not None:
        room.append(cgroup)
    return _status_bytes("VmRSS") + min(room)


def check_simulation(program: isa.Program, numerics: bool, per_pattern: bool = False) -> None:
    """Refuse to simulate `program` when its estimated peak exceeds what this process can
    have (what it holds now plus what is available). `per_pattern`: it is timed compact
    (sim/periodic.py): its words are priced as instructions, and each executed instance at
    most a log entry of the periodic engine (PERIODIC_BYTES_PER_INSTANCE), not unrolled."""
    n = executed_count(program)
    numeric = _numeric_bytes(program) if numerics else 0
    if per_pattern:
        words = len(program.instructions)
        need = BASE_BYTES + words * SIM_BYTES_PER_INSTRUCTION + n * PERIODIC_BYTES_PER_INSTANCE
        counted = f"{words:,} words x {SIM_BYTES_PER_INSTRUCTION} bytes + {n:,} instances x " \
                  f"{PERIODIC_BYTES_PER_INSTANCE}"
    else:                               # the simulator runs the unrolled program
        need = BASE_BYTES + n * SIM_BYTES_PER_INSTRUCTION + numeric
        counted = f"{n:,} instructions x {SIM_BYTES_PER_INSTRUCTION} bytes"
    have = available_bytes()
    if need > have:
        extra = f" + {_size(numeric)} of data and simulated memory" if numeric else ""
        raise MemoryBudgetError(
            f"this run needs about {_size(need)} ({counted}{extra}), more than the "
            f"{_size(have)} available to it: {_FIX}")


@contextlib.contextmanager
def compile_guard(*, simulate: bool, reserve_bytes: int = 0, reserved_for: str = "") -> Iterator[None]:
    """Inside the block, a compilation that emits more instructions than the memory left
    beside `reserve_bytes` could hold (to simulate them when `simulate`, else to write the
    program) is stopped with a MemoryBudgetError; when the reserve alone does not fit, the
    block does not start."""
    per = SIM_BYTES_PER_INSTRUCTION if simulate else COMPILE_BYTES_PER_INSTRUCTION
    have = available_bytes()
    if BASE_BYTES + reserve_bytes > have:
        raise MemoryBudgetError(
            f"this run needs more than {_size(BASE_BYTES + reserve_bytes)} ({reserved_for} "
            f"{_size(reserve_bytes)}), more than the {_size(have)} available to it: {_FIX}")
    limit = (have - BASE_BYTES - reserve_bytes) // per
    try:
        with instruction_limit(limit):
            yield
    except InstructionLimitError as stopped:
        need = BASE_BYTES + reserve_bytes + stopped.count * per
        what = "to simulate" if simulate else "to compile"
        beside = f" beside {reserved_for} {_size(reserve_bytes)}" if reserve_bytes else ""
        raise MemoryBudgetError(
            f"this run needs more than {_size(need)}: compilation stopped after "
            f"{stopped.count:,} instructions (x {per} bytes each {what}{beside}), more than "
            f"the {_size(have)} available to it: {_FIX}") from None


@contextlib.contextmanager
def out_of_memory_is_an_error() -> Iterator[None]:
    """Inside the block, running out of memory anyway (the estimates are close, not exact) is
    a MemoryBudgetError, one line, instead of a traceback."""
    try:
        yield
    except MemoryError:
        raise MemoryBudgetError(f"this run ran out of memory ({_size(available_bytes())} "
                                f"available to it now): {_FIX}") from None


def numeric_reserve_bytes(n_params: int, embedding_elements: int, itemsize: int) -> int:
    """What a numeric run holds before its program exists: the weights (float32, cached),
    then the larger of the reference's float64 copy of the embedding (its first and its last
    op use it, so it lives through the whole pass) and the program's data (the weights in the
    operand type)."""
    return 4 * n_params + max(8 * embedding_elements, itemsize * n_params)


def _numeric_bytes(program: isa.Program) -> int:
    """The program's data and, per space, the simulated memory up to its last symbol (the
    instructions' footprints reach little beyond, in the on-chip buffers)."""
    data = sum(array.nbytes for array in (program.data or {}).values())
    ends: dict[str, int] = {}
    for s in program.symbols:
        ends[s.space] = max(ends.get(s.space, 0), s.addr + s.size_bytes)
    return data + sum(ends.values())


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far, in bytes: the interpreter, compilation and
    all. On Linux /proc/self/status's VmHWM, the high-water mark of this program's own memory:
    getrusage's ru_maxrss keeps the mark of the process image before exec, so a run started
    by a large parent (a benchmark that grew to 1.3 GB) would report the parent's peak.
    Elsewhere ru_maxrss (bytes on macOS)."""
    hwm = _status_bytes("VmHWM")
    if hwm:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _status_bytes(field: str) -> int:
    """A `VmSize`/`VmRSS`/`VmHWM` line of /proc/self/status in bytes (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cgroup_room() -> int | None:
    """Room under this process's cgroup v2 memory limit, when it has one."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        path = next(line[3:] for line in lines if line.startswith("0::"))
        group = Path("/sys/fs/cgroup") / path.lstrip("/")
        limit = (group / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((group / "memory.current").read_text()))
    except (OSError, ValueError, StopIteration):
        return None


def _size(nbytes: int | float) -> str:
    """1.5 GiB, 300 MiB."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):.1f} {unit}"
    return f"{int(nbytes)} B"
