"""Training sources: several ``--data`` sets in one run, each mapped onto the model's classes.

A source spec is ``PATH[,labels=original|ferplus|both][,weight=W]``:

- ``PATH``: any dataset ``data.load_dataset`` reads (FER2013 folder, a MANIFEST split
  folder such as RAF-DB, a class-folder set such as CK+48);
- ``labels=ferplus``: FER2013 with the FER+ vote distributions as soft targets;
- ``labels=both``: FER2013 with targets halfway between its original label and the FER+
  votes (``data`` module docstring), validated against the original labels;
- ``ferplus=F``: FER2013 on its original labels, each target (1 - F) x the one-hot + F x the
  FER+ votes (``data.blend_ferplus``): the images and validation carve of ``labels=original``;
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

from .checkpoint import CheckpointError, ModelConfig, load_config
from .data import FER2013_FRAME, LABEL_SETS, FaceDataset, blend_ferplus, grouped_split, load_dataset
from .errors import UsageError
from .metrics import confusion_matrix, metrics_from_confusion, soft_nll
from .recipe import TrainArgs


@dataclass(frozen=True)
class SourceSpec:
    path: str
    labels: str = "original"
    weight: float | None = None
    ferplus: float | None = None      # labels=original blended with this share of the FER+ votes

    @property
    def name(self) -> str:
        base = Path(self.path).name or self.path
        if self.ferplus:
            return f"{base}+ferplus{self.ferplus:g}"
        return base if self.labels == "original" else f"{base}+{self.labels}"


def parse_source(spec: str) -> SourceSpec:
    """``"PATH[,labels=...][,weight=W]"`` -> SourceSpec; a bad key or value is a UsageError."""
    parts = [p.strip() for p in str(spec).split(",")]
    path, opts = parts[0], parts[1:]
    if not path:
        raise UsageError(f"--data {spec!r}: no path")
    kw: dict = {}
    for o in opts:
        key, sep, value = o.partition("=")
        if not sep or key not in ("labels", "weight", "ferplus"):
            raise UsageError(f"--data {spec!r}: unknown option {o!r} "
                             "(use labels=original|ferplus|both, weight=W, ferplus=F)")
        if key == "ferplus":
            try:
                share = float(value)
            except ValueError:
                share = -1.0
            if not 0 < share < 1:
                raise UsageError(f"--data {spec!r}: ferplus must be a share between 0 and 1 (exclusive)")
            kw["ferplus"] = share
        elif key == "labels":
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
    if kw.get("ferplus") and kw.get("labels", "original") != "original":
        raise UsageError(f"--data {spec!r}: ferplus=F blends the FER+ votes into the original labels; "
                         "it does not go with labels=ferplus or both")
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
        if s.ferplus:
            d = blend_ferplus(d, s.path, split, s.ferplus)
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
    if "carve_labels" in d.extra:
        out.extra["carve_labels"] = index[d.extra["carve_labels"]]
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


# ---------------------------------------------------------------- a run's data
def _cap_train_images(train_set: FaceDataset, args: TrainArgs) -> FaceDataset:
    if args.max_images and len(train_set) > args.max_images:
        idx = np.random.default_rng(args.seed).permutation(len(train_set))[: args.max_images]
        train_set = train_set.subset(np.sort(idx))
    return train_set


FACE_FRAMES = ("auto", "none", "fer2013")


def run_alignment(args: TrainArgs) -> dict:
    """The face frame a run trains in (``ModelConfig.alignment``): "none" -> {} (box crops),
    "fer2013" -> FER2013's frame (``data.FER2013_FRAME``), "auto" -> the frame of the
    ``--weights`` checkpoint (so a fine-tune keeps its start's frame; {} for checkpoints made
    before alignment existed), and FER2013's frame when starting from none/imagenet."""
    if args.face_frame == "none":
        return {}
    if args.face_frame == "fer2013":
        return dict(FER2013_FRAME)
    if args.face_frame != "auto":
        raise UsageError(f"--face-frame must be one of {', '.join(FACE_FRAMES)} (got {args.face_frame!r})")
    if args.weights in ("none", "imagenet"):
        return dict(FER2013_FRAME)
    try:
        return dict(load_config(args.weights).alignment)
    except CheckpointError as exc:
        raise UsageError(f"--weights {args.weights}: {exc}") from None


