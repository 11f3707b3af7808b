"""Labelled face datasets for training and evaluation, and leak-free splits.

Supported inputs (``load_dataset``):
- an image folder with one sub-folder per class (CK+48's layout), with an optional
  ``MANIFEST.csv`` (``path,label,subject``) whose ``subject`` column drives grouped splits;
- an image folder with a ``MANIFEST.csv`` that has a ``split`` column (``path,label,split``;
  RAF-DB's layout ``<split>/<class>/<file>``): its ``train`` and ``test`` rows are the splits;
- FER2013 as ``train.npz`` / ``test.npz`` (a folder holding them, or one file);
- the original Kaggle ``fer2013.csv`` (``emotion,pixels,Usage``).

Images are kept as uint8 gray arrays (N x S x S) at their stored size (48 for FER2013 and
CK+48, 100 for RAF-DB); ``face_frame.prepare_images`` brings them into the model's face
frame and input size.

FER2013 with FER+ labels (``labels="ferplus"``, votes from ``ferplus.npz`` next to the
``.npz`` files) gives soft ``targets``: each image's vote distribution over our 7 classes.
Votes for contempt and unknown are dropped (the model has no such class); images whose
most-voted column is not-a-face (ties included), that have no FER+ row, or whose votes
all fall on dropped columns are left out. ``labels`` is then the most-voted of the 7.

FER2013 with both label sets (``labels="both"``): the same images as ``ferplus``, each
target the mean of the original label (one-hot) and the FER+ vote distribution, and
``labels`` the original label. It trains towards the cleaner FER+ votes without giving up
the original labels that FER2013's test split is scored on; drawing the two label sets as
two sources would carve two different validation sets from the same images.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UsageError
# One table each for the whole package: image extensions (fer_video/media.py) and the
# folder/label spellings seen in public FER datasets -> our class names (fer_video/labels.py).
from .labels import canonical_emotion as canonical
from .media import IMAGE_EXTENSIONS

FER2013_CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
# The Kaggle fer2013.csv codes its `emotion` column in its own order
# (0=Angry, 1=Disgust, 2=Fear, 3=Happy, 4=Sad, 5=Surprise, 6=Neutral), not ours.
KAGGLE_EMOTION_CODES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
_KAGGLE_TO_LABEL = {str(code): FER2013_CLASSES.index(name) for code, name in enumerate(KAGGLE_EMOTION_CODES)}

# Where the faces sit in FER2013's 48x48 images, as the project's detector sees them
# (bench/face_frame.py: MTCNN on 400 train images upsampled 3x, 340 found): eye midpoint at
# (0.497, 0.381), eye-to-mouth-midpoint distance 0.403 (sd 0.065) of the side, roll -0.7 deg
# (sd 8.9). The model's aligned crops use this frame, so FER2013 needs no re-framing.
FER2013_FRAME = {"method": "eyes_mouth", "eye_x": 0.5, "eye_y": 0.385, "em": 0.40}



@dataclass
class FaceDataset:
    images: np.ndarray                  # uint8, N x H x W (gray)
    labels: np.ndarray                  # int64 indices into `classes`
    classes: list[str]                  # canonical class names
    groups: np.ndarray                  # one group id per image (subject, or duplicate cluster)
    source: str                         # what was loaded (for the checkpoint's `data` record)
    grouped_by: str = "image"           # "subject", "duplicates" or "image"
    extra: dict[str, np.ndarray] = field(default_factory=dict)   # e.g. FER2013 `in_train`
    targets: np.ndarray | None = None   # float32 N x C soft labels (rows sum to 1); None = one-hot `labels`
    frame: dict | None = None           # where faces sit in the images (face_frame); None = unknown
    name: str = ""                      # short source name for logs and per-source metrics

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "FaceDataset":
        return FaceDataset(self.images[idx], self.labels[idx], list(self.classes), self.groups[idx],
                           self.source, self.grouped_by, {k: v[idx] for k, v in self.extra.items()},
                           None if self.targets is None else self.targets[idx], self.frame, self.name)

    def soft_targets(self) -> np.ndarray:
        """N x C float32 target distributions (one-hot rows for hard labels)."""
        if self.targets is not None:
            return self.targets.astype(np.float32)
        t = np.zeros((len(self.labels), len(self.classes)), dtype=np.float32)
        t[np.arange(len(self.labels)), self.labels] = 1.0
        return t

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, c)}


def _pixel_groups(images: np.ndarray) -> np.ndarray:
    """Group id per image such that pixel-identical images share a group (keeps duplicates on one side of a split)."""
    ids: dict[bytes, int] = {}
    out = np.empty(len(images), dtype=np.int64)
    for i, img in enumerate(images):
        out[i] = ids.setdefault(hashlib.md5(img.tobytes()).digest(), len(ids))
    return out


def load_dataset(path: str | Path, split: str = "train", labels: str = "original") -> FaceDataset:
    """Load ``split`` ("train", "test" or "all") of the dataset at ``path``.

    Image folders without a MANIFEST ``split`` column have no predefined split: "all" and
    "train" return every image (the caller carves grouped validation/test splits); "test"
    is an error. ``labels="ferplus"`` (FER2013 only) takes the FER+ votes as soft targets.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"dataset not found: {p}")
    if labels not in LABEL_SETS:
        raise UsageError(f"unknown labels {labels!r} for {p} (one of {', '.join(LABEL_SETS)})")
    if labels in ("ferplus", "both"):
        return _load_ferplus(p, split, both=labels == "both")
    try:
        if p.is_file() and p.suffix == ".npz":
            return _load_npz(p)
        if p.is_file() and p.suffix == ".csv":
            return _load_kaggle_csv(p, split)
        if p.is_dir() and (p / "train.npz").is_file():
            if split == "all":
                raise UsageError(f"{p}: FER2013 has fixed train/test splits; ask for 'train' or 'test'")
            target = p / f"{split}.npz"
            if not target.is_file():
                raise UsageError(f"dataset split not found: {target}")
            return _load_npz(target)
        if p.is_dir() and (p / "fer2013.csv").is_file():
            return _load_kaggle_csv(p / "fer2013.csv", split)
        if p.is_dir() and _manifest_has_split(p):
            return _load_manifest_split(p, split)
        if p.is_dir():
            if {d.name for d in p.iterdir() if d.is_dir()} >= {"train", "test"}:
                raise UsageError(f"{p}: has train/ and test/ folders but no MANIFEST.csv with a "
                                 "'split' column (path,label,split) saying which image is in which")
            if split == "test":
                raise UsageError(f"{p}: an image folder has no test split; use --folds or a held-out folder")
            return _load_image_folder(p)
    except UsageError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read dataset {p}: {exc}") from None
    raise UsageError(f"{p}: not a dataset (expected a class-folder tree, FER2013 .npz files or fer2013.csv)")


