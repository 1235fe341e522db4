"""The promotion gate: may a newly trained version replace @champion? A decision and its reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prescore.config import LOWER_IS_BETTER
from prescore.training.evaluation import is_better

if TYPE_CHECKING:
    from prescore.config import PromotionSettings


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    gate: PromotionSettings,
    champion_version: str | None = None,
) -> Decision:
    """Promote when the challenger meets `gate.minimum` and beats the champion by `gate.margin`.

    Both metric sets come from the same test split. `champion` None: there is no champion yet.
    """
    metric = gate.metric
    if metric not in challenger:
        raise ValueError(
            f"promotion.metric {metric!r} is not a metric of this task ({', '.join(challenger)})"
        )
    value = challenger[metric]
    if gate.minimum is not None and not is_better(metric, value, gate.minimum):
        bound = "at most" if metric in LOWER_IS_BETTER else "at least"
        return Decision(
            False,
            f"{metric} {value:.4f} does not meet the minimum: must be {bound} {gate.minimum:g}",
        )
    if champion is None:
        return Decision(True, f"no champion yet; {metric} {value:.4f} meets the minimum")
    incumbent = champion[metric]
    versus = f"{metric} {value:.4f} vs champion v{champion_version} {incumbent:.4f}"
    if is_better(metric, value, incumbent, margin=gate.margin):
        return Decision(True, f"{versus} on the same test split: better by >= {gate.margin:g}")
    return Decision(False, f"{versus} on the same test split: not better by {gate.margin:g}")


def feature_change(trained: list[str], features: list[str]) -> str:
    """How a champion's input columns differ from the use case's now, or "" when they do not."""
    if trained == features:
        return ""
    gone, added = sorted(set(trained) - set(features)), sorted(set(features) - set(trained))
    if not gone and not added:
        return "its features in another order"
    return f"features {gone} no longer used, {added} new"


def gate(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    unscorable: str,
    settings: PromotionSettings,
    champion_version: str | None,
    other_features: str = "",
) -> Decision:
    """The promotion gate: kept out when the champion could not be scored on this test split
    (`unscorable` says why), else `decide`.

    `other_features` (from `feature_change`) says the champion was trained on other features:
    the use case changed, the champion can no longer score its clean table, and no comparison on
    one test split is possible. The new version then replaces it if it meets the minimum.
    """
    if other_features:
        first = decide(challenger, None, gate=settings)
        changed = f"champion v{champion_version} was trained on other features ({other_features})"
        if not first.promote:
            return Decision(False, f"{changed}, but the new version fails the gate: {first.reason}")
        value = challenger[settings.metric]
        return Decision(
            True,
            f"{changed}: not comparable, and it cannot score the use case as it is now; "
            f"{settings.metric} {value:.4f} meets the minimum, the new version replaces it",
        )
    if unscorable:
        return Decision(False, unscorable)
    return decide(challenger, champion, gate=settings, champion_version=champion_version)
