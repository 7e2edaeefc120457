"""notebook.api.limits: GraphQL bounds checked in linear time, before graphql-core's own rules."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import DocumentNode, GraphQLError, get_introspection_query, specified_rules

from config.settings import load_config
from notebook.api import limits as limits_module
from notebook.api.graphql_api import build_schema
from notebook.api.limits import QueryLimits, bounded_validator, check_limits, parse_bounded

SCHEMA = build_schema()
LIMITS = QueryLimits()


def fragment_bomb(levels: int, root: str = "Query", leaf: str = "me { id }") -> str:
    """`fragment F1 on Query { ...F0 ...F0 }` and so on: 2**levels copies of `leaf` once expanded."""
    fragments = [f"fragment F0 on {root} {{ {leaf} }}"]
    fragments += [f"fragment F{i} on {root} {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels + 1)]
    operation = "mutation" if root == "Mutation" else "query"
    return f"{operation} {{ ...F{levels} }}\n" + "\n".join(fragments)


def errors_for(
    query: str, limits: QueryLimits = LIMITS, variables: dict[str, Any] | None = None
) -> list[str]:
    document = parse_bounded(query, limits)
    errors = check_limits(SCHEMA, document, limits, variables)
    assert all(error.extensions == {"code": "QUERY_TOO_COMPLEX"} for error in errors)
    return [error.message for error in errors]


class CountingAnalysis(limits_module._Analysis):
    """Counts the selection sets the analysis walks, to show each fragment is measured once."""

    walked = 0

    def selection_set(self, node: Any, parent: Any) -> Any:
        CountingAnalysis.walked += 1
        return super().selection_set(node, parent)


# -- the fragment bomb ----------------------------------------------------------------------------


def test_fragment_bomb_at_40_levels_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module, "_Analysis", CountingAnalysis)
    CountingAnalysis.walked = 0
    messages = errors_for(fragment_bomb(40))
    assert any("cost" in message for message in messages), messages
    # one walk per selection set written: 41 fragments, the operation, `me { ... }` and `id` (none)
    assert CountingAnalysis.walked == 41 + 1 + 2


@pytest.mark.parametrize("levels", [5, 10, 20, 40])
def test_work_grows_with_the_document_not_with_its_expansion(
    monkeypatch: pytest.MonkeyPatch, levels: int
) -> None:
    monkeypatch.setattr(limits_module, "_Analysis", CountingAnalysis)
    CountingAnalysis.walked = 0
    errors_for(fragment_bomb(levels))
    assert CountingAnalysis.walked == levels + 4


def test_graphql_core_rules_never_see_a_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*_args: Any, **_kwargs: Any) -> list[GraphQLError]:
        raise AssertionError("graphql-core validation ran on a document beyond the limits")

    monkeypatch.setattr(limits_module, "validate", must_not_run)
    validator = bounded_validator(LIMITS, None)
    document = parse_bounded(
        fragment_bomb(40, root="Mutation", leaf='createNote(input: {title: "x"}) { id }'), LIMITS
    )
    errors = validator(SCHEMA, document, specified_rules)
    assert errors and all(error.extensions["code"] == "QUERY_TOO_COMPLEX" for error in errors)
    assert any("mutations" in error.message for error in errors)


def test_a_document_within_the_limits_gets_graphql_core_rules_too() -> None:
    validator = bounded_validator(LIMITS, None)
    errors = validator(SCHEMA, parse_bounded("{ me { id nope } }", LIMITS), specified_rules)
    assert [error.message for error in errors] == ["Cannot query field 'nope' on type 'User'."]


def test_fragment_cycles_end_and_are_left_to_graphql_core() -> None:
    query = "{ ...A } fragment A on Query { me { id } ...B } fragment B on Query { ...A }"
    assert errors_for(query) == []
    errors = bounded_validator(LIMITS, None)(SCHEMA, parse_bounded(query, LIMITS), specified_rules)
    assert any("Cannot spread fragment" in error.message for error in errors)


def test_unknown_fragments_and_fields_do_not_break_the_count() -> None:
    assert errors_for("{ ...Missing nothing { deeper { still } } me { unknown { x } } }") == []


# -- counts of the document -----------------------------------------------------------------------


def test_too_many_tokens_stop_the_parser() -> None:
    with pytest.raises(GraphQLError) as info:
        parse_bounded("{ " + "me { id } " * 100 + "}", QueryLimits(max_tokens=100))
    assert info.value.extensions == {"code": "QUERY_TOO_COMPLEX"}
    assert "100 tokens" in info.value.message


def test_syntax_errors_stay_syntax_errors() -> None:
    with pytest.raises(GraphQLError) as info:
        parse_bounded("{ me { id }", LIMITS)
    assert not info.value.extensions


def test_operations_per_document_are_capped() -> None:
    query = " ".join(f"query Q{i} {{ me {{ id }} }}" for i in range(11))
    assert errors_for(query) == ["operations in the document: 11; the limit is 10"]
    assert errors_for(" ".join(f"query Q{i} {{ me {{ id }} }}" for i in range(10))) == []


def test_fragments_per_document_are_capped() -> None:
    messages = errors_for(fragment_bomb(50))  # 51 fragments
    assert messages == ["fragments in the document: 51; the limit is 50"]


def test_selections_are_capped() -> None:
    fields = " ".join(f"a{i}: __typename" for i in range(30))
    assert errors_for(f"{{ {fields} }}", QueryLimits(max_selections=29)) == [
        "selections in the document: 30; the limit is 29"
    ]


def test_aliases_are_capped() -> None:
    query = "{ " + " ".join(f'n{i}: notes(search: "x") {{ totalCount }}' for i in range(31)) + " }"
    assert errors_for(query) == ["aliases in the document: 31; the limit is 30"]


def test_200_aliased_create_notes_are_refused() -> None:
    creates = " ".join(f'c{i}: createNote(input: {{title: "n{i}"}}) {{ id }}' for i in range(200))
    assert errors_for(f"mutation {{ {creates} }}") == ["aliases in the document: 200; the limit is 30"]


def test_root_mutations_are_capped_through_fragments_too() -> None:
    limits = QueryLimits(max_aliases=100)
    creates = " ".join(f'c{i}: createNote(input: {{title: "n{i}"}}) {{ id }}' for i in range(11))
    assert errors_for(f"mutation {{ {creates} }}", limits) == [
        "mutations in the operation: 11; the limit is 10"
    ]
    spread = (
        'mutation Many { ...M ...M } fragment M on Mutation { a: logout(refreshToken: "x") '
        + " ".join(f'b{i}: logout(refreshToken: "x")' for i in range(5))
        + " }"
    )
    assert errors_for(spread, limits) == ["mutations in operation Many: 12; the limit is 10"]


def test_one_field_selected_many_times_is_capped() -> None:
    # graphql-core compares such fields pairwise (OverlappingFieldsCanBeMerged): quadratic
    query = "{" + " notes(first: 1) { totalCount }" * 11 + " }"
    assert errors_for(query) == [
        "most times one field is selected in one selection set of the operation: 11; the limit is 10"
    ]
    assert errors_for("{" + " me { id }" * 10 + " }") == []


# -- depth ----------------------------------------------------------------------------------------


def _nested(levels: int) -> str:
    inner = "id"
    for _ in range(levels):
        inner = f"notebook {{ owner {{ {inner} }} }}"
    return f'{{ note(id: "x") {{ {inner} }} }}'


def test_depth_is_counted_in_fields() -> None:
    # note + 2 per level + id
    assert errors_for(_nested(5)) == []  # 12 levels
    assert errors_for(_nested(6)) == ["levels of nesting in the operation: 14; the limit is 12"]


def test_depth_adds_up_through_fragments() -> None:
    fragments = ["fragment K0 on Note { id }"] + [
        f"fragment K{i} on Note {{ notebook {{ notes(first: 1) {{ edges {{ node {{ ...K{i - 1} }} }} }} }} }}"
        for i in range(1, 4)
    ]
    document = "\n".join(fragments)
    assert (
        errors_for('{ note(id: "x") { ...K2 } }\n' + document.replace("fragment K3", "fragment Unused")) == []
    )
    assert errors_for('{ note(id: "x") { ...K3 } }\n' + document) == [
        "levels of nesting in the operation: 14; the limit is 12"
    ]


# -- cost -----------------------------------------------------------------------------------------


def test_nested_pages_multiply() -> None:
    query = "{ notes(first: 100) { edges { node { revisions(first: 100) { id title } } } } }"
    messages = errors_for(query)
    assert len(messages) == 1 and messages[0].startswith("cost of the operation")
    assert "20301" in messages[0]  # 1 + 100 * (1 + 1 + (1 + 100 * 2))


def test_page_sizes_from_variables_and_defaults() -> None:
    query = "query($n: Int) { notes(first: $n) { edges { node { revisions { id } } } } }"
    # revisions default 20: 1 + n * (1 + 1 + (1 + 20))
    assert errors_for(query, variables={"n": 10}) == []
    assert errors_for(query, QueryLimits(max_cost=231), variables={"n": 10}) == []
    assert errors_for(query, QueryLimits(max_cost=230), variables={"n": 10})
    # no value: the argument's default (20)
    assert errors_for(query, QueryLimits(max_cost=461)) == []
    assert errors_for(query, QueryLimits(max_cost=460))


def test_a_zero_or_negative_page_cannot_hide_a_costly_selection() -> None:
    inner = " ".join(f"f{i}: title" for i in range(20))
    query = f"{{ notes(first: 0) {{ edges {{ node {{ {inner} }} }} }} }}"
    assert errors_for(query, QueryLimits(max_cost=22)) != []
    assert errors_for(query.replace("first: 0", "first: -5"), QueryLimits(max_cost=22)) != []


def test_lists_without_a_page_size_count_at_the_estimate() -> None:
    query = "{ notebooks { notes(first: 100) { edges { node { id } } } } }"
    messages = errors_for(query)
    assert messages and "cost" in messages[0]
    # 1 + 50 * (1 + 100 * (1 + 1 + 1))
    assert "15051" in messages[0]
    assert errors_for("{ notebooks { id name noteCount } }") == []


# -- introspection --------------------------------------------------------------------------------


def test_the_standard_introspection_query_passes_the_default_limits() -> None:
    for descriptions in (True, False):
        assert errors_for(get_introspection_query(descriptions=descriptions)) == []


def test_introspection_is_not_free_of_the_cost_limit() -> None:
    bomb = fragment_bomb(30, leaf="__schema { types { name } }")
    assert any("cost" in message for message in errors_for(bomb))


# -- configuration --------------------------------------------------------------------------------


def test_limits_come_from_the_settings() -> None:
    config = load_config(
        {
            "FLASK_ENV": "testing",
            "GRAPHQL_MAX_DEPTH": "4",
            "GRAPHQL_MAX_COST": "77",
            "GRAPHQL_MAX_ALIASES": "2",
        }
    )
    limits = QueryLimits.from_config(config)
    assert (limits.max_depth, limits.max_cost, limits.max_aliases) == (4, 77, 2)
    assert errors_for(_nested(2), limits) == ["levels of nesting in the operation: 6; the limit is 4"]


def test_every_setting_has_a_limit() -> None:
    config = load_config({"FLASK_ENV": "testing"})
    limits = QueryLimits.from_config(config)
    settings = {name.removeprefix("graphql_") for name in vars(config) if name.startswith("graphql_max_")}
    assert settings <= set(vars(limits))
    assert isinstance(parse_bounded("{ me { id } }", limits), DocumentNode)
