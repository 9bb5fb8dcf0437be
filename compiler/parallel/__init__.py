"""Several devices: the parallel plan and the per-device graphs it implies (docs/parallel.md).

- `plan`: ParallelPlan and make_plan (tp x pp devices, validated against a model config),
  stages (the layers of each pipeline stage);
- `shard`: Shard (what one device builds), Part (the slice of a full parameter it holds),
  PartBuilder (the graph builder the frontends build through) and ShardGraph;
- `partition`: a plan's device graphs, built by the model's frontend;
- `schedule`: the forward-only (GPipe) pipeline schedule of micro-batches and its bubble;
- `reference`: the numpy reference run of a whole plan (ring all-reduce, stage hand-off).

Nothing is imported here: the frontends import `shard`, and `plan` imports the frontends.
"""
