"""sim.collectives: the alpha-beta formulas exactly (expected values computed here from the link's
fields, not by the module), the NCCL-style choice of algorithm, refusals, and the published NCCL
figures of reference/parallel.md within 25 % (docs/validation.md, "Collectives against NCCL")."""
from __future__ import annotations

import math

import pytest

from arch.links import load_link
from sim.collectives import ALGORITHMS_OF, KINDS, CollectiveError, collective_cost

GIB = 1 << 30
A100, H100, TPU = load_link("nvlink3-a100"), load_link("nvlink4-h100"), load_link("tpu-v4-ici")
SIZES = [0, 8, 1 << 10, 1 << 16, 1 << 20, 1 << 22, 1 << 24, 1 << 26, GIB]


def bandwidth(link, links=None) -> float:
    """Bytes per second one device sends over `links` of its links (all of them by default)."""
    return (links or link.links_per_device) * link.link_bw_gbps * 1e9 * link.efficiency


def alpha(link, steps: int) -> float:
    return link.base_latency_us * 1e-6 + steps * link.step_latency_ns * 1e-9


@pytest.mark.parametrize("link", [A100, load_link("pcie4-x16"), load_link("cxl-cent")],
                         ids=lambda l: l.name)
@pytest.mark.parametrize("n, nbytes", [(2, 8), (4, 1 << 20), (8, 3 * 10**8), (16, GIB)])
def test_ring_formulas_exactly(link, n, nbytes):
    ar = collective_cost(link, "all_reduce", nbytes, n, "ring")
    assert ar.seconds == pytest.approx(2 * (n - 1) / n * nbytes / bandwidth(link)
                                       + alpha(link, 2 * (n - 1)), rel=1e-12)
    for kind in ("reduce_scatter", "all_gather"):
        c = collective_cost(link, kind, nbytes, n)
        assert c.algorithm == "ring"
        expected = (n - 1) / n * nbytes / bandwidth(link) + alpha(link, n - 1)
        assert c.seconds == pytest.approx(expected, rel=1e-12)
        assert c.busbw_gbps == pytest.approx(c.algbw_gbps * (n - 1) / n)
    assert ar.algbw_gbps == pytest.approx(nbytes / ar.seconds / 1e9)
    assert ar.busbw_gbps == pytest.approx(ar.algbw_gbps * 2 * (n - 1) / n)
    assert ar.bytes_per_rank == math.ceil(2 * (n - 1) * nbytes / n)
    assert ar.energy_j == pytest.approx(2 * (n - 1) * nbytes * 8 * link.energy_pj_per_bit * 1e-12)
    bc = collective_cost(link, "broadcast", nbytes, n)
    assert bc.seconds == pytest.approx(nbytes / bandwidth(link) + alpha(link, n - 1), rel=1e-12)


@pytest.mark.parametrize("n", [2, 3, 8])
def test_tree_nvls_direct_formulas_exactly(n):
    s = 1 << 24
    tree = collective_cost(H100, "all_reduce", s, n, "tree")
    assert tree.seconds == pytest.approx(2 * s / bandwidth(H100)
                                         + alpha(H100, 2 * math.ceil(math.log2(n))), rel=1e-12)
    nvls = collective_cost(H100, "all_reduce", s, n, "nvls")
    assert nvls.seconds == pytest.approx((n + 1) / n * s / bandwidth(H100) + 23e-6, rel=1e-12)
    a2a = collective_cost(H100, "all_to_all", s, n)
    assert a2a.seconds == pytest.approx((n - 1) / n * s / bandwidth(H100) + alpha(H100, 1),
                                        rel=1e-12)
    p2p = collective_cost(H100, "send_recv", s, 2)
    assert p2p.seconds == pytest.approx(s / bandwidth(H100) + alpha(H100, 1), rel=1e-12)
    assert p2p.bytes_per_rank == s // 2                  # one sender, one receiver


