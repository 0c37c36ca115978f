"""Server-drawn SVG charts: geometry computed here, drawn by the template."""

from __future__ import annotations

from dataclasses import dataclass

from transfers.stats import HourVolume

WIDTH = 720
HEIGHT = 160
_TOP = 10
_BOTTOM = 24  # room for hour labels
_GAP = 2


@dataclass(frozen=True)
class Bar:
    """One bar: position, size, and what it stands for."""

    x: float
    y: float
    width: float
    height: float
    label: str
    files: int
    bytes: int
    tick: bool  # label it on the axis


def volume_bars(series: list[HourVolume]) -> list[Bar]:
    """Return one bar per hour, heights scaled to the busiest hour's bytes."""
    if not series:
        return []
    peak = max(max(point.bytes for point in series), 1)
    slot = WIDTH / len(series)
    usable = HEIGHT - _TOP - _BOTTOM
    bars = []
    for index, point in enumerate(series):
        height = usable * point.bytes / peak
        if point.files and height < 1:
            height = 1.0  # a busy hour with tiny files still shows
        bars.append(Bar(x=round(index * slot + _GAP / 2, 2),
                        y=round(HEIGHT - _BOTTOM - height, 2),
                        width=round(slot - _GAP, 2), height=round(height, 2),
                        label=point.hour.strftime("%H:00"), files=point.files,
                        bytes=point.bytes, tick=index % 4 == 0))
    return bars
