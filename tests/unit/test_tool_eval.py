"""`wrp eval tools` on the shared BFCL data (skipped when it is absent): catalogues are built as
documented and the sweep measures what the shipped selector does."""

from pathlib import Path

import pytest

from pipeline.evaluation import tool_selection as ev
from pipeline.models.encoder import load_encoder
from pipeline.policy import load_policy
from pipeline.settings import DataMissing, data_dir
from pipeline.workload.tool_selection import ToolSelector, tool_name

try:
    ROOT = data_dir()
    ROWS = ev.load_rows(ROOT)
except DataMissing as exc:
    pytest.skip(
        f"shared BFCL data absent, tool selection not evaluated: {exc}", allow_module_level=True
    )

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"


def test_a_catalogue_holds_the_rows_own_tools_and_distinct_names_at_every_size():
    multiple, irrelevance, pool = ROWS
    assert len(multiple) == 1053 and len(irrelevance) == 884
    row = multiple[0]
    for size in ev.SIZES:
        tools, answer = ev.catalogue(row, pool, size)
        names = [tool_name(t) for t in tools]
        assert len(tools) == size and len(set(names)) == size
        assert tools[answer]["function"] is next(t for t in row.tools if t["name"] == row.answer)
        assert all(any(t["function"] is own for t in tools) for own in row.tools)
        assert ev.catalogue(row, pool, size) == (tools, answer)  # fixed seed
    assert ev.catalogue(irrelevance[0], pool, 50)[1] is None


def test_the_split_is_by_request_text_and_holds_both_kinds_of_rows():
    multiple, irrelevance, _ = ROWS
    for rows in (multiple, irrelevance):
        test = sum(r.split == "test" for r in rows)
        assert 0.4 < test / len(rows) < 0.6
    same_text = [r for r in multiple if r.text == multiple[0].text]
    assert {r.split for r in same_text} == {multiple[0].split}


def test_the_sweep_measures_what_the_shipped_selector_keeps():
    multiple, irrelevance, pool = ROWS
    config = load_policy(DEFAULT_POLICY).tools
    encoder = load_encoder()
    rows = [r for r in multiple if r.split == "test"][:40] + irrelevance[:20]
    selector = ToolSelector(config, encoder.encode, encoder.count_tokens)
    items = ev.score_rows(rows, encoder.encode([r.text for r in rows]), pool, selector, 200)
    shipped = ev.measure(items, ev.through_selector(selector))
    assert shipped == ev.measure(items, ev.with_config(config))
    assert shipped["recall"] >= 0.85 and shipped["tokens_saved"] >= 0.8
    top_1 = ev.measure(items, ev.with_config(config.model_copy(update={"top_k": 1})))
    assert top_1["recall"] < shipped["recall"] and top_1["tokens_saved"] > shipped["tokens_saved"]
