"""``Restart=``: systemd.service(5)'s table, cell by cell.

systemd decides whether to restart a service from two things: the unit's
``Restart=`` value and the *result* of the run that just ended.  The manual
page draws the decision as a table whose rows are exit causes and whose
columns are the seven ``Restart=`` values; :data:`RESTART_TABLE` is that table
written out by hand, and :func:`restart_wanted` only looks it up.

========================= == ====== ========== ========== =========== ======== ===========
exit cause                no always on-success on-failure on-abnormal on-abort on-watchdog
========================= == ====== ========== ========== =========== ======== ===========
clean exit code or signal    X      X
unclean exit code            X                 X
unclean signal               X                 X          X           X
timeout                      X                 X          X
watchdog                     X                 X          X                    X
========================= == ====== ========== ========== =========== ======== ===========

"Clean" means exit status 0 (or one listed in ``SuccessExitStatus=``) or one
of the signals SIGHUP, SIGINT, SIGTERM and SIGPIPE; every other status or
signal is unclean.  "Timeout" is a start (or stop) that did not finish within
``TimeoutStartSec=``; "watchdog" is a service that stopped petting its
watchdog within ``WatchdogSec=``.

Two rows come from systemd's source rather than the page: a service that
could not be started at all (``resources``: the spawn failed) restarts like
an abnormal failure (``service_shall_restart`` lists it for ``always``,
``on-failure`` and ``on-abnormal``), and a unit refused by its start limit
(``start-limit-hit``) never restarts.  On top of the table, an exit status or
signal listed in ``RestartPreventExitStatus=`` and any stop the operator
asked for never restart.
"""

from __future__ import annotations

import signal
from enum import StrEnum
from typing import Final


class Restart(StrEnum):
    """The values of ``Restart=``."""

    NO = "no"
    ON_SUCCESS = "on-success"
    ON_FAILURE = "on-failure"
    ON_ABNORMAL = "on-abnormal"
    ON_WATCHDOG = "on-watchdog"
    ON_ABORT = "on-abort"
    ALWAYS = "always"


class Result(StrEnum):
    """How a run ended (systemd's service result names)."""

    SUCCESS = "success"  # clean exit code or clean signal
    EXIT_CODE = "exit-code"  # unclean exit code
    SIGNAL = "signal"  # unclean signal
    TIMEOUT = "timeout"  # start (or stop) timeout
    WATCHDOG = "watchdog"  # watchdog deadline missed
    RESOURCES = "resources"  # could not be started at all
    START_LIMIT_HIT = "start-limit-hit"  # refused by StartLimitBurst/IntervalSec
    DEPENDENCY = "dependency"  # a required unit failed (job result; the unit never ran)


class ExitKind(StrEnum):
    """What the executor reports about a process that ended."""

    EXITED = "exited"  # status is the exit code
    SIGNALED = "signaled"  # status is the signal number


# the table of systemd.service(5), "Table 2. Exit causes and the effect of the Restart= settings"
_X: Final = True
RESTART_TABLE: Final[dict[Result, dict[Restart, bool]]] = {
    Result.SUCCESS: {
        Restart.NO: False, Restart.ALWAYS: _X, Restart.ON_SUCCESS: _X, Restart.ON_FAILURE: False,
        Restart.ON_ABNORMAL: False, Restart.ON_ABORT: False, Restart.ON_WATCHDOG: False,
    },
    Result.EXIT_CODE: {
        Restart.NO: False, Restart.ALWAYS: _X, Restart.ON_SUCCESS: False, Restart.ON_FAILURE: _X,
        Restart.ON_ABNORMAL: False, Restart.ON_ABORT: False, Restart.ON_WATCHDOG: False,
    },
    Result.SIGNAL: {
        Restart.NO: False, Restart.ALWAYS: _X, Restart.ON_SUCCESS: False, Restart.ON_FAILURE: _X,
        Restart.ON_ABNORMAL: _X, Restart.ON_ABORT: _X, Restart.ON_WATCHDOG: False,
    },
    Result.TIMEOUT: {
        Restart.NO: False, Restart.ALWAYS: _X, Restart.ON_SUCCESS: False, Restart.ON_FAILURE: _X,
        Restart.ON_ABNORMAL: _X, Restart.ON_ABORT: False, Restart.ON_WATCHDOG: False,
    },
    Result.WATCHDOG: {
        Restart.NO: False, Restart.ALWAYS: _X, Restart.ON_SUCCESS: False, Restart.ON_FAILURE: _X,
        Restart.ON_ABNORMAL: _X, Restart.ON_ABORT: False, Restart.ON_WATCHDOG: _X,
    },
    # from service_shall_restart() in systemd's src/core/service.c, not the manual's table
    Result.RESOURCES: {
        Restart.NO: False, Restart.ALWAYS: _X, Restart.ON_SUCCESS: False, Restart.ON_FAILURE: _X,
        Restart.ON_ABNORMAL: _X, Restart.ON_ABORT: False, Restart.ON_WATCHDOG: False,
    },
}  # fmt: skip

CLEAN_SIGNALS: Final = frozenset(
    {int(signal.SIGHUP), int(signal.SIGINT), int(signal.SIGTERM), int(signal.SIGPIPE)}
)


def classify(
    kind: ExitKind, status: int, success_exit_status: frozenset[int] = frozenset()
) -> Result:
    """The result of a run that ended on its own (no timeout or watchdog involved)."""
    if kind is ExitKind.EXITED:
        return Result.SUCCESS if status == 0 or status in success_exit_status else Result.EXIT_CODE
    if status in CLEAN_SIGNALS:
        return Result.SUCCESS
    return Result.SIGNAL


def restart_wanted(
    policy: Restart,
    result: Result,
    kind: ExitKind | None = None,
    status: int = 0,
    prevent: frozenset[int] = frozenset(),
    prevent_signals: frozenset[int] = frozenset(),
) -> bool:
    """Whether a run that ended with ``result`` is restarted under ``policy``.

    ``prevent``/``prevent_signals`` are ``RestartPreventExitStatus=``'s exit
    codes and signals; they win over the table.
    """
    if kind is ExitKind.EXITED and status in prevent:
        return False
    if kind is ExitKind.SIGNALED and status in prevent_signals:
        return False
    row = RESTART_TABLE.get(result)
    return bool(row and row[policy])
