"""The schema registry over HTTP: the subset of Confluent's Schema Registry REST API that stock
clients (confluent-kafka's SchemaRegistryClient, AvroSerializer, AvroDeserializer) call.

Served at the root path, as Confluent's are (`/subjects/...`, `/schemas/ids/...`, `/config`,
`/compatibility/...`), so a client's `url` is simply the API's base URL. Bodies are accepted as
`application/vnd.schemaregistry.v1+json`, `application/vnd.schemaregistry+json` and
`application/json`; answers are `application/vnd.schemaregistry.v1+json`, errors Confluent's
`{"error_code": 40401, "message": "..."}`. Query parameters clients send and we do not use
(`format`, `subject` on `/schemas/ids/{id}`) are accepted and ignored.

Also served for the stock 2.x client: modes (`GET`/`PUT /mode`, `GET`/`PUT`/`DELETE
/mode/{subject}`: READWRITE, READONLY, READONLY_OVERRIDE; IMPORT is refused), schemas by guid
(`/schemas/guids/{guid}`) and `GET /subjects/{subject}/metadata` (this registry stores no schema
metadata: only an empty selection finds the latest version). Not supported: schema types other
than AVRO and schema references (42201), IMPORT mode, contexts, rule sets, deleting a single
version.

Auth: reads are open, writes need the operator credential. Producers' clients read (look up a
schema, fetch one by id, test compatibility: `POST /subjects/{s}` and `POST /compatibility/...`
change nothing) without our API keys. Everything that changes the registry (registering a
version, `PUT /config`, `PUT`/`DELETE /config/{subject}`, `PUT /mode`, `PUT`/`DELETE
/mode/{subject}`, deleting a subject) needs
SCHEMA_REGISTRY_OPERATOR_KEY, sent as Confluent clients send credentials: HTTP basic auth as the
user `operator` (`basic.auth.user.info: operator:KEY`), or `Authorization: Bearer KEY`. Refused
with 401, Confluent's `{"error_code": 40101, ...}` and `WWW-Authenticate: Basic
realm="schema-registry"`, when the credential is absent or wrong (compared in constant time), and
for every write when no key is configured. One exception keeps stock serializers working with
their default `auto.register.schemas`: registering, without a credential, a schema the subject
already holds answers its id, as the lookup would; it writes nothing. Our own services register
their schemas through the Postgres store (schemas/registry.py), not over HTTP.

The app provides the store as `app.state.schema_registry`, on the app's Postgres pool.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

import orjson
import psycopg
from fastapi import APIRouter, Body, Depends, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBearer

from openmonetize.logs import get_logger
from openmonetize.settings import SCHEMA_REGISTRY_OPERATOR_USER
from schemas.registry import RegistryError, SchemaRegistry, guid_of

log = get_logger(__name__)

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryResponse(JSONResponse):
    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(http_status: int, error_code: int, message: str) -> RegistryResponse:
    return RegistryResponse({"error_code": error_code, "message": message}, status_code=http_status)


class OperatorRequired(Exception):
    """A write without the operator credential (absent, wrong, or none configured)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _Documented(HTTPBasic):
    """Declares the credential in the OpenAPI spec; `operator_refusal` reads and checks it."""

    async def __call__(self, request: Request) -> None:
        return None


class _DocumentedBearer(HTTPBearer):
    async def __call__(self, request: Request) -> None:
        return None


_BASIC = _Documented(scheme_name="registryOperatorBasic", realm="schema-registry", auto_error=False,
                     description=f"Schema registry writes: user `{SCHEMA_REGISTRY_OPERATOR_USER}`, "
                                 "password SCHEMA_REGISTRY_OPERATOR_KEY")
_BEARER = _DocumentedBearer(scheme_name="registryOperatorBearer", auto_error=False,
                            description="Schema registry writes: SCHEMA_REGISTRY_OPERATOR_KEY as a bearer token")


def operator_refusal(request: Request, _basic: None = Security(_BASIC), _bearer: None = Security(_BEARER)) -> str | None:
    """None when the request carries the operator credential, else why it is refused."""
    key = request.app.state.settings.schema_registry_operator_key
    if not key:
        return "Registry writes are disabled: SCHEMA_REGISTRY_OPERATOR_KEY is not set"
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic" and value:
        try:
            presented = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return "Unauthorized: the basic credential is not base64"
        expected = f"{SCHEMA_REGISTRY_OPERATOR_USER}:{key}".encode()
    elif scheme.lower() == "bearer" and value:
        presented, expected = value.encode(), key.encode()
    else:
        return (f"Unauthorized: registry writes need the operator credential (basic auth as "
                f"'{SCHEMA_REGISTRY_OPERATOR_USER}', or a bearer token)")
    if not hmac.compare_digest(presented, expected):
        return "Unauthorized: wrong operator credential"
    return None


def require_operator(refusal: str | None = Depends(operator_refusal)) -> None:
    if refusal is not None:
        raise OperatorRequired(refusal)


