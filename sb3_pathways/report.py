"""Reports on saved pathway runs: a one-screen summary and PNG plots (learning curve with the
freeze step, mask heat maps, mask change per update, overlap between pathways)."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pathways.deploy import JOULES_PER_FLOP, dead_ends, estimate_energy, gradient_steps_per_update, training_flops
from sb3_pathways.masking.overlap import overlap_matrix
from sb3_pathways.multitask.analysis import task_active_weights, task_overlap
from sb3_pathways.policies import PathwayPolicyMixin, pathway_policy
from sb3_pathways.registry import specs_with
from sb3_pathways.stats import format_pathway_stats, get_masks, pathway_stats

DPI = 100
CURVE_SIZE = (8.0, 4.5)
OVERLAP_SIZE = (6.0, 5.0)
MASK_PANEL_SIZE = (4.0, 3.5)
MASK_COLUMNS = 3
#: height:width of a mask panel follows its layer's, clipped to these limits
MASK_ASPECT_LIMITS = (0.2, 3.0)
MODEL_NAMES = ("best_model.zip",)


class ReportError(Exception):
    """A run or model that cannot be reported on, with what was expected and where."""


@dataclass
class LoadedRun:
    """A saved model and the run directory it came from."""

    model: BaseAlgorithm
    model_path: Path
    run_dir: Path


def find_model(run_or_model: str | Path) -> Path:
    """
    The model zip of a run directory (rl-zoo3 layout: ``<env>.zip``, else ``best_model.zip``)
    or the zip itself.

    :param run_or_model: a run directory or a model zip
    """
    path = Path(run_or_model)
    if path.is_file():
        if path.suffix != ".zip":
            raise ReportError(f"{path} is not a model: expected a .zip saved by SB3 (model.save) or a run directory")
        return path
    if not path.is_dir():
        raise ReportError(f"{path} does not exist: expected a run directory (e.g. logs/sac/Pendulum-v1_1) or a model .zip")
    env_name = path.name.rsplit("_", 1)[0]
    candidates = [path / f"{env_name}.zip", *(path / name for name in MODEL_NAMES)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in path.iterdir())
    raise ReportError(
        f"no model in {path}: expected {' or '.join(c.name for c in candidates)} "
        f"(written by `sb3-pathways train` at the end of a run); found {found or 'nothing'}"
    )


def algorithm_for(model_path: Path) -> type[BaseAlgorithm]:
    """The algorithm class that saved a model zip: the registered algorithm whose pathway
    policies (or their stock equivalents) include the zip's policy class, told apart by the
    spec's ``saved_by`` where several share it (PPO / A2C / TRPO, TD3 / DDPG)."""
    from stable_baselines3.common.save_util import json_to_data

    with zipfile.ZipFile(model_path) as archive:
        data = json_to_data(archive.read("data").decode())
    policy_class = data.get("policy_class")
    candidates = [
        spec
        for spec in specs_with("policies")
        if policy_class in spec.policies.values()
        or (isinstance(policy_class, type) and spec.pathway_equivalent(policy_class) is not None)
    ]
    saved_by = [spec for spec in candidates if spec.saved_by(data)]
    if len(saved_by) != 1:
        name = getattr(policy_class, "__qualname__", repr(policy_class))
        found = [spec.name for spec in saved_by or candidates]
        raise ReportError(f"cannot tell which algorithm saved {model_path} (policy {name}, candidates {found}); pass --algo")
    return saved_by[0].algorithm


def load_run(run_or_model: str | Path, algo: str | None = None) -> LoadedRun:
    """
    Load a saved model on CPU with its run directory.

    :param run_or_model: a run directory or a model zip
    :param algo: algorithm name (``"sac"``, ...); found from the zip when ``None``
    """
    from rl_zoo3.utils import ALGOS

    import sb3_pathways  # noqa: F401  (registers the pathway policies)

    model_path = find_model(run_or_model)
    if algo is not None and algo not in ALGOS:
        raise ReportError(f"unknown --algo {algo!r}; choose one of {sorted(ALGOS)}")
    try:
        algorithm = ALGOS[algo] if algo else algorithm_for(model_path)
        model = algorithm.load(model_path, device="cpu")
    except ReportError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, RuntimeError, EOFError, OSError) as error:
        raise ReportError(
            f"{model_path} cannot be read as an SB3 model ({type(error).__name__}: {error}); "
            "expected a .zip written by model.save"
        ) from error
    return LoadedRun(model, model_path, model_path.parent)


def is_pathway_model(model: BaseAlgorithm) -> bool:
    return isinstance(model.policy, PathwayPolicyMixin)


