"""The credits routes' requests without HTTP: their bodies, exact amounts, and the wallet
command each becomes. Pure, so every rule is unit tested (tests/unit/api/test_credit_requests.py).

- An amount is a JSON number or a decimal string, read exactly (never through a float): > 0,
  at most 12 decimal places (the scale of every amount we store), at most CREDITS_MAX_AMOUNT;
  NaN, Infinity, booleans and strings such as "1_000" or " 1" are refused.
- A command names ONE wallet (openmonetize.wallet_ids): the user's, the team's, or, with
  neither, the customer's own.
- With an idempotency key the command id derives from (tenant, key): two identical requests
  racing each other produce the same command, which the wallet agent applies once.
- What "the same request" means for an idempotency key is decided on the PARSED request
  (`fingerprint`), so `10` and `"10.0"` are the same amount, and a purchase and a consume
  are never the same request.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec
import orjson

from openmonetize import wallet_ids
from openmonetize.billing.money import CONTEXT, QUANTUM, SCALE, quantize
from schemas import storable
from schemas.wallet_command import wallet_command

KINDS = ("purchase", "grant", "consume")
MAX_KEY_LENGTH = 255
MAX_REASON_LENGTH = 500
MAX_PRIORITY = 2**31 - 1  # Avro int
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_KEY = re.compile(r"[\x20-\x7e]+")  # printable ASCII: what an HTTP header carries safely

Id = storable.ident(128)
Key = storable.ident(MAX_KEY_LENGTH)
Reason = storable.text(MAX_REASON_LENGTH)
Priority = Annotated[int, msgspec.Meta(ge=0, le=MAX_PRIORITY)]


class CreditsIn(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /v1/credits/purchase` and `/grant`: credits added as a new lot."""

    customer_id: Id
    amount: Any  # a JSON number or a decimal string: `parse_amount`
    user_id: Id | None = None
    team_id: Id | None = None
    expires_at: datetime | None = None
    priority: Priority | None = None
    reason: Reason | None = None
    idempotency_key: Key | None = None


class ConsumeIn(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /v1/credits/consume`: a manual debit (never overdraws the wallet)."""

    customer_id: Id
    amount: Any
    user_id: Id | None = None
    team_id: Id | None = None
    reason: Reason | None = None
    idempotency_key: Key | None = None


class RequestError(ValueError):
    """A request the route refuses with 422; `field` names the culprit as the client sent it."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ForeignCustomer(RequestError):
    """The body names another tenant than the API key's (403)."""


@dataclass(frozen=True)
class CreditRequest:
    kind: str
    customer_id: str
    wallet_id: str
    amount: Decimal  # quantized to 12 places
    expires_at: datetime | None = None
    priority: int | None = None
    reason: str | None = None
    idempotency_key: str | None = None

    def command_id(self) -> str:
        """Deterministic from (tenant, key) when there is a key, else fresh."""
        if self.idempotency_key is None:
            return "cmd_" + uuid.uuid4().hex
        return command_id_for(self.customer_id, self.idempotency_key)

    def fingerprint(self) -> bytes:
        """SHA-256 of what the request asks for; the key itself is left out."""
        canonical = {
            "kind": self.kind,
            "wallet_id": self.wallet_id,
            "amount": str(self.amount),
            "expires_at": self.expires_at.astimezone(timezone.utc).isoformat() if self.expires_at else None,
            "priority": self.priority,
            "reason": self.reason,
        }
        return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).digest()

    def command(self, command_id: str, now: datetime) -> dict:
        """The wallet.commands record (schemas/avro/wallet_command.avsc)."""
        return wallet_command(
            command_id, self.customer_id, self.wallet_id, self.kind, self.amount, now, expires_at=self.expires_at,
            priority=self.priority, reason=self.reason,
            metadata={"source": "api", **({"idempotency_key": self.idempotency_key} if self.idempotency_key else {})},
        )


def command_id_for(customer_id: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(f"{customer_id}\x1f{idempotency_key}".encode()).hexdigest()
    return f"cmd_{digest[:32]}"


def parse(
    kind: str,
    body: CreditsIn | ConsumeIn,
    *,
    tenant: str,
    header_key: str | None,
    max_amount: Decimal,
    now: datetime,
) -> CreditRequest:
    """A decoded body → the request, or RequestError / ForeignCustomer."""
    if kind not in KINDS:
        raise ValueError(f"unknown credits request kind {kind!r}")
    if body.customer_id != tenant:
        raise ForeignCustomer("customer_id", "names another tenant than the API key's")
    if body.user_id is not None and body.team_id is not None:
        raise RequestError("team_id", "give user_id or team_id, not both: a command changes one wallet")
    expires_at = getattr(body, "expires_at", None)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise RequestError("expires_at", "must carry a timezone (RFC 3339, e.g. 2026-11-26T12:00:00Z)")
        if expires_at <= now:
            raise RequestError("expires_at", f"must be in the future, got {expires_at.isoformat()}")
    return CreditRequest(
        kind=kind,
        customer_id=tenant,
        wallet_id=wallet_ids.wallet_for(tenant, body.user_id, body.team_id),
        amount=parse_amount(body.amount, max_amount),
        expires_at=expires_at,
        priority=getattr(body, "priority", None),
        reason=body.reason,
        idempotency_key=idempotency_key(header_key, body.idempotency_key),
    )


def parse_amount(value: Any, max_amount: Decimal, field: str = "amount") -> Decimal:
    """A JSON number (int, or Decimal through the decoder's float_hook) or a decimal string →
    the exact amount, quantized to 12 places; RequestError saying why not."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise RequestError(field, f"must be a number or a decimal string, got {_json_type(value)}")
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise RequestError(field, f"must be a decimal number such as \"10\" or \"2.5\", got {value[:40]!r}")
        try:
            value = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            raise RequestError(field, f"not a decimal number: {value[:40]!r}") from None
    amount = Decimal(value)
    if not amount.is_finite():
        raise RequestError(field, f"must be a finite number, got {amount}")
    if amount <= 0:
        raise RequestError(field, f"must be > 0, got {_plain(amount)}")
    if amount > max_amount:
        raise RequestError(field, f"must be at most {_plain(max_amount)} (CREDITS_MAX_AMOUNT), got {_plain(amount)}")
    if amount.as_tuple().exponent < -SCALE and amount != amount.quantize(QUANTUM, context=CONTEXT):
        raise RequestError(field, f"at most {SCALE} decimal places, got {_plain(amount)}")
    return quantize(amount)


def idempotency_key(header: str | None, body: str | None) -> str | None:
    """The request's key: the Idempotency-Key header or the body's idempotency_key (equal if both)."""
    if header is not None:
        if not (1 <= len(header) <= MAX_KEY_LENGTH) or not _KEY.fullmatch(header):
            raise RequestError("Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
        if body is not None and body != header:
            raise RequestError("idempotency_key", "differs from the Idempotency-Key header; send one of them")
        return header
    if body is not None and not _KEY.fullmatch(body):
        raise RequestError("idempotency_key", f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return body


def _plain(value: Decimal) -> str:
    text = f"{value:f}"
    return text if len(text) <= 60 else f"{value:.6e}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
