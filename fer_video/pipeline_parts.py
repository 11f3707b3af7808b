"""The analysis's small parts that are not a stage: decoding ahead in a thread
(:class:`Prefetch`; :class:`NoPrefetch` has its interface and decodes one frame at a time,
only while the caller waits for it), both with a stall guard (:class:`DecodeStalled`), a stand-in for a thread pool that runs each call at once (:class:`Inline`, for
one-core workers), and a face's report thumbnail (:func:`thumbnail`, :func:`jpeg`).
Used by :mod:`fer_video.pipeline`; Pillow is imported only when a thumbnail is made.
"""
from __future__ import annotations

import io
import queue
import threading
import time

import numpy as np

THUMB_SIDE = 128          # thumbnails are at most this many pixels on their longer side
THUMB_MARGIN = 0.2        # fraction of the box side added around a face for its thumbnail


_END = object()            # the decoder's end, inside the decode thread


class DecodeStalled(Exception):
    """No frame (nor the end) came from the decoder for ``stall_s`` seconds."""

    def __init__(self, stall_s: float):
        super().__init__(f"no frame for {stall_s:g} s")
        self.stall_s = stall_s


class Prefetch:
    """Decode ahead in a background thread (PyAV releases the GIL while decoding), so
    decoding overlaps detection. The queue is bounded: at most ``depth`` frames wait.

    The stall guard: when the decoder gives neither a frame nor its end for ``stall_s``
    seconds (a read blocked on a stalled network mount, a decoder that does not return),
    ``next()`` raises :class:`DecodeStalled` and the input can fail while the run goes on.
    The decode thread cannot be stopped inside FFmpeg: it is a daemon thread, left to
    finish or to end with the process.

    ``permits`` (:class:`fer_video.threads.Permits`, held by the caller): the decode thread
    takes one for each frame it decodes, and the caller gives its own up while it waits
    for a frame."""

    def __init__(self, iterable, depth: int, stall_s: float | None = None, permits=None):
        from .threads import Permits

        self._permits = permits if permits is not None else Permits()
        self._stall_s = stall_s
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self.busy_s = 0.0                 # seconds the decode thread spent producing frames
        self._thread = threading.Thread(target=self._run, args=(iterable,), daemon=True,
                                        name="fer-video-decode")
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _may_decode(self) -> bool:
        """Whether to decode the next frame now (False: stop)."""
        return not self._stop.is_set()

    def _run(self, iterable) -> None:
        it = iter(iterable)
        try:
            while self._may_decode():
                with self._permits.work():      # one frame's decoding
                    t0 = time.perf_counter()
                    try:
                        item = next(it)
                    except StopIteration:
                        item = _END
                    self.busy_s += time.perf_counter() - t0
                if item is _END:
                    self._put(("end", None))
                    return
                if not self._put(("frame", item)):
                    return
        except BaseException as exc:    # handed to the consumer, raised there
            self._put(("error", exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass

    def __iter__(self):
        return self

    def _get(self):
        try:
            return self._q.get_nowait()
        except queue.Empty:
            pass
        with self._permits.waiting():      # the caller only waits: its permit may decode
            try:
                return self._q.get(timeout=self._stall_s)
            except queue.Empty:
                raise DecodeStalled(self._stall_s) from None

    def __next__(self):
        kind, value = self._get()
        if kind == "frame":
            return value
        if kind == "error":
            raise value
        self._q.put((kind, value))        # stay exhausted
        raise StopIteration

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)


class Inline:
    """Stands in for a thread pool and runs each call at once: a one-core worker gains
    nothing from threads, and saves their hand-offs."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:       # raised where the result is taken, as with a pool
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class NoPrefetch(Prefetch):
    """``Prefetch`` decoding one frame at a time, only while the caller waits for it: the
    decode thread and the caller never run at once (one-core workers, and the 2-core plan
    where the caller decodes between detection batches), and the stall guard still holds."""

    def __init__(self, iterable, stall_s: float | None = None, permits=None):
        self._asked = threading.Semaphore(0)     # one release per frame the caller wants
        super().__init__(iterable, depth=1, stall_s=stall_s, permits=permits)

    def _may_decode(self) -> bool:
        while not self._asked.acquire(timeout=0.1):      # until the caller asks for a frame
            if self._stop.is_set():
                return False
        return not self._stop.is_set()

    def _get(self):
        self._asked.release()
        return super()._get()


def thumbnail(image: np.ndarray, box) -> np.ndarray:
    """A small colour crop around a face (not model preprocessing: only for the HTML report)."""
    from PIL import Image

    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * THUMB_MARGIN, (y2 - y1) * THUMB_MARGIN
    l, t = max(0, int(x1 - mx)), max(0, int(y1 - my))
    r, b = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    if r <= l or b <= t:
        return np.zeros((1, 1, 3), dtype=np.uint8)
    crop = Image.fromarray(np.ascontiguousarray(image[t:b, l:r]))
    crop.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return np.asarray(crop)


def jpeg(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


__all__ = ["Inline", "NoPrefetch", "Prefetch", "THUMB_MARGIN", "THUMB_SIDE", "jpeg", "thumbnail"]
