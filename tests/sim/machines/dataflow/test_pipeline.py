"""Closed-form section pipeline: fill + tiles x steady + drain, bounded by stage or tier."""
import pytest

from sim.machines.dataflow.pipeline import allocate_pcus, section_timing


def test_compute_bound_pipeline_is_sum_of_stages_plus_bottleneck_repeats():
    # 2 stages of 100 and 300 PCU-cycles on 1 PCU each, 10 tiles: 10 and 30 per tile.
    t = section_timing([100, 300], pcus=2, tiles=10, loops=1, hbm_bytes=0, ddr_bytes=0,
                       hbm_bytes_per_cycle=1, ddr_bytes_per_cycle=1, latency_cycles=5, launch_cycles=7)
    assert (t.steady_cycles, t.fill_cycles, t.drain_cycles, t.bound) == (30, 5 + 10, 0, "compute")
    assert t.cycles == 7 + 5 + 10 + 30 + 9 * 30          # launch + latency + sum + (N-1) x slowest


def test_bandwidth_bound_pipeline_and_kernel_looping_pays_launch_and_fill_once():
    kw = dict(pcus=4, hbm_bytes=8000, ddr_bytes=0, hbm_bytes_per_cycle=10, ddr_bytes_per_cycle=1,
              latency_cycles=20, launch_cycles=100)
    one = section_timing([40, 40], tiles=4, loops=1, **kw)
    assert one.bound == "hbm" and one.steady_cycles == 200
    looped = section_timing([160, 160], tiles=4, loops=4, hbm_bytes=32000,
                            **{k: v for k, v in kw.items() if k != "hbm_bytes"})
    assert looped.cycles < 4 * one.cycles
    assert 4 * one.cycles - looped.cycles == 3 * (100 + 20 + one.drain_cycles)


def test_pcus_are_shared_in_proportion_to_work():
    assert allocate_pcus([1, 3], 8) == [2, 6]
    assert sum(allocate_pcus([5, 1, 1], 10)) == 10
    with pytest.raises(ValueError, match="3 stages need more than the section's 2 PCUs"):
        allocate_pcus([1, 1, 1], 2)
