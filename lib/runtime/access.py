"""Who may talk to a service: the peer's credentials (SO_PEERCRED) against the configuration.

Admitted: root, the service's own user, the users in ``allowed_users`` (names or numeric
uids), and members of the groups in ``allowed_groups`` (the peer's primary group, its
supplementary groups from /proc, or the group's member list). Socket file permissions (0660,
group ``trading``) are the first fence; this check is the second, and it is what answers a
stranger with a clear error instead of a bare ``EACCES``.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable

from trading.config import Config


def _uid_of(name: str) -> int | None:
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _group(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrgid(int(name)) if name.isdigit() else grp.getgrnam(name)
    except KeyError:
        return None


def _peer_groups(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def authorizer(cfg: Config, *, own_uid: int | None = None) -> Callable[[int, int, int], str | None]:
    """A function ``(pid, uid, gid) -> None`` (admit) or a reason to refuse."""
    me = os.getuid() if own_uid is None else own_uid
    users = {u for u in (_uid_of(n) for n in cfg["allowed_users"]) if u is not None}
    groups = [g for g in (_group(n) for n in cfg["allowed_groups"]) if g is not None]
    group_ids = {g.gr_gid for g in groups}
    members = {m for g in groups for m in g.gr_mem}

    def check(pid: int, uid: int, gid: int) -> str | None:
        if uid in (0, me) or uid in users or gid in group_ids:
            return None
        if group_ids & _peer_groups(pid):
            return None
        if _user_name(uid) in members:
            return None
        who = _user_name(uid) or f"uid {uid}"
        allowed = ", ".join(cfg["allowed_groups"]) or "none"
        return (f"access denied: {who} is not allowed to use this service "
                f"(allowed groups: {allowed}; see allowed_users/allowed_groups)")

    return check