def test_a_whole_torus_rings_every_dimension_and_a_smaller_group_one_ring():
    s, n = GIB, 64                                       # 4 x 4 x 4, two links per dimension
    ar = collective_cost(TPU, "all_reduce", s, n)
    assert ar.seconds == pytest.approx(2 * (n - 1) / n * s / bandwidth(TPU) + alpha(TPU, 2 * 9),
                                       rel=1e-12)
    four = collective_cost(TPU, "all_reduce", s, 4)
    assert four.seconds == pytest.approx(2 * 3 / 4 * s / bandwidth(TPU, 2) + alpha(TPU, 6),
                                         rel=1e-12)
    # all-to-all on a ring of 4: hops 1 + 2 + 1 per rank of s/4 each, over the two links of a ring
    a2a = collective_cost(TPU, "all_to_all", s, 64)
    assert a2a.seconds == pytest.approx(s * 4 / 4 / bandwidth(TPU, 2) + alpha(TPU, 6), rel=1e-12)
    assert a2a.bytes_per_rank == 3 * s                   # three dimensions of s x 4/4
    p2p = collective_cost(TPU, "send_recv", s, 2)
    assert p2p.seconds == pytest.approx(s / bandwidth(TPU, 1) + alpha(TPU, 1), rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_one_rank_is_free(kind):
    c = collective_cost(H100, kind, GIB, 1)
    assert (c.seconds, c.bytes_per_rank, c.energy_j, c.algbw_gbps) == (0.0, 0, 0.0, 0.0)


@pytest.mark.parametrize("link", [A100, H100, TPU, load_link("pcie5-x16")], ids=lambda l: l.name)
@pytest.mark.parametrize("kind", KINDS)
def test_the_choice_is_the_cheapest_valid_algorithm_and_monotone_in_size(link, kind):
    n = 2 if kind == "send_recv" else (link.devices or 8)
    times = []
    for s in SIZES:
        chosen = collective_cost(link, kind, s, n)
        valid = [a for a in ALGORITHMS_OF[kind] if _runs(link, kind, a)]
        assert chosen.seconds == min(collective_cost(link, kind, s, n, a).seconds for a in valid)
        times.append(chosen.seconds)
    assert times == sorted(times)


def _runs(link, kind, algorithm) -> bool:
    try:
        collective_cost(link, kind, 8, 2, algorithm)
        return True
    except CollectiveError:
        return False


def test_small_all_reduces_take_a_tree_large_ones_nvls_or_a_ring():
    assert collective_cost(H100, "all_reduce", 8, 8).algorithm == "tree"
    assert collective_cost(H100, "all_reduce", GIB, 8).algorithm == "nvls"
    assert collective_cost(A100, "all_reduce", 8, 8).algorithm == "tree"
    assert collective_cost(A100, "all_reduce", GIB, 8).algorithm == "ring"
    assert collective_cost(H100, "all_reduce", GIB, 2).algorithm == "ring"   # NVLS moves 3/2 x


# Published NCCL figures (reference/parallel.md), 25 % tolerance: docs/validation.md
@pytest.mark.parametrize("link, algorithm, nbytes, n, field, published", [
    (H100, None, GIB, 8, "busbw_gbps", 480.0),            # NVLS peak, NVIDIA/nccl-tests#212
    (H100, "ring", GIB, 8, "busbw_gbps", 370.0),          # ring / effective NVLink4, #212
    (A100, None, GIB, 8, "busbw_gbps", 230.0),            # 8x A100 peak busbw, #149
    (A100, None, 8, 2, "seconds", 9.9e-6),                # 2x A100 8 B all-reduce, #331
])
def test_within_25_percent_of_published_nccl_figures(link, algorithm, nbytes, n, field, published):
    value = getattr(collective_cost(link, "all_reduce", nbytes, n, algorithm), field)
    assert abs(value / published - 1) <= 0.25, (value, published)


@pytest.mark.parametrize("args, message", [
    ((H100, "allreduce", 8, 2),
     r"^unknown collective 'allreduce' \(one of all_reduce, all_gather, "),
    ((H100, "all_reduce", 8, 2, "halving"), r"^unknown algorithm 'halving' \(one of ring, tree, "
                                            r"nvls, direct\)$"),
    ((H100, "all_gather", 8, 2, "tree"), r"^algorithm 'tree' does not do all_gather "
                                         r"\(all_gather: ring\)$"),
    ((A100, "all_reduce", 8, 2, "nvls"), r"^algorithm 'nvls' needs in_network_reduction, which "
                                         r"link 'nvlink3-a100' lacks$"),
    ((TPU, "all_reduce", 8, 64, "tree"), r"^algorithm 'tree' needs a switch \(link 'tpu-v4-ici' "
                                         r"is a torus: tree edges would span hops\)$"),
    ((H100, "all_reduce", -1, 2), r"^nbytes must be a whole number of bytes >= 0, got -1$"),
    ((H100, "all_reduce", 2.5, 2), r"^nbytes must be a whole number of bytes >= 0, got 2.5$"),
    ((H100, "all_reduce", 8, 0), r"^ranks must be an integer >= 1, got 0$"),
    ((H100, "send_recv", 8, 3), r"^send_recv is between two ranks, got ranks=3$"),
    ((TPU, "all_reduce", 8, 65), r"^link 'tpu-v4-ici' is a 4x4x4 torus of 64 chips, got ranks=65$"),
])
def test_bad_arguments_are_refused_in_one_line(args, message):
    with pytest.raises(CollectiveError, match=message):
        collective_cost(*args)
    assert issubclass(CollectiveError, ValueError)
