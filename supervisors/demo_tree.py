"""The tree ``python -m runtime`` runs until the instrument drivers land (a simulated stage)."""

from __future__ import annotations

from actors.demo import DemoStage, Sweeper

from ._specs import ActorSpec, Strategy, SupervisorSpec


def demo_tree() -> SupervisorSpec:
    """Stage first, sweeper after it: rest_for_one restarts the sweeper if the stage dies."""
    return SupervisorSpec(
        "demo",
        (
            ActorSpec("demo.stage", DemoStage),
            ActorSpec("demo.sweeper", lambda: Sweeper("demo.stage")),
        ),
        strategy=Strategy.REST_FOR_ONE,
    )
