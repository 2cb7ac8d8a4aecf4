"""Plot of label_efficiency.py's JSON: held-out force RMSE against labels added, random vs farthest-point pick.

    python benchmarks/plot_label_efficiency.py label_efficiency.json label_efficiency.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def curve(result: dict, method: str) -> tuple[list[int], list[float]]:
    """Labels added (0 = the initial data alone) and the held-out force RMSE of ``method``."""
    points = [(0, result['baseline']['force_rmse'])]
    points += sorted((row['labels'], row['force_rmse']) for row in result[method].values())
    return [p[0] for p in points], [p[1] for p in points]


def main(source: str, target: str) -> None:
    with open(source) as handle:
        result = json.load(handle)
    figure, axis = plt.subplots(figsize=(4.5, 3.4))
    for method, marker in (('random', 'o'), ('fps', 's')):
        axis.plot(*curve(result, method), marker=marker, label=method)
    axis.set_xlabel('labels added to the initial data')
    axis.set_ylabel('held-out force RMSE (eV/Å)')
    axis.set_title(f"pool of {result['pool']} candidates, {result['validation_frames']} held-out frames", fontsize=9)
    axis.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=150)


if __name__ == '__main__':
    main(*sys.argv[1:3])
