"""--user, --group: bind as root, then run as an unprivileged user.

The master binds the sockets (port 80, a socket in a root-owned directory),
writes --pid and opens --log-file as root, then, before it forks anything
(workers, the --reload watcher), gives that up for good: supplementary
groups (the user's own, as ``initgroups`` sets them), then the gid, then the
uid. Every worker is forked from the dropped master, so no app code ever
runs as root. The UNIX socket file and the log file are handed to the user
first (as gunicorn does), so ``USR1`` can reopen the log and the workers'
files stay theirs. ``HOME``, ``USER`` and ``LOGNAME`` are set to the user's,
so an app that writes under ``~`` does not try root's home.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd

log = logging.getLogger("corral.error")


class PrivilegeError(Exception):
    """The switch cannot be made; the message is one line."""


def target(user: str | None, group: str | None) -> tuple[int, int, pwd.struct_passwd | None]:
    """(uid, gid, passwd entry or None) for --user/--group; the current ones where not given."""
    entry = None
    if user is None:
        uid = os.getuid()
    elif user.isdigit():
        uid = int(user)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
    else:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise PrivilegeError(f"--user: no such user {user!r}") from None
        uid = entry.pw_uid
    if group is not None:
        if group.isdigit():
            gid = int(group)
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise PrivilegeError(f"--group: no such group {group!r}") from None
    elif entry is not None and user is not None:
        gid = entry.pw_gid
    elif user is not None:
        raise PrivilegeError(f"--user {user} has no passwd entry: give --group too")
    else:
        gid = os.getgid()
    return uid, gid, entry


def drop(user: str | None, group: str | None, own: list[str]) -> str | None:
    """Switch this process to --user/--group for good. ``own``: files to give
    the user first (the UNIX socket, the log file). Returns what was done
    (for the log), or None when nothing had to change."""
    uid, gid, entry = target(user, group)
    if os.getuid() == uid and os.geteuid() == uid and os.getgid() == gid and os.getegid() == gid:
        return None  # already there (a USR2 upgrade's new master starts as the user)
    if os.geteuid() != 0:
        raise PrivilegeError(
            f"--user/--group: switching to uid {uid}, gid {gid} needs root (corral runs as uid {os.geteuid()})"
        )
    for path in own:
        try:
            os.chown(path, uid, gid)
        except OSError as exc:
            log.warning("cannot give %s to uid %d: %s", path, uid, exc.strerror)
    if entry is not None and user is not None:
        os.initgroups(entry.pw_name, gid)
    else:
        os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != gid:  # pragma: no cover - paranoia
        raise PrivilegeError(f"--user/--group: the switch to uid {uid}, gid {gid} did not take")
    if entry is not None and user is not None:
        os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    name = entry.pw_name if entry is not None else str(uid)
    return f"running as user {name} (uid {uid}), gid {gid}"
