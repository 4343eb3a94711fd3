"""L1: `make mutate`'s template mutants stay applicable: each names a line its template has, turns it
into something else, and names tests this tree has (a mutant that no longer applies would be
reported "not applicable" and silently leave the score)."""

from __future__ import annotations

import shutil

import pytest

from mutation.templates import MUTANTS, apply, existing
from plan.run import ROOT


@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"{n}-{m.template}" for n, m in enumerate(MUTANTS, 1)])
def test_each_template_mutant_applies_and_names_existing_tests(mutant, tmp_path):
    copy = tmp_path / mutant.template
    shutil.copy2(ROOT / "templates" / "steps" / mutant.template, copy)
    original = apply(copy, mutant)
    assert original is not None, f"{mutant.line!r} is not a line of {mutant.template}"
    assert copy.read_text() != original
    assert existing(ROOT, mutant.tests) == list(mutant.tests)


def test_mutants_are_distinct():
    assert len({(m.template, m.line, m.bug) for m in MUTANTS}) == len(MUTANTS)
