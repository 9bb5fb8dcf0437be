"""Every target preset is a TargetArch (the protocol the compiler, simulator and reports use);
GPU presets describe baselines, not targets, and are not."""
import pytest

from arch import TargetArch, load_arch, preset_names


@pytest.mark.parametrize("name", preset_names())
def test_target_presets_satisfy_the_protocol(name):
    arch = load_arch(name)
    assert isinstance(arch, TargetArch) == (arch.target != "gpu")
    if arch.target != "gpu":
        assert set(arch.queues) == set(arch.machine_view().queues) and arch.summary()
