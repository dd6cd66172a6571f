r"""Learning benchmark: dense SAC against pathway methods at 95% sparsity, in one harness.

Methods: ``dense`` (MlpPolicy), ``dapd`` (DAPDCallback rescoring every network from a uniform
random mask, the paper's setting, as every ``dapd`` record here was made; ``--tag actor-only
--dapd-kwargs '{"objective": "actor-only"}' --sac-kwargs '{"policy_kwargs": {"mask_init":
"erk"}}'`` runs what ``DAPDCallback()`` does for SAC by default), ``static`` (ERK mask, never
changes), ``snip`` (one-shot SNIP on the first data), ``set`` and ``rigl`` (topology
evolution, Graesser et al. 2022 settings, ERK start), ``gmp`` (gradual magnitude pruning
from dense, Zhu & Gupta 2017, pruning from 20% to 80% of training as Graesser et al.). SAC
settings and DAPD freeze thresholds come from ``hyperparams/sac.yml`` (one source for rl-zoo3
runs and this benchmark); every method uses the same settings.

Every run is evaluated every ``eval_freq`` steps on deterministic episodes and writes one
JSON under ``--results``; runs already there are not redone, so an interrupted benchmark
resumes (``--commit`` commits each finished run to git, so a fresh clone resumes too). A run
itself also resumes: every ``--checkpoint-every`` steps (rounded up to a multiple of
``eval_freq``) it saves the model, its replay buffer and its evaluations so far under
``<env>/checkpoints/`` (not committed; about 300 MB with SAC's 1M-transition buffer, removed
when the run ends), and a run started again goes on from its last checkpoint; its record
lists the steps it resumed from (``resumed_from``). A resumed run continues the same model,
optimizer, buffer and pathway state, with fresh random streams and a fresh first episode, so
it is not bit-identical to an uninterrupted one. The
summary covers every record under ``--results`` with the same step budget, those of earlier
calls included, and gives, per env and method: final return (mean of the last ``--last-evals``
evaluations, as the paper), return relative to dense, and the area under the learning curve
(mean evaluation return over the run); plus a learning-curve plot per env.

    python benchmarks/learning.py --preset cpu --commit      # the 2-core preset
    python benchmarks/learning.py --preset mujoco --commit   # Hopper, HalfCheetah, Walker2d 100k: results/learning/mujoco
    python benchmarks/learning.py --envs Pendulum-v1 --methods dense dapd --steps 20000 --seeds 0 1 2
    python benchmarks/learning.py --preset paper --executor submitit   # a SLURM cluster
    python benchmarks/learning.py --preset mujoco --summarise          # table and plots of every run so far
    python benchmarks/learning.py --preset mujoco --summarise --plot-labels dense dapd dapd-actor-only \
        dapd-actor-only-cover static rigl                              # the committed plots: the main arms only
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("dense", "dapd", "static", "snip", "set", "rigl", "gmp")
#: ``policy_kwargs`` that SB3's ``MlpPolicy`` does not take: ``dense`` runs them on a
#: ``PathwayPolicy`` at sparsity 0, the same network with every weight active
PATHWAY_POLICY_OPTIONS = ("weight_init", "log_std_bounds")
EXECUTORS = ("local", "ray", "submitit")


SETTINGS = ("zoo", "sb3")


@dataclass(frozen=True)
class RunSpec:
    """
    One training run.

    :param settings: ``"zoo"``: SAC and DAPD settings of ``hyperparams/sac.yml``; ``"sb3"``:
        SB3's SAC defaults with 1,000 initial transitions and ``DAPDCallback()`` without
        arguments (what a user who follows the API gets)
    :param tag: names a variant (its runs are stored and summarised as ``method-tag``)
    :param dapd_kwargs: JSON object of DAPDCallback arguments added to the settings' own; an
        ``"objective"`` is given as ``"module:function"`` or as a name of
        :data:`NAMED_OBJECTIVES` (``"actor-only"``: DAPD rescores the actor alone, the critic
        keeps its initial mask; ``"critic-only"``: the reverse)
    :param sac_kwargs: JSON object of SAC arguments added to the settings' own (every method);
        its ``policy_kwargs`` are merged into the settings' ones and may set ``mask_init``
        (a sparse method's initial mask: ``"random"`` for DAPD and SNIP, ``"erk"`` otherwise); a
        ``dense`` run given an option of :data:`PATHWAY_POLICY_OPTIONS` (the DAPD reference's
        ``weight_init`` or ``log_std_bounds``) runs a ``PathwayPolicy`` at sparsity 0
    :param device: torch device of the model (``"cuda"`` without CUDA falls back to the CPU
        with a warning)
    """

    method: str
    env: str
    seed: int
    steps: int
    eval_freq: int
    eval_episodes: int = 10
    settings: str = "zoo"
    tag: str = ""
    dapd_kwargs: str = "{}"
    sac_kwargs: str = "{}"
    device: str = "cpu"

    @property
    def label(self) -> str:
        return f"{self.method}-{self.tag}" if self.tag else self.method

    def path(self, results: Path) -> Path:
        return results / self.env / f"{self.label}_seed{self.seed}_{self.steps}.json"

    def checkpoint_dir(self, results: Path) -> Path:
        return results / self.env / "checkpoints" / f"{self.label}_seed{self.seed}_{self.steps}"


#: preset -> list of (envs, methods, steps, eval_freq); seeds and last-evals per preset; a preset
#: with a ``subdir`` keeps its runs, summary and plots in that folder of the default results folder
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "groups": [
            (["Pendulum-v1"], list(METHODS), 20_000, 1_000),
            (["Hopper-v5"], ["dense", "dapd", "rigl"], 50_000, 2_500),
        ],
        "seeds": [0, 1, 2],
        "last_evals": 5,
    },
    "mujoco": {
        "groups": [(["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"], ["dense", "dapd", "rigl"], 100_000, 5_000)],
        "seeds": [0, 1, 2],
        "last_evals": 5,
        "subdir": "mujoco",
    },
    "paper": {
        "groups": [(["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"], list(METHODS), 1_000_000, 5_000)],
        "seeds": [0, 1, 2, 3, 4],
        "last_evals": 10,
        "subdir": "paper",
    },
}


def sac_settings(env: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """SAC keyword arguments and DAPDCallback keyword arguments from hyperparams/sac.yml."""
    with open(ROOT / "hyperparams" / "sac.yml") as file:
        entries = yaml.load(file, Loader=yaml.UnsafeLoader)  # as rl-zoo3 reads it
    if env not in entries:
        raise ValueError(f"hyperparams/sac.yml has no entry for {env!r}; it has {sorted(entries)}")
    entry = dict(entries[env])
    dapd_kwargs = next(iter(entry.pop("callback")[0].values()))
    policy_kwargs = eval(entry.pop("policy_kwargs", "dict()"))  # as rl-zoo3 evaluates it
    policy_kwargs.pop("sparsity", None)
    for key in ("n_timesteps", "policy"):
        entry.pop(key, None)
    return {**entry, "policy_kwargs": policy_kwargs}, dapd_kwargs


def _source_commit() -> str | None:
    """The checkout's commit (``-dirty`` with uncommitted changes) when this module was loaded:
    the code a run's worker process imported."""
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return described.stdout.strip() or None


SOURCE_COMMIT = _source_commit()
#: the update rule's settings every record carries, defaults included
SELECTION_SETTINGS = ("moving_average", "score_at", "allocation", "within_layer", "cover_inputs")


def package_versions(*extra: str) -> dict[str, str]:
    """Versions of the packages that decide a run's numbers (simulator included), and of ``extra``."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "stable-baselines3", "sb3-contrib", "gymnasium", "mujoco", "numpy", *extra):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def machine_description() -> str:
    """The processor and core count a run's timing and thread contention came from."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} CPUs"


#: objectives that ``dapd_kwargs`` may name instead of ``"module:function"``: the networks
#: DAPD rescores (``DAPDCallback(networks=...)``), the others keeping their initial mask
NAMED_OBJECTIVES: dict[str, tuple[str, ...]] = {"actor-only": ("actor",), "critic-only": ("critic",)}


def _resolve_objective(dapd_kwargs: dict[str, Any]) -> dict[str, Any]:
    """DAPDCallback arguments with an ``"objective"`` named ``"module:function"`` imported, or
    one of :data:`NAMED_OBJECTIVES` turned into the ``networks`` it rescores."""
    objective = dapd_kwargs.get("objective")
    if not isinstance(objective, str):
        return dapd_kwargs
    if objective in NAMED_OBJECTIVES:
        rest = {key: value for key, value in dapd_kwargs.items() if key != "objective"}
        return {**rest, "networks": NAMED_OBJECTIVES[objective]}
    if ":" not in objective:
        raise ValueError(f"objective must be 'module:function' or one of {sorted(NAMED_OBJECTIVES)}, got {objective!r}")
    module, _, function = objective.partition(":")
    return {**dapd_kwargs, "objective": getattr(importlib.import_module(module), function)}


def save_checkpoint(model: Any, directory: Path, progress: dict[str, Any]) -> None:
    """Model, replay buffer and ``progress`` (evaluations, seconds, steps) under ``directory``,
    written beside it first and then moved in place, so that a run killed while saving
    keeps its previous checkpoint."""
    staging = directory.with_name(directory.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save(staging / "model.zip")
    model.save_replay_buffer(staging / "replay_buffer.pkl")
    (staging / "progress.json").write_text(json.dumps(progress))
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def run(spec: RunSpec, results: Path, checkpoint_every: int = 0) -> dict[str, Any]:
    """
    Train and evaluate one run; write and return its record (read back if it exists).

    :param checkpoint_every: save a checkpoint every this many steps, rounded up to a multiple
        of the spec's ``eval_freq`` (0: never); a checkpoint left by an earlier call is resumed
    """
    path = spec.path(results)
    if path.exists():
        return json.loads(path.read_text())
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be 0 (no checkpoints) or a number of steps, got {checkpoint_every}")
    import torch as th
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
    from stable_baselines3.common.env_util import make_vec_env

    import sb3_pathways
    from sb3_pathways import DAPDCallback, GMPCallback, RigLCallback, SETCallback, SNIPCallback

    th.set_num_threads(1)
    if th.device(spec.device).type == "cuda" and not th.cuda.is_available():
        warnings.warn(f"device {spec.device!r} asked, but CUDA is not available here: running on the CPU", stacklevel=1)
    if spec.settings == "zoo":
        sac_kwargs, dapd_kwargs = sac_settings(spec.env)
    else:
        sac_kwargs, dapd_kwargs = {"learning_starts": 1000, "policy_kwargs": {}}, {}
    overrides = json.loads(spec.sac_kwargs)
    policy_overrides = overrides.pop("policy_kwargs", {})
    sac_kwargs.update(overrides)
    dapd_kwargs.update(json.loads(spec.dapd_kwargs))
    sparse = spec.method != "dense"
    policy_kwargs = dict(sac_kwargs.pop("policy_kwargs"))
    # a dense run with an option only pathway policies have is a pathway policy at sparsity 0
    pathway_policy = sparse or bool(set(policy_overrides) & set(PATHWAY_POLICY_OPTIONS))
    policy = "PathwayPolicy" if pathway_policy else "MlpPolicy"
    if sparse:
        policy_kwargs.update(sparsity=0.95, mask_init="random" if spec.method in ("dapd", "snip") else "erk")
    elif pathway_policy:
        policy_kwargs.update(sparsity=0.0)
    policy_kwargs.update(policy_overrides)
    updaters = {
        # every network unless named: the setting of every ``dapd`` record, whatever the package default
        "dapd": lambda: DAPDCallback(**{"networks": "all", **_resolve_objective(dapd_kwargs)}),
        "snip": lambda: SNIPCallback(),
        "set": lambda: SETCallback(),
        "rigl": lambda: RigLCallback(),
        "gmp": lambda: GMPCallback(),
    }
    evaluations: list[tuple[int, float]] = []
    checkpoint = spec.checkpoint_dir(results)
    period = math.lcm(checkpoint_every, spec.eval_freq) if checkpoint_every else 0
    progress: dict[str, Any] = {"seconds": 0.0, "resumed_from": []}

    class RecordEvaluation(BaseCallback):
        def _on_step(self) -> bool:
            assert self.parent is not None
            evaluations.append((self.num_timesteps, float(self.parent.last_mean_reward)))
            return True

    class SaveCheckpoint(BaseCallback):
        """At the start of a rollout: the last one's mask update and gradient steps are done."""

        last_saved = 0

        def _on_training_start(self) -> None:
            self.last_saved = self.num_timesteps  # a resumed run does not save its checkpoint again

        def _on_rollout_start(self) -> None:
            if period and self.num_timesteps // period > self.last_saved // period:
                self.last_saved = self.num_timesteps
                seconds = progress["seconds"] + time.perf_counter() - start
                save_checkpoint(self.model, checkpoint, {**progress, "seconds": seconds, "evaluations": evaluations})

        def _on_step(self) -> bool:
            return True

    start = time.perf_counter()
    if (checkpoint / "progress.json").exists():
        progress = json.loads((checkpoint / "progress.json").read_text())
        evaluations.extend((step, value) for step, value in progress.pop("evaluations"))
        model = SAC.load(checkpoint / "model.zip", env=make_vec_env(spec.env), device=spec.device)
        model.load_replay_buffer(checkpoint / "replay_buffer.pkl")
        model.set_random_seed(spec.seed + model.num_timesteps)
        progress["resumed_from"].append(model.num_timesteps)
        print(f"{spec.env} {spec.label} seed {spec.seed}: resumed at step {model.num_timesteps}", flush=True)
    else:
        model = SAC(
            policy,
            spec.env,
            seed=spec.seed,
            device=spec.device,
            policy_kwargs=policy_kwargs,
            **sac_kwargs,
        )
    callbacks: list[BaseCallback] = [
        EvalCallback(
            make_vec_env(spec.env, seed=spec.seed + 1000),
            eval_freq=spec.eval_freq,
            n_eval_episodes=spec.eval_episodes,
            callback_after_eval=RecordEvaluation(),
            verbose=0,
        )
    ]
    pathway_callback = updaters[spec.method]() if spec.method in updaters else None
    if pathway_callback is not None:
        callbacks.append(pathway_callback)
    callbacks.append(SaveCheckpoint())
    model.learn(spec.steps - model.num_timesteps, callback=callbacks, reset_num_timesteps=model.num_timesteps == 0)
    rule = getattr(pathway_callback, "updater", None)
    record: dict[str, Any] = {
        **asdict(spec),
        "label": spec.label,
        "sac_settings": {key: value for key, value in sac_kwargs.items() if key != "policy_kwargs"},
        "dapd_settings": dapd_kwargs if spec.method == "dapd" else None,
        "policy": policy,
        "mask_init": policy_kwargs.get("mask_init"),
        "selection": {key: getattr(rule, key) for key in SELECTION_SETTINGS if hasattr(rule, key)} or None,
        "eval_steps": [step for step, _ in evaluations],
        "eval_returns": [value for _, value in evaluations],
        "seconds": progress["seconds"] + time.perf_counter() - start,
        "resumed_from": progress["resumed_from"],
        "versions": package_versions(),
        "machine": machine_description(),
        "source_commit": SOURCE_COMMIT,
    }
    if pathway_policy:
        state = getattr(model, "pathway_discovery", None)
        record.update(
            mask_updates=state.n_updates if state else 0,
            mask_update_steps=[step for step, _ in state.mask_changes] if state else [],
            frozen_step=state.frozen_step if state else None,
            sparsity={name: s.sparsity for name, s in sb3_pathways.pathway_stats(model).items()},
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    shutil.rmtree(checkpoint, ignore_errors=True)
    return record


def _commit(path: Path) -> None:
    """Commit one finished run (retried: another git command may hold the index lock)."""
    message = f"learning benchmark: {path.relative_to(ROOT)}"
    for attempt in range(5):
        added = subprocess.run(["git", "add", str(path)], cwd=ROOT, capture_output=True)
        committed = subprocess.run(["git", "commit", "-q", "-m", message, "--", str(path)], cwd=ROOT, capture_output=True)
        if added.returncode == 0 and committed.returncode == 0:
            return
        time.sleep(2 + 2 * attempt)
    print(f"could not commit {path}: {committed.stderr.decode().strip()}", flush=True)


def _ship_this_module_by_value(executor: str) -> None:
    """Cluster workers unpickle ``run`` in a fresh interpreter: when this script was loaded
    under a name that is not importable there, send its code along (with cloudpickle, or
    Ray's own copy of it)."""
    module = sys.modules[run.__module__]
    if module.__name__ == "__main__":
        return
    if executor == "ray":
        from ray import cloudpickle
    else:
        import cloudpickle
    cloudpickle.register_pickle_by_value(module)


def execute(
    specs: list[RunSpec],
    results: Path,
    executor: str,
    workers: int,
    commit: bool,
    submitit_cluster: str | None = None,
    checkpoint_every: int = 0,
) -> list[dict[str, Any]]:
    """
    Run every spec not yet done, on local processes or a cluster engine: Ray (joins the
    cluster of ``RAY_ADDRESS``, or starts a local one with ``workers`` CPUs) or submitit
    (SLURM when available, else local processes; ``submitit_cluster`` forces one).
    ``checkpoint_every``: see :func:`run`.
    """
    todo = [spec for spec in specs if not spec.path(results).exists()]
    print(f"{len(specs) - len(todo)} of {len(specs)} runs already done; running {len(todo)}", flush=True)
    if executor in ("ray", "submitit"):
        _ship_this_module_by_value(executor)
    if executor == "local":
        with ProcessPoolExecutor(workers) as pool:
            futures = {pool.submit(run, spec, results, checkpoint_every): spec for spec in todo}
            for future in as_completed(futures):
                _finished(future.result(), futures[future].path(results), commit)
    elif executor == "ray":
        import ray  # optional extra: pip install "sb3-pathways[cluster]"

        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=1)(run)
        pending = {remote.remote(spec, results, checkpoint_every): spec for spec in todo}
        while pending:
            done, _ = ray.wait(list(pending))
            spec = pending.pop(done[0])
            _finished(ray.get(done[0]), spec.path(results), commit)
    elif executor == "submitit":
        import submitit  # optional extra: pip install "sb3-pathways[cluster]"

        cluster = submitit.AutoExecutor(folder=results / "submitit", cluster=submitit_cluster)
        cluster.update_parameters(cpus_per_task=1, timeout_min=24 * 60)
        jobs = [(cluster.submit(run, spec, results, checkpoint_every), spec) for spec in todo]
        for job, spec in jobs:
            _finished(job.result(), spec.path(results), commit)
    else:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    return [json.loads(spec.path(results).read_text()) for spec in specs]


def _finished(record: dict[str, Any], path: Path, commit: bool) -> None:
    returns = record["eval_returns"]
    label = _label(record)
    print(f"done {record['env']} {label} seed {record['seed']}: last {returns[-1]:.1f}", flush=True)
    if commit:
        _commit(path)


def summarise(records: Iterable[dict[str, Any]], last_evals: int) -> dict[str, dict[str, dict[str, Any]]]:
    """env -> method -> final returns per seed, their mean, relative to dense, and AUC."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        env = summary.setdefault(record["env"], {})
        entry = env.setdefault(_label(record), {"seeds": [], "final": [], "auc": []})
        entry["seeds"].append(record["seed"])
        entry["final"].append(statistics.mean(record["eval_returns"][-last_evals:]))
        entry["auc"].append(statistics.mean(record["eval_returns"]))
    for methods in summary.values():
        dense_label = "dense" if "dense" in methods else next((label for label in methods if label.startswith("dense")), None)
        dense = statistics.mean(methods[dense_label]["final"]) if dense_label else None
        for entry in methods.values():
            entry["final_mean"] = statistics.mean(entry["final"])
            entry["auc_mean"] = statistics.mean(entry["auc"])
            entry["relative_to_dense"] = (entry["final_mean"] - dense) / abs(dense) if dense else None
    return summary


def _label(record: dict[str, Any]) -> str:
    """A run record's method label (records written before variants have none)."""
    return record.get("label", record["method"])


def _label_order(label: str) -> tuple[int, str]:
    method = label.split("-", 1)[0]
    return (METHODS.index(method) if method in METHODS else len(METHODS), label)


def markdown_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| env | method | final return per seed | mean | vs dense | AUC |", "| --- | --- | --- | --- | --- | --- |"]
    for env, methods in summary.items():
        for method in sorted(methods, key=_label_order):
            entry = methods[method]
            finals = ", ".join(f"{value:.0f}" for value in entry["final"])
            relative = "" if entry["relative_to_dense"] is None else f"{entry['relative_to_dense']:+.1%}"
            lines.append(f"| {env} | {method} | {finals} | {entry['final_mean']:.1f} | {relative} | {entry['auc_mean']:.1f} |")
    return "\n".join(lines)


def plot_curves(records: list[dict[str, Any]], output: Path, labels: list[str] | None = None) -> list[Path]:
    """One PNG per env: mean evaluation return over seeds against steps, per method (those of
    ``labels`` only, when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for env in sorted({record["env"] for record in records}):
        figure, axis = plt.subplots(figsize=(7, 4.5))
        env_labels = sorted(
            {_label(r) for r in records if r["env"] == env and (not labels or _label(r) in labels)}, key=_label_order
        )
        colours = plt.get_cmap("tab20").colors
        for index, method in enumerate(env_labels):
            runs = [r for r in records if r["env"] == env and _label(r) == method]
            length = min(len(r["eval_returns"]) for r in runs)
            steps = runs[0]["eval_steps"][:length]
            mean = [statistics.mean(r["eval_returns"][i] for r in runs) for i in range(length)]
            # dense in black and thick; every other method its own colour (20) and dash pattern;
            # tab20 pairs a dark and a light shade of each hue: the ten hues come first
            colour = colours[(2 * index + index // 10) % len(colours)]
            style = (
                dict(color="black", linewidth=2.5)
                if method == "dense"
                else dict(color=colour, linestyle=("-", "--", ":", "-.")[index // len(colours) % 4])
            )
            axis.plot(steps, mean, label=f"{method} ({len(runs)} seed{'s' if len(runs) > 1 else ''})", **style)
        plotted = [r for r in records if r["env"] == env and _label(r) in env_labels and r["method"] != "dense"]
        other_sparsity = any(round(value, 2) != 0.95 for r in plotted for value in (r.get("sparsity") or {}).values())
        sparsity_note = "95% unless their name says otherwise" if other_sparsity else "95%"
        axis.set(
            title=f"SAC on {env} (sparse methods at {sparsity_note})", xlabel="environment steps", ylabel="evaluation return"
        )
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the curves, not over them
        axis.grid(alpha=0.3)
        path = output / f"learning_{env}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths


def specs_from_args(args: argparse.Namespace) -> tuple[list[RunSpec], int]:
    unknown = sorted(set(args.methods or ()) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; accepted: {list(METHODS)}")
    for name in ("dapd_kwargs", "sac_kwargs"):
        try:
            if not isinstance(json.loads(getattr(args, name)), dict):
                raise ValueError
        except ValueError:
            raise SystemExit(f"--{name.replace('_', '-')} must be a JSON object, got {getattr(args, name)!r}") from None
    variant = dict(
        settings=args.settings, tag=args.tag, dapd_kwargs=args.dapd_kwargs, sac_kwargs=args.sac_kwargs, device=args.device
    )
    if args.preset:
        preset = PRESETS[args.preset]
        fixed = [f"--{name.replace('_', '-')}" for name in ("steps", "eval_freq") if getattr(args, name) is not None]
        if fixed:
            raise SystemExit(f"{' and '.join(fixed)} cannot be given with --preset: the preset {args.preset!r} sets them")
        preset_envs = [env for envs, *_ in preset["groups"] for env in envs]
        outside = sorted(set(args.envs or ()) - set(preset_envs))
        if outside:
            raise SystemExit(f"--envs {outside} are not in the preset {args.preset!r}; it has {preset_envs}")
        specs = [
            RunSpec(method, env, seed, steps, eval_freq, args.eval_episodes, **variant)
            for envs, methods, steps, eval_freq in preset["groups"]
            for seed in args.seeds or preset["seeds"]  # seed-major: a stopped run leaves every env with equal seeds
            for env in envs
            for method in args.methods or methods  # the preset's methods unless others are asked for
            if args.envs is None or env in args.envs
        ]
        return specs, args.last_evals or preset["last_evals"]
    specs = [
        RunSpec(method, env, seed, args.steps or 20_000, args.eval_freq or 1_000, args.eval_episodes, **variant)
        for env in args.envs or ["Pendulum-v1"]
        for seed in args.seeds or [0, 1, 2]
        for method in args.methods or METHODS
    ]
    return specs, args.last_evals or 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--envs", nargs="+", default=None, help="default: Pendulum-v1, or the preset's (a subset)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: all, or the preset's (a subset with a preset)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2, or the preset's")
    parser.add_argument("--steps", type=int, default=None, help="default: 20000 (a preset sets its own)")
    parser.add_argument("--eval-freq", type=int, default=None, help="default: 1000 (a preset sets its own)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--last-evals", type=int, default=None, help="evaluations averaged for the final return")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--results", type=Path, default=None, help="default: benchmarks/results/learning[/PRESET]")
    parser.add_argument("--commit", action="store_true", help="git-commit each finished run's JSON")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=25_000,
        help="steps between a run's checkpoints (rounded up to a multiple of the eval frequency; 0: none)",
    )
    parser.add_argument("--device", default="cpu", help="torch device of every run (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--submitit-cluster", choices=["slurm", "local", "debug"], default=None, help="default: auto")
    parser.add_argument("--settings", choices=SETTINGS, default="zoo", help="zoo: hyperparams/sac.yml; sb3: SB3 defaults")
    parser.add_argument("--tag", default="", help="variant name: runs are stored as METHOD-TAG")
    parser.add_argument("--dapd-kwargs", default="{}", help="JSON object of DAPDCallback arguments")
    parser.add_argument("--sac-kwargs", default="{}", help="JSON object of SAC arguments (every method)")
    parser.add_argument(
        "--summarise", action="store_true", help="run nothing: summarise every record under --results with these steps"
    )
    parser.add_argument(
        "--plot-labels", nargs="+", default=None, help="plot only these methods (e.g. dense dapd-actor-only); default: all"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.results is None:
        args.results = ROOT / "benchmarks" / "results" / "learning" / PRESETS.get(args.preset or "", {}).get("subdir", "")
    args.results = args.results.resolve()
    specs, last_evals = specs_from_args(args)
    if not args.summarise:
        if args.checkpoint_every < 0:
            raise SystemExit(
                f"--checkpoint-every must be 0 (no checkpoints) or a number of steps, got {args.checkpoint_every}"
            )
        execute(specs, args.results, args.executor, args.workers, args.commit, args.submitit_cluster, args.checkpoint_every)
    # every record of these budgets, so that runs made one at a time still give the whole table
    steps = {spec.steps for spec in specs}
    records = [
        record for path in sorted(args.results.glob("*/*.json")) if (record := json.loads(path.read_text()))["steps"] in steps
    ]
    if not records:
        raise SystemExit(f"no run records of {sorted(steps)} steps under {args.results}")
    summary = summarise(records, last_evals)
    table = markdown_table(summary)
    print(table)
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.results / "summary.md").write_text(table + "\n")
    for path in plot_curves(records, args.results, args.plot_labels):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
