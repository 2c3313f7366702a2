"""The `gateway` command as a user runs it: real subprocesses, real ports."""
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import requests

GATEWAY = [sys.executable, "-m", "gateway.cli"]


def env_for(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "GITHUB_"))}
    env.update({"GATEWAY_DATA_DIR": str(tmp_path / "var"), **extra})
    return env


def test_malformed_setting_stops_start_up_with_one_line(tmp_path):
    result = subprocess.run([*GATEWAY, "worker"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=env_for(tmp_path, GATEWAY_HTTP_PORT="eighty"))
    assert result.returncode == 2
    assert result.stderr == "gateway: configuration error: GATEWAY_HTTP_PORT: expected a whole number, got 'eighty'\n"


def test_missing_required_setting_is_named(tmp_path):
    result = subprocess.run([*GATEWAY, "smtp"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=env_for(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("gateway: configuration error: GATEWAY_SECRET_KEY: required")
    assert result.stderr.count("\n") == 1


def test_db_upgrade_then_current(tmp_path):
    env = env_for(tmp_path)
    upgraded = subprocess.run([*GATEWAY, "db", "upgrade"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, env=env)
    assert upgraded.returncode == 0 and upgraded.stdout.startswith("database at revision ")
    current = subprocess.run([*GATEWAY, "db", "current"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60, env=env)
    revision = upgraded.stdout.split()[-1]
    assert current.stdout.strip() == f"current {revision}, head {revision}"


def test_demo_runs_the_whole_loop(tmp_path):
    result = subprocess.run([*GATEWAY, "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                            env=env_for(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith(("✓", "✗"))]
    assert len(steps) == 7 and all(step.startswith("✓") for step in steps)
    assert "demo complete: every step passed" in result.stdout


def test_serve_sandbox_says_github_is_emulated_and_its_curl_line_works(tmp_path):
    process = subprocess.Popen([*GATEWAY, "serve", "--sandbox"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env=env_for(tmp_path, GATEWAY_HTTP_PORT="0", GATEWAY_SMTP_PORT="0"))
    try:
        lines, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.strip().startswith("curl "):
                break
        banner = "".join(lines)
        assert "SANDBOX MODE: GitHub is EMULATED" in banner
        args = shlex.split(line.strip())
        url = args[args.index("-X") + 2]
        headers = dict(h.split(": ", 1) for h in (args[i + 1] for i, a in enumerate(args) if a == "-H"))
        response = requests.post(url, headers=headers, data=args[args.index("-d") + 1], timeout=10)
        assert response.status_code == 202, response.text
        status_url = response.json()["url"]
        for _ in range(100):
            status = requests.get(status_url, headers=headers, timeout=10).json()
            if status["status"] in ("notified", "failed"):
                break
            time.sleep(0.1)
        assert status["status"] == "notified", status
        health = requests.get(re.sub(r"/api/.*", "/health", url), timeout=10)
        assert health.status_code == 200
        assert health.json()["sandbox"] is True and health.json()["checks"]["github"]["state"] == "emulated"
        assert len(list((tmp_path / "var" / "maildir" / "new").iterdir())) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_inbound_list_and_thread_revoke_on_an_empty_database(tmp_path):
    env = env_for(tmp_path, GATEWAY_SANDBOX="1")
    run = lambda *args: subprocess.run([*GATEWAY, *args], cwd=tmp_path, capture_output=True, text=True,
                                       timeout=60, env=env)
    assert run("db", "upgrade").returncode == 0
    listed = run("inbound", "list", "--verdict", "posted")
    assert (listed.returncode, listed.stdout) == (0, "")
    revoked = run("threads", "revoke", "nosuchthread")
    assert (revoked.returncode, revoked.stderr) == (1, "no thread nosuchthread\n")
    jobs = run("jobs", "retry", "12345")
    assert (jobs.returncode, jobs.stderr) == (1, "job 12345 is not dead-lettered (or does not exist)\n")
    dead = run("jobs", "list", "--dead")
    assert (dead.returncode, dead.stdout, dead.stderr) == (0, "", "no jobs dead-lettered\n")
