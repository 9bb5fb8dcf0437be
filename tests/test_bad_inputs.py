"""The bad-input corpus: every kind of input a user gives Tessel (command-line arguments, model
names and Hugging Face directories, architecture files and --set, .graph files, .tasm and .tbin
programs, GPU calibration files, sweep specs, output paths), wrong in one way each. Every case
must exit with status 2 and print exactly one line `error: ...` that says what is wrong (the
expected fragment, pinned below), with no traceback and no output file left behind.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tessel.cli import main

ROOT = Path(__file__).parents[1]
SYS = (ROOT / "arch/configs/systolic-128.toml").read_text()
GOOD_GRAPH = (ROOT / str(ROOT / "examples/mlp.graph")).read_text()
TASM = (ROOT / str(ROOT / "examples/gemm_tile.tasm")).read_text()
SWEEP = (ROOT / "sweeps/bench-gpt2-decode.toml").read_text()
CFG = json.loads((ROOT / "tests/fixtures/tiny-gpt2/config.json").read_text())
def cfg(**kw):
    c = dict(CFG); c.update(kw); return json.dumps(c)
def cfg_without(k):
    c = dict(CFG); c.pop(k); return json.dumps(c)
CASES = []
def case(id, argv, files=None):
    CASES.append((id, files or {}, argv))
# command line
case("cli-no-command", [])
case("cli-unknown-command", ["frobnicate"])
case("cli-graph-no-model", ["graph"])
case("cli-seq-zero", ["graph", "--model", "gpt2", "--seq", "0"])
case("cli-seq-negative", ["graph", "--model", "gpt2", "--seq", "-3"])
case("cli-seq-text", ["graph", "--model", "gpt2", "--seq", "many"])
case("cli-kv-float", ["graph", "--model", "gpt2", "--phase", "decode", "--kv", "1.5"])
case("cli-batch-zero", ["graph", "--model", "gpt2", "--batch", "0"])
case("cli-phase-bad", ["graph", "--model", "gpt2", "--phase", "train"])
case("cli-kv-with-prefill", ["graph", "--model", "gpt2", "--kv", "8"])
case("cli-seq-with-decode", ["graph", "--model", "gpt2", "--phase", "decode", "--seq", "8"])
case("cli-seq-too-long", ["sim", "--model", "gpt2", "--seq", "2048", "--no-functional"])
case("cli-tokens-not-ints", ["run", "--model", "gpt2", "--tokens", "1,a,3", "--logits", "{d}/l.npy"])
case("cli-tokens-out-of-vocab", ["run", "--model", "gpt2", "--tokens", "1,99999", "--logits", "{d}/l.npy"])
case("cli-tokens-negative", ["run", "--model", "gpt2", "--tokens", "1,-2", "--logits", "{d}/l.npy"])
case("cli-decode-one-token", ["run", "--model", "gpt2", "--tokens", "5", "--phase", "decode", "--logits", "{d}/l.npy"])
TINY_RUN = ["run", "--model", str(ROOT / "tests/fixtures/tiny-gpt2"), "--tokens", "1,2,3", "--logits", "{d}/l.npy"]
case("cli-quant-unknown", TINY_RUN + ["--quant", "w4a4kv9"])
case("cli-quant-group", TINY_RUN + ["--quant", "w4a16:g128"])
case("cli-quant-twice", TINY_RUN + ["--quant", "w4a4kv4+kv:bfp8"])
case("cli-quant-file-field", TINY_RUN + ["--quant", "{d}/r.toml"], {"r.toml": '[kv]\nformat = "bfp8"\nblock = 16\n'})
case("cli-quant-file-format", TINY_RUN + ["--quant", "{d}/r.toml"], {"r.toml": '[weights]\nformat = "int9"\n'})
case("cli-quant-file-nested-kv", TINY_RUN + ["--quant", "{d}/r.toml"], {"r.toml": '[kv]\nformat = "int8"\nnested = true\n'})
MOE_RUN = ["run", "--model", str(ROOT / "tests/fixtures/tiny-qwen3-moe"), "--tokens", "1,2,3", "--logits", "{d}/l.npy"]
case("cli-expert-bits-alone", MOE_RUN + ["--expert-bits", "4"])
case("cli-expert-bits-not-nested", MOE_RUN + ["--quant", "w8a16", "--expert-bits", "4"])
case("cli-expert-bits-too-wide", MOE_RUN + ["--quant", "w4a16:nested", "--expert-bits", "6"])
case("cli-expert-bits-count", MOE_RUN + ["--quant", "w8a16:nested", "--expert-bits", "8,4"])
case("cli-expert-bits-form", MOE_RUN + ["--quant", "w8a16:nested", "--expert-bits", "hot:0:8:4"])
case("cli-nested-fp8", MOE_RUN + ["--quant", "fp8:nested"])
case("cli-tokens-vs-seq", ["sim", "--model", "gpt2", "--tokens", "1,2,3", "--seq", "4"])
case("cli-tokens-batch", ["sim", "--model", "gpt2", "--tokens", "1,2,3", "--batch", "2"])
case("cli-target-unknown", ["sim", "--model", "gpt2", "--target", "tpu"])
case("cli-targets-unknown", ["compare", "--model", "gpt2", "--targets", "systolic,tpu"])
case("cli-targets-empty", ["compare", "--model", "gpt2", "--targets", ","])
case("cli-dtype-bad", ["sim", "--model", "gpt2", "--dtype", "fp8"])
case("cli-gpu-unknown", ["sim", "--model", "gpt2", "--gpu", "rtx5090"])
case("cli-gpu-mode-bad", ["sim", "--model", "gpt2", "--gpu-mode", "fast"])
HF = ["--gpu-mode", "hf", "--no-functional"]
case("cli-hf-fused", ["sim", "--model", "gpt2", *HF, "--gpu-attention", "fused"])
case("cli-hf-gpu-quant", ["sim", "--model", "gpt2", *HF, "--gpu-quant", "w8a8"])
case("cli-hf-devices", ["sim", "--model", "gpt2", *HF, "--devices", "2"])
case("cli-hf-node", ["sim", "--model", "gpt2", *HF, "--node", "pim-cxl-32"])
case("cli-hf-moe", ["sim", "--model", "mixtral-8x7b", *HF])
case("cli-hf-moe-qwen", ["sim", "--model", "qwen3-30b-a3b", *HF])
case("cli-hf-graph-file", ["sim", "--model", str(ROOT / "examples/mlp.graph"), *HF])
case("cli-compare-hf-fused", ["compare", "--model", "gpt2", *HF, "--gpu-attention", "fused"])
case("cli-compare-hf-nodes", ["compare", "--model", "gpt2", "--nodes", "dgx-h100", *HF])
case("cli-gpu-mode-no-gpu", ["sim", "--model", "gpt2", "--gpu", "none", *HF])
case("cli-compare-gpu-mode-no-gpu", ["compare", "--model", "gpt2", "--gpu", "none", "--gpu-mode", "eager",
                                     "--no-functional"])
case("cli-compare-gpu-mode-no-gpu-node", ["compare", "--model", "gpt2", "--nodes", "pim-cxl-32",
                                          "--gpu-mode", "eager", "--no-functional"])
case("cli-compare-hf-moe", ["compare", "--model", "mixtral-8x7b", "--targets", "pim", *HF])
case("cli-compare-mode-quant", ["compare", "--model", "gpt2", "--quant", "none,w8a8", "--gpu-mode", "eager"])
case("cli-sim-both", ["sim", "{d}/p.tbin", "--model", "gpt2"])
case("cli-sim-neither", ["sim"])
case("cli-logits-timing-only", ["sim", "--model", "gpt2", "--logits", "{d}/l.npy", "--no-functional"])
case("cli-functional-and-not", ["sim", "--model", "gpt2", "--functional", "--no-functional"])
case("cli-logits-with-program", ["sim", "{d}/p.tbin", "--logits", "{d}/l.npy"])
case("cli-numerics-batch", ["sim", "--model", "gpt2", "--batch", "2", "--functional"])
case("cli-numerics-int8", ["sim", "--model", "gpt2", "--arch", "tpu-v1", "--functional", "--seq", "4"])
case("cli-numerics-graph", ["sim", "--model", str(ROOT / "examples/mlp.graph"), "--functional"])
case("cli-phase-graph", ["sim", "--model", str(ROOT / "examples/mlp.graph"), "--seq", "4"])
case("cli-compile-bad-suffix", ["compile", "--model", "gpt2", "-o", "{d}/p.bin"])
case("cli-asm-bad-suffix", ["asm", str(ROOT / "examples/gemm_tile.tasm"), "-o", "{d}/p.tasm"])
case("cli-disasm-bad-suffix", ["disasm", "{d}/p.tbin", "-o", "{d}/p.txt"], {"p.tbin": b"x"})
case("cli-pcie-bad", ["coe", "--models", "gpt2", "--pcie", "gen3"])
case("cli-coe-no-models", ["coe", "--models", ","])
case("cli-coe-graph-expert", ["coe", "--models", str(ROOT / "examples/mlp.graph")])
case("cli-coe-unknown-expert", ["coe", "--models", "llama-9000"])
case("cli-routing-bad", ["sim", "--model", "mixtral-8x7b", "--routing", "bogus"])
case("cli-routing-zipf-zero", ["sim", "--model", "mixtral-8x7b", "--routing", "zipf:0"])
case("cli-routing-zipf-text", ["compare", "--model", "mixtral-8x7b", "--routing", "zipf:steep"])
case("cli-routing-dense", ["sim", "--model", "llama-3.2-1b", "--routing", "uniform"])
case("cli-routing-numerics", ["sim", "--model", "mixtral-8x7b", "--functional", "--routing", "uniform"])
case("cli-routing-router-timing", ["sim", "--model", "mixtral-8x7b", "--routing", "router"])
case("cli-routing-file-missing", ["sim", "--model", "mixtral-8x7b", "--routing", "file:{d}/none.json"])
case("cli-routing-file-layers", ["sim", "--model", "mixtral-8x7b", "--routing", "file:{d}/r.json"],
     {"r.json": '{"experts": [[[0, 1]]]}'})
case("cli-routing-with-program", ["sim", "{d}/p.tbin", "--routing", "uniform"], {"p.tbin": b"x"})
case("cli-workers-zero", ["sweep", "{d}/s.toml", "--workers", "0"], {"s.toml": SWEEP})
case("cli-dask-bad", ["sweep", "{d}/s.toml", "--dask", "local:x"], {"s.toml": SWEEP})
case("cli-dask-empty", ["sweep", "{d}/s.toml", "--dask", "local"], {"s.toml": SWEEP})
# models
case("model-unknown", ["graph", "--model", "gpt5"])
case("model-missing-dir", ["graph", "--model", "{d}/nothere/"])
case("model-missing-graph", ["graph", "--model", "{d}/nothere.graph"])
case("hf-no-config", ["graph", "--model", "{d}/hf"], {"hf/x.txt": "x"})
case("hf-bad-json", ["graph", "--model", "{d}/hf"], {"hf/config.json": "{"})
case("hf-not-object", ["graph", "--model", "{d}/hf"], {"hf/config.json": "[1]"})
case("hf-model-type", ["graph", "--model", "{d}/hf"], {"hf/config.json": cfg(model_type="llama")})
case("hf-missing-n-layer", ["graph", "--model", "{d}/hf"], {"hf/config.json": cfg_without("n_layer")})
case("hf-n-head-zero", ["graph", "--model", "{d}/hf"], {"hf/config.json": cfg(n_head=0)})
case("hf-n-embd-indivisible", ["graph", "--model", "{d}/hf"], {"hf/config.json": cfg(n_embd=66)})
case("hf-n-layer-text", ["graph", "--model", "{d}/hf"], {"hf/config.json": cfg(n_layer="two")})
case("hf-eps-negative", ["graph", "--model", "{d}/hf"], {"hf/config.json": cfg(layer_norm_epsilon=-1)})
case("hf-no-weights", ["graph", "--model", "{d}/hf"], {"hf/config.json": cfg()})
case("hf-bad-weights", ["graph", "--model", "{d}/hf"], {"hf/config.json": cfg(), "hf/model.safetensors": b"garbage"})
# arch
case("arch-unknown-preset", ["sim", "--model", "gpt2", "--arch", "tpu-v9"])
case("arch-missing-file", ["sim", "--model", "gpt2", "--arch", "{d}/none.toml"])
case("arch-bad-toml", ["sim", "--model", "gpt2", "--arch", "{d}/a.toml"], {"a.toml": "rows = ["})
case("arch-target-missing", ["sim", "--model", "gpt2", "--arch", "{d}/a.toml"], {"a.toml": 'name = "x"\n'})
case("arch-target-unknown", ["sim", "--model", "gpt2", "--arch", "{d}/a.toml"], {"a.toml": 'target = "tpu"\n'})
case("arch-foreign-target", ["sim", "--model", "gpt2", "--target", "pim", "--arch", "sn40l"])
case("arch-missing-field", ["sim", "--model", "gpt2", "--arch", "{d}/a.toml"], {"a.toml": SYS.replace("rows = 128", "")})
case("arch-unknown-field", ["sim", "--model", "gpt2", "--arch", "{d}/a.toml"], {"a.toml": SYS + "\nrowz = 4\n"})
case("arch-rows-text", ["sim", "--model", "gpt2", "--arch", "{d}/a.toml"], {"a.toml": SYS.replace("rows = 128", 'rows = "many"')})
case("arch-rows-zero", ["sim", "--model", "gpt2", "--arch", "{d}/a.toml"], {"a.toml": SYS.replace("rows = 128", "rows = 0")})
case("arch-dataflow-choice", ["sim", "--model", "gpt2", "--arch", "{d}/a.toml"], {"a.toml": SYS.replace('dataflow = "ws"', 'dataflow = "xs"')})
case("arch-bool-field", ["sim", "--model", "gpt2", "--arch", "{d}/a.toml"], {"a.toml": SYS.replace("weight_preload_overlap = true", "weight_preload_overlap = 0")})
case("set-no-equals", ["sim", "--model", "gpt2", "--set", "rows"])
case("set-empty-key", ["sim", "--model", "gpt2", "--set", "=4"])
case("set-unknown", ["sim", "--model", "gpt2", "--set", "rowz=4"])
case("set-negative", ["sim", "--model", "gpt2", "--set", "rows=-4"])
case("set-zero-bw", ["sim", "--model", "gpt2", "--set", "dram_bw_gbps=0"])
case("set-text-int", ["sim", "--model", "gpt2", "--set", "rows=big"])
case("set-bad-choice", ["sim", "--model", "gpt2", "--set", "dataflow=xs"])
case("set-bad-dtype", ["sim", "--model", "gpt2", "--set", "dtype=fp8"])
case("set-not-table", ["sim", "--model", "gpt2", "--set", "rows.x=4"])
case("set-energy-negative", ["sim", "--model", "gpt2", "--set", "energy.mac_pj=-1"])
case("set-latency-missing-func", ["sim", "--model", "gpt2", "--set", "vector_latency_cycles={add=1}"])
case("set-pim-granularity", ["sim", "--model", "gpt2", "--target", "dataflow", "--set", "kernel_granularity=tile"])
case("set-pim-channels-zero", ["sim", "--model", "gpt2", "--target", "pim", "--set", "channels=0"])
case("fit-tiny-sram", ["sim", "--model", "gpt2", "--set", "sram_bytes=65536", "--no-functional", "--phase", "decode", "--kv", "4"])
case("fit-tiny-dram", ["sim", "--model", "gpt2", "--set", "dram_bytes=1000000", "--no-functional", "--phase", "decode", "--kv", "4"])
case("fit-pim-xl", ["sim", "--model", "gpt2-xl", "--target", "pim", "--set", "rows=1024", "--no-functional", "--phase", "decode", "--kv", "4"])
case("fit-dataflow-small", ["sim", "--model", "gpt2", "--target", "dataflow", "--arch", "dataflow-small", "--set", "hbm_bytes=67108864", "--set", "ddr_bytes=134217728", "--no-functional", "--phase", "decode", "--kv", "4"])
# a 512 GiB weight: beyond the 256 GiB an off-chip (A40) operand reaches, whatever the memory
HUGE = {"huge.graph": "graph huge {\n  input x: bf16[1, 524288]\n  param w: bf16[524288, 524288]\n"
                      "  y = linear(x, w)\n  output y\n}\n"}
case("fit-systolic-a40-reach", ["sim", "--model", "{d}/huge.graph", "--set", "dram_bytes=1099511627776", "--no-functional"], HUGE)
case("fit-dataflow-a40-reach", ["sim", "--model", "{d}/huge.graph", "--target", "dataflow", "--no-functional"], HUGE)
# graph files
def g(id, text): case("graph-" + id, ["graph", "--model", "{d}/m.graph"], {"m.graph": text})
g("empty", "")
g("syntax", "graph g {\n  input x: fp32[4]\n  y = \n}\n")
g("unknown-op", "graph g {\n  input x: fp32[4]\n  y = frob(x)\n  output y\n}\n")
g("undefined-value", "graph g {\n  input x: fp32[4]\n  y = gelu(z)\n  output y\n}\n")
g("redefined", "graph g {\n  input x: fp32[4]\n  x = gelu(x)\n  output x\n}\n")
g("no-output", "graph g {\n  input x: fp32[4]\n  y = gelu(x)\n}\n")
g("bad-dtype", "graph g {\n  input x: fp7[4]\n  y = gelu(x)\n  output y\n}\n")
g("shape-mismatch", "graph g {\n  input x: fp32[4, 8]\n  param w: fp32[4, 8]\n  y = linear(x, w)\n  output y\n}\n")
g("add-mismatch", "graph g {\n  input x: fp32[4]\n  input z: fp32[5]\n  y = add(x, z)\n  output y\n}\n")
g("reshape-size", "graph g {\n  input x: fp32[4, 8]\n  y = reshape(x, shape=[3, 8])\n  output y\n}\n")
g("transpose-perm", "graph g {\n  input x: fp32[4, 8]\n  y = transpose(x, perm=[0, 0])\n  output y\n}\n")
g("slice-range", "graph g {\n  input x: fp32[4, 8]\n  y = slice(x, axis=1, start=4, stop=20)\n  output y\n}\n")
g("layernorm-eps", "graph g {\n  input x: fp32[4, 8]\n  param gw: fp32[8]\n  param gb: fp32[8]\n  y = layernorm(x, gw, gb, eps=-1)\n  output y\n}\n")
g("arity", "graph g {\n  input x: fp32[4]\n  y = gelu(x, x)\n  output y\n}\n")
g("unterminated", "graph g {\n  input x: fp32[4]\n")
g("output-undefined", "graph g {\n  input x: fp32[4]\n  output q\n}\n")
# tasm
def t(id, text): case("tasm-" + id, ["asm", "{d}/p.tasm", "-o", "{d}/p.tbin"], {"p.tasm": text})
HEAD = ".target systolic\n.isa 3\n.spaces dram sram acc\n"
t("empty", "")
t("no-target", ".isa 3\n.spaces dram sram acc\ndma0 halt\n")
t("bad-isa", ".target systolic\n.isa 99\n.spaces dram sram acc\ndma0 halt\n")
t("unknown-opcode", HEAD + "dma0 frob\n")
t("unknown-field", HEAD + "dma0 wait sem=1 extra=2\n")
t("missing-field", HEAD + "dma0 load dst=sram[0x0] src=dram[0x0] rows=1\n")
t("bad-queue", HEAD + "xyz0 halt\n")
t("field-range", HEAD + "dma0 wait sem=70000\n")
t("bad-space", HEAD + "dma0 load dst=hbm[0x0] src=dram[0x0] rows=1 row_bytes=4\n")
t("bad-number", HEAD + "dma0 wait sem=abc\n")
t("negative", HEAD + "dma0 wait sem=-1\n")
t("bad-symbol", HEAD + ".symbol a dram 0x0 64x64 fp9\n")
t("bad-data", HEAD + ".data missing.npz\n")
t("wrong-queue-opcode", HEAD + "mxu0 load dst=sram[0x0] src=dram[0x0] rows=1 row_bytes=4\n")
t("dup-field", HEAD + "dma0 wait sem=1 sem=2\n")
t("bad-dtype-field", HEAD + "mxu0 mcfg m=1 n=1 k=1 dtype=fp9 acc=fp32\n")
t("garbage-line", HEAD + "@@@\n")
# tbin
case("tbin-empty", ["disasm", "{d}/p.tbin"], {"p.tbin": b""})
case("tbin-bad-magic", ["disasm", "{d}/p.tbin"], {"p.tbin": b"NOTTESSEL" + bytes(40)})
case("tbin-truncated-header", ["disasm", "{d}/p.tbin"], {"p.tbin": b"TESSELB\x01\xff\x00\x00\x00{"})
case("tbin-missing", ["disasm", "{d}/none.tbin"])
case("sim-missing-program", ["sim", "{d}/none.tbin"])
# gpu calibration
case("calib-missing", ["sim", "--model", "gpt2", "--no-functional", "--phase", "decode", "--kv", "4", "--gpu-calibration", "{d}/none.json"])
case("calib-bad-json", ["sim", "--model", "gpt2", "--no-functional", "--phase", "decode", "--kv", "4", "--gpu-calibration", "{d}/c.json"], {"c.json": "{"})
case("calib-no-kernels", ["sim", "--model", "gpt2", "--no-functional", "--phase", "decode", "--kv", "4", "--gpu-calibration", "{d}/c.json"], {"c.json": '{"schema": 1}'})
# sweep specs
def s(id, text): case("sweep-" + id, ["sweep", "{d}/s.toml", "--out", "{d}/out"], {"s.toml": text})
case("sweep-missing-file", ["sweep", "{d}/none.toml"])
case("sweep-not-utf8", ["sweep", "{d}/s.toml"], {"s.toml": b"name = \"\xff\"\n"})
s("bad-toml", "base = [")
s("no-base", SWEEP.replace('base = "systolic-128"', ""))
s("unknown-base", SWEEP.replace('"systolic-128"', '"tpu-v9"'))
s("unknown-model", SWEEP.replace('["gpt2"]', '["gpt5"]'))
s("unknown-metric", SWEEP.replace('"tokens_per_s"', '"speed"'))
s("unknown-param", SWEEP.replace("rows =", "rowz ="))
s("bad-range", SWEEP.replace("start = 32, stop = 256", "start = 256, stop = 32"))
s("nan-range", SWEEP.replace("start = 32, stop = 256", "start = nan, stop = 256"))
s("bad-phase", SWEEP.replace('kind = "decode"', 'kind = "train"'))
s("unknown-key", SWEEP + "\ncolour = 3\n")
s("no-params", SWEEP.split("[parameters]")[0])
s("routing-dense", SWEEP.replace('models = ["gpt2"]', 'models = ["gpt2"]\nrouting = "zipf:1.2"'))
s("routing-bad", SWEEP.replace('models = ["gpt2"]', 'models = ["mixtral-8x7b"]\nrouting = "zipf:-1"'))
s("routing-router", SWEEP.replace('models = ["gpt2"]', 'models = ["mixtral-8x7b"]\nrouting = "router"'))
s("routing-file-missing", SWEEP.replace('models = ["gpt2"]', 'models = ["mixtral-8x7b"]\nrouting = "file:none.json"'))


# The cases issue 14 found answered wrongly (wrong numbers with exit status 0, tracebacks, a hang)
def _safetensors(**arrays) -> bytes:
    from safetensors.numpy import save
    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()})


HF_WEIGHTS = (ROOT / "tests/fixtures/tiny-gpt2/model.safetensors").read_bytes()


def _hf_nan_weights() -> bytes:
    from safetensors.numpy import load
    tensors = load(HF_WEIGHTS)
    name = next(k for k in sorted(tensors) if k.endswith("ln_f.weight"))
    tensors[name] = np.full_like(tensors[name], np.nan)
    return _safetensors(**tensors)


def _tbin_flipped(where: str) -> bytes:
    import isa
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.tbin"
        isa.save(isa.load(ROOT / "examples/gemm_tile.tasm"), path)
        data = bytearray(path.read_bytes())
    at = {"header": 20, "words": len(data) // 2, "checksum": len(data) - 3}[where]
    data[at] ^= 0x10
    return bytes(data)


PIM_HEAD = ".target pim\n.isa 3\n.spaces dram gbuf abuf\n"
case("set-clock-nan", ["sim", "--model", "gpt2", "--set", "clock_mhz=nan"])
case("set-bw-inf", ["sim", "--model", "gpt2", "--set", "dram_bw_gbps=inf"])
case("set-clock-1e300", ["sim", "--model", "gpt2", "--set", "clock_mhz=1e300"])
case("set-rows-1e9", ["sim", "--model", "gpt2", "--set", "rows=1e9"])
case("set-rows-huge-int", ["sim", "--model", "gpt2", "--set", "rows=1000000000"])
case("set-latency-fraction", ["sim", "--model", "gpt2", "--set", "vector_latency_cycles.add=2.5"])
case("set-hbm-bw-inf", ["sim", "--model", "gpt2", "--target", "dataflow", "--set", "hbm_bw_gbps=inf"])
case("set-tck-tiny", ["sim", "--model", "gpt2", "--target", "pim", "--set", "tck_ns=1e-9"])
case("set-target", ["sim", "--model", "gpt2", "--set", "target=pim"])
case("hf-untied-without-head", ["graph", "--model", "{d}/hf"],
     {"hf/config.json": cfg(tie_word_embeddings=False), "hf/model.safetensors": HF_WEIGHTS})
case("hf-activation-relu", ["graph", "--model", "{d}/hf"],
     {"hf/config.json": cfg(activation_function="relu"), "hf/model.safetensors": HF_WEIGHTS})
case("hf-eps-infinity", ["graph", "--model", "{d}/hf"],
     {"hf/config.json": cfg().replace('"layer_norm_epsilon": 1e-05', '"layer_norm_epsilon": Infinity'),
      "hf/model.safetensors": HF_WEIGHTS})
case("hf-unknown-field", ["graph", "--model", "{d}/hf"],
     {"hf/config.json": cfg(rotary_dim=4), "hf/model.safetensors": HF_WEIGHTS})
case("hf-nan-weights", ["run", "--model", "{d}/hf", "--tokens", "1,2", "--logits", "{d}/l.npy"],
     {"hf/config.json": cfg(), "hf/model.safetensors": _hf_nan_weights()})
case("hf-not-utf8", ["graph", "--model", "{d}/hf"],
     {"hf/config.json": b"\xff\xfe{}", "hf/model.safetensors": HF_WEIGHTS})
g("casual-typo", "graph g {\n  input x: fp32[4, 4]\n  y = softmax(x, casual=true)\n  output y\n}\n")
g("gelu-fast", "graph g {\n  input x: fp32[4]\n  y = gelu(x, fast=true)\n  output y\n}\n")
g("attr-type", "graph g {\n  input x: fp32[4, 4]\n  y = softmax(x, causal=3)\n  output y\n}\n")
case("graph-not-utf8", ["graph", "--model", "{d}/m.graph"], {"m.graph": b"graph g {\xff\n}\n"})
case("calib-not-utf8", ["sim", "--model", "gpt2", "--no-functional", "--phase", "decode", "--kv", "4",
                        "--gpu-calibration", "{d}/c.json"], {"c.json": b"\xff\xfe"})
case("tbin-flip-header", ["sim", "{d}/p.tbin"], {"p.tbin": _tbin_flipped("header")})
case("tbin-flip-words", ["disasm", "{d}/p.tbin"], {"p.tbin": _tbin_flipped("words")})
case("tbin-flip-checksum", ["sim", "{d}/p.tbin"], {"p.tbin": _tbin_flipped("checksum")})
case("pim-mac-before-act", ["sim", "{d}/p.tasm"],
     {"p.tasm": PIM_HEAD + "pim0 pim.mac_all col=0 ncols=2 gb=0\npim0 pim.act_all row=5\npim0 pim.pre_all\n"
                + "".join(f"{q} halt\n" for q in ("dma0", "dma1", "asic0", *(f"pim{c}" for c in range(8))))})
case("program-gpu-flag", ["sim", "{d}/p.tbin", "--gpu", "t4"], {"p.tbin": _tbin_flipped("words")})
case("override-without-arch", ["sim", "{d}/p.tasm", "--override-arch"], {"p.tasm": TASM})


# Llama-family checkpoints (issue 15): config.json by family, sharded weights
FIXTURES = ROOT / "tests/fixtures"


def family_cfg(fixture: str, **kw) -> str:
    c = json.loads((FIXTURES / fixture / "config.json").read_text())
    c.update(kw)
    return json.dumps({k: v for k, v in c.items() if v is not None})


def checkpoint(fixture: str, config: str | None = None, drop: str = "", **replace: bytes) -> dict:
    """The fixture's files under hf/, with config.json replaced, one file dropped or replaced."""
    files = {f"hf/{p.name}": p.read_bytes() for p in (FIXTURES / fixture).iterdir()
             if p.name != drop and (p.name == "config.json" or ".safetensors" in p.name)}
    files.update({f"hf/{name.replace('_', '.')}": data for name, data in replace.items()})
    if config is not None:
        files["hf/config.json"] = config
    return files


