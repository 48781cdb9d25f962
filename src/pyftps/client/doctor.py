"""``pyftps doctor URL``: probe any FTPS server and say why a client "cannot connect" (RFC 2228 §3;
RFC 2428; RFC 4217 §4-§13; RFC 8996; MS-FTPS §3.2.5). Each check runs on its own connection and may send
what a careful client never would (TLS 1.0, AUTH SSL, PBSZ on implicit FTPS, data without resumption); it
parses with the shared core (ReplyParser, proto.grammar) over the client's Stream. No password is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import json
import os
import ssl
import sys
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from cryptography import x509
from rich.console import Console
from rich.text import Text

from pyftps.client.credentials import PASSWORD_ENV, CommandFailure, login_for
from pyftps.client.data import _address, pasv_host
from pyftps.client.errors import FTPError
from pyftps.client.transport import Stream
from pyftps.client.url import parse_url
from pyftps.proto.client_session import format_command
from pyftps.proto.errors import RemoteProtocolError
from pyftps.proto.grammar import parse_epsv_reply, parse_feat_reply, parse_pasv_reply
from pyftps.proto.replies import Reply, ReplyParser
from pyftps.tls.certs import certificate_fingerprint
from pyftps.tls.channel import TLSChannel
from pyftps.tls.contexts import TLSError, client_context

__all__ = ["Finding", "Report", "Status", "add_doctor_command", "classify_pasv", "diagnose", "run_doctor"]

T = TypeVar("T")
Mode = Literal["explicit", "implicit"]
Fact = str | int | bool | None | list[str]
Context = ssl.SSLContext | None
Probes = AsyncIterator["_Probe"]
_ERRORS = (FTPError, TLSError, OSError, TimeoutError, RemoteProtocolError)
_TLS = {f"1.{n}": ssl.TLSVersion[f"TLSv1_{n}" if n else "TLSv1"] for n in (3, 2, 1, 0)}
_LOCAL = ("no ciphers available", "no protocols available", "unsupported protocol")  # our OpenSSL's refusals
_MASQUERADE = "set a masquerade address (vsftpd pasv_address, ProFTPD MasqueradeAddress, pyftps ...)"
_FIREWALL = "open the passive port range in the firewall (vsftpd pasv_min_port, ProFTPD PassivePorts...)"
_REUSE = "clients without session resumption, e.g. Python ftplib, will fail; curl, lftp, FileZilla resume"
_IMPLICIT_PROT = "MS-FTPS §3.2.5.1 implies PROT P: clients that trust it and send none fail (pyftps)"


class Status(enum.Enum):
    OK = "ok"
    INFO = "info"  # a fact, neither good nor bad
    WARN = "warn"  # works, but some clients fail or it is unsafe
    FAIL = "fail"  # clients fail
    SKIP = "skip"  # not tested: no credentials, or the local OpenSSL cannot offer it


OK, INFO, WARN, FAIL, SKIP = Status.OK, Status.INFO, Status.WARN, Status.FAIL, Status.SKIP


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    status: Status
    summary: str
    advice: str = ""  # one line an operator can act on; "" when there is nothing to do
    facts: dict[str, Fact] = field(default_factory=dict)  # machine-readable outcome (--json, tests)
    details: tuple[str, ...] = ()  # raw lines, shown with --verbose


@dataclass
class Report:
    host: str
    ports: dict[str, int | None]
    findings: dict[str, Finding] = field(default_factory=dict)  # by check name, in the order made
    reachable: bool = False  # some port greeted like an FTP server
    secret: str | None = field(default=None, repr=False)

    def add(self, check: str, status: Status, summary: str, advice: str = "", **facts: Fact) -> None:
        hide = self.secret if self.secret and len(self.secret) > 2 else "\0"
        summary, advice = summary.replace(hide, "****"), advice.replace(hide, "****")
        self.findings[check] = Finding(check, status, summary, advice, facts)

    def count(self, status: Status) -> int:
        return sum(f.status is status for f in self.findings.values())

    @property
    def exit_code(self) -> int:
        """0: no FAIL; 1: some FAIL; 3: no port answered like an FTP server."""
        return 3 if not self.reachable else 1 if self.count(FAIL) else 0

    def to_dict(self) -> dict[str, object]:
        findings = [{**dataclasses.asdict(f), "status": f.status.value} for f in self.findings.values()]
        head = {"host": self.host, "ports": self.ports, "reachable": self.reachable}
        return head | {"exit_code": self.exit_code, "findings": findings}


class _Failed(Exception):  # a probe step failed; str() is "step: why"
    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"{step}: {why}")
        self.step, self.why = step, why


async def _io(step: str, work: Awaitable[T]) -> T:
    try:
        return await work
    except _ERRORS as error:
        why = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else None
        why = "timed out" if isinstance(error, TimeoutError) else why or str(error) or type(error).__name__
        raise _Failed(step, why.splitlines()[0]) from None


class _Probe:
    """One control connection: commands out through the core's formatter, replies in through ReplyParser."""

    def __init__(self, doctor: _Doctor, stream: Stream) -> None:
        self.doctor, self.stream, self.parser, self.queue = doctor, stream, ReplyParser(), deque[Reply]()
        self.ctx: ssl.SSLContext | None = None
        self.tls: TLSChannel | None = None
        self.greeting, self.epsv = "", True

    async def _next(self) -> Reply:
        while not self.queue:
            data = await self.stream.recv()
            if not data:
                raise ConnectionError("the server closed the connection")
            self.queue.extend(self.parser.feed(data))
        return self.queue.popleft()

    async def reply(self, step: str, want: int = 0, *, final: bool = True) -> Reply:
        """The next (final, unless not ``final``) reply; a first digit other than ``want`` is a failure."""
        reply = await _io(step, self._next())
        while final and reply.is_preliminary:  # 120 before 220, 150 before 226 (RFC 959 §4.2)
            reply = await _io(step, self._next())
        if want and reply.kind != want:
            raise _Failed(step, f"{reply.code} {reply.text}")
        return reply

    async def cmd(self, verb: str, arg: str | None = None, want: int = 0, final: bool = True) -> Reply:
        step = f"{verb} {arg}" if arg and verb != "PASS" else verb
        await _io(step, self.stream.send(format_command(verb, arg)))
        return await self.reply(step, want, final=final)

    async def start_tls(self, ctx: ssl.SSLContext, step: str = "TLS handshake") -> None:
        self.ctx, self.tls = ctx, await _io(step, self.stream.start_tls(ctx, self.doctor.host))

    async def login(self) -> None:
        user, password = self.doctor.user, self.doctor.password
        assert user is not None and password is not None
        reply = await self.cmd("USER", user)
        reply = await self.cmd("PASS", password) if reply.code == 331 else reply
        if reply.kind != 2:
            raise _Failed("login", f"{reply.code} {reply.text}")

    def tls_text(self) -> str:
        cipher = self.tls.cipher if self.tls else None
        return f"{self.tls.version} {cipher[0]}" if self.tls and cipher else "no TLS"


