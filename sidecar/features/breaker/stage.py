"""Which deployments serve a request, in which order: a callout stage.

Deployments are ordered by `priority` (lower first); equal priorities share traffic by `weight`
(a weighted random order, so the first choice follows the weights and the rest are fallbacks).
Deployments whose breaker is open are left out; when none is left, the request is denied with
503 `circuit_breaker_open` and `Retry-After` set to the shortest remaining cool-down.
The breakers themselves (state machine, permits, `breaker_open`) are the forwarding path's:
sidecar/forward/breaker.py.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from aiohttp import web

from sidecar.appkeys import BREAKERS
from sidecar.callout.pipeline import Check
from sidecar.core.routes import Deployment
from sidecar.extensions import Extensions
from sidecar.forward.breaker import Breaker, BreakerBoard, breaker_open


def install(app: web.Application, extensions: Extensions, *, rng: random.Random | None = None) -> BreakerBoard:
    """Installs the breaker stage and puts the BreakerBoard on the app (BREAKERS)."""
    board = BreakerBoard()
    app[BREAKERS] = board
    extensions.stages["breaker"] = DeploymentRouter(board, rng or random.Random()).stage
    return board


class DeploymentRouter:
    """The callout stage that orders a model's deployments and keeps the ones whose breaker admits traffic."""

    def __init__(self, board: BreakerBoard, rng: random.Random) -> None:
        self._board = board
        self._rng = rng

    async def stage(self, check: Check) -> None:
        """Sets `check.deployments` in trial order; raises BreakerOpen (503) when none is usable."""
        assert check.route is not None
        board = self._board
        breakers: list[Breaker] = []
        usable: list[str] = []
        states: dict[str, str] = {}
        deployments = check.route.deployments
        # One deployment has one order: no list, no random draw.
        for d in deployments if len(deployments) == 1 else order_deployments(deployments, self._rng):
            breakers.append(breaker := board.get(d.name, d.breaker))
            states[d.name] = str(breaker.state)  # the value (a StrEnum), without enum's descriptor
            if breaker.available():
                usable.append(d.name)
        check.trace["breaker"] = states  # what `explain` shows
        if not usable:
            raise breaker_open(check.route.key, breakers)
        check.deployments = tuple(usable)


def order_deployments(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """Deployments by priority, weighted-random within a priority (Efraimidis–Spirakis)."""
    if len(deployments) == 1:
        return list(deployments)
    # Weighted random order within a priority (Efraimidis–Spirakis): key = u ** (1 / weight).
    keyed = [(d.priority, -(rng.random() ** (1.0 / d.weight)), index, d) for index, d in enumerate(deployments)]
    return [d for *_, d in sorted(keyed, key=lambda k: k[:3])]

