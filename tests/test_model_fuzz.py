"""L1: random configurations only ever raise the model's own error type, with a path on every problem."""

from __future__ import annotations

import copy

from conftest import stack_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.model import FleetConfigError, load_fleet

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(["domain", "ssh", "hosts", "guests", "loadBalancer", "statsPassword", "sshPrivateKey", "x"])
PROD = stack_values("prod")


def _check(config: dict, secret_keys: set[str]) -> None:
    try:
        load_fleet(config, secret_keys)
    except FleetConfigError as err:
        assert err.problems
        assert all(p.path.startswith("virtfleet:") and p.message for p in err.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, JSON, max_size=6), st.sets(KEYS, max_size=3))
def test_arbitrary_config_raises_only_fleet_errors(config, secret_keys):
    _check(config, secret_keys)


def _leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    yield path


LEAVES = list(_leaves(PROD))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(LEAVES), JSON), min_size=1, max_size=4))
def test_mutated_prod_raises_only_fleet_errors(mutations):
    """Replace random parts of a valid stack with random values: near-valid configs reach the rules."""
    config = copy.deepcopy(PROD)
    for path, value in mutations:
        if not path:
            continue
        target = config
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced the parent
    _check(config, {"sshPrivateKey"})
