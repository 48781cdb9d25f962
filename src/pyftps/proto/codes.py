"""FTP reply codes: one member per code of RFC 959 §4.2.2, 2228 §5.1, 4217 §10.2, 2428 and 3659."""

from __future__ import annotations

import enum


class ReplyCode(enum.IntEnum):
    RESTART_MARKER = 110
    READY_IN_MINUTES = 120
    DATA_ALREADY_OPEN = 125
    FILE_STATUS_OK = 150  # about to open the data connection
    OK = 200
    SUPERFLUOUS = 202
    SYSTEM_STATUS = 211
    DIRECTORY_STATUS = 212
    FILE_STATUS = 213
    HELP = 214
    SYSTEM_TYPE = 215
    SERVICE_READY = 220
    CLOSING_CONTROL = 221
    DATA_OPEN_NO_TRANSFER = 225
    CLOSING_DATA = 226  # transfer complete
    ENTERING_PASSIVE = 227
    ENTERING_EXTENDED_PASSIVE = 229  # RFC 2428 §3
    LOGGED_IN = 230
    LOGGED_IN_SECURITY = 232  # RFC 2228: logged in via security exchange (client certificate)
    SECURITY_EXCHANGE_DONE = 234  # RFC 2228: AUTH accepted, no ADAT needed
    FILE_ACTION_OK = 250
    PATH_CREATED = 257
    NEED_PASSWORD = 331
    NEED_ACCOUNT = 332
    PENDING_FURTHER_INFO = 350
    SERVICE_NOT_AVAILABLE = 421
    CANT_OPEN_DATA = 425
    TRANSFER_ABORTED = 426
    SECURITY_RESOURCE_UNAVAILABLE = 431  # RFC 2228
    FILE_UNAVAILABLE_BUSY = 450
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    SYNTAX_ERROR = 500
    SYNTAX_ERROR_ARGS = 501
    NOT_IMPLEMENTED = 502
    BAD_SEQUENCE = 503
    NOT_IMPLEMENTED_PARAM = 504
    PROT_LEVEL_REFUSED = 521  # RFC 4217 §10.2: data connection cannot be opened with this PROT
    TLS_DATA_NEGOTIATION_FAILED = 522  # RFC 4217 §10.2; also "network protocol not supported" (RFC 2428)
    NOT_LOGGED_IN = 530
    NEED_ACCOUNT_TO_STORE = 532
    PROTECTION_LEVEL_DENIED = 533  # RFC 2228: command protection level denied by policy
    REQUEST_DENIED_POLICY = 534  # RFC 2228
    FAILED_SECURITY_CHECK = 535
    PROT_NOT_SUPPORTED = 536  # RFC 2228: data protection level not supported by the mechanism
    FILE_UNAVAILABLE = 550
    PAGE_TYPE_UNKNOWN = 551
    STORAGE_EXCEEDED = 552
    FILE_NAME_NOT_ALLOWED = 553
    INVALID_REST = 554  # RFC 3659 §5.3 (as used by deployed servers for a bad REST offset)