def _without_tensor(fixture: str, key: str) -> bytes:
    from compiler.frontend.safetensors_file import read_header, read_tensor
    from safetensors.numpy import save
    stored = read_header(FIXTURES / fixture / "model.safetensors")
    return save({k: np.array(read_tensor(t)) for k, t in stored.items() if k != key})


LLAMA, SHARDED = "tiny-llama3-tied", "tiny-llama-sharded"
ROPE = json.loads((FIXTURES / LLAMA / "config.json").read_text())["rope_scaling"]
GRAPH_HF = ["graph", "--model", "{d}/hf"]
case("llama-unsupported-architecture", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, architectures=["PhiForCausalLM"])))
case("llama-model-type-mismatch", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, model_type="qwen2")))
case("llama-heads-inconsistent", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, num_key_value_heads=3)))
case("llama-hidden-indivisible", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, hidden_size=66, head_dim=None)))
case("llama-unknown-field", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, rotary_dim=8)))
case("llama-ill-typed-field", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, rms_norm_eps="1e-5")))
case("llama-bool-as-int", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, tie_word_embeddings=1)))
case("llama-hidden-act", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, hidden_act="gelu")))
case("llama-rope-yarn", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, rope_scaling={**ROPE, "rope_type": "yarn"})))
case("llama-rope-both-styles", GRAPH_HF, checkpoint(LLAMA, family_cfg(LLAMA, rope_parameters={"rope_type": "default"})))
case("llama-missing-tensor", GRAPH_HF,
     checkpoint(LLAMA, model_safetensors=_without_tensor(LLAMA, "model.layers.1.mlp.up_proj.weight")))
