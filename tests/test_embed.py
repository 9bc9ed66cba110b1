"""all-MiniLM-L6-v2 in numpy: reproduces sentence-transformers' published similarities, refuses
other weights, and the readable() fold it is fed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lifeguard.safety.embed import (
    EMBED_DIM,
    EmbedUnavailable,
    Encoder,
    default_encoder,
    embedding_available,
    model_dir,
)
from lifeguard.safety.normalize import fold, readable

pytestmark = pytest.mark.skipif(not embedding_available(), reason="embedding model not installed")


def test_reproduces_sentence_transformers_similarity_matrix() -> None:
    # The matrix printed in sentence-transformers' README for all-MiniLM-L6-v2.
    e = default_encoder().encode(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    expected = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])
    assert e.shape == (3, EMBED_DIM)
    assert np.allclose(e @ e.T, expected, atol=1e-3)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)


def test_batching_and_padding_do_not_change_embeddings() -> None:
    enc = default_encoder()
    texts = ["hi", "can you keep a secret between us two", "ok", "see you at the match later"]
    together = enc.encode(texts, batch_size=4)
    alone = np.vstack([enc.encode([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert enc.encode([]).shape == (0, EMBED_DIM)


def test_refuses_weights_that_are_not_the_pinned_model(tmp_path: Path) -> None:
    src = model_dir()
    assert src is not None
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(src / name, tmp_path / name)
    (tmp_path / "model.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}")
    with pytest.raises(EmbedUnavailable, match="SHA-256"):
        Encoder(tmp_path)
    with pytest.raises(EmbedUnavailable, match="not found"):
        Encoder(tmp_path / "nowhere")


def test_readable_undoes_obfuscation_but_keeps_spelling() -> None:
    assert readable("pleeease dont tell ur parents k?") == "please do not tell your parents k"
    assert readable("s e c r e t") == "secret"
    assert readable("ph0t0 plz") == "photo please"
    assert readable("keep it between us") == "keep it between us"  # fold() would give "kep"
    assert fold("keep it between us") == "kep it betwen us"
