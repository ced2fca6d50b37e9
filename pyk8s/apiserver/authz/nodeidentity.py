"""Which node a user is (upstream's pkg/auth/nodeidentifier): a user named
`system:node:<name>` in the group `system:nodes`."""
from __future__ import annotations

from pyk8s.apiserver.authn import UserInfo

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"


def node_identity(user: UserInfo | None) -> tuple[str, bool]:
    """(node name, is a node). A node user whose name is empty after the prefix is a node
    that cannot be identified: ("", True)."""
    if user is None or not user.username.startswith(NODE_USER_PREFIX):
        return "", False
    if NODES_GROUP not in user.groups:
        return "", False
    return user.username[len(NODE_USER_PREFIX):], True
