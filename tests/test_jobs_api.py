"""Dead letters an operator can see and retry, over the API and the CLI's shared flow."""
from sqlalchemy import select

from gateway.store import OutboundMail


def dead_letter_a_mail(gateway) -> int:
    """A relay's permanent refusal dead-letters the notification's delivery job."""
    gateway.sink.fail_next("550 5.1.1 no such user", stage="RCPT")
    status = gateway.open_pull_request(head="dead-mail", reporter="gone@example.com")
    assert status["status"] == "opened"  # the PR exists; its notification did not go out
    dead = gateway.api("GET", "/api/jobs?status=dead").json()["jobs"]
    assert [job["kind"] for job in dead] == ["deliver_mail"]
    return dead[0]["id"]


def test_dead_jobs_are_listed_with_their_last_error(gateway):
    job_id = dead_letter_a_mail(gateway)
    job = gateway.api("GET", f"/api/jobs/{job_id}").json()
    assert job["status"] == "dead" and job["attempts"] == 1
    assert "550 5.1.1 no such user" in job["last_error"]
    assert set(job["payload"]) == {"mail_id", "request_id"}
    queued_or_done = gateway.api("GET", "/api/jobs?status=done").json()["jobs"]
    assert {j["kind"] for j in queued_or_done} == {"open_pull_request"}


def test_retrying_a_dead_job_runs_it_again_and_delivers(gateway):
    job_id = dead_letter_a_mail(gateway)
    retried = gateway.api("POST", f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 200
    assert (retried.json()["status"], retried.json()["attempts"]) == ("queued", 0)
    assert gateway.run_jobs() == 1
    assert [m.recipients for m in gateway.sink.messages] == [["gone@example.com"]]
    assert gateway.api("GET", f"/api/jobs/{job_id}").json()["status"] == "done"
    with gateway.ctx.db.session() as s:
        assert s.scalars(select(OutboundMail.status)).all() == ["sent"]


def test_only_dead_jobs_can_be_retried(gateway):
    job_id = dead_letter_a_mail(gateway)
    assert gateway.api("POST", f"/api/jobs/{job_id}/retry").status_code == 200
    again = gateway.api("POST", f"/api/jobs/{job_id}/retry")
    assert again.status_code == 409
    assert again.json()["error"]["message"] == (
        f"job {job_id} is queued, not dead-lettered; only dead jobs can be retried")
    missing = gateway.api("POST", "/api/jobs/999999/retry")
    assert (missing.status_code, missing.json()["error"]["message"]) == (404, "no job 999999")


def test_jobs_api_needs_a_token_and_a_valid_query(gateway):
    assert gateway.api("GET", "/api/jobs", token=None).status_code == 401
    bad = gateway.api("GET", "/api/jobs?status=lost")
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"] == {"status": "must be one of queued, running, done, dead"}
    assert gateway.api("GET", "/api/jobs?limit=x").json()["error"]["fields"] == {"limit": "must be a whole number"}
    assert gateway.api("GET", "/api/jobs").json() == {"jobs": []}
