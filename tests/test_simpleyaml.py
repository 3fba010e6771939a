"""The fast lock YAML reader must give exactly PyYAML's BaseLoader result — or step aside
(`Unsupported`) so PyYAML decides. Checked on every corpus lock, on generated documents, and on
randomly damaged lock text (where it must never accept what PyYAML rejects)."""

from __future__ import annotations

import csv

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from conftest import CORPUS, require_corpus
from pixibuild.inputs import simpleyaml

try:
    from yaml import CBaseLoader as BaseLoader
except ImportError:  # pragma: no cover
    from yaml import BaseLoader  # type: ignore[assignment]


def _pyyaml(text: str):
    return yaml.load(text, Loader=BaseLoader)


_BIG = 300_000  # bytes; PyYAML needs about a second per megabyte


def _corpus_locks(big: bool) -> list[str]:
    index = CORPUS / "locks" / "INDEX.tsv"
    if not index.exists():
        return ["<corpus missing>"]
    with index.open(newline="") as handle:
        return [row["dir"] for row in csv.DictReader(handle, delimiter="\t")
                if (int(row["size_bytes"]) >= _BIG) == big]


def _check_corpus(lock_dirs: list[str]) -> None:
    for lock_dir in lock_dirs:
        text = require_corpus("locks", lock_dir, "pixi.lock").read_text()
        assert simpleyaml.load(text) == _pyyaml(text), lock_dir  # Unsupported would fail here too


@pytest.mark.corpus
def test_small_corpus_locks_read_fast_and_identically() -> None:
    _check_corpus(_corpus_locks(big=False))


@pytest.mark.corpus
@pytest.mark.slow
def test_large_corpus_locks_read_fast_and_identically() -> None:
    """The multi-megabyte locks (also covered field by field by the rattler differential test)."""
    _check_corpus(_corpus_locks(big=True))


def _same_or_unsupported(text: str) -> None:
    try:
        ours = simpleyaml.load(text)
    except simpleyaml.Unsupported:
        return
    assert ours == _pyyaml(text), text  # PyYAML raising here means we accepted invalid YAML


_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
_SCALARS = st.one_of(_TEXT, st.sampled_from(["1.10", "true", "null", "~", "", "- x", "a: b", "#c", "x #c",
                                             "'q'", '"d"', "*", ">=1,<2", "py_0", "1!2.0", "-1", "é"]))
_DOCS = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_SCALARS, inner, max_size=4)), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(_DOCS, st.sampled_from([None, "'", '"']), st.integers(min_value=2, max_value=4), st.booleans())
def test_generated_documents(doc, style, indent: int, indentless: bool) -> None:
    doc = {"root": doc}
    if indentless:  # serde_yaml style: sequences at their key's indentation
        text = yaml.safe_dump(doc, default_flow_style=False, default_style=style, indent=indent, width=10_000,
                              allow_unicode=True)
    else:
        class Indented(yaml.SafeDumper):
            def increase_indent(self, flow=False, indentless=False):
                return super().increase_indent(flow, False)
        text = yaml.dump(doc, Dumper=Indented, default_flow_style=False, default_style=style, indent=indent,
                         width=10_000, allow_unicode=True)
    _same_or_unsupported(text)


_SAMPLE = """\
version: 6
environments:
  default:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    packages:
      linux-64:
      - conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.12.1-h0_0.conda
      - pypi: ./src
packages:
- conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.12.1-h0_0.conda
  sha256: 'abc'
  depends:
  - libzlib >=1.3,<2.0a0
  - "tzdata"
  license: Python-2.0
  size: 1234
- pypi: ./src
  name: src
  version: '1.10'
  requires_dist: []
  editable: true
"""


def test_sample_reads() -> None:
    assert simpleyaml.load(_SAMPLE) == _pyyaml(_SAMPLE)
    assert simpleyaml.load(_SAMPLE)["packages"][1]["version"] == "1.10"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_text_is_never_misread(data) -> None:
    text = _SAMPLE
    for _ in range(data.draw(st.integers(1, 3))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 8)))
        insert = data.draw(st.sampled_from(["", " ", "  ", "-", ":", "'", '"', "\n", "#", "[", "{", "- ", ": "]))
        text = text[:start] + insert + text[end:]
    try:
        expected = _pyyaml(text)
    except yaml.YAMLError:
        with pytest.raises(simpleyaml.Unsupported):
            simpleyaml.load(text)
        return
    _same_or_unsupported(text)
    assert expected is not None or simpleyaml.load(text) is None


@pytest.mark.parametrize("text", ["a: [1, 2]\n", "a: &x 1\nb: *x\n", "a: |\n  text\n", "a: 1 # c\n",
                                  "a:\n\t- 1\n", "a: 'multi\n  line'\n", "--- \na: 1\n", "? a\n: 1\n"])
def test_unsupported_constructs_step_aside(text: str) -> None:
    with pytest.raises(simpleyaml.Unsupported):
        simpleyaml.load(text)
