"""The services' storage Protocols (services/ports.py, rate_limits.AttemptStore) are met by both
the CouchDB repositories the composition root wires and the fakes the unit tests use: same
method names, same parameters, same annotations. So a fake cannot drift from the real class
without this test saying where."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from notebook.database.activity_repository import ActivityRepository
from notebook.database.repository import (
    MembershipRepository,
    NotebookRepository,
    NoteRepository,
    RefreshTokenRepository,
    UserRepository,
)
from notebook.database.throttle_repository import ThrottleRepository
from notebook.services import ports
from notebook.services.rate_limits import AttemptStore
from tests.unit.fakes import (
    FakeActivityStore,
    FakeAttemptStore,
    FakeMembershipRepository,
    FakeNotebookRepository,
    FakeNoteRepository,
    FakeRefreshTokenRepository,
    FakeUserRepository,
)

# every Protocol -> (the real repository, the fake)
IMPLEMENTATIONS: dict[type, tuple[type, type]] = {
    ports.UserDirectory: (UserRepository, FakeUserRepository),
    ports.UserStore: (UserRepository, FakeUserRepository),
    ports.RefreshTokenStore: (RefreshTokenRepository, FakeRefreshTokenRepository),
    ports.NotebookStore: (NotebookRepository, FakeNotebookRepository),
    ports.MembershipStore: (MembershipRepository, FakeMembershipRepository),
    ports.NoteRevisionSource: (NoteRepository, FakeNoteRepository),
    ports.ResolutionStore: (NoteRepository, FakeNoteRepository),
    ports.NoteStore: (NoteRepository, FakeNoteRepository),
    ports.ActivityStore: (ActivityRepository, FakeActivityStore),
    AttemptStore: (ThrottleRepository, FakeAttemptStore),
}


def _protocol_methods(protocol: type) -> list[str]:
    """The methods a Protocol asks for, its bases' included."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass is object or klass.__module__ == "typing":
            continue
        names.update(
            name
            for name, value in vars(klass).items()
            if inspect.isfunction(value) and not name.startswith("_")
        )
    return sorted(names)


def _mismatches(protocol: type, implementation: type) -> list[str]:
    """Where `implementation` does not accept every call the Protocol allows, or declares other
    types: missing methods, renamed or reordered parameters, other annotations, a default the
    Protocol has and the implementation lacks, extra parameters without defaults."""
    problems: list[str] = []
    for name in _protocol_methods(protocol):
        method = getattr(implementation, name, None)
        if not callable(method):
            problems.append(f"{name}: missing")
            continue
        wanted = list(inspect.signature(getattr(protocol, name)).parameters.values())
        given = list(inspect.signature(method).parameters.values())
        if (
            inspect.signature(getattr(protocol, name)).return_annotation
            != inspect.signature(method).return_annotation
        ):
            problems.append(f"{name}: returns {inspect.signature(method).return_annotation}")
        for want, have in zip(wanted, given, strict=False):
            if (want.name, want.kind, want.annotation) != (have.name, have.kind, have.annotation):
                problems.append(f"{name}: parameter {have} where the Protocol has {want}")
            elif want.default is not inspect.Parameter.empty and have.default != want.default:
                problems.append(f"{name}: parameter {have} lacks the default of {want}")
        if len(given) < len(wanted):
            problems.append(f"{name}: lacks parameters {[p.name for p in wanted[len(given) :]]}")
        problems += [
            f"{name}: extra parameter {p} has no default"
            for p in given[len(wanted) :]
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    return problems


PAIRS = [
    pytest.param(protocol, implementation, id=f"{protocol.__name__}-{implementation.__name__}")
    for protocol, implementations in IMPLEMENTATIONS.items()
    for implementation in implementations
]


@pytest.mark.parametrize(("protocol", "implementation"), PAIRS)
def test_real_repository_and_fake_both_meet_the_protocol(protocol: type, implementation: type) -> None:
    assert _protocol_methods(protocol), "a Protocol without methods checks nothing"
    assert _mismatches(protocol, implementation) == []
    if getattr(protocol, "_is_runtime_protocol", False):
        assert issubclass(implementation, protocol)


def test_every_protocol_of_the_ports_module_is_checked() -> None:
    declared = {
        value
        for value in vars(ports).values()
        if isinstance(value, type) and value.__module__ == ports.__name__
    }
    assert declared == set(IMPLEMENTATIONS) - {AttemptStore}


class _Drifted:
    """A fake that drifted: a renamed parameter, a lost default, a different return type, a
    required extra parameter, and no `delete`."""

    def add(self, user: Any) -> None: ...

    def get(self, id: str) -> Any: ...

    def get_by_email(self, email: str) -> None: ...

    def change(self, user_id: str, apply: Any, times: int) -> Any: ...


def test_a_drifted_fake_is_reported() -> None:
    problems = _mismatches(ports.UserStore, _Drifted)
    assert any(p.startswith("delete: missing") for p in problems)
    assert any(p.startswith("get: parameter id") for p in problems)
    assert any(p.startswith("get_by_email: returns") for p in problems)
    assert any(p.startswith("change: parameter times") for p in problems)
    assert any(p.startswith("add: parameter user: 'Any'") for p in problems)
    assert not issubclass(_Drifted, ports.UserStore)
