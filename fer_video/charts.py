"""The report page's inline SVG charts: a face's emotion probabilities over time as a
stacked area (:func:`timeline_svg`: long tracks averaged into ``MAX_CHART_POINTS`` points,
absences left as gaps, the smoothed segments as a strip under it) and its mean
probabilities as one stacked bar (:func:`share_svg`).
Used by :mod:`fer_video.report_html`; no network, no script.
"""
from __future__ import annotations

import math

import numpy as np
from markupsafe import Markup, escape

from .aggregate import track_runs

MAX_CHART_POINTS = 240   # per face; longer tracks are averaged into this many points


def _nice_step(span: float, target: int = 8) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _fmt_tick(v: float, step: float) -> str:
    decimals = max(0, -int(math.floor(math.log10(step)))) if step < 1 else 0
    return f"{v:.{decimals}f}"


def _downsample(times: np.ndarray, probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive samples into at most ``k`` points."""
    n = len(times)
    if n <= k:
        return times, probs
    edges = np.linspace(0, n, k + 1).round().astype(int)
    t = np.array([times[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    p = np.array([probs[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])])
    return t, p


def _f(v: float) -> str:
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


class _Chart:
    W, H = 760, 206
    L, R, T = 44, 14, 10
    PLOT_B = 148          # bottom of the probability area
    STRIP_T, STRIP_B = 156, 170
    LABEL_Y = 186

    def __init__(self, x_max: float):
        self.x_max = x_max if x_max > 0 else 1.0

    def x(self, t: float) -> float:
        return self.L + (self.W - self.L - self.R) * min(max(t, 0.0), self.x_max) / self.x_max

    def y(self, p: float) -> float:
        return self.PLOT_B - (self.PLOT_B - self.T) * p


def timeline_svg(times: np.ndarray, probs: np.ndarray, classes: list[str],
                 colors: dict[str, str], step: float, x_max: float, segments,
                 label: str = "") -> Markup:
    """Stacked-area chart of class probabilities over time (one filled path per class), the
    smoothed segments as a strip under it, time axis in seconds and a probability axis."""
    ch = _Chart(x_max)
    order = np.argsort(times, kind="stable")
    times, probs = times[order], probs[order]
    out: list[str] = [
        f'<svg class="timeline" viewBox="0 0 {ch.W} {ch.H}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{ch.L}" y="{ch.T}" width="{ch.W - ch.L - ch.R}" height="{ch.PLOT_B - ch.T}" '
        f'class="plotbg"/>',
    ]
    # Downsample each run in proportion to its length (runs keep their gaps).
    runs = track_runs(times, step)    # aggregate's gap rule, so the chart's gaps are the segments'
    budget = MAX_CHART_POINTS
    paths: list[list[str]] = [[] for _ in classes]
    for run in runs:
        t, p = times[run], probs[run]
        k = max(1, int(round(budget * len(t) / max(1, len(times)))))
        t, p = _downsample(t, p, k)
        end = min(t[-1] + step, ch.x_max) if step > 0 else t[-1]
        if end > t[-1]:   # hold the last value for one sampling step
            t = np.append(t, end)
            p = np.vstack([p, p[-1:]])
        elif len(t) == 1:  # a lone sample with no step: a thin bar
            t = np.array([t[0], t[0]])
            p = np.vstack([p, p])
        xs = [ch.x(v) for v in t]
        if len(t) == 2 and xs[1] - xs[0] < 2:
            xs[1] = xs[0] + 2
        cum = np.hstack([np.zeros((len(t), 1)), np.cumsum(p, axis=1)])
        cum = np.clip(cum / np.maximum(cum[:, -1:], 1e-12), 0, 1)
        for c in range(len(classes)):
            lo, hi = cum[:, c], cum[:, c + 1]
            if float((hi - lo).max()) < 1e-4:
                continue
            top = " L".join(f"{_f(x)},{_f(ch.y(v))}" for x, v in zip(xs, hi))
            bot = " L".join(f"{_f(x)},{_f(ch.y(v))}" for x, v in zip(reversed(xs), lo[::-1]))
            paths[c].append(f"M{top} L{bot} Z")
    for c, cls in enumerate(classes):
        if paths[c]:
            out.append(f'<path class="area" d="{" ".join(paths[c])}" fill="{colors[cls]}">'
                       f'<title>{escape(cls)}</title></path>')
    # Grid and y axis.
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _f(ch.y(v))
        out.append(f'<line class="grid" x1="{ch.L}" x2="{ch.W - ch.R}" y1="{y}" y2="{y}"/>')
        if v in (0.0, 0.5, 1.0):
            out.append(f'<text class="tick" x="{ch.L - 6}" y="{y}" text-anchor="end" '
                       f'dominant-baseline="middle">{v:g}</text>')
    out.append(f'<text class="axis-title" x="12" y="{_f((ch.T + ch.PLOT_B) / 2)}" '
               f'transform="rotate(-90 12 {_f((ch.T + ch.PLOT_B) / 2)})" '
               f'text-anchor="middle">probability</text>')
    # Absences (gaps between runs).
    for a, b in zip(runs[:-1], runs[1:]):
        g0, g1 = ch.x(times[a.stop - 1] + step), ch.x(times[b.start])
        if g1 - g0 > 80:
            out.append(f'<text class="gap" x="{_f((g0 + g1) / 2)}" y="{_f(ch.y(0.5))}" '
                       f'text-anchor="middle" dominant-baseline="middle">not detected</text>')
    # Segment strip.
    out.append(f'<rect class="stripbg" x="{ch.L}" y="{ch.STRIP_T}" width="{ch.W - ch.L - ch.R}" '
               f'height="{ch.STRIP_B - ch.STRIP_T}"/>')
    for s in segments:
        x0, x1 = ch.x(s.start_s), ch.x(s.end_s)
        out.append(f'<rect x="{_f(x0)}" y="{ch.STRIP_T}" width="{_f(max(x1 - x0, 1.0))}" '
                   f'height="{ch.STRIP_B - ch.STRIP_T}" fill="{colors.get(s.emotion, "#999")}">'
                   f'<title>{escape(s.emotion)}: {s.start_s:.2f}–{s.end_s:.2f} s</title></rect>')
    out.append(f'<text class="tick" x="{ch.L - 6}" y="{(ch.STRIP_T + ch.STRIP_B) / 2}" '
               f'text-anchor="end" dominant-baseline="middle">seg.</text>')
    # X axis in seconds.
    tick = _nice_step(ch.x_max)
    n_ticks = int(math.floor(ch.x_max / tick + 1e-9))
    for i in range(n_ticks + 1):
        v = i * tick
        x = _f(ch.x(v))
        out.append(f'<line class="xtick" x1="{x}" x2="{x}" y1="{ch.PLOT_B}" y2="{ch.STRIP_B + 3}"/>')
        out.append(f'<text class="tick" x="{x}" y="{ch.LABEL_Y}" text-anchor="middle">'
                   f'{_fmt_tick(v, tick)}</text>')
    out.append(f'<text class="axis-title" x="{ch.W - ch.R}" y="{ch.H - 2}" text-anchor="end">'
               f'time (s)</text>')
    out.append("</svg>")
    return Markup("\n".join(out))


def share_svg(mean_probs: dict[str, float], colors: dict[str, str], label: str = "") -> Markup:
    """Horizontal stacked bar of mean probability per class, labelled where wide enough."""
    W, H = 760, 26
    total = sum(max(0.0, v) for v in mean_probs.values()) or 1.0
    out = [f'<svg class="share" viewBox="0 0 {W} {H}" width="100%" role="img" '
           f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">']
    x = 0.0
    for cls, v in mean_probs.items():
        w = W * max(0.0, v) / total
        if w <= 0:
            continue
        out.append(f'<rect x="{_f(x)}" y="0" width="{_f(w)}" height="{H}" '
                   f'fill="{colors.get(cls, "#999")}"><title>{escape(cls)}: '
                   f'{100 * v:.1f}%</title></rect>')
        text = f"{cls} {100 * v:.0f}%"
        if len(text) * 6.6 + 8 > w:
            text = f"{100 * v:.0f}%"
        if len(text) * 6.6 + 8 <= w:
            out.append(f'<text class="sharelabel" x="{_f(x + w / 2)}" y="{H / 2}" '
                       f'text-anchor="middle" dominant-baseline="central">{escape(text)}</text>')
        x += w
    out.append("</svg>")
    return Markup("".join(out))


__all__ = ["MAX_CHART_POINTS", "share_svg", "timeline_svg"]
