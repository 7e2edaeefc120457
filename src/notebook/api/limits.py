"""Bounds on what one GraphQL request may ask for, checked before graphql-core validates it.

The checks run in time linear in the document's size: the syntax is counted in one pass over
the nodes, then every operation is measured against the schema, each fragment once (its result
is kept and reused at every spread, so a spread twice in each of 40 fragments costs 40 steps,
not 2**40). Only a document within every bound goes on to graphql-core's own rules, some of
which (OverlappingFieldsCanBeMerged) take time quadratic or worse in the expanded document.

Cost is the number of fields the response could hold if every list were full: a field with a
`first` (or `limit`) argument multiplies its selection by that value (or the argument's
default), another list field by `list_size_estimate`, except the `edges` of a connection, which
its `first` already counted. One response name selected many times in one selection set
(directly or through fragments) is capped too: graphql-core compares such fields pairwise.
Introspection (`__schema`, `__type` and everything below them) adds
no depth and no list multipliers, so schema tools load the schema; its fields still count.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    TypeInfo,
    VariableNode,
    get_named_type,
    parse,
    validate,
)
from graphql.validation import ASTValidationRule

from config.settings import Config

TOO_COMPLEX = "QUERY_TOO_COMPLEX"
# arguments that set how many items a list field returns
PAGE_SIZE_ARGUMENTS = ("first", "limit")
# GraphQL's Int is 32 bits
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class QueryLimits:
    """The bounds; defaults and `from_config` come from the GRAPHQL_MAX_* settings."""

    max_tokens: int = Config.graphql_max_tokens
    max_operations: int = Config.graphql_max_operations
    max_fragments: int = Config.graphql_max_fragments
    max_selections: int = Config.graphql_max_selections
    max_aliases: int = Config.graphql_max_aliases
    max_repeated_fields: int = Config.graphql_max_repeated_fields
    max_root_mutations: int = Config.graphql_max_root_mutations
    max_depth: int = Config.graphql_max_depth
    max_cost: int = Config.graphql_max_cost
    list_size_estimate: int = Config.graphql_list_size_estimate

    @classmethod
    def from_config(cls, config: Config) -> QueryLimits:
        return cls(
            max_tokens=config.graphql_max_tokens,
            max_operations=config.graphql_max_operations,
            max_fragments=config.graphql_max_fragments,
            max_selections=config.graphql_max_selections,
            max_aliases=config.graphql_max_aliases,
            max_repeated_fields=config.graphql_max_repeated_fields,
            max_root_mutations=config.graphql_max_root_mutations,
            max_depth=config.graphql_max_depth,
            max_cost=config.graphql_max_cost,
            list_size_estimate=config.graphql_list_size_estimate,
        )


def too_complex(message: str, node: Any = None) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": TOO_COMPLEX})


def parse_bounded(query: str, limits: QueryLimits) -> DocumentNode:
    """Parse `query`, giving up after `max_tokens` tokens (QUERY_TOO_COMPLEX)."""
    try:
        return parse(query, max_tokens=limits.max_tokens)
    except GraphQLError as error:
        if "Document contains more than" in error.message:
            raise too_complex(f"the query has more than {limits.max_tokens} tokens, the limit") from None
        raise


@dataclass
class _Measure:
    """What a selection set adds up to.

    depth: the deepest chain of fields; cost: fields with list multipliers; width: fields at its
    top level with fragments expanded; names: how often each response name occurs at its top
    level; repeats: the most occurrences of one response name in any selection set within.
    """

    depth: int = 0
    cost: int = 0
    width: int = 0
    names: dict[str, int] = field(default_factory=dict)
    repeats: int = 0


class _Analysis:
    """Measures one document against the schema; each fragment is measured once."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        limits: QueryLimits,
        variables: Mapping[str, Any] | None,
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.variables = variables if isinstance(variables, Mapping) else {}
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.measured: dict[str, _Measure] = {}
        self.in_progress: set[str] = set()

    def fragment(self, name: str) -> _Measure:
        known = self.measured.get(name)
        if known is not None:
            return known
        definition = self.fragments.get(name)
        if definition is None or name in self.in_progress:
            # unknown fragments and cycles are graphql-core's to report (KnownFragmentNames,
            # NoFragmentCycles); counting them as empty keeps this pass finite
            return _Measure()
        self.in_progress.add(name)
        parent = self.schema.get_type(definition.type_condition.name.value)
        measure = self.selection_set(definition.selection_set, parent)
        self.in_progress.discard(name)
        self.measured[name] = measure
        return measure

    def selection_set(self, node: SelectionSetNode | None, parent: GraphQLNamedType | None) -> _Measure:
        total = _Measure()
        if node is None:
            return total
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                part = self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                part = self.selection_set(selection.selection_set, inner)
            elif isinstance(selection, FragmentSpreadNode):
                part = self.fragment(selection.name.value)
            else:  # pragma: no cover - the three kinds above are all GraphQL has
                continue
            total.depth = max(total.depth, part.depth)
            total.cost += part.cost
            total.width += part.width
            total.repeats = max(total.repeats, part.repeats)
            for name, count in part.names.items():
                total.names[name] = total.names.get(name, 0) + count
        total.repeats = max(total.repeats, *total.names.values(), 0)
        return total

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> _Measure:
        name = node.name.value
        introspective = name.startswith("__") or (parent is not None and parent.name.startswith("__"))
        definition = None
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            definition = parent.fields.get(name)
        if name == "__schema":
            field_type: GraphQLOutputType | None = self.schema.get_type("__Schema")  # type: ignore[assignment]
        elif name == "__type":
            field_type = self.schema.get_type("__Type")  # type: ignore[assignment]
        else:
            field_type = definition.type if definition is not None else None
        inner = self.selection_set(node.selection_set, _named(field_type))
        size = 1 if introspective else self.list_size(node, definition, field_type, parent)
        return _Measure(
            depth=inner.depth + (0 if introspective else 1),
            cost=1 + size * inner.cost,
            width=1,
            names={node.alias.value if node.alias else name: 1},
            repeats=inner.repeats,
        )

    def list_size(
        self,
        node: FieldNode,
        definition: Any,
        field_type: GraphQLOutputType | None,
        parent: GraphQLNamedType | None,
    ) -> int:
        """How many items this field may return: its page size, or an estimate for a plain list."""
        if definition is not None:
            for argument_name in PAGE_SIZE_ARGUMENTS:
                if argument_name in definition.args:
                    value = self.argument(node, argument_name, definition.args[argument_name].default_value)
                    return max(1, value) if value is not None else self.limits.list_size_estimate
        if field_type is None or not _is_list(field_type):
            return 1
        if parent is not None and parent.name.endswith("Connection"):
            return 1  # a connection's edges: the page size was counted by the field returning it
        return self.limits.list_size_estimate

    def argument(self, node: FieldNode, name: str, default: Any) -> int | None:
        """The argument's value when it is a valid Int, else its default; invalid values are
        graphql-core's to report (BAD_USER_INPUT), not a reason to call the query complex."""
        value: Any = default
        for argument in node.arguments or ():
            if argument.name.value == name:
                given = argument.value
                if isinstance(given, IntValueNode):
                    value = int(given.value)
                elif isinstance(given, VariableNode):
                    value = self.variables.get(given.name.value, default)
        if isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX:
            return value
        return default if isinstance(default, int) else None


