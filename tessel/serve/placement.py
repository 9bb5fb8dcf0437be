"""Where a serving step runs: one device, or the `tp` tensor-parallel ranks of a node.

Under tensor parallelism every rank runs the same program on its share of the heads, KV heads
and MLP columns (compiler.parallel), joined by all-reduces on the node's link, so one rank's
program stands for the node (sim/multi.py's symmetric node) and one rank's memory bounds its
KV cache: each rank holds its KV heads' share of every token.
"""
from __future__ import annotations

from dataclasses import dataclass

from arch.links import LinkArch
from compiler.frontend import Model
from compiler.ir import Graph
from compiler.parallel.partition import device_graph
from compiler.parallel.plan import make_plan
from sim.multi import simulate_node

__all__ = ["Placement", "ONE_DEVICE"]


@dataclass(frozen=True)
class Placement:
    tp: int = 1
    link: LinkArch | None = None     # how the ranks are joined (tp > 1)

    def graph(self, model: Model, phase) -> Graph:
        """The graph one device runs for `phase` (a Phase or a serving Step): the whole
        model's, or rank 0's of the tensor-parallel plan (make_plan checks that tp divides
        the model's heads, KV heads and widths)."""
        if self.tp == 1:
            return model.graph(phase)
        plan = make_plan(model.config, self.tp, tp=self.tp)
        return device_graph(model.config, plan, phase, 0).graph

    def simulated(self, spec, arch, graph: Graph, dtype=None) -> tuple[float, float]:
        """Seconds and joules of `graph` compiled for the target and simulated timing only:
        on one device, or run by every rank of the node (the node's energy: every device's
        and the link's)."""
        program = spec.compile(graph, arch, dtype).program
        if self.tp == 1:
            result = spec.simulate(program, arch, functional=False).result
            return result.time_s, result.energy_j
        node = simulate_node([program] * self.tp, [spec.machine(arch)] * self.tp, self.link)
        return node.time_s, node.energy_j


ONE_DEVICE = Placement()
