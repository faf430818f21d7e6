"""The simulated venue's one-port Starlette app: the route lists of the protocol modules over one
`Venue` (in `app.state.venue`), started and stopped by the app's lifespan.

Where is what: `binance.py` (Binance streams), `market_channel.py` and `user_channel.py`
(Polymarket CLOB sockets), `price_feed.py` (RTDS), `gamma.py` (Gamma REST), `clob_rest.py` (CLOB
REST and its auth), `matching.py` (order checks, fills, trades), `control.py` (`/sim/*`),
`venue.py` (the state they share). Endpoints are listed in services/simvenue/README.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from services.simvenue import (
    binance,
    clob_rest,
    control,
    gamma,
    market_channel,
    price_feed,
    relayer,
    rpc,
    user_channel,
)
from services.simvenue.venue import FAULTS, SimOptions, Venue

__all__ = ["FAULTS", "SimOptions", "Venue", "build_app", "routes"]

# The Polymarket sockets come before Binance's catch-all `/ws/{stream}`.
routes = [
    *control.routes,
    *market_channel.routes,
    *user_channel.routes,
    *binance.routes,
    *price_feed.routes,
    *gamma.routes,
    *clob_rest.routes,
    *rpc.routes,
    *relayer.routes,
]


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Start the venue's market pump and scheduled faults; stop them and close every socket."""
    venue: Venue = app.state.venue
    await venue.start()
    try:
        yield
    finally:
        await venue.stop()


def build_app(venue: Venue) -> Starlette:
    """The venue's Starlette app serving `venue` (see the README for the endpoints)."""
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.venue = venue
    return app