def monitor_returns(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(cumulative environment steps at each episode end, episode return) from the run's
    Monitor files, in time order; ``None`` if the directory has none."""
    from stable_baselines3.common.monitor import LoadMonitorResultsError, load_results

    try:
        frame = load_results(str(run_dir))
    except LoadMonitorResultsError:
        return None
    if frame.empty:
        return None
    frame = frame.sort_values("t")
    return np.cumsum(frame["l"].to_numpy()), frame["r"].to_numpy()


def evaluations(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, mean deterministic return) of the evaluations an EvalCallback saved in the run
    directory (``evaluations.npz``), ``None`` if there are none."""
    path = run_dir / "evaluations.npz"
    if not path.is_file():
        return None
    data = np.load(path)
    return data["timesteps"], data["results"].mean(axis=1)


def summary(run: LoadedRun, joules_per_flop: float = JOULES_PER_FLOP) -> str:
    """The one-screen text summary of a run."""
    model = run.model
    lines = [
        f"model      {run.model_path}",
        f"algorithm  {type(model).__name__}, policy {type(model.policy).__module__}.{type(model.policy).__name__}, "
        f"{model.num_timesteps} environment steps",
    ]
    returns = monitor_returns(run.run_dir)
    if returns is not None:
        episodes = returns[1]
        last = episodes[-10:]
        lines.append(
            f"returns    {len(episodes)} training episodes; last {len(last)}: mean {last.mean():.1f} +/- {last.std():.1f}"
        )
    evaluated = evaluations(run.run_dir)
    if evaluated is not None and len(evaluated[0]):
        lines.append(f"evaluation last (step {evaluated[0][-1]}): mean deterministic return {evaluated[1][-1]:.1f}")
    if not is_pathway_model(model):
        lines.append("pathway    none: a dense policy (trained with --dense or a stock policy)")
        return "\n".join(lines)
    state = getattr(model, "pathway_discovery", None)
    if state is not None:
        frozen = f"frozen at step {state.frozen_step}" if state.frozen else "not frozen"
        threshold = f", threshold reached at step {state.threshold_step}" if state.threshold_step is not None else ""
        lines.append(f"pathway    {state.n_updates} mask updates, {frozen}{threshold}")
    else:
        lines.append("pathway    fixed mask (no mask updater ran)")
    policy = pathway_policy(model, "summary")
    if policy.n_tasks > 1:
        lines += ["", *task_summary(model), "", "layers of the first task's pathway:"]
    lines += ["", format_pathway_stats(pathway_stats(model)), ""]
    for network, chains in dead_ends(model, 0 if policy.n_tasks > 1 else None).items():
        for chain in chains:
            lines.append(
                f"dead ends  {network} {'+'.join(chain.chain)}: {chain.dead_end_weights} of {chain.live_weights} live "
                f"weights; widths {chain.widths_before} -> {chain.widths_after} after dead-neuron removal"
            )
    flops = training_flops(model)
    steps = model._n_updates * gradient_steps_per_update(model)
    lines.append(
        f"training   {flops.pathway:.3g} FLOPs per gradient step (dense {flops.dense:.3g}, ratio {flops.ratio:.3f}); "
        f"{steps} gradient steps: estimated {estimate_energy(steps * flops.pathway, joules_per_flop):.3g} J "
        f"(dense {estimate_energy(steps * flops.dense, joules_per_flop):.3g} J at {joules_per_flop:g} J/FLOP)"
    )
    return "\n".join(lines)


def task_names(model: BaseAlgorithm) -> list[str]:
    """The task names a multi-task run recorded (``task0``, ... if none)."""
    policy = pathway_policy(model, "task_names")
    names = list(getattr(getattr(model, "pathway_discovery", None), "task_names", []) or [])
    return names if len(names) == policy.n_tasks else [f"task{task}" for task in range(policy.n_tasks)]


def task_summary(model: BaseAlgorithm) -> list[str]:
    """Per task: active weights of every network, freeze step and dead ends; then the overlap
    between task pathways."""
    policy = pathway_policy(model, "task_summary")
    state = getattr(model, "pathway_discovery", None)
    frozen = getattr(state, "task_frozen_steps", {}) or {}
    merged = not any(getattr(layer, "independent", False) for layer in policy.modules())
    names = task_names(model)
    active = task_active_weights(model)
    networks = list(active[0])
    header = ["task", *(f"active {network}" for network in networks), "frozen at", "dead ends"]
    rows = [header]
    for task, name in enumerate(names):
        ends = sum(chain.dead_end_weights for chains in dead_ends(model, task).values() for chain in chains)
        rows.append([name, *(str(active[task][network]) for network in networks), str(frozen.get(task, "-")), str(ends)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"tasks      {policy.n_tasks} pathways, task weights {'merged' if merged else 'independent (warm-up)'}"]
    lines += [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows
    ]
    overlap = task_overlap(model)
    lines += ["", "overlap between task pathways (shared / union of active weights):"]
    lines += [f"  {name:>24s} " + " ".join(f"{value:.2f}" for value in row) for name, row in zip(names, overlap)]
    return lines


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI)
    return path


def plot_learning_curve(run: LoadedRun, path: Path) -> Path | None:
    """Episode returns from the Monitor files, their moving mean, and the freeze step."""
    returns = monitor_returns(run.run_dir)
    if returns is None:
        return None
    steps, episode_returns = returns
    figure = Figure(figsize=CURVE_SIZE)
    axes = figure.add_subplot()
    axes.plot(steps, episode_returns, ".", alpha=0.3, label="episode return")
    window = min(10, len(episode_returns))
    smoothed = np.convolve(episode_returns, np.ones(window) / window, mode="valid")
    axes.plot(steps[window - 1 :], smoothed, label=f"mean of {window} episodes")
    evaluated = evaluations(run.run_dir)
    if evaluated is not None and len(evaluated[0]):
        axes.plot(*evaluated, "s-", label="evaluation (deterministic)")
    state = getattr(run.model, "pathway_discovery", None)
    if state is not None and state.frozen_step is not None:
        axes.axvline(state.frozen_step, color="k", linestyle="--", label=f"mask frozen (step {state.frozen_step})")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("return")
    axes.set_title(f"{type(run.model).__name__} learning curve ({run.run_dir.name}/{run.model_path.name})")
    axes.legend(loc="best")
    figure.tight_layout()
    return _save(figure, path)


def mask_figure_size(n_layers: int) -> tuple[float, float]:
    columns = min(MASK_COLUMNS, n_layers)
    rows = math.ceil(n_layers / columns)
    return MASK_PANEL_SIZE[0] * columns, MASK_PANEL_SIZE[1] * rows


def plot_masks(model: BaseAlgorithm, path: Path, pathway: int | None = None, run_name: str = "") -> Path:
    """
    Write :func:`mask_figure` to ``path``.

    :param model: a model with a pathway policy
    :param path: the PNG to write
    :param pathway: which task's pathway of a multi-task policy (``None``: all of them)
    :param run_name: named in the title
    """
    return _save(mask_figure(model, pathway, run_name), path)


def mask_figure(model: BaseAlgorithm, pathway: int | None = None, run_name: str = "") -> Figure:
    """
    A heat map of every masked layer's mask, its panel shaped like the layer (output units
    down, inputs across: a 256x3 layer is a tall strip, a 1x256 one a thin row); for a
    multi-task policy with ``pathway=None``, how many tasks use each weight.

    :param model: a model with a pathway policy
    :param pathway: which task's pathway of a multi-task policy (``None``: all of them)
    :param run_name: named in the title
    """
    policy = pathway_policy(model, "plot_masks")
    masks = get_masks(model, pathway)
    several = pathway is None and policy.n_tasks > 1
    figure = Figure(figsize=mask_figure_size(len(masks)))
    columns = min(MASK_COLUMNS, len(masks))
    rows = math.ceil(len(masks) / columns)
    top = policy.n_tasks if several else 1
    colours = matplotlib.colors.ListedColormap(matplotlib.colormaps["Greys"](np.linspace(0.0, 1.0, top + 1)))
    image = None
    for index, (name, mask) in enumerate(masks.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        users = mask.float().sum(dim=0) if several else mask.float()
        grid = users.reshape(users.shape[0], -1)
        image = axes.imshow(grid.numpy(), aspect="auto", cmap=colours, vmin=-0.5, vmax=top + 0.5, interpolation="nearest")
        # the panel's height:width follows the layer's, within limits that keep it readable
        axes.set_box_aspect(min(max(grid.shape[0] / grid.shape[1], MASK_ASPECT_LIMITS[0]), MASK_ASPECT_LIMITS[1]))
        active = (users > 0).float().mean().item()
        label = "used by a task" if several else "active"
        axes.set_title(f"{name} ({grid.shape[0]}x{grid.shape[1]})\n{active:.1%} {label}", fontsize=8)
        axes.set_xlabel("inputs", fontsize=7)
        axes.set_ylabel("output units", fontsize=7)
        axes.set_xticks([0, grid.shape[1] - 1])
        axes.set_yticks([0, grid.shape[0] - 1])
        axes.tick_params(labelsize=6)
    assert image is not None
    figure.tight_layout(rect=(0.0, 0.0, 0.9, 0.95))
    colour_bar = figure.colorbar(image, cax=figure.add_axes((0.92, 0.3, 0.02, 0.4)), ticks=range(top + 1))
    if several:
        colour_bar.set_label("tasks using the weight")
    else:
        colour_bar.ax.set_yticklabels(["dormant", "active"])
    which = "every task's pathway" if several else ("pathway" if pathway is None else f"task {pathway} pathway")
    figure.suptitle(f"{type(model).__name__} {which} masks{f' ({run_name})' if run_name else ''}", fontsize=10)
    return figure


def plot_mask_changes(model: BaseAlgorithm, path: Path, run_name: str = "") -> Path | None:
    """Share of each network's active weights replaced at every mask update, and the freeze."""
    state = getattr(model, "pathway_discovery", None)
    changes = getattr(state, "mask_changes", None)
    if not changes:
        return None
    figure = Figure(figsize=CURVE_SIZE)
    axes = figure.add_subplot()
    steps = [step for step, _ in changes]
    for network in changes[0][1]:
        axes.plot(steps, [100 * change.get(network, 0.0) for _, change in changes], marker=".", label=network)
    if state is not None and state.frozen_step is not None:
        axes.axvline(state.frozen_step, color="k", linestyle="--", label=f"mask frozen (step {state.frozen_step})")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("active weights replaced (%)")
    axes.set_title(f"{type(model).__name__} mask change per update{f' ({run_name})' if run_name else ''}")
    axes.legend()
    figure.tight_layout()
    return _save(figure, path)


def plot_overlap(matrix: np.ndarray, labels: list[str], path: Path) -> Path:
    """The overlap matrix as an annotated heat map."""
    figure = Figure(figsize=OVERLAP_SIZE)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color="w" if matrix[i, j] < 0.6 else "k")
    axes.set_title("pathway overlap (shared / union of active weights)")
    figure.colorbar(image)
    figure.tight_layout()
    return _save(figure, path)


def write_plots(run: LoadedRun) -> list[Path]:
    """Write the run's plots next to its model; returns the files written."""
    stem = run.model_path.stem
    written = [plot_learning_curve(run, run.run_dir / f"{stem}_learning_curve.png")]
    if is_pathway_model(run.model):
        name = f"{run.run_dir.name}/{run.model_path.name}"
        written.append(plot_masks(run.model, run.run_dir / f"{stem}_masks.png", run_name=name))
        written.append(plot_mask_changes(run.model, run.run_dir / f"{stem}_mask_changes.png", run_name=name))
        if pathway_policy(run.model, "write_plots").n_tasks > 1:
            overlap_path = run.run_dir / f"{stem}_task_overlap.png"
            written.append(plot_overlap(task_overlap(run.model), task_names(run.model), overlap_path))
    return [path for path in written if path is not None]


def report(
    runs_or_models: list[str | Path], algo: str | None = None, joules_per_flop: float = JOULES_PER_FLOP
) -> tuple[str, list[Path]]:
    """
    Summaries and plots of one or more saved runs; with several pathway models, also their
    overlap matrix (written next to the first model).

    :param runs_or_models: run directories or model zips
    :param algo: algorithm name when it cannot be read from the zip
    :param joules_per_flop: energy per FLOP of the estimate
    :return: the text to print and the plots written
    """
    runs = [load_run(path, algo) for path in runs_or_models]
    texts, plots = [], []
    for run in runs:
        texts.append(summary(run, joules_per_flop))
        plots += write_plots(run)
    pathway_runs = [run for run in runs if is_pathway_model(run.model)]
    if len(pathway_runs) > 1:
        labels = [f"{run.run_dir.name}/{run.model_path.stem}" for run in pathway_runs]
        try:
            matrix = overlap_matrix([get_masks(run.model, 0) for run in pathway_runs])
        except ValueError as error:
            raise ReportError(str(error)) from None
        rows = [f"overlap    {label}: " + " ".join(f"{value:.3f}" for value in row) for label, row in zip(labels, matrix)]
        texts.append("\n".join(rows))
        plots.append(plot_overlap(matrix, labels, pathway_runs[0].run_dir / "pathway_overlap.png"))
    texts.append("plots      " + "\n           ".join(str(path) for path in plots))
    return "\n\n".join(texts), plots
