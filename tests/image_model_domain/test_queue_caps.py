"""Queue caps hold under concurrency: 20 real threads against the live server and PostgreSQL."""

from __future__ import annotations

import ipaddress
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from image_model_domain.models import DLModel, GenerationJob
from tests.conftest import session_queue

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 20


@pytest.fixture
def model(db: None, settings) -> None:  # noqa: ANN001
    # A queue no worker serves: a shared worker finishing a job mid-test would free a slot.
    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("caps")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)


def submit_at_once(url: str, headers: list[dict[str, str]]) -> list[requests.Response]:
    """One POST per header set, all released together from a barrier (one thread each)."""
    barrier = threading.Barrier(len(headers))

    def post(extra: dict[str, str]) -> requests.Response:
        barrier.wait()
        return requests.post(f"{url}/api/v1/generations/", json={"prompt": "a fox"}, headers=extra, timeout=60)

    with ThreadPoolExecutor(len(headers)) as pool:
        return list(pool.map(post, headers))


def assert_capped(responses: list[requests.Response], cap: str, limit: int) -> None:
    codes = sorted(response.status_code for response in responses)
    assert codes == [202] * limit + [429] * (len(responses) - limit), codes
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) > 0
            body = response.json()
            assert body["cap"] == cap and body["limit"] == limit and body["active"] == limit
            assert cap in body["detail"]


def test_twenty_simultaneous_submits_by_one_user_make_exactly_the_cap(live_server, model, settings) -> None:  # noqa: ANN001
    settings.API_MAX_QUEUED_JOBS_PER_USER = 3
    alice = User.objects.create_user("alice", password="x")
    token = Token.objects.create(user=alice).key

    responses = submit_at_once(live_server.url, [{"Authorization": f"Token {token}"}] * CLIENTS)

    assert_capped(responses, "API_MAX_QUEUED_JOBS_PER_USER", 3)
    assert GenerationJob.objects.filter(owner=alice).count() == 3
    # Another user is not held by alice's cap, and staff have none.
    bob = Token.objects.create(user=User.objects.create_user("bob", password="x")).key
    staff = Token.objects.create(user=User.objects.create_user("root", password="x", is_staff=True)).key
    for key in (bob, staff):
        response = requests.post(
            f"{live_server.url}/api/v1/generations/", json={"prompt": "a"}, headers={"Authorization": f"Token {key}"}
        )
        assert response.status_code == 202


def test_anonymous_clients_are_capped_per_address_behind_a_trusted_proxy(live_server, model, settings) -> None:  # noqa: ANN001
    settings.API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP = 2
    settings.API_TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.1/32")]

    responses = submit_at_once(live_server.url, [{"X-Forwarded-For": "203.0.113.7"}] * CLIENTS)

    assert_capped(responses, "API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP", 2)
    assert GenerationJob.objects.filter(client_ip="203.0.113.7").count() == 2
    # Another address has room of its own; a forged hop left of the proxy's entry changes nothing.
    other = submit_at_once(live_server.url, [{"X-Forwarded-For": "198.51.100.9, 203.0.113.8"}])
    assert other[0].status_code == 202
    assert GenerationJob.objects.get(pk=other[0].json()["id"]).client_ip == "203.0.113.8"
    assert GenerationJob.objects.filter(owner__isnull=True).count() == 3


def test_forwarded_for_from_an_untrusted_peer_cannot_dodge_the_anonymous_cap(live_server, model, settings) -> None:  # noqa: ANN001
    settings.API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP = 3
    settings.API_TRUSTED_PROXIES = []
    forged = [{"X-Forwarded-For": f"192.0.2.{index}"} for index in range(CLIENTS)]

    responses = submit_at_once(live_server.url, forged)

    assert_capped(responses, "API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP", 3)
    assert set(GenerationJob.objects.values_list("client_ip", flat=True)) == {"127.0.0.1"}


def test_finished_jobs_free_the_cap(live_server, model, settings) -> None:  # noqa: ANN001
    settings.API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP = 1
    url = f"{live_server.url}/api/v1/generations/"
    first = requests.post(url, json={"prompt": "a"})
    assert first.status_code == 202
    assert requests.post(url, json={"prompt": "b"}).status_code == 429
    assert requests.post(f"{live_server.url}/api/v1/jobs/{first.json()['id']}/cancel/").status_code == 200
    assert requests.post(url, json={"prompt": "c"}).status_code == 202


def test_the_cap_counts_read_only_active_jobs_through_their_partial_indexes(model, settings) -> None:  # noqa: ANN001
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from image_model_domain.jobs import job_create_generation

    user = User.objects.create_user("long-history")
    for _ in range(30):  # a history of finished jobs, which the counts must not read
        job_create_generation(owner=user, prompt="a fox")
        job_create_generation(owner=None, prompt="a fox", client_ip="10.0.0.9")
        GenerationJob.objects.update(status="succeeded")
    counts = []
    for submitter in ({"owner": user}, {"owner": None, "client_ip": "10.0.0.9"}):
        with CaptureQueriesContext(connection) as queries:
            job_create_generation(prompt="a fox", **submitter)
        sqls = [query["sql"] for query in queries]
        counts.append(sqls[next(i for i, sql in enumerate(sqls) if "pg_advisory_xact_lock" in sql) + 1])
    assert all(sql.startswith("SELECT COUNT(*)") for sql in counts), counts  # the count under the cap's lock
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE image_model_domain_generationjob")
        plans = []
        for sql in counts:
            with transaction.atomic():
                cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small would be read whole
                cursor.execute(f"EXPLAIN {sql}")
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
    assert "job_active_owner_idx" in plans[0], plans[0]
    assert "job_active_anonymous_ip_idx" in plans[1], plans[1]
