"""The Python SDK of the OpenMonetize API, sync and async.

    from decimal import Decimal
    from openmonetize.sdk import OpenMonetize

    with OpenMonetize("om_...", customer_id="cus_...", base_url="http://127.0.0.1:18080") as om:
        om.credits.purchase(Decimal("100"), user_id="u-42", wait=True)
        decision = om.entitlements.check("u-42", credits=Decimal("7.5"))
        if decision.allowed:
            om.events.track("u-42", "TOKEN_USAGE", "chat", provider="openai", model="gpt-4o",
                            input_tokens=1200, output_tokens=300)

`AsyncOpenMonetize` has the same resources and methods, awaited. Results are typed
(openmonetize.sdk.models, Decimal money), errors are typed exceptions carrying the API's
`code`, `message` and `field` (openmonetize.sdk.errors), and retries are described in
openmonetize.sdk.retries.
"""

from openmonetize.sdk.client import AsyncOpenMonetize, OpenMonetize
from openmonetize.sdk.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    EventRejected,
    InternalServerError,
    NotFoundError,
    OpenMonetizeError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from openmonetize.sdk.models import (
    BurnTable,
    CreditCommand,
    CreditLot,
    Credits,
    EntitlementDecision,
    Rating,
    Rejection,
    Release,
    TrackResult,
)
from openmonetize.sdk.retries import RetryPolicy

__all__ = [
    "APIConnectionError", "APIError", "AsyncOpenMonetize", "AuthenticationError", "BadRequestError", "BurnTable",
    "ConflictError", "CreditCommand", "CreditLot", "Credits", "EntitlementDecision", "EventRejected",
    "InternalServerError", "NotFoundError", "OpenMonetize", "OpenMonetizeError", "PayloadTooLargeError",
    "PermissionDeniedError", "RateLimitError", "Rating", "Rejection", "Release", "RetryPolicy",
    "ServiceUnavailableError", "TrackResult", "UnprocessableEntityError",
]
