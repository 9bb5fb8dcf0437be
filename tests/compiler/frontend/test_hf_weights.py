"""Checkpoint files: the safetensors header reader, shard indexes, fused and per-expert
experts, BF16/F16 conversion, and loading that reads no tensor data."""
import json
import shutil
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from compiler.frontend import build_graph, load_model
from compiler.frontend.decoder import LINEAR_WEIGHT_SUFFIXES
from compiler.frontend.safetensors_file import read_header, read_tensor
from compiler.phase import prefill
from tests.bad_input import refuses
from tests.families.published import PUBLISHED

FIXTURES = Path(__file__).parents[2] / "fixtures"


def write_safetensors(path: Path, header: dict, data: bytes = b"", length: int | None = None,
                      size: int | None = None) -> None:
    """A safetensors file from a header dict (`length` overrides the header length field;
    `size` extends the file sparsely to that many bytes)."""
    text = json.dumps(header).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(text) if length is None else length) + text + data)
        if size is not None:
            f.truncate(size)


def load_file(path: str) -> dict[str, np.ndarray]:
    """Every tensor of a file as float32 (safetensors.numpy cannot hold BF16)."""
    return {k: np.array(read_tensor(t)) for k, t in read_header(Path(path)).items()}


def copy_fixture(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


# -- the header reader ------------------------------------------------------------------
F32_2x2 = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}


@pytest.mark.parametrize("header, data, length, message", [
    (F32_2x2, bytes(16), None, None),
    (F32_2x2, bytes(8), None, r"tensor 'w' ends at byte \d+, past the end of the \d+-byte file"),
    ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, bytes(16), None,
     r"tensor 'w' of F32 \[2, 2\] needs 16 bytes, its data_offsets \[0, 12\] give 12"),
    ({"w": {"dtype": "F17", "shape": [2], "data_offsets": [0, 8]}}, bytes(8), None, "unknown dtype 'F17'"),
    ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), None, r"shape \[-2\]"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8), None, "data_offsets"),
    ({"w": {"dtype": "F32", "shape": [2]}}, bytes(8), None, "exactly dtype, shape and data_offsets"),
    ({"__metadata__": {"format": 1}}, b"", None, "__metadata__ must map names to strings"),
    (F32_2x2, bytes(16), 1 << 40, r"header length 1099511627776 does not fit a file of \d+ bytes"),
    ([1, 2], b"", None, "the header is not a JSON object"),
])
def test_headers_are_checked_before_any_data_is_read(tmp_path, header, data, length, message):
    path = tmp_path / "m.safetensors"
    write_safetensors(path, header, data, length)
    if message is None:
        assert read_header(path)["w"].shape == (2, 2)
    else:
        with pytest.raises(Exception, match="m.safetensors: not a readable safetensors file .*" + message):
            read_header(path)


def test_a_repeated_or_non_json_header_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    text = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {}}'
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(4))
    with pytest.raises(Exception, match="tensor 'w' appears twice in the header"):
        read_header(path)
    path.write_bytes(struct.pack("<Q", 3) + b"{\xff}")
    with pytest.raises(Exception, match="header byte 1 is not UTF-8"):
        read_header(path)


def test_bf16_and_f16_become_float32_exactly(tmp_path):
    bf16 = np.array([[0x3F80, 0xC020, 0x0001], [0x7F7F, 0x8000, 0x4049]], "<u2")   # bit patterns
    values = np.array([[1.0, -2.5, 2.0 ** -133], [(2 - 2 ** -7) * 2.0 ** 127, -0.0, 3.140625]], np.float32)
    half = np.array([[1.0, -2.5, 6e-8], [65504.0, -0.0, 0.1]], np.float16)
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"b": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
                             "h": {"dtype": "F16", "shape": [2, 3], "data_offsets": [12, 24]}},
                      bf16.tobytes() + half.astype("<f2").tobytes())
    header = read_header(path)
    assert np.array_equal(read_tensor(header["b"]), values)
    assert read_tensor(header["b"]).dtype == np.float32
    assert np.array_equal(read_tensor(header["h"]), half.astype(np.float32))
    assert np.array_equal(read_tensor(header["b"], (1, slice(1, 3))), values[1, 1:])


# -- shard indexes ------------------------------------------------------------------------
def _index(directory: Path) -> dict:
    return json.loads((directory / "model.safetensors.index.json").read_text())


def _set_index(directory: Path, index) -> None:
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))


