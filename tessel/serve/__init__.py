"""Serving: request traces through a batching scheduler on a simulated target.

    requests (read_trace | synthetic) -> serve(requests, cost_model, scheduler=, kv=, preemption=)
        -> ServeResult -> summarize / write_outputs

The step cost is the caller's `CostModel` (a step of several requests, each a prefill chunk
or a decode): `tessel serve` (command.py) gives the simulator's or the GPU baseline's
(simulated.py). docs/serving.md describes the schedulers, the preemption modes, the metrics
and the trace formats.
"""
from tessel.serve.engine import RequestRecord, Rejection, ServeResult, StepRecord, serve
from tessel.serve.errors import ServeError
from tessel.serve.kv import BlockManager, KVConfig
from tessel.serve.metrics import request_rows, summarize
from tessel.serve.output import REQUEST_COLUMNS, chrome_trace, write_outputs
from tessel.serve.preemption import Preemption, Recompute, Swap
from tessel.serve.scheduler import POLICIES, Scheduler
from tessel.serve.step import CostModel, Memo, Step, StepCost, StepEntry, StepShape
from tessel.serve.traces import read_trace, write_trace
from tessel.serve.workload import Lengths, Request, parse_lengths, synthetic

__all__ = ["Request", "Lengths", "parse_lengths", "synthetic", "read_trace", "write_trace",
           "KVConfig", "BlockManager", "StepEntry", "Step", "StepShape", "StepCost", "CostModel", "Memo",
           "Scheduler", "POLICIES", "Recompute", "Swap", "Preemption",
           "serve", "ServeResult", "RequestRecord", "StepRecord", "Rejection",
           "summarize", "request_rows", "write_outputs", "chrome_trace", "REQUEST_COLUMNS", "ServeError"]
