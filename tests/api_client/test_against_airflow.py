"""``ExecutionAPIClient`` against the REAL Airflow 3.3.2 Execution API app, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import jwt
import pytest

from api_client import (
    APIVersionError,
    AuthenticationError,
    BadRequestError,
    CallableToken,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    StaticToken,
    TokenFile,
    XComNotFoundError,
    XComRef,
    XComStore,
)
from tests.support.airflow_api import DAG_ID, AirflowAPI

pytestmark = pytest.mark.anyio

JSON_VALUES: list[Any] = [
    {"a": 1, "b": [1, 2.5, None, True], "c": {"d": "é✓"}},
    [1, "two", {"three": 3}, [None]],
    "a plain string",
    "",
    42,
    -3.25,
    0,
    True,
    None,
    {"deep": {"er": {"est": [{"x": [1, [2, [3]]]}]}}},
    {},
    [],
]


def ref_for(ti: Any, key: str = "return_value") -> XComRef:
    return XComRef(ti.dag_id, ti.run_id, ti.task_id, key, ti.map_index)


@pytest.mark.parametrize("value", JSON_VALUES, ids=[repr(v)[:30] for v in JSON_VALUES])
async def test_xcom_round_trip_is_clean_json(airflow_api: AirflowAPI, value: Any) -> None:
    ti = airflow_api.new_ti("deferred")  # XCom push works while the TI is DEFERRED
    ref = ref_for(ti)
    async with airflow_api.client(ti=ti) as client:
        assert isinstance(client.xcoms, XComStore)
        await client.xcoms.set(ref, value)
        assert await client.xcoms.get(ref) == value
    env = airflow_api.env
    # Airflow's own model reads it back identical, and the stored column is the value itself:
    # not a JSON string of it (the double encoding TaskSuccessEvent(xcoms=...) produces).
    assert env.get_xcom(DAG_ID, ti.run_id, ti.task_id, "return_value") == value
    raw = env.get_xcom_raw(DAG_ID, ti.run_id, ti.task_id, "return_value")
    assert raw == value
    # What a downstream task's xcom_pull returns: the Task SDK's deserialisation of the stored value.
    from types import SimpleNamespace

    from airflow.sdk.bases.xcom import BaseXCom

    assert BaseXCom.deserialize_value(SimpleNamespace(value=raw)) == value


async def test_overwrite_delete_and_missing(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    ref = ref_for(ti, "k/with/slashes and spaces")
    async with airflow_api.client(ti=ti) as client:
        with pytest.raises(XComNotFoundError) as missing:
            await client.xcoms.get(ref)
        assert missing.value.status_code == 404
        await client.xcoms.set(ref, {"v": 1})
        await client.xcoms.set(ref, {"v": 2})
        assert await client.xcoms.get(ref) == {"v": 2}
        await client.xcoms.delete(ref)
        await client.xcoms.delete(ref)  # deleting a missing XCom is fine
        with pytest.raises(XComNotFoundError):
            await client.xcoms.get(ref)


async def test_mapped_length_creates_task_map_row(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    env = airflow_api.env
    async with airflow_api.client(ti=ti) as client:
        await client.xcoms.set(ref_for(ti), [10, 20, 30], mapped_length=3)
    assert env.get_task_map_length(DAG_ID, ti.run_id, ti.task_id) == 3
    assert env.get_xcom(DAG_ID, ti.run_id, ti.task_id, "return_value") == [10, 20, 30]


async def test_dag_result_reaches_the_row(airflow_api: AirflowAPI) -> None:
    """``dag_result`` is a query parameter the server stores on the XCom row."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    ti = airflow_api.new_ti("running")
    async with airflow_api.client(ti=ti) as client:
        await client.xcoms.set(ref_for(ti, "flagged"), {"r": 1}, dag_result=True)
        await client.xcoms.set(ref_for(ti, "plain"), {"r": 2})
    with create_session() as session:
        rows = session.execute(
            select(XComModel.key, XComModel.dag_result).where(
                XComModel.dag_id == DAG_ID, XComModel.run_id == ti.run_id, XComModel.task_id == ti.task_id
            )
        ).all()
    assert {(key, bool(flag)) for key, flag in rows} == {("flagged", True), ("plain", False)}


