"""scripts/bench.py's report: the same rows for every server, side by side (no timings checked)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"
OPERATIONS = [
    "importNotes, notes per second",
    "building the views after the load, seconds",
    "page of 20 notes with notebook and author",
    "next page (keyset cursor)",
    "totalCount of all notes",
    "search one rare word",
    "search two common words",
    "filter by tag",
    "createNote",
    "updateNote (with its revision)",
]
SIZES = [1000, 10000]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_script", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(base: float) -> list[tuple[str, int, dict[str, float]]]:
    """What bench_size returns for both sizes, with made-up figures derived from `base`."""
    made: list[tuple[str, int, dict[str, float]]] = []
    for size in SIZES:
        for index, name in enumerate(OPERATIONS):
            value = base + index
            made.append((name, size, {"p50": value, "p95": value * 2, "runs": 30}))
    return made


def table_rows(text: str) -> list[list[str]]:
    """The cells of every body row of the Markdown table in `text`."""
    lines = [
        line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| operation")
    ]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def write(bench: ModuleType, tmp_path: Path, results: dict[str, Any]) -> str:
    out = tmp_path / "benchmarks.md"
    bench.write_report(results, out, (3.5, 2.0, 1.0))
    return out.read_text()


def test_both_servers_report_the_same_rows_side_by_side(bench: ModuleType, tmp_path: Path) -> None:
    text = write(bench, tmp_path, {"pouchdb": rows(10), "couchdb3": rows(500)})
    header = next(line for line in text.splitlines() if line.startswith("| operation"))
    assert "pouchdb p50" in header and "couchdb3 p50" in header and "couchdb3 p95" in header
    body = table_rows(text)
    assert [(cells[0], int(cells[1])) for cells in body] == [(n, s) for s in SIZES for n in OPERATIONS]
    for cells in body:
        assert len(cells) == 2 + 3 * 2, cells
    page = next(cells for cells in body if cells[0].startswith("page of 20"))
    assert page[2:] == ["12.0 ms", "24.0 ms", "30", "502.0 ms", "1004.0 ms", "30"]


def test_one_server_reports_the_same_rows_as_two(bench: ModuleType, tmp_path: Path) -> None:
    alone = {server: [cells[:2] for cells in table_rows(write(bench, tmp_path, {server: rows(1)}))]
             for server in ("pouchdb", "couchdb3")}  # fmt: skip
    both = [
        cells[:2] for cells in table_rows(write(bench, tmp_path, {"pouchdb": rows(1), "couchdb3": rows(2)}))
    ]
    assert alone["pouchdb"] == alone["couchdb3"] == both
    assert len(both) == len(OPERATIONS) * len(SIZES)


def test_different_rows_are_refused(bench: ModuleType) -> None:
    fewer = rows(1)[:-1]
    with pytest.raises(ValueError, match="other rows"):
        bench.table({"pouchdb": rows(1), "couchdb3": fewer})
    swapped = rows(1)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(ValueError, match="other rows"):
        bench.table({"pouchdb": rows(1), "couchdb3": swapped})


def test_the_report_names_the_servers_machine_date_and_load(bench: ModuleType, tmp_path: Path) -> None:
    text = write(bench, tmp_path, {"pouchdb": rows(1), "couchdb3": rows(2)})
    assert "pouchdb-server 4.2.0" in text and "Apache CouchDB 3.4.3" in text
    assert re.search(r"Date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    assert "Load average when the run started (1, 5, 15 min): 3.50, 2.00, 1.00" in text
    assert "shared with other work" in text
    assert "CPU cores" in text