def _remap(key: str, shard: str):
    def edit(d):
        index = _index(d)
        index["weight_map"][key] = shard
        _set_index(d, index)
    return edit


SHARD1, SHARD2 = "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors"


@pytest.mark.parametrize("edit, message", [
    (lambda d: (d / SHARD2).unlink(),
     rf"model.safetensors.index.json: shard '{SHARD2}' \(holding 'model\..*'\) does not exist"),
    (_remap("model.norm.weight", SHARD1),
     rf"index.json: tensor 'model.norm.weight' is mapped to '{SHARD1}', which does not hold it"),
    (lambda d: _set_index(d, {**_index(d), "weight_map": {k: v for k, v in _index(d)["weight_map"].items()
                                                           if k != "model.norm.weight"}}),
     r"model-0000\d-of-00003.safetensors: tensor 'model.norm.weight' is not mapped to this shard by "
     r"model.safetensors.index.json \(mapped to None\)"),
    (_remap("model.norm.weight", "../model.safetensors"),
     r"tensor 'model.norm.weight' is mapped to '../model.safetensors', not a file name"),
    (lambda d: _set_index(d, {**_index(d), "shards": 3}),
     r"index.json: field 'shards' is not a shard-index field Tessel knows, got 3"),
    (lambda d: _set_index(d, {"metadata": {}}), r"field 'weight_map' must map tensor names to shard files"),
    (lambda d: _set_index(d, [1]), r"model.safetensors.index.json: expected a JSON object"),
    (lambda d: shutil.copy(d / SHARD1, d / "model.safetensors"),
     r"both model.safetensors and model.safetensors.index.json: which holds the weights is ambiguous"),
    (lambda d: [p.unlink() for p in d.glob("model*")], r"no model.safetensors \(nor model.safetensors.index.json\)"),
], ids=["missing-shard", "not-in-shard", "not-in-index", "path", "unknown-field", "no-map",
        "not-object", "both", "none"])
def test_bad_shard_indexes_name_the_file_and_tensor(tmp_path, capsys, edit, message):
    directory = copy_fixture(tmp_path, "tiny-llama-sharded")
    edit(directory)
    refuses(capsys, ["graph", "--model", directory], message)


# -- tensors against the config ----------------------------------------------------------
def _retensor(name: str, edit):
    def apply(directory: Path):
        tensors = load_file(str(directory / "model.safetensors"))
        edit(tensors)
        save_file(tensors, str(directory / "model.safetensors"))
    return name, apply


