"""Sweep specs: parsing, ranges, linked fields, seeded sampling, and one-line errors naming
the file and the key, all before anything runs."""
import tomllib
from pathlib import Path

import pytest

from arch import ARCH_CLASSES
from arch.config import CONFIG_DIR
from tessel.sweep import SweepError, load_spec
from tessel.sweep.points import points, tasks

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "sweeps").glob("*.toml"))


def write(tmp_path, body: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


SYSTOLIC = 'base = "systolic-32"\nmodels = ["gpt2"]\n[[phases]]\nkind = "decode"\nkv = 16\n'


def spec_of(tmp_path, parameters: str, extra: str = ""):
    return load_spec(write(tmp_path, SYSTOLIC + extra + "[parameters]\n" + parameters))


def test_grid_is_the_product_in_parameter_order(tmp_path):
    spec = spec_of(tmp_path, "rows = [8, 16]\ndataflow = [\"ws\", \"os\"]\n")
    assert points(spec) == [(("rows", 8), ("dataflow", "ws")), (("rows", 8), ("dataflow", "os")),
                            (("rows", 16), ("dataflow", "ws")), (("rows", 16), ("dataflow", "os"))]


def test_ranges_linear_geometric_and_float(tmp_path):
    spec = spec_of(tmp_path, "rows = { start = 8, stop = 32, step = 8 }\n"
                             "sram_bytes = { start = 65536, stop = 1048576, factor = 4 }\n"
                             "clock_mhz = { start = 1.5, stop = 2.0, step = 0.1 }\n")
    rows, sram, clock = (p.values for p in spec.parameters)
    assert rows == ((8,), (16,), (24,), (32,))
    assert sram == ((65536,), (262144,), (1048576,))
    assert clock == ((1.5,), (1.6,), (1.7,), (1.8,), (1.9,), (2.0,))


def test_int_values_of_a_float_field_become_floats_and_dotted_fields_reach_tables(tmp_path):
    spec = spec_of(tmp_path, "dram_bw_gbps = [25, 50]\n\"energy.mac_pj\" = [1.0, 2]\n"
                             "\"vector_latency_cycles.exp\" = [4, 8]\n")
    assert [p.values for p in spec.parameters] == [((25.0,), (50.0,)), ((1.0,), (2.0,)), ((4,), (8,))]
    assert tasks(spec)[0].overrides == ("dram_bw_gbps=25.0", "energy.mac_pj=1.0", "vector_latency_cycles.exp=4")


def test_linked_parameter_sets_its_fields_together(tmp_path):
    spec = spec_of(tmp_path, "shape = { link = { rows = [8, 16, 32], cols = [64, 32, 16] } }\n")
    assert points(spec) == [(("rows", 8), ("cols", 64)), (("rows", 16), ("cols", 32)), (("rows", 32), ("cols", 16))]


def test_random_sampling_is_seeded_distinct_and_inside_the_grid(tmp_path):
    grid = "rows = { start = 4, stop = 64, step = 4 }\ncols = { start = 4, stop = 64, step = 4 }\n"
    draw = lambda seed: points(spec_of(tmp_path, grid, f"[sampling]\nmethod = \"random\"\nsamples = 10\nseed = {seed}\n"))
    full = set(points(spec_of(tmp_path, grid)))
    first = draw(3)
    assert first == draw(3) and len(set(first)) == 10 and set(first) <= full
    assert first != draw(4)


def test_task_keys_change_with_point_model_phase_and_version(tmp_path):
    spec = spec_of(tmp_path, "rows = [8, 16]\n")
    keys = [t.key for t in tasks(spec, "v1")]
    assert len(set(keys)) == 2 and keys == [t.key for t in tasks(spec, "v1")]
    assert not set(keys) & {t.key for t in tasks(spec, "v2")}
    other_phase = load_spec(write(tmp_path, SYSTOLIC.replace("kv = 16", "kv = 32") + "[parameters]\nrows = [8, 16]\n"))
    assert not set(keys) & {t.key for t in tasks(other_phase, "v1")}


def test_graph_models_run_once_without_phases(tmp_path):
    graph = ROOT / "examples" / "mlp.graph"
    spec = load_spec(write(tmp_path, f'base = "systolic-32"\nmodels = ["{graph}"]\n[parameters]\nrows = [8]\n'))
    (task,) = tasks(spec)
    assert task.phase is None and task.phase_label == "fixed graph"


GOOD = 'base = "systolic-32"\nmodels = ["gpt2"]\n[[phases]]\nkind = "decode"\nkv = 16\n'


@pytest.mark.parametrize("body, message", [
    (GOOD + "[parameters]\nrowz = [8]\n",
     r"s\.toml: parameters\.rowz: unknown parameter of systolic arch \(fields: rows, cols, dataflow"),
    (GOOD + "[parameters]\nrows = { start = 64, stop = 16, step = 8 }\n",
     r"s\.toml: parameters\.rows: empty range \(start 64 > stop 16\)"),
    (GOOD + "[parameters]\nrows = []\n", r"s\.toml: parameters\.rows: empty list of values"),
    (GOOD + "[parameters]\nrows = [8, \"big\"]\n",
     r"s\.toml: parameters\.rows\[1\]: field 'rows' must be an integer from 1 to 65536 PEs, got 'big'"),
    (GOOD + "[parameters]\nrows = [8, 0]\n", r"parameters\.rows\[1\]: field 'rows' must be an integer from 1 to 65536 PEs, got 0"),
    (GOOD + "[parameters]\nrows = 8\n", r"parameters\.rows: expected a list of values or a range table"),
    (GOOD + "[parameters]\ndataflow = [\"ws\", \"xs\"]\n", r"parameters\.dataflow\[1\]: field 'dataflow' must be one of ws, os, is"),
    (GOOD + "[parameters]\n\"energy.mac_pj\" = [-1.0]\n", r"parameters\.energy\.mac_pj\[0\]: field 'energy\.mac_pj' must be a number above 0 and at most 100000 pJ, got -1\.0"),
    (GOOD + "[parameters]\nenergy = [1]\n", r"parameters\.energy: 'energy' is a table: sweep one of its fields"),
    (GOOD + "[parameters]\n\"vector_latency_cycles.cos\" = [1]\n", r"must name one entry of the table 'vector_latency_cycles'"),
    (GOOD + "[parameters]\nname = [\"x\"]\n", r"parameters\.name: unknown parameter"),
    (GOOD + "[parameters]\nrows = { start = 8, stop = 16 }\n", r"parameters\.rows: a range needs exactly one of 'step'"),
    (GOOD + "[parameters]\nrows = { start = 8, stop = 16, step = 0 }\n", r"parameters\.rows\.step: must be positive"),
    (GOOD + "[parameters]\nrows = { start = 8, stop = 16, stride = 2 }\n", r"parameters\.rows\.stride: unknown key of a range"),
    (GOOD + "[parameters]\nrows = { start = 1, stop = 1e9, step = 1 }\n", r"parameters\.rows: the range has 1,000,000,000 values"),
    (GOOD + "[parameters]\nx = { link = { rows = [8, 16], cols = [8] } }\n",
     r"parameters\.x\.link: the value lists differ in length \(rows: 2, cols: 1\)"),
    (GOOD + "[parameters]\nrows = [8]\nx = { link = { rows = [8], cols = [8] } }\n",
     r"parameters\.x: field 'rows' is also set by parameters\.rows"),
    (GOOD + "[parameters]\n", r"s\.toml: parameters: expected a table of one or more parameters"),
    ("metric = 1\n" + GOOD + "[parameters]\nrows = [8]\n", r"s\.toml: metric: unknown key"),
    ('metrics = ["latency"]\n' + GOOD + "[parameters]\nrows = [8]\n", r"s\.toml: metrics\[0\]: unknown metric 'latency'"),
    (GOOD.replace("systolic-32", "systolic-33") + "[parameters]\nrows = [8]\n", r"s\.toml: base: unknown architecture 'systolic-33'"),
    (GOOD.replace('"gpt2"', '"gpt5"') + "[parameters]\nrows = [8]\n", r"s\.toml: models\[0\]: unknown model 'gpt5'"),
    (GOOD.replace("kv = 16", "kv = 1024") + "[parameters]\nrows = [8]\n", r"s\.toml: phases\[0\]: gpt2: 1025 positions exceed"),
    (GOOD.replace("kv = 16", "seq = 16") + "[parameters]\nrows = [8]\n", r"s\.toml: phases\[0\]\.seq: not a key of a decode phase"),
    (GOOD.replace("kv = 16", "kv = 0") + "[parameters]\nrows = [8]\n", r"s\.toml: phases\[0\]\.kv: expected a positive integer, got 0"),
    ('base = "systolic-32"\nmodels = ["gpt2"]\n[parameters]\nrows = [8]\n', r"s\.toml: phases: missing"),
    (GOOD + "[parameters]\nrows = [8, 16]\n[sampling]\nmethod = \"random\"\nsamples = 3\n",
     r"s\.toml: sampling\.samples: 3 is more than the 2 points of the grid"),
    (GOOD + "[parameters]\nrows = [8]\n[sampling]\nmethod = \"sobol\"\n", r"sampling\.method: expected \"grid\" or \"random\""),
    (GOOD + "[parameters]\nrows = [8]\n[plot]\naxes = [[\"time_s\", \"speed\"]]\n", r"s\.toml: plot\.axes\[0\]: unknown metric 'speed'"),
    (GOOD + "[parameters]\ndataflow = [\"ws\"]\n[plot]\naxes = [[\"time_s\", \"dataflow\"]]\n", r"plot\.axes\[0\]: unknown metric 'dataflow'.*nor a numeric swept parameter"),
    ("base = [", r"s\.toml: invalid TOML"),
    ('quant = ["none", "kv:int4:g128"]\n' + GOOD + "[parameters]\nrows = [8]\n",
     r"s\.toml: quant\[1\]: recipe 'kv:int4:g128': kv .* reaches across its 12 heads of 64"),
    ('quant = ["w4a16:g100"]\n' + GOOD + "[parameters]\nrows = [8]\n",
     r"s\.toml: quant\[0\]: recipe 'w4a16:g100': weights: group 100 does not divide the 768"),
    ('quant = ["w8a16", "w8a16"]\n' + GOOD + "[parameters]\nrows = [8]\n", r"s\.toml: quant: a recipe is listed twice"),
    ('quant = ["r.toml"]\n' + GOOD + "[parameters]\nrows = [8]\n", r"s\.toml: quant\[0\]: .*r\.toml: cannot read"),
    ('quant = "w8a16"\n' + GOOD + "[parameters]\nrows = [8]\n", r"s\.toml: quant: expected a non-empty list"),
    ('quant = ["w8a16"]\nbase = "systolic-32"\nmodels = ["gpt2"]\n[parameters]\nrows = [8]\n[serve]\n'
     'rate = 4.0\nrequests = 3\nprompt = "fixed:8"\noutput = "fixed:2"\n',
     r"s\.toml: quant: not with \[serve\] \(a serving point runs full precision\)"),
    (f'quant = ["w8a16"]\nbase = "systolic-32"\nmodels = ["{ROOT}/examples/mlp.graph"]\n'
     "[parameters]\nrows = [8]\n",
     r"s\.toml: quant\[0\]: model '.*mlp\.graph' is a \.graph file; a recipe needs a model config"),
    ('quant = ["w4a16:g32"]\n' + GOOD.replace("systolic-32", "pim-gpt") + "[parameters]\nchannels = [8]\n",
     r"s\.toml: quant\[0\]: weight 'h\.0\.attn\.c_attn\.weight' in int4, a scale per 32 input "
     r"channels: on the PIM target a scale group holds whole MAC columns"),
])
def test_bad_specs_are_rejected_naming_file_and_key(tmp_path, body, message):
    with pytest.raises(SweepError, match=message) as info:
        load_spec(write(tmp_path, body))
    assert "\n" not in str(info.value)


def test_a_quant_list_makes_a_task_per_recipe_and_none_keeps_its_keys(tmp_path):
    plain = tasks(spec_of(tmp_path, "rows = [8, 16]\n"))
    quant = tasks(load_spec(write(tmp_path, 'quant = ["none", "w4a16:g128"]\n' + SYSTOLIC
                                  + "[parameters]\nrows = [8, 16]\n", "q.toml")))
    assert [(t.point, t.quant_label, t.quant) for t in quant] == [
        ((("rows", 8),), "none", None), ((("rows", 8),), "w4a16:g128", "w4a16:g128"),
        ((("rows", 16),), "none", None), ((("rows", 16),), "w4a16:g128", "w4a16:g128")]
    assert [t.key for t in quant[::2]] == [t.key for t in plain]          # none: the same results
    assert len({t.key for t in quant}) == 4 and all(t.quant_label is None for t in plain)


def test_pim_mac_lanes_swept_alone_fails_per_point_not_per_value(tmp_path):
    """A lane count is a valid value of its field; only the point (lanes != burst_bytes / 2)
    is invalid, so it is a failed point with the architecture's reason, not a spec error."""
    from tessel.targets import TARGETS
    from tessel.sweep.evaluate import evaluate_point
    if "pim" not in ARCH_CLASSES or "pim" not in TARGETS:
        pytest.skip("the pim target is missing (architecture or compiler not registered)")
    spec = load_spec(write(tmp_path, 'base = "pim-gpt"\nmodels = ["gpt2"]\n[[phases]]\nkind = "decode"\n'
                                     "kv = 16\n[parameters]\nmacs_per_bank_per_access = [8, 16]\n"))
    lonely = tasks(spec)[0]
    assert lonely.point == (("macs_per_bank_per_access", 8),)
    outcome = evaluate_point(lonely)
    assert not outcome.ok and "field 'burst_bytes' must be macs_per_bank_per_access x bf16 bytes (16)" in outcome.error


def target_of(example: Path) -> str | None:
    """The target of an example's base preset, read without loading the spec."""
    base = tomllib.loads(example.read_text()).get("base", "")
    preset = CONFIG_DIR / f"{base}.toml"
    path = preset if preset.is_file() else example.parent / base
    return tomllib.loads(path.read_text()).get("target") if path.is_file() else None


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_every_example_spec_is_valid(example):
    target = target_of(example)
    if target not in ARCH_CLASSES:
        pytest.skip(f"{example.name}: the architecture of target '{target}' is missing (not registered)")
    spec = load_spec(example)
    assert spec.target == target and len(tasks(spec)) > 1


def test_examples_cover_systolic_and_pim():
    assert {"systolic-array.toml", "systolic-random.toml", "pim-channels.toml"} <= {e.name for e in EXAMPLES}
