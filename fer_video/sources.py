"""Training sources: several ``--data`` sets in one run, each mapped onto the model's classes.

A source spec is ``PATH[,labels=original|ferplus][,weight=W]``:

- ``PATH``: any dataset ``data.load_dataset`` reads (FER2013 folder, a MANIFEST split
  folder such as RAF-DB, a class-folder set such as CK+48);
- ``labels=ferplus``: FER2013 with the FER+ vote distributions as soft targets;
- ``weight=W``: the source's share of each epoch's draws, relative to the other sources'
  weights. Without any weight, each source is drawn in proportion to its size (a plain
  concatenation); a source without a weight among weighted ones gets weight 1.

Each source keeps its own grouped validation carve (``val_fraction``, ``seed``, grouped as
``data.grouped_split`` groups it), so no subject or duplicate image crosses from training
to validation, and validation accuracy can be read per source.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import LABEL_SETS, FaceDataset, load_dataset
from .errors import UsageError


@dataclass(frozen=True)
class SourceSpec:
    path: str
    labels: str = "original"
    weight: float | None = None

    @property
    def name(self) -> str:
        base = Path(self.path).name or self.path
        return f"{base}+ferplus" if self.labels == "ferplus" else base


def parse_source(spec: str) -> SourceSpec:
    """``"PATH[,labels=...][,weight=W]"`` -> SourceSpec; a bad key or value is a UsageError."""
    parts = [p.strip() for p in str(spec).split(",")]
    path, opts = parts[0], parts[1:]
    if not path:
        raise UsageError(f"--data {spec!r}: no path")
    kw: dict = {}
    for o in opts:
        key, sep, value = o.partition("=")
        if not sep or key not in ("labels", "weight"):
            raise UsageError(f"--data {spec!r}: unknown option {o!r} (use labels=original|ferplus, weight=W)")
        if key == "labels":
            if value not in LABEL_SETS:
                raise UsageError(f"--data {spec!r}: labels must be one of {', '.join(LABEL_SETS)}")
            kw["labels"] = value
        else:
            try:
                w = float(value)
            except ValueError:
                w = -1.0
            if not w > 0:
                raise UsageError(f"--data {spec!r}: weight must be a number > 0")
            kw["weight"] = w
    return SourceSpec(path, **kw)


def source_specs(data: list[str] | str) -> list[SourceSpec]:
    items = [data] if isinstance(data, str) else list(data)
    if not items:
        raise UsageError("--data is required")
    specs = [parse_source(s) for s in items]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"--data: the same source given twice ({', '.join(names)})")
    return specs


def load_sources(specs: list[SourceSpec], split: str = "train") -> list[FaceDataset]:
    out = []
    for s in specs:
        d = load_dataset(s.path, split, labels=s.labels)
        d.name = s.name
        out.append(d)
    return out


def model_classes(sets: list[FaceDataset]) -> list[str]:
    """One source: its classes, in its order. Several: the sorted union of their classes."""
    if len(sets) == 1:
        return list(sets[0].classes)
    return sorted({c for d in sets for c in d.classes})


def to_classes(d: FaceDataset, classes: list[str]) -> FaceDataset:
    """``d`` with labels and targets re-indexed onto ``classes`` (a superset of its own)."""
    if d.classes == classes:
        return d
    missing = [c for c in d.classes if c not in classes]
    if missing:
        raise UsageError(f"{d.source}: classes {missing} are not among the model's {classes}")
    index = np.array([classes.index(c) for c in d.classes])
    t = np.zeros((len(d), len(classes)), dtype=np.float32)
    t[:, index] = d.soft_targets()
    out = d.subset(np.arange(len(d)))
    out.labels = index[d.labels]
    out.targets = t if d.targets is not None else None
    out.classes = list(classes)
    return out


def draw_weights(specs: list[SourceSpec], sizes: list[int]) -> np.ndarray:
    """Each source's share of an epoch's draws (sums to 1), by the rule in the module docstring."""
    if all(s.weight is None for s in specs):
        w = np.array(sizes, dtype=np.float64)
    else:
        w = np.array([1.0 if s.weight is None else s.weight for s in specs])
    return w / w.sum()


def epoch_indices(offsets: list[int], sizes: list[int], shares: np.ndarray, epoch_size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Indices into the concatenated training sets for one epoch: source ``k`` gets
    ``round(shares[k] * epoch_size)`` draws, taken from shuffled passes over its images (no
    image repeats before every image of that source was drawn), then all are shuffled."""
    picks = []
    for off, n, share in zip(offsets, sizes, shares):
        want = int(round(share * epoch_size))
        if n == 0 or want == 0:
            continue
        reps = -(-want // n)
        perm = np.concatenate([rng.permutation(n) for _ in range(reps)])[:want]
        picks.append(perm + off)
    idx = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    return idx[rng.permutation(len(idx))]
