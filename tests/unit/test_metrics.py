"""The bounded operation label of the GraphQL metrics, and the METRICS_TOKEN setting."""

from __future__ import annotations

import pytest

from config.settings import ConfigError, load_config
from notebook.utils import metrics


def test_operation_label_takes_the_given_name_then_the_documents_first() -> None:
    assert metrics.operation_label("Feed", "query Other { me { id } }") == "Feed"
    assert (
        metrics.operation_label(None, "# a comment\n  mutation CreateNote($t: String!) { x }") == "CreateNote"
    )
    assert metrics.operation_label(None, "{ me { id } }") == "anonymous"
    assert metrics.operation_label("bad name!", None) == "other"


def test_operation_names_chosen_by_clients_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_seen_operations", set())
    labels = {metrics.operation_label(f"Op{i}", None) for i in range(metrics._MAX_OPERATION_NAMES + 50)}
    assert len(labels) == metrics._MAX_OPERATION_NAMES + 1 and "other" in labels
    assert metrics.operation_label("Op0", None) == "Op0"  # names seen before keep their label


def test_a_short_metrics_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        load_config({"FLASK_ENV": "testing", "METRICS_TOKEN": "short"}).validate()
    assert "metrics_token" not in repr(load_config({"FLASK_ENV": "testing", "METRICS_TOKEN": "x" * 20}))
