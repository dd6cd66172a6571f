"""How a pathway spreads over the neurons: per layer, the density, the fan-in of each output
unit and the share of input units that feed nothing (dead ends), for DAPD's mask at its
freeze and for a random ERK mask.

    python benchmarks/mask_structure.py                       # DAPDCallback() defaults, seed 3
    python benchmarks/mask_structure.py --seed 0 --dapd-kwargs '{"allocation": "erk", "within_layer": "per_unit"}'

SAC with SB3's defaults on Pendulum-v1, 95% sparse, ``learning_starts=1000``: DAPD rescores
until its freeze (a tenth of the 12k-step budget, as in ``benchmarks/learning.py``'s runs) and
the mask is read there.
"""

from __future__ import annotations

import argparse
import json

import torch as th
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
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--dapd-kwargs", default="{}", help="JSON object of DAPDCallback arguments")
    args = parser.parse_args()
    th.set_num_threads(1)
    dapd = SAC("PathwayPolicy", "Pendulum-v1", learning_starts=1000, seed=args.seed, device="cpu")
    # frozen where a 12k-step run freezes: a tenth of the 11k steps after learning_starts
    frozen_at = {"max_warmup_fraction": None, "max_warmup_steps": 2100}
    dapd.learn(2300, callback=DAPDCallback(**{**frozen_at, **json.loads(args.dapd_kwargs)}))
    erk = SAC("PathwayPolicy", "Pendulum-v1", seed=args.seed, device="cpu", policy_kwargs=dict(mask_init="erk"))
    print("| mask | layer | shape | density | median fan-in | max fan-in | units with <= 1 input | inputs feeding nothing |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in [*layer_rows(dapd, f"DAPD {args.dapd_kwargs}"), *layer_rows(erk, "random ERK")]:
        print(row)


if __name__ == "__main__":
    main()
