"""The parallel plan: how many devices, split how (tensor, pipeline, expert parallel).

`make_plan` checks a plan against the model before any graph is built, so a plan that cannot
split the model is refused at the boundary with one line naming the flag, its value and the
model field it does not divide (the CLI's flags are --devices, --tp, --pp and --ep).
Devices are numbered stage-major: device = stage x tp + rank, so a stage's tensor-parallel
ranks are neighbours (Megatron keeps its all-reduce groups inside a node).
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler.frontend.decoder import DecoderConfig
from compiler.frontend.gpt2 import GPT2Config
from compiler.ir import GraphError
from compiler.parallel.shard import Shard

__all__ = ["ParallelPlan", "PlanError", "make_plan", "stages", "DISPATCHES"]

# How expert parallelism moves tokens to the experts (docs/parallel.md): `all_to_all` splits a
# MoE layer's tokens over the ranks, sends each pair to its expert's rank and back, and
# all-gathers the outputs (Megatron's all-to-all token dispatcher); `replicated` keeps every
# token on every rank, each rank running its experts on the tokens that chose them, their
# partial outputs summed by the all-reduce tensor parallelism has anyway.
DISPATCHES = ("all_to_all", "replicated")


class PlanError(GraphError):
    """A parallel plan the model (or the device count) does not allow."""


@dataclass(frozen=True, slots=True)
class ParallelPlan:
    """`devices` = tp x pp devices: pp pipeline stages of tp tensor-parallel ranks each; ep
    of the devices share each MoE layer's experts."""

    devices: int
    tp: int = 1
    pp: int = 1
    ep: int = 1
    dispatch: str | None = None     # expert parallelism's: all_to_all or replicated (DISPATCHES)

    def __post_init__(self) -> None:
        for flag in ("devices", "tp", "pp", "ep"):
            value = getattr(self, flag)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PlanError(f"--{flag} {value!r}: must be a positive integer")
        if self.tp * self.pp != self.devices:
            raise PlanError(f"--devices {self.devices}: --tp {self.tp} x --pp {self.pp} "
                            f"uses {self.tp * self.pp} devices")
        if self.devices % self.ep:
            raise PlanError(f"--ep {self.ep}: does not divide --devices {self.devices}")
        if self.ep > 1 and self.dispatch not in DISPATCHES:
            raise PlanError(f"--ep-dispatch {self.dispatch!r}: must be one of {', '.join(DISPATCHES)}")
        if self.ep == 1 and self.dispatch is not None:
            raise PlanError(f"--ep-dispatch {self.dispatch}: only with --ep > 1")

    def shard(self, device: int) -> Shard:
        """What device `device` builds: stage device // tp, rank device % tp."""
        if not (isinstance(device, int) and 0 <= device < self.devices):
            raise PlanError(f"device {device!r}: the plan has devices 0 to {self.devices - 1}")
        return Shard(tp=self.tp, rank=device % self.tp, pp=self.pp, stage=device // self.tp,
                     spread_experts=self.ep > 1,
                     split_tokens=self.ep > 1 and self.dispatch == "all_to_all")

    def device(self, stage: int, rank: int) -> int:
        return stage * self.tp + rank


def _fields(config: GPT2Config | DecoderConfig) -> tuple[tuple[str, int], ...]:
    """(field, value) pairs that tp must divide: heads, KV heads and MLP widths in use."""
    if isinstance(config, GPT2Config):
        mlp = () if config.n_inner is None else (("n_inner", config.n_inner),)
        return (("n_head", config.n_head), *mlp)
    # num_attention_heads is a multiple of num_key_value_heads (DecoderConfig checks), so tp
    # divides it whenever it divides the KV heads
    dense = not config.num_experts or config.dense_layers
    return (("num_key_value_heads", config.num_key_value_heads),
            *((("intermediate_size", config.intermediate_size),) if dense else ()),
            *((("moe_intermediate_size", config.moe_intermediate_size),) if config.num_experts else ()))


def make_plan(config: GPT2Config | DecoderConfig, devices: int, *, tp: int = 1, pp: int = 1,
              ep: int = 1, dispatch: str | None = None) -> ParallelPlan:
    """The plan, checked against `config`: tp divides the heads, KV heads and MLP widths, pp the
    layers, ep the experts (and a dense model takes no ep). `dispatch`: how expert parallelism
    moves tokens (DISPATCHES; default all_to_all when ep > 1)."""
    if not isinstance(config, (GPT2Config, DecoderConfig)):
        raise PlanError(f"model {getattr(config, 'name', config)!r} has no config to partition "
                        "(a .graph file): a parallel plan needs a preset or a checkpoint")
    plan = ParallelPlan(devices, tp, pp, ep, dispatch or ("all_to_all" if ep > 1 else None))
    for field, value in _fields(config):
        if value % tp:
            raise PlanError(f"--tp {tp}: {field} {value} of {config.name} is not divisible by {tp}")
    layers = "n_layer" if isinstance(config, GPT2Config) else "num_hidden_layers"
    if config.n_layer % pp:
        raise PlanError(f"--pp {pp}: {layers} {config.n_layer} of {config.name} is not "
                        f"divisible by {pp}")
    experts = getattr(config, "num_experts", 0)
    if ep > 1 and not experts:
        raise PlanError(f"--ep {ep}: {config.name} is a dense model (no experts to spread)")
    if experts % ep:
        raise PlanError(f"--ep {ep}: num_experts {experts} of {config.name} is not divisible by {ep}")
    if ep > 1 and ep != tp:
        raise PlanError(f"--ep {ep}: a stage's experts are spread over its tensor-parallel "
                        f"ranks, so --ep must equal --tp ({tp})")
    return plan


def stages(config: GPT2Config | DecoderConfig, pp: int) -> tuple[range, ...]:
    """The consecutive layers of each of pp pipeline stages, n_layer / pp each."""
    make_plan(config, pp, pp=pp)
    return tuple(Shard(pp=pp, stage=s).layers(config.n_layer) for s in range(pp))