def _insecure(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """No verification (cert.trust judges it on its own); ``version`` alone, TLS 1.0/1.1 at @SECLEVEL=0."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 and 1.1, on purpose
            ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers("ALL:@SECLEVEL=0" if version < ssl.TLSVersion.TLSv1_2 else "DEFAULT")
    return ctx


def classify_pasv(announced: str, peer: str, reachable: bool) -> tuple[Status, str, str]:
    """Judge a 227 address against the control connection's peer: ``(status, summary, advice)``."""
    said, real, where = _address(announced), _address(peer), f"PASV announces {announced}"
    if said is None or said.is_unspecified:
        return FAIL, f"{where}, which no client can connect to", _MASQUERADE
    if said != real and not said.is_global and real is not None and real.is_global:
        summary = f"{where}, a private address, while the server is at public {peer}: NAT misconfiguration"
        return FAIL, summary, f"{_MASQUERADE}; curl and pyftps ignore it, ftplib and many GUI clients do not"
    where += ", the address you connected to" if said == real else f", not {peer} (the address you used)"
    if not reachable:
        return FAIL, f"{where}; NOT reachable", _FIREWALL if said == real else _MASQUERADE
    return (OK, f"{where}; reachable", "") if said == real else (WARN, where, "can every client reach it?")


async def _reachable(host: str, port: int, timeout: float) -> bool:
    if (address := _address(host)) is not None and address.is_unspecified:
        return False
    with contextlib.suppress(*_ERRORS):
        (await Stream.connect(host, port, timeout=min(timeout, 5.0))).abort()
        return True
    return False


def _judge_version(name: str, accepted: bool | None, text: str, modern: bool) -> tuple[Status, str, str]:
    said = f"TLS {name} {'accepted' if accepted else 'refused'} ({text})"
    if accepted is None:
        return SKIP, f"TLS {name}: {text}", ""
    if name in ("1.0", "1.1"):
        return (WARN, said, "deprecated by RFC 8996: disable TLS 1.0 and 1.1") if accepted else (OK, said, "")
    if accepted or name == "1.3":  # no TLS 1.3 is fine today
        return (OK if accepted else INFO), said, ""
    if modern:
        return WARN, said, "clients limited to TLS 1.2 (older Java, Windows, devices) cannot connect"
    return FAIL, said, "no TLS 1.2 or 1.3: current clients (RFC 8996) cannot connect"


def _names(host: str, cert: x509.Certificate) -> tuple[bool, list[str]]:
    """(``host`` matches, SAN names): an IP needs an IP SAN, a DNS name an exact or leftmost-``*`` match."""
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, ips = san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.IPAddress)
        names, address, name = [*dns, *map(str, ips)], _address(host), host.lower().rstrip(".")
        if address is not None:
            return any(_address(str(ip)) == address for ip in ips), names
        patterns = [n.lower().rstrip(".") for n in dns]
        return any(n == name or (n[:2] == "*." and name.partition(".")[2] == n[2:]) for n in patterns), names
    return False, []