async def test_mapped_length_over_limit_is_rejected_and_stores_nothing(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    env = airflow_api.env
    async with airflow_api.client(ti=ti) as client:
        with pytest.raises(BadRequestError) as err:
            await client.xcoms.set(ref_for(ti), list(range(1025)), mapped_length=1025)
    assert err.value.status_code == 400
    assert err.value.reason == "unmappable_return_value_length"
    assert env.get_task_map_length(DAG_ID, ti.run_id, ti.task_id) is None
    with pytest.raises(KeyError):
        env.get_xcom(DAG_ID, ti.run_id, ti.task_id, "return_value")


async def test_empty_key_is_a_bad_request(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    async with airflow_api.client(ti=ti) as client:
        with pytest.raises(BadRequestError) as err:
            await client.xcoms.set(ref_for(ti, ""), 1)
    # The route's Path(min_length=1) answers 422 before the handler's own 400 check is reached.
    assert err.value.status_code == 422


async def test_unknown_run_is_not_found(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    ref = XComRef(DAG_ID, "no_such_run", ti.task_id, "return_value")
    async with airflow_api.client(ti=ti) as client:
        with pytest.raises(NotFoundError) as err:
            await client.xcoms.set(ref, 1)
    assert not isinstance(err.value, XComNotFoundError)
    assert "no_such_run" in str(err.value)


@pytest.mark.parametrize("action", ["succeed", "fail", "skip", "up_for_retry"])
async def test_ending_a_deferred_ti_is_invalid_state(airflow_api: AirflowAPI, action: str) -> None:
    ti = airflow_api.new_ti("deferred")
    async with airflow_api.client(ti=ti) as client:
        with pytest.raises(InvalidStateError) as err:
            await getattr(client.task_instances, action)(ti.id)
    assert err.value.status_code == 409
    assert err.value.previous_state == "deferred"
    assert airflow_api.env.get_ti(ti.id).state == "deferred"


@pytest.mark.parametrize(
    ("action", "final"),
    [("succeed", "success"), ("fail", "failed"), ("skip", "skipped"), ("up_for_retry", "up_for_retry")],
)
async def test_ending_a_running_ti_works(airflow_api: AirflowAPI, action: str, final: str) -> None:
    ti = airflow_api.new_ti("running")
    async with airflow_api.client(ti=ti) as client:
        await getattr(client.task_instances, action)(ti.id)
    # find by coordinates: a TI put up for retry gets a new id for its next try
    assert airflow_api.env.find_ti(DAG_ID, ti.run_id, ti.task_id).state == final


async def test_already_finished_is_told_apart(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    async with airflow_api.client(ti=ti) as client:
        await client.task_instances.succeed(ti.id)
        await client.task_instances.succeed(ti.id)  # same state again: the server answers 200
        with pytest.raises(InvalidStateError) as err:
            await client.task_instances.fail(ti.id)
    assert err.value.previous_state == "success"


async def test_unknown_task_instance_is_not_found(airflow_api: AirflowAPI) -> None:
    ghost = "01a20187-4c82-7196-a5a4-8e0b7b942742"
    async with airflow_api.client(airflow_api.env.mint_token(ghost)) as client:
        with pytest.raises(NotFoundError) as err:
            await client.task_instances.succeed(ghost)
    assert err.value.reason == "not_found"


async def test_missing_token_is_authentication_error(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    async with airflow_api.client(None) as client:
        with pytest.raises(AuthenticationError) as err:
            await client.xcoms.set(ref_for(ti), 1)
    assert err.value.status_code == 401


@pytest.mark.parametrize("kind", ["garbage", "expired", "other_ti"])
async def test_bad_tokens_are_permission_denied(
    airflow_api: AirflowAPI, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    ti = airflow_api.new_ti("running")
    env = airflow_api.env
    other = airflow_api.new_ti("running")
    token = {
        "garbage": "not-a-jwt-at-all",
        "expired": env.mint_token(ti.id, valid_for=-60),
        "other_ti": env.mint_token(other.id),
    }[kind]
    caplog.set_level(logging.DEBUG, logger="api_client")
    async with airflow_api.client(token) as client:
        with pytest.raises(PermissionDeniedError) as err:
            await client.task_instances.succeed(ti.id)
    assert err.value.status_code == 403
    assert env.get_ti(ti.id).state == "running"
    assert token not in str(err.value)
    assert token not in repr(err.value)
    assert token not in caplog.text


async def test_refreshed_token_replaces_the_token_in_place(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    short = airflow_api.env.mint_token(ti.id, valid_for=20)  # < 20 % of lifetime or 30 s left → refresh
    provider = StaticToken(short)
    async with airflow_api.client(provider) as client:
        await client.xcoms.set(ref_for(ti), "first")
        refreshed = await provider.get_token()
        assert refreshed != short
        claims = jwt.decode(refreshed, options={"verify_signature": False})
        assert claims["sub"] == ti.id
        assert claims["exp"] > jwt.decode(short, options={"verify_signature": False})["exp"]
        # The refreshed token is the one used from now on, and the server accepts it.
        await client.task_instances.succeed(ti.id)
        assert short not in repr(provider)
        assert refreshed not in repr(provider)
        assert refreshed not in repr(client)
    assert airflow_api.env.get_ti(ti.id).state == "success"


async def test_token_file_is_reread_when_it_changes(airflow_api: AirflowAPI, tmp_path: Any) -> None:
    ti = airflow_api.new_ti("running")
    path = tmp_path / "token"
    path.write_text(airflow_api.env.mint_token(ti.id) + "\n")
    async with airflow_api.client(TokenFile(path)) as client:
        await client.xcoms.set(ref_for(ti), 1)
        path.write_text("garbage-token-now")
        with pytest.raises(PermissionDeniedError):
            await client.xcoms.set(ref_for(ti), 2)
        path.write_text(airflow_api.env.mint_token(ti.id))
        await client.xcoms.set(ref_for(ti), 3)
        assert await client.xcoms.get(ref_for(ti)) == 3


async def test_callable_token(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        return airflow_api.env.mint_token(ti.id)

    async with airflow_api.client(CallableToken(fetch)) as client:
        await client.xcoms.set(ref_for(ti), 1)
        await client.task_instances.succeed(ti.id)
    assert calls == 2


async def test_unknown_api_version_is_a_clear_error(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    async with airflow_api.client(ti=ti, api_version="1999-01-01") as client:
        with pytest.raises(APIVersionError) as err:
            await client.xcoms.set(ref_for(ti), 1)
        with pytest.raises(APIVersionError):
            await client.check_version()
    assert err.value.requested == "1999-01-01"
    assert "2026-06-30" in err.value.supported
    assert "1999-01-01" in str(err.value)
    assert "2026-06-30" in str(err.value)
    async with airflow_api.client(ti=ti) as client:
        await client.check_version()
        assert (await client.server_versions())[0] == "2026-06-30"


async def test_health(airflow_api: AirflowAPI) -> None:
    async with airflow_api.client(None) as client:
        ping = await client.health()
    assert ping.failing == {}
    assert any("JWTValidator" in name for name in ping.ok)


class FlakyTransport(httpx.AsyncBaseTransport):
    """Answers ``status`` for the first ``failures`` requests, then lets them through to the app."""

    def __init__(self, inner: httpx.AsyncBaseTransport, failures: int, status: int = 500) -> None:
        self.inner = inner
        self.failures = failures
        self.status = status
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.requests <= self.failures:
            return httpx.Response(self.status, json={"message": "Internal server error"})
        return await self.inner.handle_async_request(request)


async def test_500_is_retried_then_succeeds(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    flaky = FlakyTransport(airflow_api.transport(), failures=2)
    async with airflow_api.client(ti=ti, transport=flaky) as client:
        await client.xcoms.set(ref_for(ti), {"after": "retries"})
    assert flaky.requests == 3
    assert airflow_api.env.get_xcom(DAG_ID, ti.run_id, ti.task_id, "return_value") == {"after": "retries"}


async def test_500_forever_gives_a_typed_error_after_bounded_attempts(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("running")
    flaky = FlakyTransport(airflow_api.transport(), failures=100)
    async with airflow_api.client(ti=ti, transport=flaky) as client:
        with pytest.raises(ServerError) as err:
            await client.xcoms.set(ref_for(ti), 1)
    assert flaky.requests == 3  # FAST_RETRY.max_attempts
    assert err.value.status_code == 500


async def test_4xx_is_not_retried(airflow_api: AirflowAPI) -> None:
    ti = airflow_api.new_ti("deferred")
    counting = FlakyTransport(airflow_api.transport(), failures=0)
    async with airflow_api.client(ti=ti, transport=counting) as client:
        with pytest.raises(InvalidStateError):
            await client.task_instances.succeed(ti.id)
    assert counting.requests == 1
