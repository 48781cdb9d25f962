"""The server side of one control connection, sans-IO: commands in, actions out (RFC 959, 4217, MS-FTPS).

Theory of operation
-------------------
The I/O layer feeds decrypted control bytes to :meth:`ServerSession.receive_data` and executes the
returned actions in order. Each command is checked against data before any handler runs: the
security gate table (:mod:`pyftps.proto.security`), then the command's
:class:`~pyftps.proto.specs.CommandSpec` (login needed, argument rule, permission). Handlers
(``cmd_*`` modules, by topic) change
:class:`SessionState` and return actions; when they need storage or authentication they return a
:class:`~pyftps.proto.actions.RunOp` and a continuation that :meth:`op_done` calls with the result.

FTP is sequential: while an operation runs, further commands wait in a bounded queue, except ABOR
and STAT during a transfer, which are answered at once (RFC 959 §4.1.3, RFC 1123 §4.1.3.3).
Time is passed in (``now``) and :meth:`next_deadline` tells when :meth:`tick` is due, so the idle
timeout is deterministic in tests.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pyftps.proto import paths
from pyftps.proto.actions import (
    Action,
    Close,
    CommandStarted,
    DropDataChannel,
    EndLogin,
    LoginAccepted,
    Op,
    OpResult,
    RunOp,
    SendRaw,
    SendReply,
    StartTLS,
    StopTLS,
    TLSInfo,
    Transfer,
    TransferOutcome,
)
from pyftps.proto.codes import ReplyCode
from pyftps.proto.commands import BadLine, Command, CommandReader, LineEvent, TelnetRefusal
from pyftps.proto.errors import LocalProtocolError, RemoteProtocolError
from pyftps.proto.grammar import TransferType
from pyftps.proto.listing import DEFAULT_FACTS
from pyftps.proto.memo import IdentityMemo
from pyftps.proto.permissions import AccessRules, Permission
from pyftps.proto.policy import SessionPolicy, UserTLSPolicy
from pyftps.proto.replies import Reply
from pyftps.proto.security import COMMAND_STATES, GATES, SECURITY_VERBS, TLSState, Trigger, transition

Continuation = Callable[[OpResult], list[Action]]
_CHANNEL_SWITCHES = (StartTLS, StopTLS)  # actions after which _pump stops (built once, not per command)


class LoginState(enum.Enum):
    NONE = "none"
    NEED_PASS = "need-pass"
    LOGGED_IN = "logged-in"


NO_ACCESS = AccessRules()  # frozen, so every session without a login shares it (built ~5x a session)


def _rules_of(accepted: LoginAccepted) -> AccessRules:
    return accepted.access


# The I/O layer hands every login of a cached user the same frozen LoginAccepted, whose rules are
# then sorted and indexed once, not at each login.
_access_of = IdentityMemo(_rules_of)


@dataclass
class SessionState:
    """Everything REIN resets (RFC 959 §4.1.1); AUTH resets most of it too (RFC 4217 §4.2)."""

    tls: TLSState
    pbsz_ok: bool = False
    prot: str = "C"
    login: LoginState = LoginState.NONE
    pending_user: str | None = None
    user: str | None = None
    access: AccessRules = NO_ACCESS  # what the user may do where; nothing yet
    cwd: str = "/"
    type: TransferType = TransferType.ASCII
    rest_offset: int = 0
    rename_from: str | None = None
    epsv_all: bool = False
    passive_ready: bool = False
    active: tuple[str, int] | None = None
    facts: frozenset[str] = DEFAULT_FACTS  # immutable: one shared default, no factory call
    host: str | None = None
    utf8: bool = True

    @property
    def logged_in(self) -> bool:
        return self.login is LoginState.LOGGED_IN

    @property
    def permissions(self) -> Permission:
        """Everything granted somewhere; a handler checks ``access.allows(flag, path)`` at its target."""
        return self.access.anywhere


class ServerSession:
    """One control connection's protocol state. Create, call :meth:`start`, then feed events."""

    def __init__(
        self,
        policy: SessionPolicy,
        *,
        implicit: bool,
        peer_host: str,
        local_host: str,
        ipv6: bool = False,
        now: float = 0.0,
    ) -> None:
        self.policy = policy  # the listener's, then the logged-in user's (apply_user_policy)
        self._policy_before_login: SessionPolicy | None = None
        self.implicit = implicit
        self.peer_host = peer_host
        self.local_host = local_host
        self.ipv6 = ipv6
        self.state = SessionState(TLSState.IMPLICIT_WAIT if implicit else TLSState.PLAIN)
        self.tls_info: TLSInfo | None = None
        self.login_failures = 0  # per connection, survives REIN (RFC 2577 §5)
        self.closed = False
        self.transfer: Transfer | None = None
        self.abort_requested = False
        self._reader = CommandReader(policy.max_line)
        self._queue: deque[LineEvent] = deque()
        self._continuation: Continuation | None = None
        self._last_activity = self.now = now
        self._tls_p_pending = False  # AUTH TLS-P: protect data once the handshake is done

    # ------------------------------------------------------------------ events in

    def start(self, now: float) -> list[Action]:
        """Actions for a just-accepted connection: the greeting, or (implicit) a TLS handshake first."""
        self._last_activity = self.now = now
        if self.implicit:
            return [StartTLS()]  # MS-FTPS §3.2.5.1: not a byte before the handshake
        return self.reply(ReplyCode.SERVICE_READY, self.policy.banner)

    def receive_data(self, data: bytes, now: float) -> list[Action]:
        """Decrypted control-connection bytes from the client."""
        if self.closed:
            return []
        self.now = now  # activity is counted per complete command: partial lines keep nothing alive
        self._reader.feed(data)
        return self._pump()

    def tls_established(self, info: TLSInfo, now: float) -> list[Action]:
        """The handshake requested by :class:`StartTLS` completed."""
        self._last_activity = self.now = now
        self.tls_info = info
        self.state.tls = transition(self.state.tls, Trigger.HANDSHAKE_DONE)
        if self.state.tls is TLSState.IMPLICIT:
            # MS-FTPS §3.2.5.1: implicit AUTH TLS, PBSZ 0 and PROT P, with no replies; then the greeting.
            self.state.pbsz_ok, self.state.prot = True, "P"
            return self.reply(ReplyCode.SERVICE_READY, self.policy.banner) + self._pump()
        # RFC 4217 §4.2 / RFC 2228 §3: a new security exchange discards login and transfer parameters.
        actions = self._reset_after_auth()
        if self._tls_p_pending:
            self.state.pbsz_ok, self.state.prot = True, "P"
            self._tls_p_pending = False
        return actions + self._pump()

    def op_done(self, result: OpResult, now: float) -> list[Action]:
        """The result of the operation last requested with :class:`RunOp`."""
        if self._continuation is None:
            raise LocalProtocolError("op_done without a pending operation")
        self._last_activity = self.now = now
        continuation, self._continuation = self._continuation, None
        return continuation(result) + self._pump()

    def data_connected(self, now: float) -> list[Action]:
        """The data connection of the running transfer exists: send the 150 (RFC 959 §5.4)."""
        if self.transfer is None:
            raise LocalProtocolError("data_connected without a transfer")
        from pyftps.proto.cmd_transfer import preliminary_reply

        return [SendReply(preliminary_reply(self, self.transfer))]

    def transfer_done(self, outcome: TransferOutcome, now: float) -> list[Action]:
        """The running transfer ended (success, failure or abort)."""
        if self.transfer is None:
            raise LocalProtocolError("transfer_done without a transfer")
        from pyftps.proto.cmd_transfer import final_replies

        self._last_activity = self.now = now
        transfer, self.transfer = self.transfer, None
        aborted, self.abort_requested = self.abort_requested, False
        return final_replies(self, transfer, outcome, aborted) + self._pump()

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (idle timeout), or None while work is running."""
        # Called after every batch of actions: ``busy`` and ``accepts_commands`` inlined.
        if self.closed or self._continuation is not None or self.transfer is not None:
            return None
        if self.state.tls not in COMMAND_STATES:
            return None
        return self._last_activity + self.policy.idle_timeout

    def tick(self, now: float) -> list[Action]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        return self.close_with(ReplyCode.SERVICE_NOT_AVAILABLE, "Idle timeout: closing control connection.")

    # ------------------------------------------------------------------ helpers for handlers

    @property
    def busy(self) -> bool:
        return self._continuation is not None or self.transfer is not None

    def reply(self, code: int, *lines: str) -> list[Action]:
        return [SendReply(Reply(int(code), lines or ("",)))]  # Reply.of, one call less per reply

    def run(self, op: Op, then: Continuation) -> list[Action]:
        """Ask the I/O layer to run ``op``; ``then`` receives its result."""
        if self.busy:
            raise LocalProtocolError("an operation is already pending")
        self._continuation = then
        return [RunOp(op)]

    def run_transfer(self, transfer: Transfer) -> list[Action]:
        """Start a transfer; the I/O layer reports :meth:`data_connected` then :meth:`transfer_done`."""
        if self.busy:
            raise LocalProtocolError("an operation is already pending")
        self.transfer = transfer
        return [RunOp(transfer)]

    def resolve(self, arg: str | None) -> str:
        return paths.resolve(self.state.cwd, arg)

    def close_with(self, code: int, text: str) -> list[Action]:
        self.closed = True
        return [*self.reply(code, text), Close()]

    def reset_login(self) -> list[Action]:
        was_logged_in = self.state.logged_in
        self.state.login, self.state.user, self.state.pending_user = LoginState.NONE, None, None
        self.state.access = NO_ACCESS
        if self._policy_before_login is not None:  # the user's TLS overrides end with their login
            self.policy, self._policy_before_login = self._policy_before_login, None
        return [EndLogin()] if was_logged_in else []

    def apply_user_policy(self, user: UserTLSPolicy | None) -> None:
        """A user logged in: their TLS overrides apply until the login ends (REIN, AUTH, USER, HOST)."""
        if user is None and self._policy_before_login is None:
            return  # nothing to override, nothing overridden (every login starts with reset_login)
        if self._policy_before_login is None:
            self._policy_before_login = self.policy
        self.policy = self._policy_before_login.with_user(user)

    def commit_login(self, accepted: LoginAccepted) -> None:
        """USER/PASS or a client certificate was accepted: the session is this user's from here."""
        state = self.state
        state.login, state.pending_user = LoginState.LOGGED_IN, None
        state.user, state.access, state.cwd = accepted.name, _access_of(accepted), "/"
        self.apply_user_policy(accepted.tls)

    def start_tls(self) -> list[Action]:
        """After a 234: hand the bytes behind the AUTH line to the handshake (4217 §10.1)."""
        self.state.tls = transition(self.state.tls, Trigger.AUTH_ACCEPTED)
        if self._queue:  # plaintext commands pipelined after AUTH cannot be a ClientHello
            self._queue.clear()
            self.closed = True
            return [Close()]
        return [StartTLS(self._reader.take_unparsed())]

    def request_tls_p(self) -> None:
        self._tls_p_pending = True

    def reinitialize(self) -> list[Action]:
        """REIN: back to the just-connected state of this listener (959 §4.1.1; MS-FTPS §3.2.5.3)."""
        before = self.state.tls
        actions: list[Action] = [*self.reset_login(), DropDataChannel()]
        self.state = SessionState(transition(before, Trigger.REIN))
        actions += self.reply(ReplyCode.SERVICE_READY, "Service ready for new user.")
        self._queue.clear()  # commands pipelined behind REIN belonged to the old state
        if before.protected:
            self._reader.take_unparsed()  # nothing may follow REIN inside the closing TLS session
            actions.append(StopTLS())
        if self.state.tls is TLSState.IMPLICIT_WAIT:
            actions.append(StartTLS())
        return actions

    def clear_control(self) -> list[Action]:
        """CCC accepted: 200 under TLS, then TLS shutdown; PBSZ/PROT frozen (4217 §5)."""
        self.state.tls = transition(self.state.tls, Trigger.CCC_ACCEPTED)
        self._reader.take_unparsed()
        self._queue.clear()
        return [*self.reply(ReplyCode.OK, "Control connection cleared; continuing in plaintext."), StopTLS()]

    # ------------------------------------------------------------------ dispatch

    def _reset_after_auth(self) -> list[Action]:
        actions: list[Action] = [*self.reset_login(), DropDataChannel()]
        tls, host = self.state.tls, self.state.host
        self.state = SessionState(tls)
        self.state.host = host  # HOST before AUTH selects the certificate (RFC 7151 §4)
        return actions

    def _pump(self) -> list[Action]:
        actions: list[Action] = []
        while not self.closed and self.state.tls in COMMAND_STATES:
            if self._continuation is not None or self.transfer is not None:  # busy
                if self.transfer is not None and (urgent := self._take_queued_urgent()) is not None:
                    actions += self._dispatch(urgent)
                    continue
                event = self._reader.next_event()
                if event is None:
                    break
                if (
                    self.transfer is not None
                    and isinstance(event, Command)
                    and event.verb in ("ABOR", "STAT")
                ):
                    actions += self._dispatch(event)
                elif len(self._queue) >= self.policy.max_queued_commands:
                    actions += self.close_with(
                        ReplyCode.SERVICE_NOT_AVAILABLE, "Too many pipelined commands."
                    )
                else:
                    self._queue.append(event)
                continue
            event = self._queue.popleft() if self._queue else self._reader.next_event()
            if event is None:
                break
            self._last_activity = self.now
            if isinstance(event, Command):  # _dispatch(), inlined for the usual case
                if self.policy.trace_commands:
                    actions.append(CommandStarted(event.verb, event.arg))
                actions += self._dispatch_command(event)
            else:
                actions += self._refuse_line(event)
            if actions and isinstance(actions[-1], _CHANNEL_SWITCHES):
                break  # the channel changes under our feet: the I/O layer resumes us afterwards
        return actions

    def _take_queued_urgent(self) -> Command | None:
        """ABOR or STAT that queued up behind the command that started the transfer (959 §4.1.3)."""
        for event in self._queue:
            if isinstance(event, Command) and event.verb in ("ABOR", "STAT"):
                self._queue.remove(event)
                return event
        return None

    def _refuse_line(self, event: BadLine | TelnetRefusal) -> list[Action]:
        """A line that is no command: the reader's refusal (Telnet) or error reply."""
        if isinstance(event, TelnetRefusal):
            return [SendRaw(event.data)]
        self.state.rename_from = None
        return self.reply(event.code, event.text)

    def _dispatch(self, command: Command) -> list[Action]:
        actions = self._dispatch_command(command)
        if self.policy.trace_commands:
            return [CommandStarted(command.verb, command.arg), *actions]
        return actions

    def _dispatch_command(self, command: Command) -> list[Action]:
        from pyftps.proto.specs import COMMANDS, ArgRule

        if command.verb != "RNTO":
            # RNTO must immediately follow RNFR (RFC 959 §4.1.3), even a refused command breaks the pair.
            self.state.rename_from = None
        spec = COMMANDS.get(command.verb)
        if spec is None:
            return self.reply(ReplyCode.SYNTAX_ERROR, f"Command {command.verb[:8]} not understood.")
        if command.verb in SECURITY_VERBS:  # security.gate(), inlined: every other verb is allowed
            verdict = GATES[(command.verb, self.state.tls)]
            if verdict.code is not None:
                return self.reply(verdict.code, verdict.text)
        if spec.login and not self.state.logged_in:
            return self.reply(ReplyCode.NOT_LOGGED_IN, "Please log in with USER and PASS first.")
        has_arg = bool(command.arg and command.arg.strip())
        if spec.arg is ArgRule.REQUIRED and not has_arg:
            return self.reply(ReplyCode.SYNTAX_ERROR_ARGS, f"{command.verb} needs an argument.")
        if spec.arg is ArgRule.NONE and has_arg:
            return self.reply(ReplyCode.SYNTAX_ERROR_ARGS, f"{command.verb} takes no argument.")
        if spec.perm is not None and spec.perm not in self.state.access.anywhere:
            # Granted nowhere: refuse early. Handlers check the flag again at the resolved path.
            return self.reply(ReplyCode.FILE_UNAVAILABLE, "Permission denied.")
        try:
            return spec.handler(self, command)
        except RemoteProtocolError as error:
            return self.reply(error.code, error.text)
