"""Progress bars for the long commands (`tessel sim`, `compare`, `compile`): one per phase.

    progress = Progress()                                  # the command's clock starts
    with progress.phase("pim: simulate", n, "instr") as bar:
        simulate(..., progress=bar)                        # bar(stage, done), or None

A phase is a tqdm bar on stderr, updated by the layer doing the work through a plain
callback `(stage: str, done: int) -> None` (compiler/pipeline.py: steps done; sim/simulate.py:
instructions started, in chunks of 0.5 %), so the compiler and simulator never import tqdm.
Bars appear only once the command has run DELAY_S seconds (a quick run prints nothing), and
only when stderr is a terminal: piped or redirected to a file, stderr gets no bar lines at
all (tqdm would write one line per refresh there), and a phase yields None so the engine does
not even count. A finished phase clears its line (`leave=False`); the report and any
`--json /dev/stdout` are written after the last bar is gone, to stdout, so they never mix.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["Bar", "Progress", "QUIET", "DELAY_S"]

DELAY_S = 2.0  # a command's bars appear once it has run this long (tests set it to 0)


class Bar:
    """One phase's bar as the callback the working layer calls: bar(stage, done) shows what it
    does now (after the description) and how many units are done (absolute, not a step)."""

    __slots__ = ("_bar", "_stage")

    def __init__(self, bar: tqdm) -> None:
        self._bar = bar
        self._stage = ""

    def __call__(self, stage: str, done: int) -> None:
        bar = self._bar
        if stage != self._stage:   # a new stage is drawn at once, once the bar shows at all
            bar.set_postfix_str(stage, refresh=False)
            self._stage = stage
            bar.n = done
            if bar.last_print_t >= bar.start_t + bar.delay:
                bar.refresh()
            return
        bar.update(done - bar.n)   # draws at most every 0.1 s (tqdm's mininterval)


@dataclass(frozen=True)
class Progress:
    """The bars of one command, timed from its start; `enabled=False` shows none (QUIET:
    library calls, sweep workers, tests)."""

    enabled: bool = True
    started_s: float = field(default_factory=time.monotonic)

    @contextmanager
    def phase(self, desc: str, total: int, unit: str) -> Iterator[Bar | None]:
        """A bar of `total` units for the work inside the block; None when no bar can show."""
        stream = sys.stderr                     # looked up now: a test may replace it
        if not self.enabled or not stream.isatty():
            yield None
            return
        from tqdm import tqdm          # only where a bar can show: piped runs never load it

        delay_s = max(DELAY_S - (time.monotonic() - self.started_s), 0.0)
        with tqdm(total=total, desc=desc, unit=unit, unit_scale=total >= 10_000, file=stream,
                  delay=delay_s, leave=False, dynamic_ncols=True) as bar:
            yield Bar(bar)


QUIET = Progress(enabled=False)
