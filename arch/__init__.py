"""Hardware descriptions: frozen dataclasses loaded from TOML presets in arch/configs/.

`load_arch("systolic-128", ["rows=64"])` returns the validated dataclass of the file's
target; each one turns itself into an `isa.MachineView` for the program verifier.
"""
from arch.config import ArchError
from arch.systolic import SystolicArch, SystolicEnergy
from arch.gpu import GemmEfficiency, GpuArch, MemoryEfficiency
from arch.pim import PimArch
from arch.dataflow import DataflowArch
from arch.protocol import TargetArch
from arch.presets import ARCH_CLASSES, build_with_overrides, load_arch, preset_names

__all__ = ["ArchError", "load_arch", "preset_names", "ARCH_CLASSES", "SystolicArch", "SystolicEnergy",
           "GpuArch", "GemmEfficiency", "MemoryEfficiency", "PimArch", "DataflowArch",
           "TargetArch", "build_with_overrides"]