@dataclass(frozen=True, slots=True)
class _Transfer:
    ok: bool
    why: str
    reused: bool | None = None
    size: int = 0


@dataclass
class _Doctor:  # the checks: each opens connections of its own and adds findings to the report
    report: Report
    host: str
    ports: dict[str, int | None]
    user: str | None
    password: str | None = field(repr=False)
    cafile: str | os.PathLike[str] | None
    insecure: bool
    timeout: float

    def judge(self, check: str, good: bool, text: str, fix: str, bad: Status = FAIL, **facts: Fact) -> None:
        self.report.add(check, OK if good else bad, text, "" if good else fix, **facts)

    @contextlib.asynccontextmanager
    async def connect(self, mode: str, ctx: Context, auth: str = "TLS", login: bool = False) -> Probes:
        """Connected, greeted, under TLS when ``ctx`` is given (always for implicit), logged in if asked."""
        port = self.ports[mode]
        assert port is not None
        p = _Probe(self, await _io("connect", Stream.connect(self.host, port, timeout=self.timeout)))
        try:
            if mode == "implicit":
                await p.start_tls(ctx or _insecure())
            greeting = await p.reply("greeting", 2)
            p.greeting = f"{greeting.code} {greeting.text}"
            if mode == "explicit" and ctx is not None:
                await p.cmd("AUTH", auth, 2)
                await p.start_tls(ctx)
            if login:
                await p.login()
            yield p
        finally:
            with contextlib.suppress(_Failed, TimeoutError):
                async with asyncio.timeout(2):
                    await p.cmd("QUIT")
            await p.stream.aclose()

    async def run(self, primary: Mode) -> None:
        modes: list[Mode] = [primary, "implicit" if primary == "explicit" else "explicit"]
        usable = {m: self.ports[m] is not None and await self.check_port(m, primary) for m in modes}
        self.report.reachable = any(usable.values())
        if usable["explicit"]:
            usable["explicit"] = await self.check_auth("TLS")
            await self.check_auth("SSL")
        mode = next((m for m in modes if usable[m]), None)
        if mode is None:
            return
        cert, features = await self.check_session(mode)
        await self.check_versions(mode)
        if cert is not None:
            await self.check_certificate(mode, cert)
        if features is not None and usable["explicit"]:  # logged in
            await self.check_clearing("explicit", "CCC", "CCC" in features)
        if features is not None:
            await self.check_clearing(mode, "REIN", None)

    async def check_port(self, mode: Mode, primary: Mode) -> bool:
        check, port = f"{mode}.port", self.ports[mode]
        try:
            async with self.connect(mode, None) as p:
                how = f"TLS ({p.tls_text()}), then " if mode == "implicit" else ""
                self.report.add(check, OK, f"port {port} answers: {how}{p.greeting}", port=port)
                return True
        except _Failed as failed:
            absent = failed.step == "connect" and mode != primary  # e.g. no implicit FTPS: fine
            advice = "is the server running, listening there, not behind a firewall?"
            advice = f"no {mode} FTPS there: fine unless clients use it" if absent else advice
            if "wrong version number" in failed.why or failed.why == "timed out":
                advice = f"is port {port} really {mode} FTPS? (ftps:// is implicit, ftpes:// explicit)"
            self.report.add(check, INFO if absent else FAIL, f"port {port}: {failed}", advice, port=port)
            return False

    async def check_auth(self, mechanism: str) -> bool:
        check, step = f"auth.{mechanism.lower()}", f"AUTH {mechanism}"
        try:
            async with self.connect("explicit", _insecure(), auth=mechanism) as p:
                self.report.add(check, OK, f"{step} → 234, then {p.tls_text()}")
                return True
        except _Failed as failed:
            refused, legacy = failed.step == step, mechanism == "SSL"
            advice = "enable TLS (vsftpd ssl_enable, ProFTPD TLSEngine)" if refused else "check cert and key"
            status = INFO if refused and legacy else FAIL  # only legacy clients send AUTH SSL
            self.report.add(check, status, str(failed), "only legacy clients need it" if legacy else advice)
            return False

    async def check_session(self, mode: Mode) -> tuple[bytes | None, dict[str, str] | None]:
        """FEAT, login, PBSZ/PROT, PASV, EPSV and the data channel; (certificate, FEAT once logged in)."""
        add = self.report.add
        try:
            async with self.connect(mode, _insecure()) as p:
                assert p.tls is not None
                cert, features = p.tls.peer_certificate_der, await self.guard("feat", self.check_feat(p))
                if self.user is None or self.password is None:
                    add("login", SKIP, "no credentials", "give --user (or a user in the URL)")
                    return cert, None
                try:
                    await p.login()
                except _Failed as failed:
                    add("login", FAIL, f"as {self.user}: {failed.why}", "check the user name and password")
                    return cert, None
                add("login", OK, f"logged in as {self.user} ({mode} FTPS)")
                await self.guard("pbsz_prot", self.check_prot(p, mode))
                for verb in ("PASV", "EPSV"):
                    await self.guard(verb.lower(), self.check_passive(p, verb))
                await self.guard("data.transfer", self.check_data(p))
                return cert, features or {}
        except _Failed as failed:
            add("session", FAIL, f"{mode} session: {failed}")
        return None, None

    async def guard(self, check: str, work: Awaitable[T]) -> T | None:
        try:
            return await work
        except _Failed as failed:
            self.report.add(check, FAIL, str(failed))
        return None

    async def check_feat(self, p: _Probe) -> dict[str, str]:
        reply = await p.cmd("FEAT")
        features = parse_feat_reply(reply.lines) if reply.kind == 2 and len(reply.lines) > 1 else {}
        listed = ", ".join(f"{k} {v}".strip() for k, v in features.items()) or f"{reply.code} {reply.text}"
        advice = "clients cannot discover EPSV, MLSD, UTF8... (RFC 2389)"
        self.judge("feat", bool(features), f"FEAT: {listed}", advice, WARN, features=list(features))
        self.report.findings["feat"] = dataclasses.replace(self.report.findings["feat"], details=reply.lines)
        return features

    async def check_prot(self, p: _Probe, mode: Mode) -> None:
        if mode == "explicit":
            pbsz, prot = await p.cmd("PBSZ", "0"), await p.cmd("PROT", "P")
            summary = f"PBSZ 0 → {pbsz.code} {pbsz.text}; PROT P → {prot.code} {prot.text}"
            self.judge("pbsz_prot", prot.kind == 2, summary, "clients that need protected data fail")
            return
        first = await self.transfer(p, resume=True)  # MS-FTPS §3.2.5.1: PBSZ 0 and PROT P are implied
        if first.ok:
            self.report.add("pbsz_prot", OK, "implicit: PROT P assumed without PBSZ/PROT", needs_prot=False)
            return
        pbsz, prot = await p.cmd("PBSZ", "0"), await p.cmd("PROT", "P")
        sent, fixed = f"PBSZ 0 → {pbsz.code}, PROT P → {prot.code}", (await self.transfer(p, resume=True)).ok
        summary = f"implicit: protected data refused ({first.why}) until {sent}"
        self.judge("pbsz_prot", False, summary, _IMPLICIT_PROT, WARN if fixed else INFO, needs_prot=fixed)

    async def transfer(self, p: _Probe, *, resume: bool) -> _Transfer:
        """One LIST over a protected passive data connection, offering the control session or not."""
        try:
            host, port = await self.passive(p)
            data = await _io("data connection", Stream.connect(host, port, timeout=self.timeout))
        except _Failed as failed:
            return _Transfer(False, str(failed))
        try:
            if not (first := await p.cmd("LIST", final=False)).is_preliminary:
                return _Transfer(first.is_success, f"{first.code} {first.text}")
            error, reused, size = "", None, 0
            try:
                assert p.ctx is not None
                session = p.tls.session if resume and p.tls is not None else None
                reused = (await data.start_tls(p.ctx, self.host, session)).session_reused
                while chunk := await data.recv():
                    size += len(chunk)
                await data.aclose()
            except _ERRORS as exc:
                error = f" (data connection: {exc})"
            final = await p.reply("LIST")
            ok = final.is_success and not error
            return _Transfer(ok, f"{final.code} {final.text}{error}", reused, size)
        finally:
            data.abort()

    async def passive(self, p: _Probe) -> tuple[str, int]:
        """EPSV first; PASV as a fallback, its private address replaced the way curl does (RFC 2428 §3)."""
        peer = p.stream.peer[0]
        try:
            if p.epsv and (reply := await p.cmd("EPSV")).code == 229:
                return peer, parse_epsv_reply(reply.text)
            p.epsv = False
            host, port = parse_pasv_reply((await p.cmd("PASV", None, 2)).text)
        except RemoteProtocolError as error:
            raise _Failed("passive mode", error.text) from None
        return pasv_host(host, peer), port

    async def check_passive(self, p: _Probe, verb: str) -> None:
        """PASV: is the announced address right and reachable (NAT)? EPSV: supported, its port reachable?"""
        check, reply, peer = verb.lower(), await p.cmd(verb), p.stream.peer[0]
        if reply.code not in (227, 229):
            p.epsv = p.epsv and verb != "EPSV"
            advice = "IPv6 clients cannot transfer" if verb == "EPSV" else "old IPv4 clients cannot transfer"
            self.report.add(check, WARN, f"{verb} not supported: {reply.code} {reply.text}", advice)
            return
        try:
            epsv = verb == "EPSV"
            host, port = (peer, parse_epsv_reply(reply.text)) if epsv else parse_pasv_reply(reply.text)
        except RemoteProtocolError as error:
            raise _Failed(verb, f"{error.text}: {reply.text}") from None
        reachable = await _reachable(host, port, self.timeout)
        status, summary, advice = classify_pasv(host, peer, reachable)
        if verb == "EPSV":  # RFC 2428 §3: the address is the control connection's; only the port can fail
            summary = f"EPSV → port {port}, {'reachable' if reachable else 'NOT reachable'}"
        self.report.add(check, status, f"{summary} (port {port})", advice, address=host, reachable=reachable)

    async def check_data(self, p: _Probe) -> None:
        resumed = await self.transfer(p, resume=True)
        summary = f"LIST over a protected data connection: {resumed.why}, {resumed.size} bytes"
        advice = "check the passive ports, the firewall and the server's data TLS settings"
        self.judge("data.transfer", resumed.ok, summary, advice, reused=resumed.reused)
        if not resumed.ok:
            self.report.add("data.reuse", SKIP, "could not test: data connections fail", required=None)
            return
        fresh = await self.transfer(p, resume=False)
        summary = "works without TLS session reuse" if fresh.ok else f"REQUIRES session reuse: {fresh.why}"
        self.judge("data.reuse", fresh.ok, summary, _REUSE, WARN, required=not fresh.ok)

    async def check_versions(self, mode: Mode) -> None:
        results: dict[str, tuple[bool | None, str]] = {}
        for name, version in _TLS.items():
            try:
                async with self.connect(mode, _insecure(version)) as p:
                    results[name] = (True, p.tls_text())
            except (_Failed, ssl.SSLError) as failed:  # SSLError: this OpenSSL cannot even set it up
                tested = isinstance(failed, _Failed) and failed.step == "TLS handshake"
                untested = not tested or any(text in str(failed) for text in _LOCAL)
                results[name] = (None, f"could not test: {failed}") if untested else (False, str(failed))
        modern = bool(results["1.2"][0] or results["1.3"][0])
        for name, (accepted, text) in results.items():
            status, summary, advice = _judge_version(name, accepted, text, modern)
            self.report.add(f"tls.{name}", status, summary, advice, accepted=accepted)

    async def check_certificate(self, mode: Mode, der: bytes) -> None:
        add, bad = self.report.add, WARN if self.insecure else FAIL  # --insecure: untrusted is accepted
        cert, fingerprint = x509.load_der_x509_certificate(der), certificate_fingerprint(der)
        (matches, names), subject = _names(self.host, cert), cert.subject.rfc4514_string()
        issuer = cert.issuer.rfc4514_string()
        add("cert", INFO, f"subject {subject}; issuer {issuer}; names {', '.join(names)}", names=names)
        add("cert.fingerprint", INFO, f"SHA-256 {fingerprint}", fingerprint=fingerprint)
        start, end, now = cert.not_valid_before_utc, cert.not_valid_after_utc, dt.datetime.now(dt.UTC)
        left, valid = (end - now).days, start <= now <= end
        state = f"{left} days left" if valid else "EXPIRED" if now > end else "NOT YET VALID"
        status = FAIL if not valid else WARN if left < 30 else OK
        summary = f"valid {start:%Y-%m-%d} to {end:%Y-%m-%d} ({state})"
        add("cert.validity", status, summary, "" if status is OK else "renew it", days_left=left)
        own, advice = cert.subject == cert.issuer, "clients must trust it (--cafile) or pin its fingerprint"
        self.judge("cert.self_signed", not own, "self-signed" if own else "CA-issued", advice, WARN)
        source = self.cafile or "the system CAs"
        try:
            ctx = client_context(cafile=self.cafile)
            ctx.check_hostname = False  # the name is judged on its own (cert.hostname)
            async with self.connect(mode, ctx):
                add("cert.trust", OK, f"the chain verifies against {source}", trusted=True)
        except (_Failed, TLSError) as failed:
            advice = "clients that verify refuse it: use a public CA's certificate and chain, or --cafile"
            add("cert.trust", bad, f"not trusted by {source}: {failed}", advice, trusted=False)
        summary = f"{self.host} {'matches' if matches else 'is not among'} the certificate's names"
        self.judge("cert.hostname", matches, summary, "add this name to the subjectAltName", bad)

    async def check_clearing(self, mode: Mode, verb: str, offered: bool | None) -> None:
        """CCC (RFC 4217 §5) or REIN (§13; MS-FTPS §3.2.5.3) after login, on a connection of its own."""
        check, ctx = verb.lower(), _insecure()
        said = "" if offered is None else f" ({'offered' if offered else 'not offered'} in FEAT)"
        try:
            async with self.connect(mode, ctx, login=True) as p:
                if verb == "CCC":  # data stay protected after CCC (RFC 4217 §5)
                    await p.cmd("PBSZ", "0", 2)
                    await p.cmd("PROT", "P", 2)
                if (reply := await p.cmd(verb)).kind != 2:
                    summary = f"{verb}{said} refused after login: {reply.code} {reply.text}"
                    advice = "FEAT lists CCC, yet it is refused" if offered else "rarely needed"
                    status = WARN if offered else INFO
                    self.report.add(check, status, summary, advice, accepted=False, offered=offered)
                    return
                await _io(f"TLS shutdown after {verb}", p.stream.stop_tls())
                how = "control continues in clear"
                if verb == "REIN":  # implicit: a new handshake on the same socket, then a new greeting
                    await (p.start_tls(ctx) if mode == "implicit" else p.cmd("AUTH", "TLS", 2))
                    await (p.reply("greeting after REIN", 2) if mode == "implicit" else p.start_tls(ctx))
                    await p.login()
                    how = "TLS negotiated again, logged in again"
                await p.cmd("NOOP", None, 2)
                summary = f"{verb}{said} → {reply.code} after login: {how}"
                self.report.add(check, OK, summary, accepted=True, offered=offered)
        except _Failed as failed:
            advice = "after 200/220 both sides exchange close_notify (RFC 4217 §5, §13; MS-FTPS §3.2.5.3)"
            self.report.add(check, WARN, f"{verb}{said}: {failed}", advice, accepted=None, offered=offered)