class _ConfluentErrors(APIRoute):
    """Answers every failure of a registry route with Confluent's error body."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RegistryError as exc:
                return _error(exc.http_status, exc.error_code, exc.message)
            except OperatorRequired as exc:
                refused = _error(401, 40101, exc.message)
                refused.headers["WWW-Authenticate"] = 'Basic realm="schema-registry"'
                return refused
            except RequestValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                return _error(422, 422, f"Unprocessable request: {problems}")
            except psycopg.Error as exc:
                log.error("schema registry store error", error=str(exc).strip())
                return _error(500, 50001, "Error in the backend data store")

        return handle


router = APIRouter(
    tags=["schema registry"],
    route_class=_ConfluentErrors,
    default_response_class=RegistryResponse,
)


def _registry(request: Request) -> SchemaRegistry:
    return request.app.state.schema_registry


def _page(items: list, offset: int, limit: int) -> list:
    return items[offset:] if limit < 0 else items[offset : offset + limit]


# --- subjects and versions ---------------------------------------------------------------


@router.get("/subjects", summary="Subjects")
def list_subjects(
    request: Request,
    deleted: bool = False,
    deleted_only: bool = False,
    subjectPrefix: str = "",  # noqa: N803 - Confluent's parameter name
    offset: int = 0,
    limit: int = -1,
) -> list[str]:
    return _page(_registry(request).subjects(deleted, deleted_only, subjectPrefix), offset, limit)


@router.get("/subjects/{subject}/versions", summary="Versions of a subject")
def list_versions(
    request: Request, subject: str, deleted: bool = False, deleted_only: bool = False, offset: int = 0, limit: int = -1
) -> list[int]:
    return _page(_registry(request).versions(subject, deleted, deleted_only), offset, limit)


@router.post("/subjects/{subject}/versions", summary="Register a schema under a subject")
def register(
    request: Request,
    subject: str,
    body: dict[str, Any] = Body(...),
    normalize: bool = False,
    refusal: str | None = Depends(operator_refusal),
) -> dict:
    registry = _registry(request)
    if refusal is not None:
        if request.headers.get("authorization"):
            raise OperatorRequired(refusal)  # a credential, but not the right one
        try:  # a schema the subject already holds: its id, as the lookup answers; nothing written
            return {"id": registry.lookup(subject, body.get("schema"), body.get("schemaType"), normalize, False)[0]}
        except RegistryError:
            raise OperatorRequired(refusal) from None
    return {"id": registry.register(subject, body.get("schema"), body.get("schemaType"), normalize, body.get("references"))}


@router.post("/subjects/{subject}", summary="Look up a schema under a subject")
def lookup(
    request: Request, subject: str, body: dict[str, Any] = Body(...), normalize: bool = False, deleted: bool = False
) -> dict:
    registry = _registry(request)
    schema_id, version = registry.lookup(subject, body.get("schema"), body.get("schemaType"), normalize, deleted)
    text = registry.schema_by_id(schema_id)
    return {"subject": subject, "id": schema_id, "guid": guid_of(text), "version": version, "schema": text}


@router.get("/subjects/{subject}/versions/{version}", summary="A version of a subject (number or latest)")
def get_version(request: Request, subject: str, version: str, deleted: bool = False) -> dict:
    return _version_answer(subject, *_registry(request).version(subject, version, deleted))


@router.get("/subjects/{subject}/metadata", summary="The latest version whose metadata has these entries")
def get_latest_with_metadata(
    request: Request, subject: str, key: list[str] = Query([]), value: list[str] = Query([]), deleted: bool = False
) -> dict:
    if len(key) != len(value):
        raise RegistryError(422, 422, f"Unprocessable request: {len(key)} key(s) but {len(value)} value(s)")
    return _version_answer(subject, *_registry(request).latest_with_metadata(subject, dict(zip(key, value)), deleted))


def _version_answer(subject: str, schema_id: int, version: int, text: str) -> dict:
    return {"subject": subject, "id": schema_id, "guid": guid_of(text), "version": version, "schema": text}


@router.get("/subjects/{subject}/versions/{version}/schema", summary="The schema of a version, unwrapped")
def get_version_schema(request: Request, subject: str, version: str, deleted: bool = False) -> Response:
    return Response(_registry(request).version(subject, version, deleted)[2], media_type=MEDIA_TYPE)


@router.delete("/subjects/{subject}", summary="Delete a subject (soft; then permanent=true)", dependencies=[Depends(require_operator)])
def delete_subject(request: Request, subject: str, permanent: bool = False) -> list[int]:
    return _registry(request).delete_subject(subject, permanent)


# --- schemas by id -----------------------------------------------------------------------


@router.get("/schemas/types", summary="Supported schema types")
def schema_types() -> list[str]:
    return ["AVRO"]


@router.get("/schemas/ids/{schema_id}", summary="A schema by its global id")
def get_schema(request: Request, schema_id: int) -> dict:
    text = _registry(request).schema_by_id(schema_id)
    return {"schema": text, "guid": guid_of(text)}


@router.get("/schemas/guids/{guid}", summary="A schema by its guid")
def get_schema_by_guid(request: Request, guid: str) -> dict:
    schema_id, text = _registry(request).schema_by_guid(guid)
    return {"schema": text, "id": schema_id, "guid": guid_of(text)}


@router.get("/schemas/ids/{schema_id}/schema", summary="A schema by its global id, unwrapped")
def get_schema_raw(request: Request, schema_id: int) -> Response:
    return Response(_registry(request).schema_by_id(schema_id), media_type=MEDIA_TYPE)


@router.get("/schemas/ids/{schema_id}/versions", summary="Subject versions that hold a schema")
def get_schema_versions(request: Request, schema_id: int, deleted: bool = False) -> list[dict]:
    pairs = _registry(request).schema_versions(schema_id, deleted)
    return [{"subject": subject, "version": version} for subject, version in pairs]


@router.get("/schemas/ids/{schema_id}/subjects", summary="Subjects that hold a schema")
def get_schema_subjects(request: Request, schema_id: int, deleted: bool = False) -> list[str]:
    return sorted({subject for subject, _ in _registry(request).schema_versions(schema_id, deleted)})


# --- compatibility -----------------------------------------------------------------------


@router.post("/compatibility/subjects/{subject}/versions/{version}", summary="Test against a version")
def test_compatibility(
    request: Request,
    subject: str,
    version: str,
    body: dict[str, Any] = Body(...),
    normalize: bool = False,
    verbose: bool = False,
) -> dict:
    problems = _registry(request).compatibility(
        subject, body.get("schema"), version, body.get("schemaType"), normalize
    )
    return _compatibility_answer(problems, verbose)


@router.post("/compatibility/subjects/{subject}/versions", summary="Test against the versions the level checks")
def test_compatibility_all(
    request: Request, subject: str, body: dict[str, Any] = Body(...), normalize: bool = False, verbose: bool = False
) -> dict:
    problems = _registry(request).compatibility(subject, body.get("schema"), None, body.get("schemaType"), normalize)
    return _compatibility_answer(problems, verbose)


def _compatibility_answer(problems: list[str], verbose: bool) -> dict:
    return {"is_compatible": not problems, "messages": problems} if verbose else {"is_compatible": not problems}


# --- compatibility levels ----------------------------------------------------------------


@router.get("/config", summary="The global compatibility level")
def get_global_config(request: Request) -> dict:
    return {"compatibilityLevel": _registry(request).get_config()}


@router.put("/config", summary="Set the global compatibility level", dependencies=[Depends(require_operator)])
def put_global_config(request: Request, body: dict[str, Any] = Body(...)) -> dict:
    return {"compatibility": _registry(request).set_config(None, _level_of(body))}


@router.get("/config/{subject}", summary="A subject's compatibility level")
def get_subject_config(request: Request, subject: str, defaultToGlobal: bool = False) -> dict:  # noqa: N803
    return {"compatibilityLevel": _registry(request).get_config(subject, defaultToGlobal)}


@router.put("/config/{subject}", summary="Set a subject's compatibility level", dependencies=[Depends(require_operator)])
def put_subject_config(request: Request, subject: str, body: dict[str, Any] = Body(...)) -> dict:
    return {"compatibility": _registry(request).set_config(subject, _level_of(body))}


@router.delete("/config/{subject}", summary="Drop a subject's level (back to the global one)", dependencies=[Depends(require_operator)])
def delete_subject_config(request: Request, subject: str) -> dict:
    return {"compatibilityLevel": _registry(request).delete_config(subject)}


def _level_of(body: dict[str, Any]) -> Any:
    """The level in a config body; clients send `compatibility`, some `compatibilityLevel`."""
    return body.get("compatibility") or body.get("compatibilityLevel")


# --- modes -------------------------------------------------------------------------------


@router.get("/mode", summary="The global mode")
def get_global_mode(request: Request) -> dict:
    return {"mode": _registry(request).get_mode()}


@router.put("/mode", summary="Set the global mode", dependencies=[Depends(require_operator)])
def put_global_mode(request: Request, body: dict[str, Any] = Body(...), force: bool = False) -> dict:
    return {"mode": _registry(request).set_mode(None, body.get("mode"))}


@router.get("/mode/{subject}", summary="A subject's mode")
def get_subject_mode(request: Request, subject: str, defaultToGlobal: bool = False) -> dict:  # noqa: N803
    return {"mode": _registry(request).get_mode(subject, defaultToGlobal)}


@router.put("/mode/{subject}", summary="Set a subject's mode", dependencies=[Depends(require_operator)])
def put_subject_mode(request: Request, subject: str, body: dict[str, Any] = Body(...), force: bool = False) -> dict:
    return {"mode": _registry(request).set_mode(subject, body.get("mode"))}


@router.delete("/mode/{subject}", summary="Drop a subject's mode (back to the global one)", dependencies=[Depends(require_operator)])
def delete_subject_mode(request: Request, subject: str) -> dict:
    return {"mode": _registry(request).delete_mode(subject)}
