"""Flow 5 end to end: POST /api/pull-requests/<id>/merge against the emulator, and that
nothing else in the gateway can merge.

Each refusal asserts the exact status and JSON error, and that the PR is still open.
"""
import re
import subprocess
from pathlib import Path

import pytest

import gateway as gateway_package
from gateway.flows import job_kinds
from gateway.store import PullRequestRequest
from tests.support import webhook_payloads as wp
from tests.support.github import count_requests
from tests.support.harness import BOT, REPO


@pytest.fixture
def opened(gateway) -> dict:
    """A notified PR request (PR #1 from `fix-typo`); its status JSON."""
    status = gateway.open_pull_request()
    assert (status["status"], status["number"]) == ("notified", 1)
    gateway.sink.clear()
    return status


def merge(gateway, request_id: str, **body):
    return gateway.api("POST", f"/api/pull-requests/{request_id}/merge", json=body)


def error(status: int, message: str, fields: dict | None = None) -> dict:
    body = {"error": {"status": status, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    return body


def parent_count(gateway, sha: str) -> int:
    """How many parents the commit on the emulator's main has (a merge commit: 2, squash/rebase: 1)."""
    out = subprocess.run(["git", "--git-dir", str(gateway.emulator.repo_path(REPO)), "rev-list", "--parents",
                          "-n", "1", sha], capture_output=True, text=True, check=True).stdout.split()
    return len(out) - 1


def assert_still_open(gateway) -> None:
    pull = gateway.emulator.pull(REPO, 1)
    assert (pull["state"], pull["merged"]) == ("open", False)


# -- success --------------------------------------------------------------------------------------

def test_merge_defaults_to_squash_and_answers_with_the_commit(gateway, opened):
    response = gateway.api("POST", f"/api/pull-requests/{opened['id']}/merge")  # no body at all
    assert response.status_code == 200
    pull = gateway.emulator.pull(REPO, 1)
    assert response.json() == {"merged": True, "number": 1, "pr_url": opened["pr_url"],
                               "sha": pull["merge_commit_sha"], "message": "Pull Request successfully merged"}
    assert (pull["state"], pull["merged"], pull["merged_by"]["login"]) == ("closed", True, BOT)
    assert gateway.emulator.branch_sha(REPO, "main") == pull["merge_commit_sha"]
    assert parent_count(gateway, pull["merge_commit_sha"]) == 1  # squashed
    # GitHub's "merged" event names the App's bot and is never relayed, so the merge flow tells the thread.
    gateway.run_jobs()
    [mail] = gateway.sink.clear()
    assert mail.recipients == ["ann@example.com"]
    assert mail.message["Subject"] == "Re: [widgets] PR ready: Fix the typo in the README"
    assert "A maintainer merged the pull request" in mail.message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("method, parents", [("merge", 2), ("squash", 1), ("rebase", 1)])
def test_each_merge_method(gateway, opened, method, parents):
    head = gateway.emulator.branch_sha(REPO, "fix-typo")
    response = merge(gateway, opened["id"], method=method, expected_head_sha=head)
    assert response.status_code == 200, response.text
    assert parent_count(gateway, response.json()["sha"]) == parents
    assert gateway.emulator.pull(REPO, 1)["merged"] is True


def test_merging_again_reports_the_earlier_merge(gateway, opened):
    first = merge(gateway, opened["id"])
    again = merge(gateway, opened["id"])
    assert again.status_code == 200
    assert again.json() == {**first.json(), "message": "Pull request was already merged"}
    assert count_requests(gateway.emulator, "PUT", "/merge") == 1
    gateway.run_jobs()
    assert len(gateway.sink.messages) == 1  # one "merged" mail, not one per call


def test_a_pr_merged_on_github_meanwhile_is_reported_merged(gateway, opened):
    gateway.emulator.merge_pull_as(REPO, 1, "maria-maintainer")
    response = merge(gateway, opened["id"])
    assert response.status_code == 200
    assert response.json()["message"] == "Pull request was already merged"
    assert response.json()["sha"] == gateway.emulator.pull(REPO, 1)["merge_commit_sha"]


# -- GitHub's refusals: 409 with its reason -------------------------------------------------------

def test_head_moved_since_the_caller_looked_is_409(gateway, opened):
    seen = gateway.emulator.branch_sha(REPO, "fix-typo")
    gateway.emulator.commit(REPO, "fix-typo", {"README.md": "# widgets, fixed again\n"})
    response = merge(gateway, opened["id"], expected_head_sha=seen)
    assert response.status_code == 409
    assert response.json() == error(409, "Head branch was modified. Review and try the merge again.")
    assert_still_open(gateway)


def test_closed_pr_is_409(gateway, opened):
    gateway.emulator.close_pull(REPO, 1)
    response = merge(gateway, opened["id"])
    assert response.status_code == 409
    assert response.json() == error(409, "Pull Request is not mergeable")
    assert gateway.emulator.pull(REPO, 1)["merged"] is False


def test_conflicting_pr_is_409(gateway, opened):
    gateway.emulator.commit(REPO, "main", {"README.md": "# widgets, changed on main\n"})
    response = merge(gateway, opened["id"])
    assert response.status_code == 409
    assert response.json() == error(409, "Pull Request is not mergeable")
    assert_still_open(gateway)


def test_suspended_installation_is_409_until_unsuspended(gateway, opened):
    for action in ("suspend", "unsuspend"):
        assert wp.deliver(gateway, "installation", wp.installation(action, sender="octo-admin")).status_code == 202
        gateway.run_jobs()
        if action == "suspend":
            response = merge(gateway, opened["id"])
            assert response.status_code == 409
            assert response.json() == error(409, "the GitHub App installation is paused: "
                                                 "the installation was suspended by octo-admin")
            assert_still_open(gateway)
            assert count_requests(gateway.emulator, "PUT", "/merge") == 0
    assert merge(gateway, opened["id"]).status_code == 200


# -- the gateway's own refusals --------------------------------------------------------------------

def test_unknown_id_is_404(gateway):
    response = merge(gateway, "nosuchrequest")
    assert response.status_code == 404
    assert response.json() == error(404, "no pull request request with id 'nosuchrequest'")


def test_pr_not_opened_yet_is_409(gateway):
    gateway.emulator.create_branch(REPO, "later", files={"a.txt": "a\n"})
    accepted = gateway.api("POST", "/api/pull-requests", json={
        "repo": REPO, "head": "later", "title": "Later", "reporter_email": "ann@example.com"}).json()
    response = merge(gateway, accepted["id"])
    assert response.status_code == 409
    assert response.json() == error(409, "the pull request is not open yet (status: queued)")
    assert gateway.emulator.pulls(REPO) == []


def test_request_that_failed_is_409(gateway):
    accepted = gateway.api("POST", "/api/pull-requests", json={
        "repo": REPO, "head": "no-such-branch", "title": "Nope", "reporter_email": "ann@example.com"}).json()
    gateway.run_jobs()
    with gateway.ctx.db.session() as s:
        assert s.get(PullRequestRequest, accepted["id"]).status == "failed"
    response = merge(gateway, accepted["id"])
    assert response.status_code == 409
    assert response.json() == error(409, "the pull request is not open yet (status: failed)")


@pytest.mark.parametrize("body, fields", [
    ({"method": "fast-forward"}, {"method": "must be one of merge, squash, rebase"}),
    ({"method": None}, {"method": "must be one of merge, squash, rebase"}),
    ({"expected_head_sha": "abc123"}, {"expected_head_sha": "must be a 40-character hex commit SHA"}),
    ({"expected_head_sha": 42}, {"expected_head_sha": "must be a 40-character hex commit SHA"}),
    ({"force": True}, {"force": "unknown field"}),
], ids=["method", "null_method", "short_sha", "sha_not_string", "unknown_field"])
def test_invalid_body_is_422(gateway, opened, body, fields):
    response = merge(gateway, opened["id"], **body)
    assert response.status_code == 422
    assert response.json() == error(422, "invalid request", fields)
    assert_still_open(gateway)


def test_body_that_is_not_a_json_object_is_422(gateway, opened):
    response = gateway.api("POST", f"/api/pull-requests/{opened['id']}/merge", json=["squash"])
    assert response.status_code == 422
    assert response.json() == error(422, "invalid request", {"body": "expected a JSON object"})


def test_body_that_is_not_json_is_415(gateway, opened):
    response = gateway.api("POST", f"/api/pull-requests/{opened['id']}/merge", data="method=merge",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert response.json() == error(415, "expected Content-Type: application/json")
    assert_still_open(gateway)


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_without_a_valid_token_is_401(gateway, opened, token):
    response = gateway.api("POST", f"/api/pull-requests/{opened['id']}/merge", token=token, json={})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == error(401, "missing or invalid bearer token")
    assert_still_open(gateway)


# -- GitHub unavailable: 503, try again -------------------------------------------------------------

def test_github_5xx_is_503(gateway, opened):
    gateway.emulator.faults.inject("5xx", path_regex=r"/pulls/1/merge$", method="PUT", status=502)
    response = merge(gateway, opened["id"])
    assert response.status_code == 503
    assert response.json()["error"]["message"].startswith(
        f"GitHub is unavailable, try again: GitHub answered 502 on {REPO}")
    assert_still_open(gateway)


def test_github_rate_limit_is_503_with_retry_after(gateway, opened):
    gateway.emulator.faults.inject("rate_limit_secondary", path_regex=r"/pulls/1/merge$", method="PUT",
                                   retry_after=30)
    response = merge(gateway, opened["id"])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert_still_open(gateway)


# -- nothing else can merge --------------------------------------------------------------------------

def test_only_the_api_view_reaches_a_merge():
    """No mail, webhook or job path: the merge flow is imported by the API view alone."""
    root = Path(gateway_package.__file__).parent.parent
    reaching = re.compile(r"\bflows import [^\n]*\bmerge\b|flows\.merge\b|merge_pull_request\(|github\.merge\(")
    callers = sorted(str(path.relative_to(root)) for package in ("gateway", "inbound", "outbound")
                     for path in (root / package).rglob("*.py") if reaching.search(path.read_text()))
    assert callers == ["gateway/flows/merge.py", "gateway/web/api.py"]


def test_no_job_kind_merges(gateway):
    assert not [kind.name for kind in job_kinds(gateway.ctx) if "merge" in kind.name]