LABEL_SETS = ("original", "ferplus", "both")
# FER+ vote columns (microsoft/FERPlus fer2013new.csv order) and the class each feeds (None: dropped).
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF"]
_FERPLUS_TO_CLASS = [canonical(c) if canonical(c) in FER2013_CLASSES else None for c in FERPLUS_COLUMNS]


def ferplus_votes(folder: Path, split: str, n: int) -> np.ndarray:
    """The (n, 10) FER+ vote counts of ``split`` ("train"/"test"), -1 rows where none; a
    missing file or a length that does not match the images is a one-line UsageError."""
    f = folder / "ferplus.npz"
    if not f.is_file():
        raise UsageError(f"FER+ labels asked for, but {f} does not exist")
    try:
        with np.load(f, allow_pickle=False) as z:
            votes = z[f"{split}_votes"].astype(np.int64)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read FER+ votes {f}: {exc}") from None
    if votes.ndim != 2 or votes.shape != (n, len(FERPLUS_COLUMNS)):
        raise UsageError(f"{f}: {split}_votes has shape {votes.shape}, expected ({n}, {len(FERPLUS_COLUMNS)}) "
                         f"to match {split}.npz row by row")
    return votes


def ferplus_targets(votes: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, N x C float32 vote distribution over ``classes``) from FER+ votes, by the
    rule in the module docstring."""
    votes = np.asarray(votes, dtype=np.int64)
    has_row = (votes >= 0).all(1)
    nf = FERPLUS_COLUMNS.index("NF")
    nf_majority = votes[:, nf] >= votes.max(1)
    mapped = np.zeros((len(votes), len(classes)), dtype=np.float64)
    for col, cls in enumerate(_FERPLUS_TO_CLASS):
        if cls is not None and cls in classes:
            mapped[:, classes.index(cls)] += np.clip(votes[:, col], 0, None)
    total = mapped.sum(1)
    keep = has_row & ~nf_majority & (total > 0)
    targets = np.zeros_like(mapped, dtype=np.float32)
    targets[keep] = (mapped[keep] / total[keep, None]).astype(np.float32)
    return keep, targets


def ferplus_majority(votes: np.ndarray, classes: list[str]) -> np.ndarray:
    """The FER+ majority label per image as an index into ``classes``, or -1 where there is
    no clear majority: the most-voted of all 10 columns must be unique and one of
    ``classes`` (a contempt, unknown or not-a-face majority, a tie, or no FER+ row: -1)."""
    votes = np.asarray(votes, dtype=np.int64)
    top = votes.max(1)
    unique = (votes == top[:, None]).sum(1) == 1
    arg = votes.argmax(1)
    out = np.full(len(votes), -1, dtype=np.int64)
    for col, cls in enumerate(_FERPLUS_TO_CLASS):
        if cls is not None and cls in classes:
            out[(arg == col) & unique & (votes >= 0).all(1) & (top > 0)] = classes.index(cls)
    return out


def _load_ferplus(p: Path, split: str, both: bool = False) -> FaceDataset:
    folder = p if p.is_dir() else p.parent
    if not (folder / "train.npz").is_file():
        raise UsageError(f"{p}: FER+ labels need FER2013's train.npz/test.npz (and ferplus.npz) in one folder")
    if split not in ("train", "test"):
        raise UsageError(f"{p}: FER2013 has fixed train/test splits; ask for 'train' or 'test'")
    base = load_dataset(folder, split)
    votes = ferplus_votes(folder, split, len(base))
    keep, targets = ferplus_targets(votes, base.classes)
    base.extra["ferplus_votes"] = votes
    base.extra["ferplus_majority"] = ferplus_majority(votes, base.classes)
    idx = np.flatnonzero(keep)
    out = base.subset(idx)
    out.targets = targets[idx]
    ferplus_labels = out.targets.argmax(1).astype(np.int64)
    if both:
        onehot = np.eye(len(base.classes), dtype=np.float32)[out.labels]
        out.targets = (0.5 * onehot + 0.5 * out.targets).astype(np.float32)
        # The validation carve is stratified on the FER+ labels, as for labels=ferplus, so
        # both label sets carve the same validation images (a run continuing a FER+ run
        # never validates on images its start trained on).
        out.extra["carve_labels"] = ferplus_labels
    else:
        out.labels = ferplus_labels
    kind = "both" if both else "ferplus"
    out.source = f"{folder},labels={kind}"
    out.name = kind
    return out


def blend_ferplus(d: FaceDataset, path: str | Path, split: str, share: float) -> FaceDataset:
    """FER2013 ``d`` (original labels, as loaded) with each target ``(1 - share)`` x its
    original one-hot + ``share`` x its FER+ vote distribution (``ferplus_targets``), where
    the image has usable votes; an image without (no row, a not-a-face majority, every
    vote on a dropped column) keeps its one-hot. Images, labels and groups are unchanged,
    so the validation carve is the one ``labels=original`` makes, image for image; with
    ``share`` < 0.5 every target's largest entry is still the original label."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if not (0.0 < share < 1.0):
        raise UsageError(f"{p}: ferplus must be a share between 0 and 1 (got {share})")
    votes = ferplus_votes(folder, split, len(d))
    keep, soft = ferplus_targets(votes, d.classes)
    onehot = np.eye(len(d.classes), dtype=np.float32)[d.labels]
    targets = onehot.copy()
    targets[keep] = ((1.0 - share) * onehot[keep] + share * soft[keep]).astype(np.float32)
    d.targets = targets
    d.extra["ferplus_votes"] = votes
    d.extra["ferplus_majority"] = ferplus_majority(votes, d.classes)
    d.source = f"{folder},ferplus={share:g}"
    return d


