"""Node presets: a device preset (with overrides), a count and a link; bad files one line."""

from __future__ import annotations

import pytest

from arch import ArchError, load_arch
from arch.nodes import load_node, node_names


def test_every_node_preset_loads_and_its_device_builds():
    assert node_names() == ["a100-4", "dgx-h100", "pim-cxl-32", "sn40l-8", "tpu-v4-8"]
    for name in node_names():
        node = load_node(name)
        assert node.name == name and node.devices >= 4
        assert load_arch(node.device, node.overrides())


def test_a_node_overrides_its_device_before_the_users_set():
    node = load_node("tpu-v4-8")
    arch = load_arch(node.device, node.overrides(["dram_bw_gbps=600"]))
    assert arch.dram_bytes == 32 * 2**30 and arch.dram_bw_gbps == 600


@pytest.mark.parametrize("text, message", [
    ('name = "n"\ndevice = "sn40l"\ndevices = 2\nlink = "sn40l-rdn"\nspeed = 3\n', r"unknown field 'speed'"),
    ('name = "n"\ndevice = "sn40l"\ndevices = 0\nlink = "sn40l-rdn"\n', r"field 'devices' must be at least 1, got 0"),
    ('name = "n"\ndevice = "sn40l"\ndevices = "8"\nlink = "sn40l-rdn"\n', r"field 'devices' must be an integer, got '8'"),
    ('name = "n"\ndevice = "sn41"\ndevices = 8\nlink = "sn40l-rdn"\n', r"field 'device' must be a device preset \(.*\), got 'sn41'"),
    ('name = "n"\ndevice = "sn40l"\ndevices = 8\nlink = "warp"\n', r"field 'link' must be a link preset \(.*\), got 'warp'"),
    ('name = "n"\ndevice = "sn40l"\ndevices = 8\nlink = "sn40l-rdn"\nset = 3\n', r"field 'set' must be a table"),
    ('name = "n"\ndevice = "sn40l"\ndevices = 8\nlink = "sn40l-rdn"\n[set]\nhbm_bw_gbps = -1.0\n',
     r"\[set\] --set hbm_bw_gbps=-1.0: field 'hbm_bw_gbps' must be"),
])
def test_a_bad_node_file_is_refused_naming_file_and_field(tmp_path, text, message):
    path = tmp_path / "n.toml"
    path.write_text(text)
    with pytest.raises(ArchError, match=rf"^{path}: {message}"):
        load_node(str(path))


def test_an_unknown_node_lists_the_presets():
    with pytest.raises(ArchError, match=r"unknown node .dgx-a9.: not a preset \(a100-4, dgx-h100, pim-cxl-32"):
        load_node("dgx-a9")