def diagnose(
    host: str,
    port: int | None = 21,
    *,
    implicit_port: int | None = 990,
    primary: Mode = "explicit",
    user: str | None = None,
    password: str | None = None,
    cafile: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    timeout: float = 10.0,
) -> Report:
    """Probe ``host``'s explicit ``port`` and ``implicit_port`` (None: skipped; only the ``primary`` one
    must answer); with ``user`` and ``password`` also PBSZ/PROT, PASV/EPSV, data reuse, CCC and REIN."""
    ports: dict[str, int | None] = {"explicit": port, "implicit": implicit_port}
    report = Report(host, dict(ports), secret=password)
    doctor = _Doctor(report, host, ports, user, password, cafile, insecure, timeout)
    asyncio.run(doctor.run(primary))
    return report


def add_doctor_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="probe an FTPS server and explain why clients cannot connect")
    p.add_argument("url", help="ftpes://[USER@]HOST[:PORT] (explicit) or ftps://... (implicit, port 990)")
    p.add_argument("--user", help=f"log in as USER (password: the URL, ${PASSWORD_ENV}, ~/.netrc, a prompt)")
    p.add_argument("--cafile", help="PEM file of the CAs to trust instead of the system CAs")
    p.add_argument("--insecure", action="store_true", help="an untrusted certificate is a WARN, not a FAIL")
    p.add_argument("--implicit-port", type=int, help="implicit FTPS port to probe (default 990; 0: skip)")
    p.add_argument("--explicit-port", type=int, help="explicit FTPS port to probe (default 21; 0: skip)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per network step (default 10)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="show raw lines (FEAT...)")


def run_doctor(args: argparse.Namespace) -> int | None:
    """Run ``pyftps doctor`` for parsed ``args``; None if the command is another one."""
    if getattr(args, "command", None) != "doctor":
        return None
    try:
        url = parse_url(args.url, allow_plain=True)  # ftp:// is probed like ftpes://
        user, password = login_for(url, args.user, None) if args.user or url.user else (None, None)
    except (ValueError, CommandFailure) as error:
        print(f"pyftps doctor: {error}", file=sys.stderr)
        return 2
    primary: Mode = "implicit" if url.mode == "implicit" else "explicit"
    ports = {"explicit": 21, "implicit": 990, primary: url.port}
    given = {"explicit": args.explicit_port, "implicit": args.implicit_port}
    explicit, implicit = (ports[k] if given[k] is None else given[k] for k in ("explicit", "implicit"))
    options: dict[str, Any] = {"user": user, "password": password, "cafile": args.cafile}
    options |= {"insecure": args.insecure, "timeout": args.timeout}
    report = diagnose(url.host, explicit or None, implicit_port=implicit or None, primary=primary, **options)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, verbose=args.verbose)
    return report.exit_code


