"""benchmarks/learning.py on a tiny budget: one JSON per run, a summary, a plot, resume."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
import torch as th


@pytest.fixture(scope="module")
def learning(load_benchmark):
    return load_benchmark("learning")


def test_tiny_run_writes_runs_summary_and_plot(learning, tmp_path: Path) -> None:
    args = ["--envs", "Pendulum-v1", "--methods", "dense", "dapd", "rigl", "--seeds", "0", "--steps", "300"]
    args += ["--eval-freq", "150", "--eval-episodes", "1", "--workers", "2", "--results", str(tmp_path)]
    learning.main(args)
    for method in ("dense", "dapd", "rigl"):
        record = json.loads((tmp_path / "Pendulum-v1" / f"{method}_seed0_300.json").read_text())
        assert record["eval_steps"] == [150, 300]
        assert len(record["eval_returns"]) == 2
        if method != "dense":
            assert record["sparsity"]["critic"] == pytest.approx(0.95, abs=1e-3)
    dapd_record = json.loads((tmp_path / "Pendulum-v1" / "dapd_seed0_300.json").read_text())
    assert dapd_record["mask_updates"] >= 1
    assert dapd_record["selection"] == {
        "moving_average": 5, "score_at": "dense", "allocation": "pooled", "within_layer": "top_k", "cover_inputs": False
    }  # fmt: skip
    assert json.loads((tmp_path / "Pendulum-v1" / "dense_seed0_300.json").read_text())["selection"] is None
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["Pendulum-v1"]) == {"dense", "dapd", "rigl"}
    assert summary["Pendulum-v1"]["dense"]["relative_to_dense"] == 0.0
    assert "| Pendulum-v1 | dapd |" in (tmp_path / "summary.md").read_text()
    image = matplotlib.image.imread(tmp_path / "learning_Pendulum-v1.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300

    # a second call finds every run done and does not redo it
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "Pendulum-v1").glob("*.json")}
    learning.main(args)
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "Pendulum-v1").glob("*.json")}
    assert json.loads((tmp_path / "Pendulum-v1" / "dense_seed0_300.json").read_text())["source_commit"]

    # --summarise runs nothing and tables every record of those steps, whatever call made it
    (tmp_path / "summary.md").unlink()
    learning.main(["--envs", "Pendulum-v1", "--methods", "dense", "--steps", "300", "--results", str(tmp_path), "--summarise"])
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "Pendulum-v1").glob("*.json")}
    table = (tmp_path / "summary.md").read_text()
    assert all(f"| Pendulum-v1 | {method} |" in table for method in ("dense", "dapd", "rigl"))
    with pytest.raises(SystemExit, match="no run records of \\[999\\] steps"):
        learning.main(["--steps", "999", "--results", str(tmp_path), "--summarise"])


def test_summary_arithmetic(learning) -> None:
    records = [
        {"env": "E", "method": "dense", "seed": 0, "eval_returns": [0.0, 10.0, 20.0]},
        {"env": "E", "method": "dense", "seed": 1, "eval_returns": [0.0, 10.0, 40.0]},
        {"env": "E", "method": "dapd", "seed": 0, "eval_returns": [0.0, 20.0, 33.0]},
    ]
    summary = learning.summarise(records, last_evals=1)
    assert summary["E"]["dense"]["final_mean"] == 30.0
    assert summary["E"]["dapd"]["relative_to_dense"] == pytest.approx(0.1)
    assert summary["E"]["dapd"]["auc_mean"] == pytest.approx(53.0 / 3)


TINY = ["--envs", "Pendulum-v1", "--methods", "dense", "dapd", "--seeds", "0", "--steps", "200"]
TINY += ["--eval-freq", "200", "--eval-episodes", "1", "--workers", "1"]


def _assert_tiny_runs(results: Path) -> None:
    for method in ("dense", "dapd"):
        record = json.loads((results / "Pendulum-v1" / f"{method}_seed0_200.json").read_text())
        assert record["eval_steps"] == [200]
    assert json.loads((results / "Pendulum-v1" / "dapd_seed0_200.json").read_text())["mask_updates"] >= 1


def test_submitit_local_executor_runs_the_benchmark(learning, tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    learning.main([*TINY, "--executor", "submitit", "--submitit-cluster", "local", "--results", str(tmp_path)])
    _assert_tiny_runs(tmp_path)
    assert any((tmp_path / "submitit").iterdir()), "submitit keeps its job files there"


def test_ray_local_cluster_runs_the_benchmark(learning, tmp_path: Path, monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    try:
        learning.main([*TINY, "--executor", "ray", "--results", str(tmp_path)])
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    _assert_tiny_runs(tmp_path)


def test_variants_are_stored_apart_and_cuda_without_cuda_warns(learning, tmp_path: Path) -> None:

    args = ["--envs", "Pendulum-v1", "--methods", "dapd", "--seeds", "0", "--steps", "200", "--eval-freq", "200"]
    args += ["--eval-episodes", "1", "--workers", "1", "--results", str(tmp_path), "--settings", "sb3"]
    args += ["--tag", "keep", "--dapd-kwargs", '{"optimizer_state": "keep"}', "--sac-kwargs", '{"learning_starts": 100}']
    learning.main(args)
    record = json.loads((tmp_path / "Pendulum-v1" / "dapd-keep_seed0_200.json").read_text())
    assert record["dapd_settings"] == {"optimizer_state": "keep"}
    assert record["sac_settings"] == {"learning_starts": 100}
    assert "dapd-keep" in json.loads((tmp_path / "summary.json").read_text())["Pendulum-v1"]
    with pytest.raises(SystemExit, match="--dapd-kwargs must be a JSON object"):
        learning.main([*args, "--dapd-kwargs", "[1]"])
    if not th.cuda.is_available():
        spec = learning.RunSpec("dense", "Pendulum-v1", 0, 100, 100, 1, settings="sb3", device="cuda")
        with pytest.warns(UserWarning, match="CUDA is not available"):
            learning.run(spec, tmp_path / "cuda")


def test_an_objective_named_in_the_dapd_arguments_is_imported(learning) -> None:
    from sb3_pathways.sac import sac_reference_objective

    named = {"moving_average": 1, "objective": "sb3_pathways.sac:sac_reference_objective"}
    assert learning._resolve_objective(named) == {"moving_average": 1, "objective": sac_reference_objective}
    assert named["objective"] == "sb3_pathways.sac:sac_reference_objective"  # the record keeps the name


def test_a_named_objective_rescores_one_network(learning) -> None:
    with pytest.raises(ValueError, match=r"objective must be 'module:function' or one of \['actor-only', 'critic-only'\]"):
        learning._resolve_objective({"objective": "actors"})
    resolved = learning._resolve_objective({"objective": "actor-only", "moving_average": 1})
    assert resolved == {"networks": ("actor",), "moving_average": 1}


def test_policy_kwargs_given_to_the_benchmark_set_the_initial_mask(learning, tmp_path: Path) -> None:
    args = ["--envs", "Pendulum-v1", "--methods", "dapd", "--seeds", "0", "--steps", "200", "--eval-freq", "200"]
    args += ["--eval-episodes", "1", "--workers", "1", "--results", str(tmp_path), "--settings", "sb3", "--tag", "erk"]
    args += ["--sac-kwargs", '{"learning_starts": 100, "policy_kwargs": {"mask_init": "erk"}}']
    learning.main(args)
    record = json.loads((tmp_path / "Pendulum-v1" / "dapd-erk_seed0_200.json").read_text())
    assert record["mask_init"] == "erk" and record["sac_settings"] == {"learning_starts": 100}


def test_a_call_summarises_the_runs_of_earlier_calls_too(learning, tmp_path: Path) -> None:
    base = ["--envs", "Pendulum-v1", "--seeds", "0", "--steps", "200", "--eval-freq", "200", "--eval-episodes", "1"]
    learning.main([*base, "--methods", "dense", "--results", str(tmp_path)])
    learning.main([*base, "--methods", "static", "--results", str(tmp_path)])
    assert set(json.loads((tmp_path / "summary.json").read_text())["Pendulum-v1"]) == {"dense", "static"}


def test_a_preset_runs_the_envs_seeds_and_variant_asked_for(learning) -> None:
    def specs(*argv: str) -> list:
        return learning.specs_from_args(learning.build_parser().parse_args(["--preset", "mujoco", *argv]))[0]

    chosen = specs("--envs", "Hopper-v5", "--methods", "dapd", "--seeds", "4", "--tag", "new", "--dapd-kwargs", '{"a": 1}')
    assert [(spec.env, spec.method, spec.seed, spec.steps, spec.label, spec.dapd_kwargs) for spec in chosen] == [
        ("Hopper-v5", "dapd", 4, 100_000, "dapd-new", '{"a": 1}')
    ]
    assert len(specs()) == 3 * 3 * 3
    # a method outside the preset's own (dense, dapd, rigl) runs with the preset's budget
    assert [
        (spec.env, spec.method, spec.steps) for spec in specs("--envs", "Hopper-v5", "--methods", "static", "--seeds", "0")
    ] == [("Hopper-v5", "static", 100_000)]
    with pytest.raises(SystemExit, match=r"--envs \['Pendulum-v1'\] are not in the preset 'mujoco'"):
        specs("--envs", "Pendulum-v1")
    with pytest.raises(SystemExit, match="--steps cannot be given with --preset"):
        specs("--steps", "10")


def test_an_interrupted_run_resumes_from_its_last_checkpoint(learning, tmp_path: Path, monkeypatch) -> None:
    spec = learning.RunSpec(
        "dapd",
        "Pendulum-v1",
        0,
        600,
        100,
        eval_episodes=1,
        settings="sb3",
        dapd_kwargs='{"max_warmup_fraction": null}',  # rescored after every 200-step episode
        sac_kwargs='{"learning_starts": 100}',
    )
    uninterrupted = learning.run(spec, tmp_path / "uninterrupted", checkpoint_every=0)
    assert uninterrupted["resumed_from"] == []

    class Killed(Exception):
        pass

    save_checkpoint = learning.save_checkpoint

    def save_then_die(model, directory: Path, progress: dict) -> None:
        save_checkpoint(model, directory, progress)
        raise Killed  # the process dies just after its first checkpoint

    monkeypatch.setattr(learning, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        learning.run(spec, tmp_path, checkpoint_every=200)  # at 200 and 400, episode ends
    checkpoint = spec.checkpoint_dir(tmp_path)
    progress = json.loads((checkpoint / "progress.json").read_text())
    assert [step for step, _ in progress["evaluations"]] == [100, 200]
    monkeypatch.undo()

    record = learning.run(spec, tmp_path, checkpoint_every=200)
    assert record["resumed_from"] == [200]
    assert record["eval_steps"] == [100, 200, 300, 400, 500, 600]
    assert record["eval_returns"][:2] == [value for _, value in progress["evaluations"]]
    # the update at the end of the episode before the checkpoint travelled with it
    assert record["mask_update_steps"] == uninterrupted["mask_update_steps"] == [101, 200, 400, 600]
    assert record["mask_updates"] == uninterrupted["mask_updates"] == 4
    assert record["sparsity"]["actor"] == pytest.approx(0.95, abs=1e-3)
    assert not checkpoint.exists() and spec.path(tmp_path).exists()


def test_a_dense_run_with_the_reference_network_options_runs_a_pathway_policy_at_sparsity_0(learning, tmp_path: Path) -> None:
    network = '{"policy_kwargs": {"weight_init": "xavier_normal", "log_std_bounds": [-10, 2]}}'
    base = ["--envs", "Pendulum-v1", "--seeds", "0", "--steps", "200", "--eval-freq", "200", "--eval-episodes", "1"]
    learning.main([*base, "--methods", "dense", "--tag", "refnet", "--sac-kwargs", network, "--results", str(tmp_path)])
    learning.main([*base, "--methods", "dense", "--results", str(tmp_path)])
    reference = json.loads((tmp_path / "Pendulum-v1" / "dense-refnet_seed0_200.json").read_text())
    assert reference["policy"] == "PathwayPolicy"
    assert reference["sparsity"] == {"actor": 0.0, "critic": 0.0} and reference["mask_updates"] == 0
    plain = json.loads((tmp_path / "Pendulum-v1" / "dense_seed0_200.json").read_text())
    assert plain["policy"] == "MlpPolicy" and "sparsity" not in plain