def _frame_config(args: TrainArgs, classes: list[str]) -> ModelConfig:
    return ModelConfig(classes=list(classes), input_size=args.img_size, alignment=run_alignment(args))


def prepare_dataset(d: FaceDataset, config: ModelConfig) -> FaceDataset:
    """``d`` with its images in ``config``'s face frame and input size (``face_frame``)."""
    from .face_frame import prepare_images

    want = dict(config.alignment) or None
    if d.images.shape[1:] == (config.input_size, config.input_size) and (not want or d.frame == want):
        return d
    out = d.subset(np.arange(len(d)))
    out.images = prepare_images(d, config)
    out.frame = want if want else d.frame
    return out


def concat_sets(parts: list[FaceDataset]) -> FaceDataset:
    """One dataset from prepared sources (same image size and classes); ``extra["source_id"]``
    says which part each image came from; group ids never collide across parts."""
    if len(parts) == 1:
        d = parts[0].subset(np.arange(len(parts[0])))
        d.extra = {**d.extra, "source_id": np.zeros(len(d), dtype=np.int64)}
        return d
    groups, off = [], 0
    for d in parts:
        groups.append(d.groups + off)
        off += int(d.groups.max()) + 1 if len(d) else 0
    soft = any(d.targets is not None for d in parts)
    return FaceDataset(
        np.concatenate([d.images for d in parts]), np.concatenate([d.labels for d in parts]),
        list(parts[0].classes), np.concatenate(groups), " + ".join(d.source for d in parts),
        "/".join(sorted({d.grouped_by for d in parts})),
        {"source_id": np.concatenate([np.full(len(d), k, dtype=np.int64) for k, d in enumerate(parts)])},
        np.concatenate([d.soft_targets() for d in parts]) if soft else None,
        parts[0].frame, " + ".join(d.name for d in parts))


def source_names(args: TrainArgs) -> list[str]:
    return [s.name for s in source_specs(args.data)]


def carve_run_data(args: TrainArgs) -> tuple[FaceDataset, FaceDataset]:
    """(training images, validation images) of a run: per source, the grouped validation
    carve of its train split (``val_fraction``, ``seed``), every source mapped onto the
    model's classes and brought into the run's face frame and input size, then the
    ``max_images`` cap on the training part. ``extra["source_id"]`` indexes ``args.data``.
    The same recipe always gives the same carve, so tools that revisit a run (``average``,
    ``evaluate --split val``) see exactly the images it trained and selected on."""
    specs = source_specs(args.data)
    sets = load_sources(specs, "train")
    classes = model_classes(sets)
    cfg = _frame_config(args, classes)
    trains, vals = [], []
    for d in sets:
        d = prepare_dataset(to_classes(d, classes), cfg)
        keep, held = grouped_split(d.groups, d.extra.get("carve_labels", d.labels), args.val_fraction, args.seed)
        trains.append(d.subset(keep))
        vals.append(d.subset(held))
    return _cap_train_images(concat_sets(trains), args), concat_sets(vals)


def validation_metrics(probs: np.ndarray, val: FaceDataset, names: list[str]) -> dict:
    """``val_acc`` (the mean over sources of each source's accuracy, so a small source
    counts as much as a big one), ``val_loss`` (the mean over sources of the cross-entropy
    against the targets), ``val_macro_f1`` (all validation images pooled) and, with several
    sources, ``val_acc_<name>`` per source."""
    classes = val.classes
    sid = val.extra.get("source_id", np.zeros(len(val), dtype=np.int64))
    targets = val.soft_targets()
    accs, losses, out = [], [], {}
    for k, name in enumerate(names):
        m = sid == k
        if not m.any():
            continue
        acc = float((probs[m].argmax(1) == val.labels[m]).mean())
        accs.append(acc)
        losses.append(soft_nll(probs[m], targets[m]))
        if len(names) > 1:
            out[f"val_acc_{name}"] = acc
    pooled = metrics_from_confusion(confusion_matrix(val.labels, probs.argmax(1), len(classes)), classes)
    return {"val_acc": float(np.mean(accs)), "val_macro_f1": pooled["macro_f1"],
            "val_loss": float(np.mean(losses)), **out}


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (plain: no class weights, no smoothing)."""
    p = probs[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())
