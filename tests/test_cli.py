"""The sb3-pathways command, driven as a user would (subprocess), on a tiny budget."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from matplotlib.image import imread

from sb3_pathways.report import CURVE_SIZE, DPI, OVERLAP_SIZE, mask_figure_size

TINY = ["--algo", "sac", "--env", "Pendulum-v1", "-n", "600", "-params", "learning_starts:200"]


def sb3_pathways(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "sb3_pathways", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def assert_png(path: Path, size_inches: tuple[float, float]) -> None:
    assert path.is_file(), path
    image = imread(path)
    assert image.shape[:2] == (round(size_inches[1] * DPI), round(size_inches[0] * DPI))
    assert image[..., :3].std() > 0.01, f"{path} is blank"


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("cli")
    first = sb3_pathways("train", *TINY, "-f", "logs", "--seed", "0", cwd=root)
    sb3_pathways("train", *TINY, "-f", "logs", "--seed", "1", "--sparsity", "0.9", cwd=root)
    return root, first.stdout


def test_train_reports_and_plots(trained_runs: tuple[Path, str]) -> None:
    root, stdout = trained_runs
    run = root / "logs" / "sac" / "Pendulum-v1_1"
    assert (run / "Pendulum-v1.zip").is_file()
    assert "=== sb3-pathways: sac on Pendulum-v1 ===" in stdout
    assert "actor                         3341   66816    95.00%" in stdout
    assert "mask updates" in stdout and "FLOPs per gradient step" in stdout
    assert_png(run / "Pendulum-v1_learning_curve.png", CURVE_SIZE)
    assert_png(run / "Pendulum-v1_mask_changes.png", CURVE_SIZE)
    assert_png(run / "Pendulum-v1_masks.png", mask_figure_size(10))  # 4 actor + 6 critic layers


def test_sparsity_flag_and_overlap_report(trained_runs: tuple[Path, str]) -> None:
    root, _ = trained_runs
    second = root / "logs" / "sac" / "Pendulum-v1_2"
    result = sb3_pathways("report", "logs/sac/Pendulum-v1_1", str(second / "Pendulum-v1.zip"), cwd=root)
    assert "actor                         6682   66816    90.00%" in result.stdout  # --sparsity 0.9
    assert "overlap    Pendulum-v1_1/Pendulum-v1: 1.000" in result.stdout
    assert_png(root / "logs" / "sac" / "Pendulum-v1_1" / "pathway_overlap.png", OVERLAP_SIZE)


def test_enjoy_plays_the_trained_pathway(trained_runs: tuple[Path, str]) -> None:
    root, _ = trained_runs
    result = sb3_pathways("enjoy", "--algo", "sac", "--env", "Pendulum-v1", "-f", "logs", "-n", "201", "--no-render", cwd=root)
    assert "Episode Reward:" in result.stdout


def test_dense_flag_trains_the_stock_policy(tmp_path: Path) -> None:
    result = sb3_pathways("train", *TINY, "-n", "300", "-f", "logs", "--dense", cwd=tmp_path)
    assert "policy stable_baselines3.sac.policies.SACPolicy" in result.stdout
    assert "pathway    none: a dense policy" in result.stdout
    assert_png(tmp_path / "logs" / "sac" / "Pendulum-v1_1" / "Pendulum-v1_learning_curve.png", CURVE_SIZE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--algo", "sac", "--env", "Pendulum-v9"], "unknown environment --env 'Pendulum-v9'"),
        (["train", "--algo", "ars", "--env", "Pendulum-v1"], "no pathway hyperparameters for --algo 'ars': expected"),
        (["train", "--algo", "sac", "--env", "CartPole-v1"], "has no entry for --env 'CartPole-v1'"),
        (["train", "--sparsity", "1.5"], "--sparsity must be in [0, 1), got 1.5"),
        (["report", "."], "no model in ."),
        (["report", "not_a_zip.zip"], "not_a_zip.zip cannot be read as an SB3 model (BadZipFile"),
        (["report", "no_data.zip"], "no_data.zip cannot be read as an SB3 model (KeyError"),
        (["trian"], "unknown command 'trian' (did you mean train?)"),
    ],
)
def test_errors_say_what_was_expected(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "not_a_zip.zip").write_text("not a zip")
    with zipfile.ZipFile(tmp_path / "no_data.zip", "w") as archive:
        archive.writestr("policy.pth", b"")
    result = sb3_pathways(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_wheel_ships_every_hyperparameter_file(tmp_path: Path) -> None:
    root = Path(__file__).parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("sb3_pathways-*.whl")
    shipped = {Path(name).name for name in zipfile.ZipFile(wheel).namelist() if "/hyperparams/" in name}
    assert shipped == {path.name for path in (root / "hyperparams").glob("*.yml")}
    assert (root / "hyperparams").resolve() == (root / "sb3_pathways" / "hyperparams").resolve()  # one copy


def test_train_runs_on_one_torch_thread_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from sb3_pathways import cli

    given: list[list[str]] = []
    monkeypatch.setattr(cli, "_run_in_process", lambda script, program, args: given.append(args))
    monkeypatch.setattr(cli, "_latest_run", lambda *args: None)
    cli.train(["--algo", "sac", "--env", "Pendulum-v1", "-n", "10"])
    cli.train(["--algo", "sac", "--env", "Pendulum-v1", "-n", "10", "--num-threads", "2"])
    assert given[0][given[0].index("--num-threads") + 1] == "1"
    assert given[1].count("--num-threads") == 1 and given[1][given[1].index("--num-threads") + 1] == "2"


def test_bare_command_prints_plain_help(tmp_path: Path) -> None:
    result = sb3_pathways(cwd=tmp_path)
    assert "sb3-pathways train [rl-zoo3 train flags]" in result.stdout
    assert "``" not in result.stdout


@pytest.mark.parametrize("algo", ["ddpg", "crossq", "trpo", "ppo_lstm"])
def test_every_algorithm_of_the_readme_trains_from_the_shipped_hyperparameters(tmp_path: Path, algo: str) -> None:
    result = sb3_pathways("train", "--algo", algo, "--env", "Pendulum-v1", "-n", "300", "-f", "logs", cwd=tmp_path)
    assert (tmp_path / "logs" / algo / "Pendulum-v1_1" / "Pendulum-v1.zip").is_file()
    assert "sparsity" in result.stdout


def test_record_video_writes_an_mp4(trained_runs: tuple[Path, str]) -> None:
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")
    root, _ = trained_runs
    sb3_pathways("record-video", "--algo", "sac", "--env", "Pendulum-v1", "-f", "logs", "-n", "50", "--exp-id", "1", cwd=root)
    videos = list((root / "logs" / "sac" / "Pendulum-v1_1" / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
