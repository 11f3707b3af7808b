"""The one table of emotion-name spellings: how a class name read from a dataset or a model
maps onto the names fer-video uses (``angry``, ``disgust``, ``fear``, ``happy``, ``sad``,
``surprise``, ``neutral``, and ``contempt`` for datasets that have it).

Used where a name must be recognised whatever its spelling: the report's emotion colours
(``fer_video.report.emotion_colors``) and the training-data loader's class names. Imports
nothing.
"""
from __future__ import annotations

# Spelling (lower case) -> name. A name maps to itself, so the table is also the list of
# the names it knows. Only true synonyms: a label that is a class of its own somewhere
# ("calm" in RAVDESS, beside its "neutral") is not folded into another one, or a dataset
# with both would get one class twice.
EMOTION_SYNONYMS = {
    "angry": "angry", "anger": "angry",
    "contempt": "contempt",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "happy_face": "happy", "joy": "happy",
    "neutral": "neutral",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
}


def canonical_emotion(name: str) -> str:
    """``name`` stripped and lower-cased, then the name :data:`EMOTION_SYNONYMS` gives that
    spelling (``" Happiness "`` -> ``"happy"``); a spelling it does not know is kept as
    stripped and lower-cased (``"Calm"`` -> ``"calm"``)."""
    key = str(name).strip().lower()
    return EMOTION_SYNONYMS.get(key, key)


__all__ = ["EMOTION_SYNONYMS", "canonical_emotion"]
