"""The README's main job (make demo) on a tiny budget: it trains and prints what it promises."""

from __future__ import annotations

import re

import pytest

from sb3_pathways import demo


def test_demo_prints_return_sparsity_and_freeze(capsys: pytest.CaptureFixture[str]) -> None:
    demo.main(["--steps", "300", "--freeze-threshold", "-100000"])
    out = capsys.readouterr().out
    assert re.search(r"Final return \(10 deterministic episodes\): -?\d+\.\d", out)
    assert re.search(r"Mask updates: \d+; mask frozen at step 200", out)  # the first episode end
    assert re.search(r"^actor\s+3341\s+66816\s+95\.00%\s+0\.05\d$", out, re.MULTILINE)
    assert re.search(r"^critic\s+6682\s+133632\s+95\.00%\s+0\.05\d$", out, re.MULTILINE)
