"""docs/api.md runs as it stands: every ```python block, in order, in one namespace, in a scratch folder."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    """The code of every fenced block marked `python` (other fences, e.g. `text`, are left out)."""
    return re.findall(r"^```python\n(.*?)^```\s*$", text, flags=re.MULTILINE | re.DOTALL)


def test_blocks_are_found() -> None:
    text = "intro\n```python\na = 1\n```\n```text\nnot code\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]


def test_the_api_doc_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(DOC.read_text())
    code = "".join(blocks)
    for used in ("RunResult.from_folder", ".trains()", ".to_pandas()", ".efficacies(", "ax="):
        assert used in code, used  # what the page is there to show
    monkeypatch.chdir(tmp_path)  # the examples write runs/ here
    namespace: dict[str, object] = {"__name__": "api_doc"}
    for j, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}, python block {j + 1}", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "runs" / "api-demo" / "run.json").exists()
    plt.close("all")
