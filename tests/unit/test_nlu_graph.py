"""Tests of the hand-built MiniLM ONNX graphs against the plain-numpy BERT oracle."""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from tokenizers import Tokenizer

from voicebot.errors import EngineUnavailableError, ModelBuildError
from voicebot.nlu.embedder import MiniLmEmbedder
from voicebot.nlu.model_cache import NluModelPaths, build_models
from voicebot.nlu.onnx_graph import build_graph
from voicebot.nlu.onnx_optimize import FP32_MATMULS, fuse_graph, smooth_graph
from voicebot.nlu.reference import erf, reference_embed
from voicebot.nlu.weights import BertConfig, MiniLmWeights, find_weights_dir, load_weights

__all__: list[str] = []

SENTENCES = (
    "what is my balance",
    "I lost my card yesterday at the train station and I am really worried about it",
    "operator",
    "",
    "the of and a",
    "Hello, World! Card ending 4217, balance $1,250.40?",
    "can you connect me with a real person please",
    "Schöne Grüße aus München",
    "yes",
    "i want to speak to an agent " * 6,
)


def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$VOICEBOT_MODELS_DIR`` or one directory per test session (shared by NLU tests)."""
    env = os.environ.get("VOICEBOT_MODELS_DIR")
    if env:
        return Path(env)
    path = tmp_path_factory.getbasetemp() / "nlu-models"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> NluModelPaths:
    return build_models(models_cache(tmp_path_factory))


@pytest.fixture(scope="module")
def weights() -> MiniLmWeights:
    return load_weights()


def _batch(paths: NluModelPaths) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    tokenizer = Tokenizer.from_file(str(paths.tokenizer))
    tokenizer.enable_truncation(max_length=128)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(list(SENTENCES))
    ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask


def _run(
    model: Path | onnx.ModelProto, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]
) -> np.ndarray:
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    (out,) = session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
    return np.asarray(out)


def test_reference_erf_matches_math_erf() -> None:
    x = np.linspace(-6.0, 6.0, 20001)
    exact = np.array([math.erf(v) for v in x])
    assert np.abs(erf(x) - exact).max() < 2e-7


def test_weights_config(weights: MiniLmWeights) -> None:
    assert weights.config == BertConfig(
        hidden_size=384,
        num_layers=6,
        num_heads=12,
        intermediate_size=1536,
        vocab_size=30522,
        max_positions=512,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
    )
    assert weights.config.head_size == 32
    assert weights.tensor("embeddings.word_embeddings.weight").shape == (30522, 384)
    with pytest.raises(ModelBuildError):
        weights.tensor("no.such.tensor")


def test_fp32_graph_matches_numpy_reference(paths: NluModelPaths, weights: MiniLmWeights) -> None:
    ids, mask = _batch(paths)
    assert (mask == 0).any(), "the batch must contain padding"
    expected = reference_embed(weights, ids, mask)
    got = _run(paths.fp32_model, ids, mask)
    assert got.shape == (len(SENTENCES), 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(SENTENCES, cosines.round(5), strict=True))


def test_padding_does_not_change_an_embedding(paths: NluModelPaths) -> None:
    ids, mask = _batch(paths)
    batched = _run(paths.fp32_model, ids, mask)
    for row in (0, 2, 3):
        length = int(mask[row].sum())
        alone = _run(paths.fp32_model, ids[row : row + 1, :length], mask[row : row + 1, :length])
        assert float(alone[0] @ batched[row]) >= 0.99999


def test_int8_model_stays_close_to_fp32(paths: NluModelPaths) -> None:
    ids, mask = _batch(paths)
    fp32 = _run(paths.fp32_model, ids, mask)
    int8 = _run(paths.int8_model, ids, mask)
    cosines = (fp32 * int8).sum(axis=1)
    assert cosines.min() >= 0.98, dict(zip(SENTENCES, cosines.round(4), strict=True))
    assert paths.int8_model.stat().st_size < paths.fp32_model.stat().st_size


def test_build_is_idempotent(
    paths: NluModelPaths, tmp_path_factory: pytest.TempPathFactory
) -> None:
    files = (paths.fp32_model, paths.int8_model, paths.tokenizer)
    before = {f: f.stat().st_mtime_ns for f in files}
    again = build_models(models_cache(tmp_path_factory))
    assert again == paths
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert sorted(p.name for p in paths.directory.iterdir()) == sorted(f.name for f in files)


def test_build_rebuilds_a_missing_file_only(tmp_path: Path, paths: NluModelPaths) -> None:
    cache = tmp_path / "cache"
    target = cache / paths.directory.relative_to(paths.directory.parent.parent)
    target.mkdir(parents=True)
    shutil.copy2(paths.fp32_model, target / paths.fp32_model.name)
    shutil.copy2(paths.tokenizer, target / paths.tokenizer.name)
    fp32_mtime = (target / paths.fp32_model.name).stat().st_mtime_ns
    built = build_models(cache)
    assert built.directory == target
    assert built.int8_model.is_file()
    assert built.fp32_model.stat().st_mtime_ns == fp32_mtime


def test_bad_weights_raise_model_build_error(tmp_path: Path) -> None:
    source = find_weights_dir()
    broken = tmp_path / "weights"
    broken.mkdir()
    shutil.copy2(source / "config.json", broken / "config.json")
    shutil.copy2(source / "tokenizer.json", broken / "tokenizer.json")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelBuildError) as info:
        build_models(tmp_path / "cache", model_dir=broken)
    assert info.value.__cause__ is not None
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert all(p.name == "tokenizer.json" for p in leftovers)


def test_missing_weights_raise_engine_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError):
        build_models(tmp_path / "cache", model_dir=tmp_path)


def test_embedder(paths: NluModelPaths, tmp_path_factory: pytest.TempPathFactory) -> None:
    embedder = MiniLmEmbedder.from_cache(models_cache(tmp_path_factory), quantized=False)
    assert embedder.model_path == paths.fp32_model
    assert embedder.dimension == 384
    ids, mask = _batch(paths)
    expected = _run(paths.fp32_model, ids, mask)
    got = embedder.embed(list(SENTENCES))
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    assert ((got * expected).sum(axis=1) >= 0.99999).all()
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.embed("a str is not a batch")
    with pytest.raises(ValueError):
        MiniLmEmbedder(model_path=paths.int8_model, tokenizer_path=paths.tokenizer, threads=0)


def _op_counts(model: Path | onnx.ModelProto) -> collections.Counter[str]:
    proto = onnx.load(str(model)) if isinstance(model, Path) else model
    return collections.Counter(node.op_type for node in proto.graph.node)


def test_fp32_model_is_fused(paths: NluModelPaths) -> None:
    ops = _op_counts(paths.fp32_model)
    assert ops["Attention"] == 6 and ops["BiasGelu"] == 6
    assert ops["SkipLayerNormalization"] == 13  # embeddings + 2 per layer
    assert not {"Softmax", "Erf", "LayerNormalization", "Transpose"} & set(ops)
    assert ops["ReduceL2"] == 1  # pooling and normalization stay in the graph
    proto = onnx.load(str(paths.fp32_model))
    assert [(i.name, i.type.tensor_type.elem_type) for i in proto.graph.input] == [
        ("input_ids", onnx.TensorProto.INT64),
        ("attention_mask", onnx.TensorProto.INT64),
    ]


def test_int8_model_is_fused_smoothed_and_per_channel(paths: NluModelPaths) -> None:
    proto = onnx.load(str(paths.int8_model))
    ops = _op_counts(proto)
    assert ops["QAttention"] == 6 and "Attention" not in ops
    assert ops["MatMul"] == len(FP32_MATMULS)  # every other projection is integer
    names = {node.name for node in proto.graph.node}
    assert {f"l{i}.{kind}.smooth" for i in range(6) for kind in ("attn_in", "ffn_in")} <= names
    kept = [n for n in proto.graph.node if n.name in FP32_MATMULS]
    assert [n.op_type for n in kept] == ["MatMul"] * len(FP32_MATMULS)
    inits = {init.name: init for init in proto.graph.initializer}
    for node in proto.graph.node:  # weight scales: one per output channel
        if node.op_type == "QAttention":
            assert list(inits[node.input[4]].dims) == [3 * 384]
        if node.op_type == "MatMulInteger":
            assert len(inits[node.input[3]].dims) == 1 and inits[node.input[3]].dims[0] >= 384


def test_fusion_is_exact(weights: MiniLmWeights, paths: NluModelPaths) -> None:
    ids, mask = _batch(paths)
    plain = build_graph(weights)
    fused = fuse_graph(build_graph(weights), config=weights.config)
    cosines = (_run(plain, ids, mask) * _run(fused, ids, mask)).sum(axis=1)
    assert cosines.min() >= 0.99999


def test_fusion_that_does_not_apply_is_logged(
    weights: MiniLmWeights, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = dataclasses.replace(weights.config, num_layers=7)
    fuse_graph(build_graph(weights), config=wrong)
    assert "fused fewer MiniLM ops than expected" in caplog.text


def test_smoothing_is_exact_on_plain_and_fused_graphs(
    weights: MiniLmWeights, paths: NluModelPaths
) -> None:
    ids, mask = _batch(paths)
    rng = np.random.default_rng(7)
    keys = [f"l{i}.{kind}" for i in range(6) for kind in ("attn_in", "ffn_in")]
    scales = {key: rng.uniform(0.1, 10.0, 384).astype(np.float32) for key in keys}
    expected = _run(build_graph(weights), ids, mask)
    for graph in (build_graph(weights), fuse_graph(build_graph(weights), config=weights.config)):
        smoothed = smooth_graph(graph, scales)
        assert (_run(smoothed, ids, mask) * expected).sum(axis=1).min() >= 0.99999
    with pytest.raises(ModelBuildError):
        smooth_graph(build_graph(weights), {"no.such.probe": scales[keys[0]]})


def test_mask_holes_follow_the_oracle(paths: NluModelPaths, weights: MiniLmWeights) -> None:
    """The fused attention takes the raw 2-D mask: padding need not be at the end."""
    ids, mask = _batch(paths)
    holes = mask.copy()
    holes[1, 3:6] = 0  # masked tokens in the middle of a sentence
    holes[0, 1] = 0
    expected = reference_embed(weights, ids, holes)
    for model in (paths.fp32_model, paths.int8_model):
        cosines = (_run(model, ids, holes) * expected).sum(axis=1)
        assert cosines.min() >= (0.999 if model == paths.fp32_model else 0.98)
