"""The ``sb3-pathways`` command (also ``python -m sb3_pathways``).

    sb3-pathways train [rl-zoo3 train flags] [--sparsity S | --dense]
    sb3-pathways enjoy [rl-zoo3 enjoy flags]
    sb3-pathways record-video [rl-zoo3 record_video flags]
    sb3-pathways report RUN_OR_MODEL [RUN_OR_MODEL ...] [--algo ALGO]
    sb3-pathways collect [MT10 | MT50] [--episodes-per-task N] [--quality Q] [--dataset-id ID]

``train`` is rl-zoo3's training with this package imported and its ``hyperparams/`` as the
default configuration, on one torch thread unless ``--num-threads N`` says otherwise; with no
arguments it runs the built-in default (SAC + DAPD on Pendulum-v1, 10,000 steps) and reports
on the run at the end. ``collect`` writes a local Minari dataset of MetaWorld's scripted
policies for offline training (IQL, BCQ).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import re
import runpy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

#: the hyperparameter files, shipped inside the package (the checkout's top-level
#: ``hyperparams/`` is a link to this folder)
HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
DEFAULT_TRAIN_ARGS = [
    *("--algo", "sac", "--env", "Pendulum-v1", "-n", "10000", "--seed", "0"),
    *("--eval-freq", "2000", "--eval-episodes", "10"),
]
#: torch threads of a training run unless ``--num-threads`` is given: SB3's small networks
#: train fastest on one thread, and torch's default (one per core) made a 1,000-step SAC run
#: several times slower on a busy 2-core machine
DEFAULT_TORCH_THREADS = 1
DENSE_POLICIES = {
    "PathwayPolicy": "MlpPolicy",
    "PathwayCnnPolicy": "CnnPolicy",
    "PathwayMultiInputPolicy": "MultiInputPolicy",
}
SUBCOMMANDS = ("train", "enjoy", "record-video", "report", "collect")


def usage() -> str:
    """The command's help: this module's docstring without its reStructuredText markup."""
    return (__doc__ or "").replace("``", "").strip() + "\n"


class UsageError(Exception):
    """A mistake in the command line, explained for the user."""


def hyperparams_dir() -> Path:
    if not HYPERPARAMS_DIR.is_dir():
        raise UsageError(
            f"the pathway hyperparameters are not at {HYPERPARAMS_DIR}: this install of sb3-pathways is "
            "incomplete (reinstall it), or pass -conf FILE"
        )
    return HYPERPARAMS_DIR


def _train_options(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our own flags, and the flags rl-zoo3 gets (with the ones we need to read kept)."""
    parser = argparse.ArgumentParser(prog="sb3-pathways train", add_help=False)
    parser.add_argument("--sparsity", type=float, default=None)
    parser.add_argument("--dense", action="store_true")
    own, rest = parser.parse_known_args(list(argv))
    zoo = argparse.ArgumentParser(add_help=False)
    zoo.add_argument("--algo", default="sac")
    zoo.add_argument("--env", default="Pendulum-v1")
    zoo.add_argument("-f", "--log-folder", default="logs")
    zoo.add_argument("-conf", "--conf-file", default=None)
    zoo.add_argument("--gym-packages", nargs="+", default=[])
    zoo.add_argument("-h", "--help", action="store_true")
    known, _ = zoo.parse_known_args(rest)
    for name in ("sparsity", "dense"):
        setattr(known, name, getattr(own, name))
    return known, rest


