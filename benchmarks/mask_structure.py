"""How a pathway spreads over the neurons: per layer, the density, the fan-in of each output
unit and the share of input units that feed nothing (dead ends), for DAPD's mask at its
freeze and for a random ERK mask.

    python benchmarks/mask_structure.py                       # DAPDCallback() defaults, seed 3
    python benchmarks/mask_structure.py --seed 0 --dapd-kwargs '{"allocation": "erk", "within_layer": "per_unit"}'
    python benchmarks/mask_structure.py --env HalfCheetah-v5 --seed 0 --dapd-kwargs '{"within_layer": "balanced"}'

SAC, 95% sparse. Pendulum-v1 (the default): SB3's defaults with ``learning_starts=1000``; DAPD
rescores until its freeze (a tenth of the 12k-step budget, as in ``benchmarks/learning.py``'s
runs) and the mask is read there. Another environment: the settings of ``hyperparams/sac.yml``
(as ``benchmarks/learning.py --preset mujoco``), the mask read 1,000 steps after
``learning_starts`` (after the first rescorings; ``--read-after`` changes it).
"""

from __future__ import annotations

import argparse
import json

import torch as th
from learning import sac_settings
from stable_baselines3 import SAC

import sb3_pathways
from sb3_pathways import DAPDCallback


def layer_rows(model: SAC, label: str) -> list[str]:
    rows = []
    for name, mask in sb3_pathways.get_masks(model).items():
        if mask.dim() != 2:
            continue
        fan_in, fan_out = mask.sum(dim=1).float(), mask.sum(dim=0).float()
        rows.append(
            f"| {label} | {name} | {tuple(mask.shape)} | {mask.float().mean():.3f} | {fan_in.median():.0f} | "
            f"{fan_in.max():.0f} | {(fan_in <= 1).float().mean():.2f} | {(fan_out == 0).float().mean():.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--read-after", type=int, default=1000, help="steps after learning_starts (not Pendulum)")
    parser.add_argument("--dapd-kwargs", default="{}", help="JSON object of DAPDCallback arguments")
    args = parser.parse_args()
    th.set_num_threads(1)
    dapd_kwargs = json.loads(args.dapd_kwargs)
    if args.env == "Pendulum-v1":
        sac_kwargs: dict = {"learning_starts": 1000}
        # frozen where a 12k-step run freezes: a tenth of the 11k steps after learning_starts
        dapd_kwargs = {"max_warmup_fraction": None, "max_warmup_steps": 2100, **dapd_kwargs}
        steps = 2300
    else:
        sac_kwargs, zoo_dapd_kwargs = sac_settings(args.env)
        sac_kwargs.pop("policy_kwargs", None)
        dapd_kwargs = {**zoo_dapd_kwargs, **dapd_kwargs}
        steps = sac_kwargs["learning_starts"] + args.read_after
    dapd = SAC("PathwayPolicy", args.env, seed=args.seed, device="cpu", **sac_kwargs)
    dapd.learn(steps, callback=DAPDCallback(**dapd_kwargs))
    erk = SAC("PathwayPolicy", args.env, seed=args.seed, device="cpu", policy_kwargs=dict(mask_init="erk"))
    print("| mask | layer | shape | density | median fan-in | max fan-in | units with <= 1 input | inputs feeding nothing |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in [*layer_rows(dapd, f"DAPD {args.dapd_kwargs}"), *layer_rows(erk, "random ERK")]:
        print(row)


if __name__ == "__main__":
    main()
