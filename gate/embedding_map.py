"""A picture of two embedding spaces: t-SNE maps of a labelled sample, baseline and candidate side by side.

:func:`write_map` is a pure function of arrays: the same embeddings, labels and seed give the
same PNG bytes. It draws at most ``max_points`` rows, sampled per label in turn (so small
classes are not crowded out), projects each model's vectors with scikit-learn's t-SNE
(``init="pca"``, a fixed ``random_state``), turns the candidate's map by the rotation or
reflection that best lays it over the baseline's (t-SNE's axes mean nothing, so this only
makes the two panels easier to compare), and colours the points by label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

DEFAULT_MAX_POINTS = 1000
#: labels shown in a legend; with more the colours alone tell classes apart
LEGEND_MAX = 20
PANEL_INCHES = 6.0
DPI = 100


@dataclass(frozen=True)
class MapResult:
    path: Path
    #: rows of the inputs that were drawn, ascending
    indices: np.ndarray
    #: per role, the 2-D coordinates of those rows (the candidate's after alignment)
    coords: dict[str, np.ndarray]
    #: panel titles, left to right
    panels: tuple[str, ...]


def sample_indices(labels: Sequence[str], max_points: int, seed: int) -> np.ndarray:
    """At most ``max_points`` row indices (ascending), taken one label at a time in turn.

    Each label's rows are shuffled by ``seed``; the labels then give one row each, round
    after round (labels in sorted order), until ``max_points`` rows are taken. Every row is
    taken when there are no more than ``max_points``.
    """
    labels = np.asarray(list(labels), dtype=object)
    n = len(labels)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(labels == name)) for name in sorted(set(labels.tolist()))]
    order = [q[r] for r in range(max(len(q) for q in queues)) for q in queues if r < len(q)]
    return np.sort(np.array(order[:max_points], dtype=np.int64))


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(30.0, (len(x) - 1) / 3.0)
    # one thread: the map cannot depend on the machine's core count, and Barnes-Hut's per-iteration
    # OpenMP barriers make it slower, not faster, on a shared CI runner (1000 points: ~9 s vs ~46 s on a busy
    # 2-core machine)
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            np.asarray(x, dtype=np.float64))


def _check_spread(role: str, points: np.ndarray) -> None:
    """Refuse points t-SNE cannot lay out: scikit-learn's PCA start divides by their spread, and a
    collapsed space (every point alike, the very thing a map should show) crashes its native code
    with a segmentation fault instead of an error."""
    if not np.isfinite(points).all():
        raise ValueError(f"the {role}'s embeddings are not all finite")
    if len(np.unique(points, axis=0)) < 3 or float(np.ptp(points, axis=0).max()) <= 1e-9:
        raise ValueError(f"the {role}'s embeddings of the sample have fewer than 3 distinct points "
                         "(a collapsed space): nothing to map")


def _align(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """``moving`` turned (rotation or reflection about its centre) to lie best over ``fixed``."""
    from scipy.linalg import orthogonal_procrustes

    a, b = moving - moving.mean(axis=0), fixed - fixed.mean(axis=0)
    rotation, _ = orthogonal_procrustes(a, b)
    return a @ rotation + fixed.mean(axis=0)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    # many labels: spread along the colour map by the golden ratio, so labels next to each other in
    # sorted order (often related intents) do not get near-identical colours
    return [colormaps["turbo"](0.05 + 0.9 * ((i * 0.6180339887498949) % 1.0)) for i in range(n)]


def write_map(path_png: str | Path, embeddings_by_role: Mapping[str, np.ndarray], labels: Sequence[str], *,
              seed: int = 0, max_points: int = DEFAULT_MAX_POINTS, title: str = "") -> MapResult:
    """Write the side-by-side t-SNE maps of ``embeddings_by_role`` (rows aligned with ``labels``) as a PNG.

    The first role is the reference the others are turned onto (pass baseline first). Every
    array must have one row per label; at least 3 rows are needed for a map.
    """
    from matplotlib.figure import Figure

    roles = list(embeddings_by_role)
    labels = [str(x) for x in labels]
    if not roles:
        raise ValueError("no embeddings to map")
    for role in roles:
        if len(embeddings_by_role[role]) != len(labels):
            raise ValueError(f"{role}: {len(embeddings_by_role[role])} embeddings for {len(labels)} labels")
    if max_points < 3 or len(labels) < 3:
        raise ValueError(f"a map needs at least 3 points, got {min(len(labels), max_points)}")
    idx = sample_indices(labels, max_points, seed)
    shown = [labels[i] for i in idx]
    coords: dict[str, np.ndarray] = {}
    for role in roles:
        points = np.asarray(embeddings_by_role[role])[idx].astype(np.float64)  # the sample only, not all rows
        _check_spread(role, points)
        xy = _tsne(points, seed)
        coords[role] = xy if not coords else _align(xy, coords[roles[0]])
    names = sorted(set(shown))
    colour_of = dict(zip(names, _colours(len(names))))
    point_colours = [colour_of[name] for name in shown]

    fig = Figure(figsize=(PANEL_INCHES * len(roles), PANEL_INCHES + (0.6 if title else 0.2)), dpi=DPI)
    axes = fig.subplots(1, len(roles), squeeze=False)[0]
    panels = []
    for ax, role in zip(axes, roles):
        xy = coords[role]
        ax.scatter(xy[:, 0], xy[:, 1], c=point_colours, s=9, linewidths=0)
        panels.append(f"{role} ({len(idx)} points)")
        ax.set_title(panels[-1])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    if len(names) <= LEGEND_MAX:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="", color=colour_of[nm], label=nm) for nm in names]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 5), fontsize="small", frameon=False)
        fig.subplots_adjust(bottom=0.05 + 0.035 * ((len(names) + 4) // 5))
    if title:
        fig.suptitle(title)
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return MapResult(path=path, indices=idx, coords=coords, panels=tuple(panels))