case("llama-missing-shard", GRAPH_HF, checkpoint(SHARDED, drop="model-00002-of-00003.safetensors"))
case("llama-index-not-json", GRAPH_HF, checkpoint(SHARDED, model_safetensors_index_json=b"{\"weight_map\": "))
case("llama-truncated-shard", GRAPH_HF, checkpoint(
    SHARDED, **{"model-00003-of-00003_safetensors":
                (FIXTURES / SHARDED / "model-00003-of-00003.safetensors").read_bytes()[:-10]}))
case("mistral-window-zero", GRAPH_HF, checkpoint("tiny-mistral-swa", family_cfg("tiny-mistral-swa", sliding_window=0)))
case("qwen2-some-layers-slide", GRAPH_HF, checkpoint("tiny-qwen2-bias", family_cfg(
    "tiny-qwen2-bias", use_sliding_window=True, sliding_window=4, layer_types=None, max_window_layers=1)))
case("mixtral-experts-disagree", GRAPH_HF, checkpoint("tiny-mixtral", family_cfg("tiny-mixtral", num_experts=8)))
case("qwen3-moe-dense-layer-range", GRAPH_HF, checkpoint("tiny-qwen3-moe", family_cfg("tiny-qwen3-moe", mlp_only_layers=[5])))


EXPECT = {
    'cli-no-command': 'tessel: the following arguments are required: COMMAND',
    'cli-unknown-command': "tessel: argument COMMAND: invalid choice: 'frobnicate' (choose from 'graph', 'run', 'compi",
    'cli-graph-no-model': 'tessel graph: the following arguments are required: --model',
    'cli-seq-zero': 'tessel graph: argument --seq: expected a positive integer, got 0',
    'cli-seq-negative': 'tessel graph: argument --seq: expected a positive integer, got -3',
    'cli-seq-text': "tessel graph: argument --seq: expected a positive integer, got 'many'",
    'cli-kv-float': "tessel graph: argument --kv: expected a positive integer, got '1.5'",
    'cli-batch-zero': 'tessel graph: argument --batch: expected a positive integer, got 0',
    'cli-phase-bad': "tessel graph: argument --phase: invalid choice: 'train' (choose from 'prefill', 'decode')",
    'cli-kv-with-prefill': '--kv applies to --phase decode only',
    'cli-seq-with-decode': '--seq applies to --phase prefill only (decode takes one token)',
    'cli-seq-too-long': 'gpt2: 2048 positions exceed the context of 1024',
    'cli-tokens-not-ints': "tessel run: argument --tokens: expected comma-separated integers, got '1,a,3'",
    'cli-tokens-out-of-vocab': 'token id 99999 at position 1 is out of range for vocab size 50257',
    'cli-tokens-negative': 'token id -2 at position 1 is out of range for vocab size 50257',
    'cli-decode-one-token': 'decode needs at least 2 tokens: a cache and the new token',
    'cli-quant-unknown': "recipe 'w4a4kv9': kv9: integer widths are 2..8 bits",
    'cli-quant-group': "recipe 'w4a16:g128': weights: group 128 does not divide the 64 input channels of 'h.0.attn.c_attn.weight'",
    'cli-quant-twice': "recipe 'w4a4kv4+kv:bfp8': kv set twice ('w4a4kv4' and 'kv:bfp8')",
    'cli-quant-file-field': "/r.toml: unknown field 'kv.block' (fields of kv: format, scale, group, rearrange)",
    'cli-quant-file-format': "/r.toml: weights.format: format 'int9': integer widths are 2..8 bits",
    'cli-quant-file-nested-kv': "/r.toml: unknown field 'kv.nested' (fields of kv: format, scale, group, rearrange)",
    'cli-expert-bits-alone': "--expert-bits reads bit-nested expert weights: give a --quant recipe with nested",
    'cli-expert-bits-not-nested': "--expert-bits 4: the model does not store them bit-nested (w8a16); a recipe",
    'cli-expert-bits-too-wide': "--expert-bits 6: 6 bits: a nested read takes 2 to 4 bits (the weights are stored at 4)",
    'cli-expert-bits-count': "--expert-bits 8,4: 2 widths for 8 experts: give one per expert",
    'cli-expert-bits-form': "--expert-bits hot:0:8:4: at least one hot expert",
    'cli-nested-fp8': "recipe 'fp8:nested': unknown option 'nested' (this recipe takes no options)",
    'cli-tokens-vs-seq': '--tokens gives 3 tokens, which does not match --seq 4',
    'cli-tokens-batch': '--tokens runs one sequence: --batch must be 1',
    'cli-target-unknown': "tessel sim: argument --target: invalid choice: 'tpu' (choose from 'dataflow', 'pim', 'syst",
    'cli-targets-unknown': "--targets: unknown target 'tpu' (targets: systolic, pim, dataflow)",
    'cli-targets-empty': "--targets: unknown target '' (targets: systolic, pim, dataflow)",
    'cli-dtype-bad': "tessel sim: argument --dtype: invalid choice: 'fp8' (choose from 'bf16', 'fp32')",
    'cli-gpu-unknown': "--gpu: unknown GPU 'rtx5090' (one of t4, v100, a100-40gb, a100-80gb, rtx-a6000, h100-sxm,",
    'cli-gpu-mode-bad': "tessel sim: argument --gpu-mode: invalid choice: 'fast' (choose from 'eager', 'graph', 'hf')",
    'cli-hf-fused': "--gpu-mode hf: not with --gpu-attention fused (Hugging Face's eager attention is unfused",
    'cli-hf-gpu-quant': '--gpu-mode hf: not with --gpu-quant (the Hugging Face operators are priced in fp16)',
    'cli-hf-devices': '--gpu-mode hf: not with --devices (the Hugging Face generate loop is modelled on one GPU)',
    'cli-hf-node': '--gpu-mode hf: not with --devices (the Hugging Face generate loop is modelled on one GPU)',
    'cli-hf-moe': "--gpu-mode hf: model 'mixtral-8x7b' is not modelled: a mixture-of-experts model",
    'cli-hf-moe-qwen': "--gpu-mode hf: model 'qwen3-30b-a3b' is not modelled: a mixture-of-experts model",
    'cli-gpu-mode-no-gpu': "--gpu-mode hf: no GPU to run it on (--gpu none)",
    'cli-compare-gpu-mode-no-gpu': "--gpu-mode eager: no GPU to run it on (--gpu none)",
    'cli-compare-gpu-mode-no-gpu-node': "--gpu-mode: no GPU node among pim-cxl-32 to run it on",
    'cli-hf-graph-file': "--gpu-mode hf: model 'mlp-block' is a .graph file; the Hugging Face operator list needs a model config",
    'cli-compare-hf-fused': "--gpu-mode hf: not with --gpu-attention fused",
    'cli-compare-hf-nodes': '--gpu-mode hf: not with --nodes (the Hugging Face generate loop is modelled on one GPU)',
    'cli-compare-hf-moe': "--gpu-mode hf: model 'mixtral-8x7b' is not modelled: a mixture-of-experts model",
    'cli-compare-mode-quant': "--gpu-mode: not with --quant (the recipes' GPU columns run in graph mode)",
    'cli-sim-both': 'give either --model M or a PROGRAM.tbin file',
    'cli-sim-neither': 'give either --model M or a PROGRAM.tbin file',
    'cli-logits-timing-only': '--logits needs a numeric simulation (drop --no-functional)',
    'cli-functional-and-not': 'tessel sim: argument --no-functional: not allowed with argument --functional',
    'cli-logits-with-program': '--logits: only with --model (a program file has no graph and names its target)',
    'cli-numerics-batch': 'numeric simulation runs one sequence: use --batch 1 or --no-functional',
    'cli-numerics-int8': 'numeric simulation of int8 needs a quantization pass, which Tessel does not have yet: use',
    'cli-numerics-graph': "numeric simulation of 'mlp-block' needs input values; .graph files run timing only (--no-f",
    'cli-phase-graph': '--seq does not apply to a .graph file (its shapes are fixed)',
    'cli-compile-bad-suffix': 'output must be a .tbin or .tasm file',
    'cli-asm-bad-suffix': 'output of asm must be a .tbin file',
    'cli-disasm-bad-suffix': 'truncated: expected 8 bytes of magic at offset 0, found 1',
    'cli-pcie-bad': "tessel coe: argument --pcie: invalid choice: 'gen3' (choose from 'gen4', 'gen5')",
    'cli-coe-no-models': '--models: give at least one expert',
    'cli-coe-graph-expert': 'is a .graph file: experts are model presets or Hugging Face directories',
    'cli-coe-unknown-expert': "unknown model 'llama-9000': not a preset (gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt3-sma",
    'cli-routing-bad': "--routing 'bogus': expected one of router, uniform, zipf:S, file:PATH",
    'cli-routing-zipf-zero': '--routing zipf:0: zipf needs a positive finite exponent, e.g. zipf:1.2',
    'cli-routing-zipf-text': '--routing zipf:steep: zipf needs a positive finite exponent, e.g. zipf:1.2',
    'cli-routing-dense': "--routing uniform: model 'llama-3.2-1b' has no experts to route",
    'cli-routing-numerics': '--routing uniform applies to timing-only runs (--no-functional); numeric runs route',
    'cli-routing-router-timing': "--routing router needs numerics (the router's choice is computed): use --functional",
    'cli-routing-file-missing': '/none.json: cannot read routing file (No such file or directory)',
    'cli-routing-file-layers': "/r.json: field 'experts' must list 32 moe layers, got 1",
    'cli-routing-with-program': '--routing: only with --model (a program file has no graph and names its target)',
    'cli-workers-zero': 'tessel sweep: argument --workers: expected a positive integer, got 0',
    'cli-dask-bad': '--dask local:x: expected local:N with N a positive number of workers',
    'cli-dask-empty': "--dask 'local': expected a scheduler address (tcp://host:port) or local:N",
    'model-unknown': "unknown model 'gpt5': not a preset (gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt3-small, gp",
    'model-missing-dir': "model directory '/nothere/' does not exist",
    'model-missing-graph': "graph file '/nothere.graph' does not exist",
    'hf-no-config': 'no config.json (expected a Hugging Face checkpoint directory)',
    'hf-bad-json': 'invalid JSON: Expecting property name enclosed in double quotes',
    'hf-not-object': 'expected a JSON object',
    'hf-model-type': "model_type 'llama' is not gpt2",
    'hf-missing-n-layer': "missing field 'n_layer'",
    'hf-n-head-zero': "field 'n_head' must be an integer from 1 to 1024, got 0",
    'hf-n-embd-indivisible': 'n_embd 66 is not divisible by n_head 4',
    'hf-n-layer-text': "field 'n_layer' must be an integer from 1 to 1024, got 'two'",
    'hf-eps-negative': "field 'layer_norm_epsilon' must be a positive finite number, got -1",
    'hf-no-weights': 'no model.safetensors',
    'hf-bad-weights': 'not a readable safetensors file (7 bytes, shorter than the 8-byte header length)',
    'arch-unknown-preset': "unknown architecture 'tpu-v9': not a preset (aim-32ch, dataflow-small, draco-64, gemmini, ",
    'arch-missing-file': 'cannot read (No such file or directory)',
    'arch-bad-toml': 'invalid TOML: Invalid value (at end of document)',
    'arch-target-missing': "field 'target' must be one of dataflow, gpu, pim, systolic, got None",
    'arch-target-unknown': "field 'target' must be one of dataflow, gpu, pim, systolic, got 'tpu'",
    'arch-foreign-target': "architecture 'sn40l' is for target 'dataflow', not 'pim'",
    'arch-missing-field': "missing field 'rows'",
    'arch-unknown-field': "unknown field 'energy.rowz'",
    'arch-rows-text': "field 'rows' must be an integer from 1 to 65536 PEs, got 'many'",
    'arch-rows-zero': "field 'rows' must be an integer from 1 to 65536 PEs, got 0",
    'arch-dataflow-choice': "field 'dataflow' must be one of ws, os, is, got 'xs'",
    'arch-bool-field': "field 'weight_preload_overlap' must be true or false, got 0",
    'set-no-equals': '--set rows: expected KEY=VALUE (dotted keys for tables)',
    'set-empty-key': '--set =4: expected KEY=VALUE (dotted keys for tables)',
    'set-unknown': "--set rowz=4: unknown field 'rowz' (did you mean 'rows'?)",
    'set-negative': "--set rows=-4: field 'rows' must be an integer from 1 to 65536 PEs, got -4",
    'set-zero-bw': "--set dram_bw_gbps=0: field 'dram_bw_gbps' must be a number from 0.1 to 1000000 GB/s, got",
    'set-text-int': "--set rows=big: field 'rows' must be an integer from 1 to 65536 PEs, got 'big'",
    'set-bad-choice': "--set dataflow=xs: field 'dataflow' must be one of ws, os, is, got 'xs'",
    'set-bad-dtype': "field 'dtype' must be one of bf16, fp32, int8, got 'fp8'",
    'set-not-table': "--set rows.x=4: 'rows' is not a table in ",
    'set-energy-negative': "--set energy.mac_pj=-1: field 'energy.mac_pj' must be a number above 0 and at most 100000",
    'set-latency-missing-func': "missing field 'vector_latency_cycles.sub'",
    'set-pim-granularity': "field 'kernel_granularity' must be one of operator, layer, model, got 'tile'",
    'set-pim-channels-zero': "--set channels=0: field 'channels' must be an integer from 1 to 1024 channels, got 0",
    'fit-tiny-sram': "systolic-128: sram_bytes = 65,536 cannot hold one fold of the 128x128 ws array in bf16 (double-buffered) beside one column of every other op; the minimum is 68,672 bytes",
    'fit-tiny-dram': 'the model needs more than 77,194,752 bytes of DRAM; systolic-128 has 1,000,000',
    'fit-pim-xl': 'gpt2-xl-decode needs 3,469,737,984 bytes of PIM DRAM (13,236 rows per bank): weights 3,374,388,864',
    'fit-systolic-a40-reach': 'the model needs more than 549,756,862,464 bytes of DRAM, but off-chip operands are A40 and reach 274,877,906,944 bytes',
    'fit-dataflow-a40-reach': 'huge: 549,755,813,888 bytes of DDR would be addressed, but off-chip operands are A40 and reach 274,877,906,944 bytes of a tier',
    'fit-dataflow-small': 'gpt2-decode: weights (249,122,304 bytes) and activations (304,896 bytes) exceed dataflow-s',
    'graph-empty': 'unexpected end of file',
    'graph-syntax': "unexpected '}'",
    'graph-unknown-op': "unknown op 'frob' (one of add, all_gather, all_to_all, allreduce, concat, div, embedding, gather, gelu, kv_append, layernorm,",
    'graph-undefined-value': "op 'y' (gelu): unknown input 'z'",
    'graph-redefined': "duplicate op name 'x'",
    'graph-no-output': "graph 'g' declares no output",
    'graph-bad-dtype': "unknown dtype 'fp7' (one of fp32, bf16, fp16, int8, int32)",
    'graph-shape-mismatch': "op 'y' (linear): weight [4, 8] does not match input [4, 8]",
    'graph-add-mismatch': "op 'y' (add): shapes [4] and [5] do not broadcast",
    'graph-reshape-size': "op 'y' (reshape): cannot reshape [4, 8] to [3, 8]",
    'graph-transpose-perm': "op 'y' (transpose): perm [0, 0] is not a permutation of 2 axes",
    'graph-slice-range': "op 'y' (slice): slice [4:20] out of range for axis 1 of [4, 8]",
    'graph-layernorm-eps': "op 'y' (layernorm): attribute 'eps' must be a positive finite number, got -1",
    'graph-arity': "op 'y' (gelu): takes 1 inputs, got 2",
    'graph-unterminated': 'unexpected end of file',
    'graph-output-undefined': "output 'q' is not defined",
    'tasm-empty': 'missing .target directive',
    'tasm-no-target': 'missing .target directive',
    'tasm-bad-isa': 'unsupported ISA version 99 (this assembler reads 3)',
    'tasm-unknown-opcode': "unknown mnemonic 'frob'",
    'tasm-unknown-field': "wait has no field 'extra' (fields: sem)",
    'tasm-missing-field': "load is missing field 'row_bytes'",
    'tasm-bad-queue': "unknown queue 'xyz0' (expected <unit><index>, unit one of ctl, dma, mxu, vpu, pim, asic, p",
    'tasm-field-range': 'sem=70000 does not fit U16 (0..65535)',
    'tasm-bad-space': "unknown space 'hbm' in dst=hbm[0x0] (spaces: dram sram acc)",
    'tasm-bad-number': 'sem=abc is not an integer',
    'tasm-negative': 'sem=-1 does not fit U16 (0..65535)',
    'tasm-bad-symbol': "unknown dtype 'fp9' (expected one of fp32, bf16, fp16, int8, int32)",
    'tasm-bad-data': 'cannot read data file missing.npz: No such file or directory',
    'tasm-wrong-queue-opcode': 'load is not allowed on mxu0 (units: agcu dma)',
    'tasm-dup-field': "duplicate field 'sem'",
    'tasm-bad-dtype-field': "dtype='fp9' is not one of fp32, bf16, fp16, int8, int32",
    'tasm-garbage-line': "unexpected '@@@', expected '.arch' or '.data' or '.endloop' or '.isa' or '.loop' or '.op' or '.spaces' or '.symbol'",
    'tbin-empty': 'truncated: expected 8 bytes of magic at offset 0, found 0',
    'tbin-bad-magic': "not a Tessel binary (starts b'NOTTESSE', expected b'TESSELB\\x02')",
    'tbin-truncated-header': 'format version 1 is not supported (this build reads version 2): recompile or reassemble th',
    'tbin-missing': 'cannot read: No such file or directory',
    'sim-missing-program': 'cannot read: No such file or directory',
    'calib-missing': 'cannot read calibration JSON (No such file or directory)',
    'calib-bad-json': 'invalid JSON: Expecting property name enclosed in double quotes',
    'calib-no-kernels': "field 'kernels' must be a list, got None",
    'sweep-missing-file': 'cannot read (No such file or directory)',
    'sweep-not-utf8': 'not UTF-8 text (byte 8)',
    'sweep-bad-toml': 'invalid TOML: Invalid value (at end of document)',
    'sweep-no-base': 'base: expected a preset name or a .toml file, got None',
    'sweep-unknown-base': "base: unknown architecture 'tpu-v9': not a preset (aim-32ch, dataflow-small, draco-6",
    'sweep-unknown-model': "models[0]: unknown model 'gpt5': not a preset (gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt",
    'sweep-unknown-metric': "metrics[3]: unknown metric 'speed' (metrics: cycles, clock_hz, time_s, energy_j, mac_utili",
    'sweep-unknown-param': 'parameters.rowz: unknown parameter of systolic arch (fields: rows, cols, dataflow, clock_m',
    'sweep-bad-range': 'parameters.rows: empty range (start 256 > stop 32)',
    'sweep-nan-range': 'parameters.rows.start: expected a number, got nan',
    'sweep-bad-phase': 'phases[0].kind: expected "prefill" or "decode", got \'train\'',
    'sweep-unknown-key': 'parameters.colour: unknown parameter of systolic arch (fields: rows, cols, dataflow, clock',
    'sweep-routing-dense': 'routing: applies to mixture-of-experts models only; no model here has experts',
    'sweep-routing-bad': 'routing: --routing zipf:-1: zipf needs a positive finite exponent, e.g. zipf:1.2',
    'sweep-routing-router': "routing: sweeps run timing only; 'router' needs numerics (uniform, zipf:S or file:PATH)",
    'sweep-routing-file-missing': 'routing: /none.json: cannot read (No such file or directory)',
    'sweep-no-params': 'parameters: expected a table of one or more parameters',
    'set-clock-nan': "--set clock_mhz=nan: field 'clock_mhz' must be a number from 1 to 10000 MHz, got nan",
    'set-bw-inf': "--set dram_bw_gbps=inf: field 'dram_bw_gbps' must be a number from 0.1 to 1000000 GB/s, go",
    'set-clock-1e300': "--set clock_mhz=1e300: field 'clock_mhz' must be a number from 1 to 10000 MHz, got 1e+300",
    'set-rows-1e9': "--set rows=1e9: field 'rows' must be an integer from 1 to 65536 PEs, got 1000000000.0",
    'set-rows-huge-int': "--set rows=1000000000: field 'rows' must be an integer from 1 to 65536 PEs, got 1000000000",
    'set-latency-fraction': "--set vector_latency_cycles.add=2.5: field 'vector_latency_cycles.add' must be an integer",
    'set-hbm-bw-inf': "--set hbm_bw_gbps=inf: field 'hbm_bw_gbps' must be a number from 0.1 to 1000000 GB/s, got",
    'set-tck-tiny': "--set tck_ns=1e-9: field 'tck_ns' must be a number from 0.1 to 10 ns, got 1e-09",
    'set-target': '--set target=pim: the target is fixed by',
    'hf-untied-without-head': "missing tensor 'lm_head.weight' (config.json unties the LM head)",
    'hf-activation-relu': "field 'activation_function' = 'relu' is not supported (the graph's gelu is the tanh form:",
    'hf-eps-infinity': "field 'layer_norm_epsilon' must be a positive finite number, got inf",
    'hf-unknown-field': "field 'rotary_dim' is not a GPT-2 config field Tessel knows (it might change the model), g",
    'hf-nan-weights': "tensor 'transformer.ln_f.weight' holds NaN or infinite values",
    'hf-not-utf8': 'not UTF-8 text (byte 0)',
    'graph-casual-typo': "op 'y' (softmax): unknown attribute 'casual' = true (softmax takes scale, causal, window; did you",
    'graph-gelu-fast': "op 'y' (gelu): unknown attribute 'fast' = true (gelu takes none)",
    'graph-attr-type': "op 'y' (softmax): attribute 'causal' must be true or false, got 3",
    'graph-not-utf8': 'not UTF-8 text (byte 9)',
    'calib-not-utf8': 'not UTF-8 text (byte 0)',
    'tbin-flip-header': 'corrupt: the SHA-256 checksum of its first 576 bytes does not match the one stored at offs',
    'tbin-flip-words': 'truncated: expected 4194432 bytes of data blob at offset 320, found 288',
    'tbin-flip-checksum': 'corrupt: the SHA-256 checksum of its first 576 bytes does not match the one stored at offs',
    'pim-mac-before-act': 'instruction 0 (pim0 pim.mac_all): bank 0 has no open row (no row was ever activated)',
    'program-gpu-flag': '--gpu: only with --model (a program file has no graph and names its target)',
    'override-without-arch': '--override-arch needs --arch or --set (the architecture to simulate on)',
    'llama-unsupported-architecture': "field 'architectures' = ['PhiForCausalLM'] is not supported (supported: GPT2LMHeadModel (or another GPT2* class), LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MixtralForCausalLM, Qwen3MoeForCausalLM)",
    'llama-model-type-mismatch': "config.json: model_type 'qwen2' does not match architectures LlamaForCausalLM (expected 'llama')",
    'llama-heads-inconsistent': 'config.json: num_attention_heads 4 is not a multiple of num_key_value_heads 3',
    'llama-hidden-indivisible': 'config.json: hidden_size 66 is not divisible by num_attention_heads 4 (and head_dim is not given)',
    'llama-unknown-field': "config.json: field 'rotary_dim' is not a LlamaForCausalLM config field Tessel knows (it might change the model), got 8",
    'llama-ill-typed-field': "config.json: field 'rms_norm_eps' must be a positive finite number, got '1e-5'",
    'llama-bool-as-int': "config.json: field 'tie_word_embeddings' must be true or false, got 1",
    'llama-hidden-act': "config.json: field 'hidden_act' = 'gelu' is not supported (the MLP's activation is silu)",
    'llama-rope-yarn': "config.json: field 'rope_scaling.rope_type' = 'yarn' is not supported (default, llama3)",
    'llama-rope-both-styles': 'config.json: fields rope_parameters and rope_scaling are both given',
    'llama-missing-tensor': "model.safetensors: missing tensor 'model.layers.1.mlp.up_proj.weight'",
    'llama-missing-shard': "model.safetensors.index.json: shard 'model-00002-of-00003.safetensors' (holding 'model.layers.0.input_layernorm.weight') does not exist",
    'llama-index-not-json': 'model.safetensors.index.json:1:16: invalid JSON: Expecting value',
    'llama-truncated-shard': 'model-00003-of-00003.safetensors: not a readable safetensors file (tensor ',
    'mistral-window-zero': "config.json: field 'sliding_window' must be an integer from 1 to 16777216, got 0",
    'qwen2-some-layers-slide': 'config.json: use_sliding_window with max_window_layers 1 slides layers [1] of 2 only: a window on some layers is not supported',
    'mixtral-experts-disagree': 'config.json: fields num_local_experts and num_experts disagree: num_local_experts = 4, num_experts = 8',
    'qwen3-moe-dense-layer-range': "config.json: field 'mlp_only_layers' must be a list of layer numbers from 0 to 1, got [5]",
}


@pytest.mark.parametrize("case_id,files,argv", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_status_2(case_id, files, argv, tmp_path):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = {p for p in tmp_path.rglob("*")}
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([a.replace("{d}", str(tmp_path)) for a in argv])
    lines = err.getvalue().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
    assert EXPECT[case_id] in lines[0].replace(str(tmp_path), ""), lines[0]
    assert "Traceback" not in err.getvalue() + out.getvalue()
    assert {p for p in tmp_path.rglob("*")} == before          # nothing written, not even a temp


def test_the_corpus_is_large_and_every_case_pins_its_message():
    assert len(CASES) >= 150 and {c[0] for c in CASES} == set(EXPECT)
