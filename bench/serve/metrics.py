"""What `bench serve` counts, in Prometheus' text exposition format (version 0.0.4) at GET /metrics.

Counters of requests (by API and outcome) and tokens, the requests in flight, and histograms of time to first
token, the gaps between token events and the whole request, in seconds. Updated on the server's event loop only,
so no lock is needed; the timestamps themselves are taken by the system's callbacks when they fire.
"""

from __future__ import annotations

import bisect
from collections import Counter

PREFIX = "bench_serve"
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0,
             60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    def __init__(self, name: str, help_text: str):
        self.name, self.help = name, help_text
        self.counts = [0] * (len(BUCKETS_S) + 1)      # the last: above every bound (+Inf only)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
        self.total += seconds

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, count in zip((*map(repr, BUCKETS_S), "+Inf"), self.counts):
            cumulative += count
            out.append(f'{self.name}_bucket{{le="{bound}"}} {cumulative}')
        return out + [f"{self.name}_sum {self.total!r}", f"{self.name}_count {cumulative}"]


class ServeMetrics:
    def __init__(self, model: str):
        self.model = model
        self.requests: Counter[tuple[str, str]] = Counter()     # (api, "ok" | "error") -> requests
        self.prompt_tokens = 0
        self.output_tokens = 0
        self.in_flight = 0
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "from arrival to the first output token")
        self.itl = Histogram(f"{PREFIX}_inter_token_seconds", "between consecutive token events of a request")
        self.e2e = Histogram(f"{PREFIX}_request_seconds", "from arrival to the request's completion")

    def started(self, prompt_tokens: int) -> None:
        self.in_flight += 1
        self.prompt_tokens += prompt_tokens

    def finished(self, api: str, ok: bool, output_tokens: int, e2e_s: float) -> None:
        self.in_flight -= 1
        self.requests[(api, "ok" if ok else "error")] += 1
        self.output_tokens += output_tokens
        self.e2e.observe(e2e_s)

    def render(self) -> str:
        label = f'model="{self.model}"'
        lines = [f"# HELP {PREFIX}_requests_total requests answered, by API and outcome",
                 f"# TYPE {PREFIX}_requests_total counter"]
        lines += [f'{PREFIX}_requests_total{{{label},api="{api}",outcome="{outcome}"}} {count}'
                  for (api, outcome), count in sorted(self.requests.items())]
        for name, value, kind, help_text in (
                ("prompt_tokens_total", self.prompt_tokens, "counter", "prompt tokens of the requests received"),
                ("output_tokens_total", self.output_tokens, "counter", "output tokens of the requests answered"),
                ("requests_in_flight", self.in_flight, "gauge", "requests received and not yet answered")):
            lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} {kind}",
                      f"{PREFIX}_{name}{{{label}}} {value}"]
        for histogram in (self.ttft, self.itl, self.e2e):
            lines += histogram.lines()
        return "\n".join(lines) + "\n"