def _manifest_has_split(root: Path) -> bool:
    m = root / "MANIFEST.csv"
    if not m.is_file():
        return False
    with open(m, newline="") as f:
        return "split" in (csv.DictReader(f).fieldnames or [])


def _load_manifest_split(root: Path, split: str) -> FaceDataset:
    """A MANIFEST.csv with ``path,label,split`` (RAF-DB): the rows of ``split`` ("all": every row).
    Classes are the sorted canonical labels of the whole manifest, so both splits agree."""
    from PIL import Image

    with open(root / "MANIFEST.csv", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label", "split"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"MANIFEST.csv lacks columns {sorted(missing)}")
        rows = list(reader)
    splits = sorted({r["split"] for r in rows})
    if split != "all" and split not in splits:
        raise UsageError(f"{root}: MANIFEST.csv has no {split!r} rows (splits: {', '.join(splits)})")
    classes = sorted({canonical(r["label"]) for r in rows})
    pick = [r for r in rows if split == "all" or r["split"] == split]
    images, labels, groups = [], [], []
    size = None
    for r in pick:
        with Image.open(root / r["path"]) as im:
            im = im.convert("L")
            size = size or im.size
            if im.size != size:
                im = im.resize(size, Image.BILINEAR)
            images.append(np.asarray(im, dtype=np.uint8))
        labels.append(classes.index(canonical(r["label"])))
        groups.append(r.get("subject") or r["path"])
    if not images:
        raise ValueError(f"no images in split {split!r}")
    _, group_ids = np.unique(np.array(groups), return_inverse=True)
    grouped_by = "subject" if any(r.get("subject") for r in pick) else "image"
    return FaceDataset(np.stack(images), np.array(labels, dtype=np.int64), classes, group_ids.astype(np.int64),
                       str(root), grouped_by, name=root.name)


def _load_npz(path: Path) -> FaceDataset:
    with np.load(path, allow_pickle=False) as z:
        images = z["images"].astype(np.uint8)
        labels = z["labels"].astype(np.int64)
        classes = [canonical(str(c)) for c in z["classes"]]
        extra = {k: z[k] for k in ("in_train", "dup_within_split", "usage") if k in z.files}
    return FaceDataset(images, labels, classes, _pixel_groups(images), str(path), "duplicates", extra,
                       frame=FER2013_FRAME, name="fer2013")


def _load_kaggle_csv(path: Path, split: str) -> FaceDataset:
    usages = {"train": {"Training"}, "test": {"PublicTest", "PrivateTest"},
              "all": {"Training", "PublicTest", "PrivateTest"}}[split]
    images, labels, usage = [], [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            if row["Usage"] not in usages:
                continue
            code, px = row["emotion"].strip(), row["pixels"].split()
            if code not in _KAGGLE_TO_LABEL:
                raise ValueError(f"line {line}: emotion {code!r} is not a code 0-6")
            if len(px) != 48 * 48:
                raise ValueError(f"line {line}: {len(px)} pixels, expected 48x48 = 2304")
            images.append(np.array(px, dtype=np.uint8).reshape(48, 48))
            labels.append(_KAGGLE_TO_LABEL[code])
            usage.append(row["Usage"])
    if not images:
        raise ValueError(f"no rows for split {split!r}")
    images_a = np.stack(images)
    extra: dict[str, np.ndarray] = {"usage": np.array(usage)}
    if split == "test":
        # Same leak check as the shipped .npz: test images pixel-identical to a train image.
        train = _load_kaggle_csv(path, "train")
        seen = {hashlib.md5(im.tobytes()).digest() for im in train.images}
        extra["in_train"] = np.array([hashlib.md5(im.tobytes()).digest() in seen for im in images_a])
    return FaceDataset(images_a, np.array(labels, dtype=np.int64), list(FER2013_CLASSES),
                       _pixel_groups(images_a), str(path), "duplicates", extra, frame=FER2013_FRAME, name="fer2013")


def _load_image_folder(root: Path) -> FaceDataset:
    from PIL import Image

    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError("no class sub-folders")
    subjects: dict[str, str] = {}
    manifest = root / "MANIFEST.csv"
    if manifest.is_file():
        with open(manifest, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("subject"):
                    subjects[row["path"]] = row["subject"]
    images, labels, groups = [], [], []
    size = None
    for ci, d in enumerate(class_dirs):
        for fp in sorted(d.iterdir()):
            if fp.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            with Image.open(fp) as im:
                im = im.convert("L")
                if size is None:
                    size = im.size
                if im.size != size:
                    im = im.resize(size, Image.BILINEAR)
                images.append(np.asarray(im, dtype=np.uint8))
            labels.append(ci)
            rel = f"{d.name}/{fp.name}"
            groups.append(subjects.get(rel, rel))
    if not images:
        raise ValueError("no images in the class sub-folders")
    grouped_by = "subject" if subjects else "image"
    _, group_ids = np.unique(np.array(groups), return_inverse=True)
    return FaceDataset(np.stack(images), np.array(labels, dtype=np.int64),
                       [canonical(d.name) for d in class_dirs], group_ids.astype(np.int64),
                       str(root), grouped_by, name=root.name)


def grouped_split(groups: np.ndarray, labels: np.ndarray, fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held_out) with ~``fraction`` held out; no group on both sides.

    Groups are assigned per class of their first image so the held-out part keeps the
    class balance roughly (stratified at group level).
    """
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    first_label = {g: labels[np.argmax(groups == g)] for g in uniq} if len(uniq) < 5000 else None
    if first_label is None:
        # Large sets (FER2013): vectorised first-label lookup.
        order = np.argsort(groups, kind="stable")
        g_sorted = groups[order]
        starts = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1]
        first_label = dict(zip(g_sorted[starts], labels[order][starts]))
    held = []
    for c in np.unique(labels):
        gs = np.array([g for g in uniq if first_label[g] == c])
        rng.shuffle(gs)
        held.extend(gs[: int(round(len(gs) * fraction))])
    mask = np.isin(groups, np.array(held))
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def group_kfold(groups: np.ndarray, labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """K folds of indices (each a test fold); no group appears in two folds.

    Groups are shuffled, then dealt greedily to the fold with the fewest images so folds
    have similar sizes.
    """
    if k < 2:
        raise UsageError("--folds must be at least 2")
    uniq, counts = np.unique(groups, return_counts=True)
    if len(uniq) < k:
        raise UsageError(f"{k} folds need at least {k} groups (subjects); the data has {len(uniq)}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(uniq))
    order = perm[np.argsort(-counts[perm], kind="stable")]  # big groups first, ties shuffled
    fold_of_group = {}
    sizes = np.zeros(k, dtype=np.int64)
    for gi in order:
        f = int(np.argmin(sizes))
        fold_of_group[uniq[gi]] = f
        sizes[f] += counts[gi]
    assign = np.array([fold_of_group[g] for g in groups])
    return [np.flatnonzero(assign == f) for f in range(k)]
