"""One projector per read table; the same code serves the live consumers and the rebuild."""

from projections.base import Outcome, Projector, project

__all__ = ["Outcome", "Projector", "project", "registry"]


def registry() -> dict[str, Projector]:
    """The projectors `orders worker NAME` can run, by name."""
    from projections.catalog import CatalogProjector
    from projections.orders import OrdersProjector
    from projections.users import UsersProjector

    return {p.name: p for p in (UsersProjector(), CatalogProjector(), OrdersProjector())}
