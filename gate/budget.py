"""The run budget: ``gate run --max-cost USD`` and the suite's ``max_cost_usd``.

Checked twice. Before anything is sent, the dry run's estimate (:mod:`gate.plan`: requests
not in the response cache, prompt ~ characters / 4 tokens, completions at their ``max_tokens``
ceiling, at the declared prices) must fit, else the run is bad input (exit 2) and nothing is
sent. During the run every request *reserves* its estimate before it goes out; a request whose
reservation would take the money spent plus what is in flight past the budget is not sent, the
run stops sending anything (:meth:`Budget.reserve` returns False) and ends in ``error`` (exit 3).
An answer replaces its reservation by its real cost (the tokens the server reported; its
estimate when the server reported none). When answers cost more than their estimates (a
tokenizer that makes more than one token of 4 characters), later reservations are scaled up by
that ratio, so the spending mostly stays within the budget; when the last answers still cost more than
reserved and the total passes the budget, the run is an ``error`` saying so. Cached answers cost nothing; a failed
attempt is assumed free (providers do not bill requests they did not answer).

A budget cannot bound what it cannot price: a model that is sent requests and declares no
``pricing`` (other than a local model, which costs nothing) makes a budgeted run bad input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gate.errors import BadInput

#: the suite's top-level key
SUITE_KEY = "max_cost_usd"


def budget_limit(suite: Any, max_cost: float | None) -> tuple[float | None, str]:
    """The budget in force and where it comes from: the smaller of ``--max-cost`` and the suite's
    ``max_cost_usd`` (a suite from a pull request can lower the workflow's budget, never raise it)."""
    declared = suite.document.data.get(SUITE_KEY) if getattr(suite, "document", None) is not None else None
    given = [(float(v), source) for v, source in ((max_cost, "--max-cost"), (declared, SUITE_KEY)) if v is not None]
    if not given:
        return None, ""
    for value, source in given:
        if not math.isfinite(value) or value < 0:
            raise BadInput(f"{source}: expected a number of US dollars >= 0, got {value!r}", location=source)
    return min(given)


def check_estimate(estimate: float | None, limit: float, source: str, unpriced: list[str]) -> None:
    """Bad input (exit 2) when the dry-run estimate does not fit the budget, or cannot be made."""
    if estimate is None:
        raise BadInput(f"the run budget (${limit:,.4f}, {source}) cannot be enforced: "
                       f"{', '.join(unpriced) or 'a model'} declares no 'pricing', so what its requests cost is "
                       "unknown; declare its pricing {input_per_mtok, output_per_mtok} in the suite. Nothing was "
                       "sent", location=source)
    if estimate > limit:
        raise BadInput(f"the estimated cost ${estimate:,.4f} exceeds the run budget ${limit:,.4f} ({source}); "
                       "nothing was sent. `gate run --dry-run` shows the estimate per model (a --cache with "
                       "earlier answers lowers it)", location=source)


@dataclass
class Budget:
    """Money a run may spend (US dollars), what it has spent and what its requests in flight reserve."""

    limit: float
    source: str = "--max-cost"
    estimate: float | None = None
    spent: float = 0.0
    reserved: float = 0.0
    #: why the run stopped sending (None while within the budget)
    stopped: str | None = None
    #: estimates and real costs of the answers so far (their ratio scales later reservations up)
    settled_estimate: float = 0.0
    settled_actual: float = 0.0

    def scaled(self, estimate: float) -> float:
        """What to reserve for a request estimated at ``estimate``: scaled by how much answers so far cost
        more than their estimates (never down)."""
        if not math.isfinite(estimate):
            return 0.0
        ratio = self.settled_actual / self.settled_estimate if self.settled_estimate > 0 else 1.0
        return estimate * max(1.0, ratio)

    def reserve(self, amount: float, what: str = "the next request") -> bool:
        """Reserve ``amount`` for ``what`` (a request about to be sent); False, and ``stopped`` set, when it
        would take the run past the budget."""
        if self.stopped is not None:
            return False
        amount = amount if math.isfinite(amount) else 0.0
        if self.spent + self.reserved + amount > self.limit + 1e-12:
            self.stopped = (f"the run budget of ${self.limit:,.4f} ({self.source}) would be passed: "
                            f"${self.spent:,.4f} spent, ${self.reserved:,.4f} in flight, {what} is "
                            f"estimated at ${amount:,.4f}; gate stopped sending requests")
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: float, actual: float | None, estimate: float | None = None) -> None:
        """A request answered: its reservation becomes its real cost (the reservation when unknown);
        ``estimate`` (unscaled) and the real cost update the ratio later reservations are scaled by."""
        reserved = reserved if math.isfinite(reserved) else 0.0
        self.reserved = max(0.0, self.reserved - reserved)
        known = actual is not None and math.isfinite(actual)
        self.spent += actual if known else reserved  # type: ignore[operator]
        if known and estimate is not None and math.isfinite(estimate) and estimate > 0:
            self.settled_estimate += estimate
            self.settled_actual += actual  # type: ignore[operator]

    def release(self, reserved: float) -> None:
        """A request failed or was abandoned: nothing was billed."""
        self.reserved = max(0.0, self.reserved - (reserved if math.isfinite(reserved) else 0.0))

    def charge(self, amount: float, what: str) -> bool:
        """Spend ``amount`` at once (an endpoint's embeddings, estimated); False when it would pass."""
        if not self.reserve(amount, what):
            return False
        self.settle(amount, amount)
        return True

    def to_json(self) -> dict[str, Any]:
        return {"max_cost_usd": self.limit, "source": self.source, "estimated_usd": self.estimate,
                "spent_usd": self.spent, "stopped": self.stopped is not None}
