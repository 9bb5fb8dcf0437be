"""arch.links: the link presets load, every number carries its source, overrides apply, and bad
fields are refused with one line naming the file (or `--set`), the field and the value."""
from __future__ import annotations

import dataclasses
import re
import tomllib
import typing

import pytest

from arch import ArchError, load_arch, preset_names
from arch.limits import LIMITS
from arch.links import LINK_DIR, LinkArch, link_names, load_link

PRESETS = ("cxl-cent", "nvlink2-v100", "nvlink3-a100", "nvlink4-h100", "pcie3-x16", "pcie4-x16",
           "pcie5-x16", "sn40l-rdn", "tpu-v4-ici")


def test_every_preset_loads_under_its_own_name():
    assert tuple(link_names()) == PRESETS
    for name in PRESETS:
        link = load_link(name)
        assert isinstance(link, LinkArch) and link.name == name


def test_link_presets_stay_out_of_the_device_presets():
    assert not set(link_names()) & set(preset_names())
    with pytest.raises(ArchError, match=r"^unknown architecture 'nvlink4-h100'"):
        load_arch("nvlink4-h100")
    with pytest.raises(ArchError, match=r"^unknown link 'gpu-h100-sxm': not a preset \(cxl-cent, "):
        load_link("gpu-h100-sxm")


@pytest.mark.parametrize("name", PRESETS)
def test_every_number_in_a_preset_has_a_source_or_a_labelled_assumption(name):
    text = (LINK_DIR / f"{name}.toml").read_text()
    for line in text.splitlines():
        key, sep, rest = line.partition("=")
        if not sep or line.startswith("#"):
            continue
        value = tomllib.loads(f"v = {rest.partition('#')[0]}")["v"]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert "#" in rest, line


def test_every_numeric_field_declares_a_limit():
    hints = typing.get_type_hints(LinkArch)
    for f in dataclasses.fields(LinkArch):
        if hints[f.name] in (int, float) or typing.get_origin(hints[f.name]) is dict:
            assert f.metadata.get("limit") in LIMITS, f.name


def test_the_published_figures_the_presets_hold():
    h100, a100 = load_link("nvlink4-h100"), load_link("nvlink3-a100")
    assert h100.links_per_device * h100.link_bw_gbps == 450.0          # per direction
    assert h100.device_bytes_per_s == pytest.approx(370e9, rel=1e-4)    # NCCL's effective
    assert a100.links_per_device * a100.link_bw_gbps == 300.0
    assert a100.device_bytes_per_s == pytest.approx(240e9)
    assert h100.in_network_reduction and not a100.in_network_reduction
    tpu = load_link("tpu-v4-ici")
    assert tpu.devices == 64 and tpu.links_per_device == 6
    assert load_link("cxl-cent").step_latency_ns == 4 * 25 + 2 * 30 + 20
    assert load_link("nvlink4-h100").devices is None


def test_set_overrides_apply():
    link = load_link("nvlink4-h100", ["links_per_device=9", "efficiency=0.5"])
    assert (link.links_per_device, link.efficiency) == (9, 0.5)
    tpu = load_link("tpu-v4-ici", ["torus_dims.z=8"])
    assert tpu.torus_dims == {"x": 4, "y": 4, "z": 8} and tpu.devices == 128
    ring = load_link("pcie4-x16", ["topology=ring", "links_per_device=2"])
    assert ring.topology == "ring"


@pytest.mark.parametrize("override, message", [
    ("link_bw_gbps=-1", r"field 'link_bw_gbps' must be a number from 0.1 to 1000000 GB/s, got -1"),
    ("links_per_device=2.5",
     r"field 'links_per_device' must be an integer from 1 to 65536 units, got 2.5"),
    ("efficiency=1.5", r"field 'efficiency' must be a number above 0 and at most 1, got 1.5"),
    ("in_network_reduction=1", r"field 'in_network_reduction' must be true or false, got 1"),
    ("topology=mesh", r"field 'topology' must be one of switch, ring, torus, got 'mesh'"),
    ("link_bw=25", r"unknown field 'link_bw' \(did you mean 'link_bw_gbps'\?\)"),
    ("torus_dims.x=0", r"field 'torus_dims.x' must be an integer from 1 to 65536 units, got 0"),
])
def test_a_bad_set_names_the_argument_field_and_value(override, message):
    with pytest.raises(ArchError, match=rf"^--set {re.escape(override)}: {message}$"):
        load_link("nvlink4-h100", [override])


@pytest.mark.parametrize("preset, overrides, message", [
    ("nvlink4-h100", ["topology=torus"],
     r"field 'torus_dims' must give the chips along each dimension of the torus "
     r"\(e.g. \{x = 4, y = 4, z = 4\}\), got \{\}"),
    ("nvlink3-a100", ["torus_dims.x=4"], r"field 'torus_dims' must be \{\} for a switch topology, "
                                         r"got \{'x': 4\}"),
    ("tpu-v4-ici", ["links_per_device=4"],
     r"field 'links_per_device' must be 6 for a 3-dimensional torus \(one link to each "
     r"neighbour\), got 4"),
    ("tpu-v4-ici", ["torus_dims.y=1"],
     r"field 'torus_dims.y' must be at least 2 chips \(a dimension of one chip has no links\), "
     r"got 1"),
    ("pcie4-x16", ["topology=ring", "links_per_device=3"],
     r"field 'links_per_device' must be even for a ring \(half to each neighbour\), got 3"),
    ("nvlink4-h100", ["topology=ring"],
     r"field 'in_network_reduction' needs a switch to reduce in, but the topology is ring"),
    ("nvlink3-a100", ["reduction_latency_us=23"],
     r"field 'reduction_latency_us' must be 0 without in_network_reduction, got 23.0"),
])
def test_cross_field_errors_name_the_file_and_the_overrides(preset, overrides, message):
    sets = ", ".join(f"--set {o}" for o in overrides)
    with pytest.raises(ArchError, match=rf"^.*arch/configs/links/{preset}.toml with "
                                        rf"{re.escape(sets)}: {message}$"):
        load_link(preset, overrides)


def test_bad_files_are_one_line_naming_the_file(tmp_path):
    text = (LINK_DIR / "nvlink4-h100.toml").read_text()
    path = tmp_path / "mine.toml"
    path.write_text(text.replace("link_bw_gbps = 25.0", "link_bw_gbps = -25.0"))
    with pytest.raises(ArchError, match=rf"^{re.escape(str(path))}: field 'link_bw_gbps' must be "
                                        r"a number from 0.1 to 1000000 GB/s, got -25.0$"):
        load_link(path)
    path.write_text(text.replace("efficiency = 0.8222", 'efficiency = "high"'))
    with pytest.raises(ArchError, match=r"mine.toml: field 'efficiency' must be a number .*, "
                                        r"got 'high'$"):
        load_link(path)
    path.write_text(text + "colour = 3\n")
    with pytest.raises(ArchError, match=r"mine.toml: unknown field 'colour' \(fields: name, "):
        load_link(path)
    path.write_text(text.replace("name = ", "name = = "))
    with pytest.raises(ArchError, match=r"mine.toml: invalid TOML: "):
        load_link(path)
    path.write_bytes(text.encode() + b"# \xff\n")
    with pytest.raises(ArchError, match=r"mine.toml: not UTF-8 text \(byte \d+\)$"):
        load_link(path)
    with pytest.raises(ArchError, match=r"nothere.toml: cannot read \("):
        load_link(tmp_path / "nothere.toml")
