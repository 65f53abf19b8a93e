"""Fault injection for crash tests: which fault (if any) hits the next router call, from a seeded die."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.config import FaultConfig

logger = logging.getLogger(__name__)

#: Faults that replace the answer, in the order they are tried; the first that hits wins.
FAILURE_KINDS: tuple[str, ...] = ("5xx", "garbage", "drop", "remote")


@dataclass(frozen=True)
class FaultDecision:
    #: One of FAILURE_KINDS, or None for a real answer.
    failure: str | None
    #: Hold the response back ``slow_seconds`` (combines with a failure or a real answer).
    slow: bool
    #: A uniform 0..1 number for the fault's variant (which 5xx status, which garbage).
    variant: float

    @property
    def any(self) -> bool:
        return self.slow or self.failure is not None


class FaultInjector:
    """Draws a :class:`FaultDecision` per router call; the same seed gives the same sequence."""

    def __init__(self, config: FaultConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        #: When the first call came: an outage is timed from it, not from the sandbox's start (which
        #: would make it depend on how long the crawl took to start).
        self.first_call: float | None = None
        self._rng = random.Random(config.seed)
        self._rates = {
            "5xx": config.http_5xx,
            "garbage": config.garbage,
            "drop": config.drop,
            "remote": config.remote,
        }

    def draw(self) -> FaultDecision:
        if self.first_call is None:
            self.first_call = self.clock()
        # Always the same number of draws per call, so one rate does not shift another's sequence.
        slow = self._rng.random() < self.config.slow
        hits = [kind for kind in FAILURE_KINDS if self._rng.random() < self._rates[kind]]
        variant = self._rng.random()
        if self.in_outage():
            return FaultDecision(failure="drop", slow=False, variant=variant)
        return FaultDecision(failure=hits[0] if hits else None, slow=slow, variant=variant)

    def in_outage(self) -> bool:
        """Within the configured outage (``--fault-outage AFTER:SECONDS``, timed from the first call): every
        call is dropped."""
        if not self.config.outage_seconds or self.first_call is None:
            return False
        since = self.clock() - self.first_call - self.config.outage_after
        return 0 <= since < self.config.outage_seconds