def _named(field_type: GraphQLOutputType | None) -> GraphQLNamedType | None:
    return None if field_type is None else get_named_type(field_type)


def _is_list(field_type: GraphQLOutputType) -> bool:
    if isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    return isinstance(field_type, GraphQLList)


def _syntax_counts(document: DocumentNode) -> tuple[int, int]:
    """(selections, aliases) written in the document, counted without recursion."""
    selections = aliases = 0
    stack: list[SelectionSetNode] = [
        d.selection_set
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while stack:
        selection_set = stack.pop()
        for selection in selection_set.selections:
            selections += 1
            if isinstance(selection, FieldNode) and selection.alias is not None:
                aliases += 1
            inner = getattr(selection, "selection_set", None)
            if inner is not None:
                stack.append(inner)
    return selections, aliases


def _over(subject: str, count: int | str, limit: int, node: Any = None) -> GraphQLError:
    return too_complex(f"{subject} {count}; the limit is {limit}", node)


def check_limits(
    schema: GraphQLSchema,
    document: DocumentNode,
    limits: QueryLimits,
    variables: Mapping[str, Any] | None = None,
) -> list[GraphQLError]:
    """Every bound the document breaks, as QUERY_TOO_COMPLEX errors; empty when within all."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = [d for d in document.definitions if isinstance(d, FragmentDefinitionNode)]
    if len(operations) > limits.max_operations:
        return [_over("operations in the document:", len(operations), limits.max_operations)]
    if len(fragments) > limits.max_fragments:
        return [_over("fragments in the document:", len(fragments), limits.max_fragments)]
    selections, aliases = _syntax_counts(document)
    errors = []
    if selections > limits.max_selections:
        errors.append(_over("selections in the document:", selections, limits.max_selections))
    if aliases > limits.max_aliases:
        errors.append(_over("aliases in the document:", aliases, limits.max_aliases))
    if errors:
        return errors
    analysis = _Analysis(schema, document, limits, variables)
    for operation in operations:
        measure = analysis.selection_set(operation.selection_set, schema.get_root_type(operation.operation))
        name = f"operation {operation.name.value}" if operation.name else "the operation"
        if operation.operation == OperationType.MUTATION and measure.width > limits.max_root_mutations:
            errors.append(_over(f"mutations in {name}:", measure.width, limits.max_root_mutations, operation))
        if measure.repeats > limits.max_repeated_fields:
            subject = f"most times one field is selected in one selection set of {name}:"
            errors.append(_over(subject, measure.repeats, limits.max_repeated_fields, operation))
        if measure.depth > limits.max_depth:
            errors.append(_over(f"levels of nesting in {name}:", measure.depth, limits.max_depth, operation))
        if measure.cost > limits.max_cost:
            cost = measure.cost if measure.cost < 10**15 else "over 10^15"
            subject = f"cost of {name} (fields it could return, lists counted full):"
            errors.append(_over(subject, cost, limits.max_cost, operation))
    return errors


QueryValidator = Callable[..., list[GraphQLError]]


def bounded_validator(
    limits: QueryLimits, variables: Mapping[str, Any] | None, rules_check: QueryValidator = validate
) -> QueryValidator:
    """A validator for Ariadne: the bounds first, graphql-core's rules (`rules_check`, graphql-core's
    `validate` or QueryCache's remembering one) only for a bounded document."""

    def validate_bounded(
        schema: GraphQLSchema,
        document: DocumentNode,
        rules: Collection[type[ASTValidationRule]] | None = None,
        max_errors: int | None = None,
        type_info: TypeInfo | None = None,
    ) -> list[GraphQLError]:
        errors = check_limits(schema, document, limits, variables)
        if errors:
            return errors
        return rules_check(schema, document, rules, max_errors=max_errors, type_info=type_info)

    return validate_bounded


class QueryCache:
    """Parsed documents, and graphql-core's verdict on them, by query text: a client sends the
    same few queries again and again, and parsing plus validation cost more than executing
    them (docs/benchmarks.md, "Where the time went").

    The bounds (`check_limits`) still run on every request, because they depend on the
    variables; only a document that passed graphql-core's own rules is remembered as valid, per
    set of rules. Least recently used out first; thread-safe. Documents are never changed by
    execution, so one parsed document serves every thread."""

    def __init__(self, limits: QueryLimits, size: int = 512) -> None:
        self.limits = limits
        self.size = size
        self._lock = threading.Lock()
        self._documents: OrderedDict[str, DocumentNode] = OrderedDict()
        self._valid: dict[tuple[int, tuple[type[ASTValidationRule], ...]], DocumentNode] = {}

    def parse(self, query: str) -> DocumentNode:
        with self._lock:
            document = self._documents.get(query)
            if document is not None:
                self._documents.move_to_end(query)
                return document
        document = parse_bounded(query, self.limits)
        with self._lock:
            self._documents[query] = document
            while len(self._documents) > self.size:
                _, dropped = self._documents.popitem(last=False)
                self._valid = {key: doc for key, doc in self._valid.items() if doc is not dropped}
        return document

    def validator(self, variables: Mapping[str, Any] | None) -> QueryValidator:
        """As `bounded_validator`, remembering graphql-core's success for a cached document."""
        return bounded_validator(self.limits, variables, self._check_rules)

    def _check_rules(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        rules: Collection[type[ASTValidationRule]] | None = None,
        max_errors: int | None = None,
        type_info: TypeInfo | None = None,
    ) -> list[GraphQLError]:
        key = (id(document), tuple(rules or ()))
        with self._lock:
            if self._valid.get(key) is document:
                return []
        errors = validate(schema, document, rules, max_errors=max_errors, type_info=type_info)
        if not errors:
            with self._lock:
                if any(cached is document for cached in self._documents.values()):
                    self._valid[key] = document
        return errors
