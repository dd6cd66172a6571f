"""benchmarks/capacity.py on a tiny budget: teacher, states, students, record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sb3_pathways.masking.selection import keep_count


def test_tiny_probe_fits_students_and_reuses_its_teacher(load_benchmark, tmp_path: Path) -> None:
    capacity = load_benchmark("capacity")
    args = ["--env", "Pendulum-v1", "--teacher-steps", "300", "--sparsity", "0", "0.95", "--states", "200"]
    args += ["--steps", "20", "--eval-episodes", "1", "--results", str(tmp_path)]
    capacity.main(args)
    record = json.loads((tmp_path / "Pendulum-v1_seed0.json").read_text())
    teacher = tmp_path / "teacher_Pendulum-v1_seed0_300.zip"
    assert teacher.exists()
    students = {(entry["mask"], entry["sparsity"]): entry for entry in record["students"]}
    assert set(students) == {("erk", 0.0), ("magnitude", 0.0), ("erk", 0.95), ("magnitude", 0.95)}
    # the teacher unpruned is its own perfect student: nothing to fit, the same return
    exact = students["magnitude", 0.0]
    assert exact["held_out_mse"] == 0.0 and exact["fit_losses"] == [0.0, 0.0]
    assert exact["pruned_return"] == exact["return"] == pytest.approx(record["teacher_return"])
    total = students["erk", 0.0]["actor_active"]
    assert students["erk", 0.95]["actor_active"] == students["magnitude", 0.95]["actor_active"] == keep_count(total, 0.05)
    assert students["erk", 0.95]["held_out_mse"] > 0.0

    # a second call loads the teacher instead of training it again
    before = teacher.stat().st_mtime_ns
    capacity.main(args)
    assert teacher.stat().st_mtime_ns == before
    with pytest.raises(SystemExit, match=r"--sparsity values must be in \[0, 1\), got 1.0"):
        capacity.main([*args, "--sparsity", "1.0"])