@pytest.mark.parametrize("fixture_edit, message", [
    (_retensor("tiny-mixtral-fused", lambda t: t.update({"model.layers.0.block_sparse_moe.experts.1.w1.weight":
                                                         np.zeros((32, 64), np.float32)})),
     r"tensor 'model.layers.0.mlp.experts.gate_up_proj' is also stored as "
     r"'model.layers.0.block_sparse_moe.experts.1.w1.weight'"),
    (_retensor("tiny-mixtral", lambda t: t.pop("model.layers.1.block_sparse_moe.experts.2.w3.weight")),
     r"model.safetensors: missing tensor 'model.layers.1.block_sparse_moe.experts.2.w3.weight'"),
    (_retensor("tiny-qwen3-moe-fused", lambda t: t.update({"model.layers.0.mlp.experts.down_proj":
                                                           t["model.layers.0.mlp.experts.down_proj"][:, :, :8]})),
     r"tensor 'model.layers.0.mlp.experts.down_proj' has shape \[6, 64, 8\], config.json implies \[6, 64, 16\]"),
    (_retensor("tiny-qwen3", lambda t: t.update({"model.layers.0.self_attn.q_proj.weight":
                                                 t["model.layers.0.self_attn.q_proj.weight"].T.copy()})),
     r"tensor 'model.layers.0.self_attn.q_proj.weight' has shape \[64, 128\], config.json implies \[128, 64\]"),
    (_retensor("tiny-qwen3", lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": np.zeros(128, np.float32)})),
     r"unexpected tensor 'model.layers.0.self_attn.q_proj.bias'"),
    (_retensor("tiny-qwen3", lambda t: t.update({"model.layers.0.self_attn.q_norm.weight":
                                                 t["model.layers.0.self_attn.q_norm.weight"].astype(np.int32)})),
     r"tensor 'model.layers.0.self_attn.q_norm.weight' has dtype I32, expected one of F16, BF16, F32, F64"),
    (_retensor("tiny-qwen3", lambda t: t.update({"layers.0.input_layernorm.weight":
                                                 t["model.layers.0.input_layernorm.weight"]})),
     r"tensor '(model.)?layers.0.input_layernorm.weight' is also stored as '(model.)?layers.0.input_layernorm.weight'"),
], ids=["fused-and-per-expert", "missing-expert", "fused-shape", "untransposed", "bias-without-config",
        "int-tensor", "prefix-twice"])
def test_tensors_that_do_not_fit_the_config_are_refused(tmp_path, capsys, fixture_edit, message):
    name, edit = fixture_edit
    directory = copy_fixture(tmp_path, name)
    edit(directory)
    refuses(capsys, ["graph", "--model", directory], message)


def test_stored_buffers_and_a_tied_head_are_ignored_as_hugging_face_does(tmp_path):
    """rotary_emb.inv_freq (older 4.x checkpoints) and a stored lm_head.weight under a tied
    config are not read; keys without `model.` (a base model's) load too."""
    directory = copy_fixture(tmp_path, "tiny-qwen2-bias")
    tensors = load_file(str(directory / "model.safetensors"))
    tensors = {k.removeprefix("model."): v for k, v in tensors.items()}
    tensors["layers.0.self_attn.rotary_emb.inv_freq"] = np.full(8, np.nan, np.float32)
    tensors["lm_head.weight"] = np.full((128, 64), np.nan, np.float32)
    save_file(tensors, str(directory / "model.safetensors"))
    ids = json.loads((directory / "tokens.json").read_text())["tokens"][:12]
    from compiler.driver import prefill_logits
    logits = prefill_logits(load_model(str(directory)), ids, np.float32)
    expected = np.load(directory / "expected_logits.npy")
    assert np.abs(logits - expected).max() < 1e-4 * np.abs(expected).max()


def test_non_finite_values_are_refused_when_read(tmp_path, capsys):
    directory = copy_fixture(tmp_path, "tiny-mixtral-fused")
    tensors = load_file(str(directory / "model.safetensors"))
    tensors["model.layers.1.mlp.experts.gate_up_proj"][2, 40, 5] = np.inf
    save_file(tensors, str(directory / "model.safetensors"))
    refuses(capsys, ["run", "--model", directory, "--tokens", "1,2,3", "--logits", tmp_path / "o.npy"],
            r"model.safetensors: tensor 'model.layers.1.mlp.experts.gate_up_proj' holds NaN or infinite values")
    assert not (tmp_path / "o.npy").exists()


# -- laziness -----------------------------------------------------------------------------
def sparse_checkpoint(directory: Path, preset: str, shards: int = 3) -> int:
    """config.json of `preset` and BF16 shards whose headers are complete and whose data are
    holes (a sparse file: no disk, no reads); returns the bytes of tensor data."""
    raw = PUBLISHED[preset]
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(raw))
    graph = build_graph(load_model(preset).config, prefill(1))
    entries = []
    for p in graph.params:
        shape = p.type.shape[::-1] if p.name.endswith(LINEAR_WEIGHT_SUFFIXES) else p.type.shape
        entries.append(("model." + p.name if p.name != "lm_head.weight" else p.name, list(shape)))
    per_shard = -(-len(entries) // shards)
    weight_map, total = {}, 0
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        header, offset = {}, 0
        for key, shape in entries[s * per_shard:(s + 1) * per_shard]:
            nbytes = 2 * int(np.prod(shape))
            header[key] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + nbytes]}
            weight_map[key] = name
            offset += nbytes
        text_len = len(json.dumps(header).encode())
        write_safetensors(directory / name, header, size=8 + text_len + offset)
        total += offset
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return total


def test_loading_a_large_sharded_checkpoint_reads_no_tensor_data(tmp_path):
    """llama-3.2-1b at full size (2.5 GB of BF16 in three sparse shards): load_model checks
    every name and shape from the headers with well under 1% of the data's size allocated;
    reading one tensor maps only that tensor. (Reading the data would allocate gigabytes.)"""
    data_bytes = sparse_checkpoint(tmp_path / "llama", "llama-3.2-1b")
    assert data_bytes > 2_000_000_000
    tracemalloc.start()
    start = time.perf_counter()
    model = load_model(str(tmp_path / "llama"))
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < data_bytes / 1000, peak
    assert len(model.weights) == 16 * 9 + 2 and seconds < 5
    tracemalloc.start()
    norm = model.weights["norm.weight"]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert norm.shape == (2048,) and not norm.any() and peak < 1_000_000
