"""All Workload signals of a batch of requests: structure, one encoder pass, trained heads, rules.

Used by the signals stage and by ``wrp bench classify`` (same code, no broker).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipeline.envelope import RequestSection, Signals
from pipeline.models.encoder import Encoder
from pipeline.models.heads import Head, load_trained
from pipeline.policy import Policy
from pipeline.sessions import SessionMemory
from pipeline.vocabulary import OTHER_DOMAIN
from pipeline.workload.language import LanguageDetector
from pipeline.workload.load_shape import expected_output_tokens, load_shape
from pipeline.workload.rules import EmbeddingMatcher, KeywordMatcher
from pipeline.workload.structural import extract_structural, routing_text
from pipeline.workload.tool_selection import ToolSelection, ToolSelector, narrowed_body


@dataclass
class Timings:
    """Seconds spent per part of the last batch (the encoder reported on its own)."""

    encoder: float = 0.0
    heads: float = 0.0
    other: float = 0.0


class SignalExtractor:
    def __init__(self, policy: Policy, encoder: Encoder, learned: bool = True) -> None:
        """``learned`` False: structural signals only, no encoder pass and no heads (domain
        ``other``, complexity ``unknown``, no embedding): the cheapest Workload stage."""
        self.policy = policy
        self.encoder = encoder
        self.learned = learned
        config = policy.signals
        self.domain: Head = load_trained("domain", encoder.name, encoder.max_tokens)
        self.complexity: Head = load_trained("complexity", encoder.name, encoder.max_tokens)
        self.output_priors: dict[str, int] = self.domain.meta.get("output_tokens_prior", {})
        self.keywords = KeywordMatcher(config.keywords)
        self.embedding_rules = EmbeddingMatcher(config.embeddings, encoder.encode)
        self.language = LanguageDetector(config.language_min_confidence)
        self.sessions: SessionMemory[bool] = SessionMemory(config.session_ttl_s)
        self.tools = ToolSelector(policy.tools, encoder.encode, encoder.count_tokens)
        self.timings = Timings()
        self.heads_seconds = 0.0
        self._known_counts: dict[str, int] = {}
        self.versions = {
            "encoder": f"{encoder.name}/{encoder.max_tokens}",
            "domain": self.domain.version,
            "complexity": self.complexity.version,
        }

    def extract(self, requests: list[RequestSection]) -> list[Signals]:
        """Signals per request, in order; every request must have a body."""
        return self.extract_narrowed(requests)[1]

    def extract_narrowed(
        self, requests: list[RequestSection]
    ) -> tuple[list[RequestSection], list[Signals]]:
        """The requests with their tools narrowed by the policy's tool selection (the same
        objects when it leaves them alone), and their signals, in order."""
        started = time.perf_counter()
        texts = [routing_text(r.body) for r in requests if r.body is not None]
        ids, counts = self.encoder.tokenize(texts)
        self._known_counts = dict(zip(texts, counts, strict=True))
        if not self.learned:
            self.heads_seconds = 0.0
            encoded = time.perf_counter()
            requests, selections = self.select_tools(requests, texts, None)
            out = [
                self._signals(request, text, None, None, None, selection)
                for request, text, selection in zip(requests, texts, selections, strict=True)
            ]
            self.timings = Timings(0.0, 0.0, time.perf_counter() - encoded)
            return requests, out
        embeddings = self.encoder.encode_ids(ids)
        encoded = time.perf_counter()
        requests, selections = self.select_tools(requests, texts, embeddings)
        out = self.from_embeddings(requests, texts, embeddings, selections)
        other = time.perf_counter() - encoded - self.heads_seconds
        self.timings = Timings(encoded - started, self.heads_seconds, other)
        return requests, out

    def select_tools(
        self, requests: list[RequestSection], texts: list[str], embeddings: np.ndarray | None
    ) -> tuple[list[RequestSection], list[ToolSelection | None]]:
        """Each request with only the tools tool selection keeps, and the selection (None when
        it left the request alone). Without ``embeddings`` (structural signals only), the
        routing texts of the requests it narrows are embedded here."""
        chosen = [
            i
            for i, r in enumerate(requests)
            if r.body is not None and self.tools.needs_selection(r.body, r.tenant)
        ]
        selections: list[ToolSelection | None] = [None] * len(requests)
        if not chosen:
            return requests, selections
        if embeddings is None:
            queries = self.encoder.encode([texts[i] for i in chosen])
        else:
            queries = embeddings[chosen]
        narrowed = list(requests)
        for i, query in zip(chosen, queries, strict=True):
            request = requests[i]
            assert request.body is not None
            selection = self.tools.select(request.body, request.tenant, query)
            selections[i] = selection
            if selection.kept < selection.offered:
                body = narrowed_body(request.body, selection)
                narrowed[i] = request.model_copy(update={"body": body})
        return narrowed, selections

    def from_embeddings(
        self,
        requests: list[RequestSection],
        texts: list[str],
        embeddings: np.ndarray,
        selections: list[ToolSelection | None] | None = None,
    ) -> list[Signals]:
        """Signals of requests whose routing texts are already embedded (``heads_seconds`` is
        the time the learned heads took); ``selections``: what tool selection did to each."""
        started = time.perf_counter()
        domain_p = self.domain.predict(embeddings)
        complexity_p = self.complexity.predict(embeddings)
        self.heads_seconds = time.perf_counter() - started
        return [
            self._signals(request, text, vector, dp, cp, selection)
            for request, text, vector, dp, cp, selection in zip(
                requests,
                texts,
                embeddings,
                domain_p,
                complexity_p,
                selections or [None] * len(requests),
                strict=True,
            )
        ]

    def _signals(
        self,
        request: RequestSection,
        text: str,
        vector: np.ndarray | None,
        domain_p: np.ndarray | None,
        complexity_p: np.ndarray | None,
        selection: ToolSelection | None = None,
    ) -> Signals:
        body = request.body
        assert body is not None
        config = self.policy.signals
        structure = extract_structural(body, self._count_tokens, config.context_classes)
        domain, domain_score, complexity, complexity_score = OTHER_DOMAIN, 0.0, "unknown", 0.0
        if domain_p is not None and complexity_p is not None:
            best = int(domain_p.argmax())
            domain_score = round(float(domain_p[best]), 4)
            if domain_p[best] >= config.domain_threshold:
                domain = self.domain.labels[best]
            hard = int(complexity_p.argmax())
            complexity = self.complexity.labels[hard]
            complexity_score = round(float(complexity_p[hard]), 4)
        expected = expected_output_tokens(
            body.max_tokens, domain, self.output_priors, config.load_shape
        )
        language, language_score = self.language.detect(text)
        offered = len(body.tools or []) if selection is None else selection.offered
        return Signals(
            **structure.model_dump(),
            tools_offered=offered,
            tools_kept=offered if selection is None else selection.kept,
            tool_tokens=0 if selection is None else selection.offered_tokens,
            tool_tokens_saved=0 if selection is None else selection.saved_tokens,
            language=language,
            language_score=language_score,
            expected_output_tokens=expected,
            load_shape=load_shape(structure.prompt_tokens, expected, config.load_shape),
            session=self._session(request),
            keywords=self.keywords.matches(text),
            embedding_rules={} if vector is None else self.embedding_rules.matches(vector),
            domain=domain,
            domain_score=domain_score,
            complexity=complexity,
            complexity_score=complexity_score,
            embedding="" if vector is None else Signals.encode_embedding(vector),
            encoder=self.encoder.name if vector is not None else "",
            heads=self.versions if vector is not None else {},
        )

    def _count_tokens(self, text: str) -> int:
        """Token count, reusing the encoder's tokenization of the routing texts."""
        known = self._known_counts.get(text)
        return known if known is not None else self.encoder.count_tokens(text)

    def _session(self, request: RequestSection) -> str:
        """warm when this instance saw the session within the TTL (then refreshes it)."""
        scope = request.session_scope
        if scope is None:
            return "cold"
        warm = self.sessions.get(scope) is not None
        self.sessions.put(scope, True)
        return "warm" if warm else "cold"