def render_text(report: Report, *, verbose: bool = False) -> str:
    """The plain report: one line per finding, the advice under anything that is not OK."""
    ports = ", ".join(f"{mode} port {port}" for mode, port in report.ports.items() if port)
    lines = [f"pyftps doctor: {report.host} ({ports})"]
    for f in report.findings.values():
        lines.append(f"[{f.status.name:^4}] {f.check:<16} {f.summary}")
        lines += [f"{'':24}-> {f.advice}"] if f.advice and f.status is not OK else []
        lines += [f"{'':24}| {line}" for line in f.details] if verbose else []
    counts = ", ".join(f"{report.count(s)} {s.name}" for s in Status)
    lines.append(f"{counts}{'' if report.reachable else ', nothing reachable'}: exit {report.exit_code}")
    return "\n".join(lines)


def print_report(report: Report, *, verbose: bool = False) -> None:
    """The text report; on a terminal through rich, with the status labels in colour."""
    text = render_text(report, verbose=verbose)
    if not sys.stdout.isatty():
        print(text)
        return
    rich_text = Text(text)  # Text, not markup: server replies may hold [brackets]
    for status, style in ((OK, "green"), (INFO, "cyan"), (WARN, "yellow"), (FAIL, "bold red"), (SKIP, "dim")):
        rich_text.highlight_regex(rf"(?m)^\[{status.name:^4}\]", style)
    Console(highlight=False, soft_wrap=True).print(rich_text)