def _check_env(env_id: str, gym_packages: list[str]) -> None:
    import gymnasium as gym

    for package in gym_packages:
        importlib.import_module(package)
    if env_id not in gym.envs.registry:
        close = difflib.get_close_matches(env_id, list(gym.envs.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(
            f"unknown environment --env {env_id!r}: it is not registered in gymnasium{hint} "
            "(MuJoCo tasks need the mujoco extra; other packages register theirs with --gym-packages PACKAGE)"
        )


def _hyperparams_entry(conf_file: Path, env_id: str) -> tuple[dict[str, Any], str]:
    """The whole YAML and the key of the entry rl-zoo3 will use for this env."""
    with open(conf_file) as file:
        entries = yaml.load(file, Loader=yaml.UnsafeLoader) or {}  # as rl-zoo3 reads it
    if env_id in entries:
        return entries, env_id
    import gymnasium as gym

    entry_point = str(gym.spec(env_id).entry_point)
    if "AtariEnv" in entry_point and "atari" in entries:
        return entries, "atari"
    raise UsageError(
        f"{conf_file} has no entry for --env {env_id!r} (it has: {', '.join(sorted(entries))}); "
        f"add one there, pass your own -conf FILE, or pick one of those environments"
    )


def _set_sparsity(policy_kwargs: str, sparsity: float) -> str:
    if re.search(r"\bsparsity\s*=", policy_kwargs):
        return re.sub(r"\bsparsity\s*=\s*[^,)]+", f"sparsity={sparsity}", policy_kwargs)
    return re.sub(r"^\s*dict\(\s*", f"dict(sparsity={sparsity}, ", policy_kwargs)


def _densify(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with the stock policy and without pathway settings and callbacks."""
    dense = dict(entry)
    dense["policy"] = DENSE_POLICIES.get(str(entry.get("policy")), entry.get("policy"))
    if "policy_kwargs" in dense:
        kwargs = re.sub(r"\b(sparsity|mask_init)\s*=\s*[^,)]+,?\s*", "", str(dense["policy_kwargs"]))
        dense["policy_kwargs"] = re.sub(r",\s*\)", ")", kwargs)
    callbacks = entry.get("callback")
    if callbacks is not None:
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        kept = [cb for cb in callbacks if not str(next(iter(cb)) if isinstance(cb, dict) else cb).startswith("sb3_pathways")]
        if kept:
            dense["callback"] = kept
        else:
            del dense["callback"]
    return dense


def _prepare_conf(options: argparse.Namespace) -> Path:
    """The hyperparameter file rl-zoo3 reads: ours (or -conf), rewritten for --sparsity/--dense."""
    conf_file = Path(options.conf_file) if options.conf_file else hyperparams_dir() / f"{options.algo}.yml"
    if not conf_file.is_file():
        available = sorted(path.stem for path in hyperparams_dir().glob("*.yml"))
        if options.conf_file:
            raise UsageError(f"-conf {conf_file}: no such file")
        raise UsageError(
            f"no pathway hyperparameters for --algo {options.algo!r}: expected {conf_file}; "
            f"available: {', '.join(available)} (or pass -conf FILE with your own)"
        )
    entries, key = _hyperparams_entry(conf_file, options.env)
    if options.sparsity is None and not options.dense:
        return conf_file
    if options.dense and options.sparsity is not None:
        raise UsageError("--dense and --sparsity exclude each other: --dense trains the stock policy")
    entry = dict(entries[key])
    if options.dense:
        entry = _densify(entry)
    else:
        if not 0.0 <= options.sparsity < 1.0:
            raise UsageError(f"--sparsity must be in [0, 1), got {options.sparsity}")
        entry["policy_kwargs"] = _set_sparsity(str(entry.get("policy_kwargs", "dict()")), options.sparsity)
    variant = "dense" if options.dense else f"sparsity{options.sparsity}"
    written = Path(options.log_folder) / "sb3_pathways_conf" / f"{options.algo}_{options.env}_{variant}.yml"
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text(yaml.dump({**entries, key: entry}, sort_keys=False))
    return written


def _replace_conf(args: list[str], conf_file: Path) -> list[str]:
    cleaned: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("-conf", "--conf-file"):
            skip = True
            continue
        if arg.startswith("--conf-file="):
            continue
        cleaned.append(arg)
    return [*cleaned, "-conf", str(conf_file)]


def _run_in_process(script: Callable[[], Any], program: str, args: list[str]) -> None:
    saved = sys.argv
    sys.argv = [program, *args]
    try:
        script()
    finally:
        sys.argv = saved


def _latest_run(log_folder: str, algo: str, env_id: str) -> Path | None:
    from rl_zoo3.utils import EnvironmentName, get_latest_run_id

    env_name = EnvironmentName(env_id)
    run_id = get_latest_run_id(str(Path(log_folder) / algo), env_name)
    run_dir = Path(log_folder) / algo / f"{env_name}_{run_id}"
    return run_dir if run_id > 0 and run_dir.is_dir() else None


def train(argv: Sequence[str]) -> int:
    """``sb3-pathways train``: rl-zoo3 training with the pathway hyperparameters."""
    import rl_zoo3.train

    import sb3_pathways  # noqa: F401  (registers the pathway policies before rl-zoo3 builds the model)

    args = list(argv) if argv else list(DEFAULT_TRAIN_ARGS)
    options, zoo_args = _train_options(args)
    if options.help:
        print(usage())
        shipped = ", ".join(sorted(path.stem for path in hyperparams_dir().glob("*.yml")))
        print("sb3-pathways train options: --sparsity S (override the policy's sparsity), --dense (the stock policy)")
        print(f"pathway hyperparameters ship for --algo {shipped}; rl-zoo3's other algorithms need -conf FILE\n")
        _run_in_process(rl_zoo3.train.train, "sb3-pathways train", ["--help"])
        return 0
    if "--algo" not in zoo_args:
        zoo_args = ["--algo", options.algo, *zoo_args]
    if "--env" not in zoo_args:
        zoo_args = ["--env", options.env, *zoo_args]
    if "--num-threads" not in zoo_args:
        zoo_args = [*zoo_args, "--num-threads", str(DEFAULT_TORCH_THREADS)]
    _check_env(options.env, options.gym_packages)
    zoo_args = _replace_conf(zoo_args, _prepare_conf(options))
    if sys.stdout.isatty() and "--progress" not in zoo_args:
        zoo_args.append("--progress")
    _run_in_process(rl_zoo3.train.train, "sb3-pathways train", zoo_args)
    run_dir = _latest_run(options.log_folder, options.algo, options.env)
    if run_dir is None:
        return 0
    from sb3_pathways.report import ReportError, report

    try:
        text, _ = report([run_dir], algo=options.algo)
    except ReportError as error:  # e.g. a run stopped before saving
        print(f"\nno report: {error}")
        return 0
    print(f"\n=== sb3-pathways: {options.algo} on {options.env} ===\n{text}")
    print(f"\nwatch it:   sb3-pathways enjoy --algo {options.algo} --env {options.env} -f {options.log_folder}")
    return 0


def enjoy(argv: Sequence[str]) -> int:
    """``sb3-pathways enjoy``: rl-zoo3's enjoy with the pathway policies registered."""
    import rl_zoo3.enjoy

    import sb3_pathways  # noqa: F401

    _run_in_process(rl_zoo3.enjoy.enjoy, "sb3-pathways enjoy", list(argv))
    return 0


def record_video(argv: Sequence[str]) -> int:
    """``sb3-pathways record-video``: rl-zoo3's record_video with the pathway policies registered."""
    import sb3_pathways  # noqa: F401

    if importlib.util.find_spec("moviepy") is None:
        raise UsageError("record-video needs moviepy (and pygame for classic-control envs): pip install 'sb3-pathways[video]'")
    # rl-zoo3's record_video is a script (its code runs under ``__main__``)
    _run_in_process(
        lambda: runpy.run_module("rl_zoo3.record_video", run_name="__main__"), "sb3-pathways record-video", list(argv)
    )
    return 0


def report_command(argv: Sequence[str]) -> int:
    """``sb3-pathways report``: summary and plots of saved runs."""
    from sb3_pathways.deploy import JOULES_PER_FLOP
    from sb3_pathways.report import report

    parser = argparse.ArgumentParser(
        prog="sb3-pathways report",
        description="Pathway summary of saved runs (sparsity per network and layer, FLOPs, freeze step, dead ends) "
        "and plots written next to each model; with several models, the overlap between their pathways.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_OR_MODEL", help="run directory (logs/sac/Pendulum-v1_1) or model .zip")
    parser.add_argument("--algo", default=None, help="algorithm, when it cannot be read from the model")
    parser.add_argument("--joules-per-flop", type=float, default=JOULES_PER_FLOP, help="energy per FLOP of the estimate")
    options = parser.parse_args(list(argv))
    text, _ = report(options.runs, algo=options.algo, joules_per_flop=options.joules_per_flop)
    print(text)
    return 0


def collect_command(argv: Sequence[str]) -> int:
    """``sb3-pathways collect``: a MetaWorld multi-task dataset of the scripted policies."""
    from sb3_pathways.offline.collect import BENCHMARKS, QUALITIES, collect_scripted

    parser = argparse.ArgumentParser(
        prog="sb3-pathways collect",
        description="Write a local Minari dataset of MetaWorld's scripted policies (task id and success per step), "
        "for IQL(..., dataset=ID) and BCQ(..., dataset=ID). Prints the dataset id.",
    )
    parser.add_argument("benchmark", nargs="?", default="MT10", choices=BENCHMARKS)
    parser.add_argument("--episodes-per-task", type=int, default=10, help="500-step episodes of every task (default 10)")
    parser.add_argument("--quality", default="expert", choices=sorted(QUALITIES), help="scripted, or with random actions")
    parser.add_argument("--dataset-id", default=None, help="Minari id (default sb3_pathways/<benchmark>/<quality>-<N>ep-v0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-episode-steps", type=int, default=None, help="episode length (MetaWorld's: 500)")
    parser.add_argument("--overwrite", action="store_true", help="replace a local dataset of the same id")
    options = parser.parse_args(list(argv))
    try:
        dataset_id = collect_scripted(
            options.benchmark,
            options.episodes_per_task,
            options.quality,
            options.dataset_id,
            options.seed,
            options.max_episode_steps,
            options.overwrite,
            verbose=1,
        )
    except (ValueError, FileExistsError, ImportError) as error:
        raise UsageError(str(error)) from error
    print(dataset_id)
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "train": train,
    "enjoy": enjoy,
    "record-video": record_video,
    "report": report_command,
    "collect": collect_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sb3-pathways``."""
    from sb3_pathways.report import ReportError

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, SUBCOMMANDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"sb3-pathways: unknown command {command!r}{hint}; commands: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except (UsageError, ReportError) as error:
        print(f"sb3-pathways {command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
