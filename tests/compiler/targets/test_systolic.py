"""The systolic target's planning steps: DRAM buffers, then the SRAM rings by their shares."""
from arch import load_arch
from compiler.frontend import load_model
from compiler.phase import decode
from compiler.pipeline import dump_after
from compiler.targets.systolic import PIPELINE


def test_sram_rings_take_their_shares_two_slots_each():
    arch = load_arch("systolic-128")
    layout = PIPELINE.run(load_model("gpt2").graph(decode(4)), arch, until="sram")["sram"]
    names = [r.name for r in layout.rings]
    assert names == ["mx_a", "mx_b", "vp_in", "vp_out", "copy"]
    mx_b = layout.rings[1]
    assert mx_b.slot_bytes == int(arch.sram_bytes * 0.16) // 64 * 64 and mx_b.slots == 2
    assert mx_b.base == 2 * layout.rings[0].slot_bytes
    assert layout.scratch[0] + layout.scratch[1] == arch.sram_bytes


def test_dumps_show_ring_slot_sizes_and_dram_symbols():
    graph, arch = load_model("gpt2").graph(decode(4)), load_arch("systolic-128")
    sram = dump_after(PIPELINE, graph, arch, None, "sram")
    assert f"mx_a: sram[0x0] 2 x {int(arch.sram_bytes * 0.08) // 64 * 64:,} bytes, dma0 -> mxu0" in sram
    assert "acc: acc[0x0] 2 x" in sram and "scratch: sram[" in sram
    dram = dump_after(PIPELINE, graph, arch, None, "dram")
    assert "  wte.weight: dram[0x0] 50257x768 bf16" in dram
