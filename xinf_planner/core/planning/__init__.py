"""Planning: from an inventory and a request to the plan document (``make_plan``). The steps
are one module each: candidates, layouts, sizing, estimates, scoring, explain, deployment;
``search`` runs them."""

__all__ = ["make_plan"]


def make_plan(inventory, request, *, local_models=None, source=None) -> dict:
    """The plan document for ``request`` on ``inventory``; NothingFits when nothing does
    (``search.make_plan``)."""
    from xinf_planner.core.planning.search import make_plan as _make_plan

    return _make_plan(inventory, request, local_models=local_models, source=source)
