"""Incremental, outlier-robust baselines: O(1) per sample, whatever the length of history."""
from __future__ import annotations

from dataclasses import dataclass

WARMUP = 10          # samples before outliers are clipped
CLIP_SPREADS = 4.0   # a sample further than this many spreads from the centre is clipped to it
MIN_SAMPLES = 30     # fewer samples than this: the baseline is not trusted for anomalies
WINDOW_OVERALL = 1000  # effective memory in samples of the all-day baseline (~3.5 days at 5 min)
WINDOW_HOURLY = 200    # effective memory of an hour-of-day bucket (~17 days at 5 min)


@dataclass(frozen=True)
class Baseline:
    """Robust centre (EW mean of clipped samples) and spread (EW mean absolute deviation x 1.25)."""

    n: int = 0
    centre: float = 0.0
    spread: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0
    last: float = 0.0

    @property
    def trusted(self) -> bool:
        """True once enough samples make the baseline meaningful."""
        return self.n >= MIN_SAMPLES

    def deviation(self, value: float, floor: float = 0.0) -> float:
        """How many spreads ``value`` lies above (positive) or below the centre."""
        scale = max(self.spread, floor, abs(self.centre) * 0.05, 1e-9)
        return (value - self.centre) / scale

    def update(self, value: float, window: int) -> Baseline:
        """The baseline after one more sample."""
        if self.n == 0:
            return Baseline(1, value, 0.0, value, value, value)
        n = self.n + 1
        alpha = max(1.0 / n, 1.0 / window)
        x = value
        if self.n >= WARMUP and self.spread > 0:
            limit = CLIP_SPREADS * self.spread
            x = min(max(value, self.centre - limit), self.centre + limit)
        centre = self.centre + alpha * (x - self.centre)
        spread = self.spread + alpha * (abs(x - centre) * 1.25 - self.spread)
        return Baseline(n, centre, spread, min(self.minimum, value), max(self.maximum, value),
                        value)

    def as_json(self) -> dict[str, float]:
        """Compact form for the LLM prompt and the report."""
        return {"n": self.n, "centre": round(self.centre, 3), "spread": round(self.spread, 3),
                "min": round(self.minimum, 3), "max": round(self.maximum, 3)}
