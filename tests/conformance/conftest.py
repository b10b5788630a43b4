"""The `engine` fixture: every test that takes `engine` runs once per registered engine."""

from __future__ import annotations

import pytest

from tests.conformance import engines


@pytest.fixture(params=engines.selected(), scope="session")
def engine_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def engine(engine_name: str):
    """The engine under test.

    Only an engine whose module does not exist yet is skipped (visibly, with the reason); an
    engine that exists but fails to import or start FAILS every test. CONFORMANCE_REQUIRE turns
    the skip into a failure too (for CI).
    """
    try:
        return engines.get(engine_name)
    except Exception as exc:  # noqa: BLE001
        reason = f"engine {engine_name!r} unavailable: {type(exc).__name__}: {exc}"
        not_written_yet = (
            isinstance(exc, ModuleNotFoundError) and exc.name == engines.ENGINES[engine_name].module
        )
        if engines.required(engine_name) or not not_written_yet:
            pytest.fail(reason)
        pytest.skip(reason)
