"""Time Hierarchical Point Grouping on 1e4, 1e5 and 2.5e5 points (a full ScanNet scene is ~2.5e5).

    python bench/bench_grouping.py                  # defaults: 3 sizes, best of 5, HPG with 2 levels
    python bench/bench_grouping.py --sizes 10000 50000 --noise 0.1 --levels 3

Scenes are procedural rooms sampled at 3 cm whose size (and object count) grows with the point
count, so the density of one scan is kept; the shifted coordinates are the true offsets plus Gaussian noise (``--noise`` x object extent),
so level 0 leaves realistic fragments for the higher levels. Every point is foreground of its
object's class (floor and walls removed). Prints the best of ``--repeats`` times for level 0 alone
(PointGroup's single-radius BFS) and for the whole HPG, the proposal count, and the growth
exponent log(t_i / t_0) / log(n_i / n_0) (1 = linear). Numbers depend on the machine and its load.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mindcv_ext.seg3d import hierarchical_grouping, make_room, offset_targets, single_radius_grouping  # noqa: E402


def scene_with(num_points: int, noise: float, seed: int = 0, spacing: float = 0.03):
    """Foreground points of a room at a fixed sampling ``spacing`` whose floor area (and object
    count) grows until it holds ``num_points`` object points; subsampled to exactly that count,
    with noisy offsets. The density stays that of one scan, as more points means a larger scene."""
    side = 4.0
    for _ in range(10):
        n_obj = max(4, int(round(side * side / 2)))
        room = make_room(seed, room_size=(side, side, 3.0), num_objects=(n_obj, n_obj), spacing=spacing,
                         background_spacing=1.0)
        fg = np.flatnonzero(room["semantic"] > 1)
        if len(fg) >= num_points:
            break
        side *= np.sqrt(1.2 * num_points / len(fg))
    else:
        raise RuntimeError(f"could only sample {len(fg)} foreground points for {num_points}")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(fg, num_points, replace=False))
    coords, sem, inst = room["coords"][keep], room["semantic"][keep], room["instance"][keep]
    off, _ = offset_targets(coords, inst)
    for iid in np.unique(inst):
        m = inst == iid
        off[m] += rng.normal(0, noise * np.ptp(coords[m], 0).max(), (m.sum(), 3))
    return coords, off, sem, side


def best_time(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 250_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--radius", type=float, default=0.03)
    args = parser.parse_args(argv)
    rows = []
    for n in args.sizes:
        coords, off, sem, side = scene_with(n, args.noise)
        fg = np.ones(n, bool)
        t0, _ = best_time(lambda: single_radius_grouping(coords, off, sem, fg, radius=args.radius), args.repeats)
        t1, props = best_time(lambda: hierarchical_grouping(coords, off, sem, fg, radius=args.radius,
                                                            levels=args.levels), args.repeats)
        rows.append((n, t0, t1, len(props), side))
    print(f"{'points':>8} {'room (m)':>9} {'level 0 (s)':>12} {'HPG (s)':>9} {'proposals':>9} {'growth exponent':>16}")
    for n, t0, t1, p, side in rows:
        exp = np.log(t1 / rows[0][2]) / np.log(n / rows[0][0]) if n != rows[0][0] else float("nan")
        print(f"{n:>8} {side:>9.1f} {t0:>12.3f} {t1:>9.3f} {p:>9} {exp:>16.2f}")
    first, last = rows[0], rows[-1]
    print(f"{last[0] / first[0]:.0f}x the points -> {last[2] / first[2]:.1f}x the HPG time")


if __name__ == "__main__":
    main()
