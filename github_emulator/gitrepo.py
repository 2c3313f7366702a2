"""Plumbing on the emulator's bare git repositories.

Its sole purpose: create bare repos, write commits without a work tree, read refs, and perform
the three merge methods GitHub offers — all with the ``git`` binary, so that what clients push
over smart HTTP and what the REST side reports are the same refs. It is not a git library and
knows nothing about pull requests, users or HTTP.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
GITHUB_COMMITTER = ("GitHub", "noreply@github.com")


class GitError(RuntimeError):
    pass


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


def _env(author: Identity | None = None, committer: Identity | None = None,
         extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    author = author or Identity("Emulator", "emulator@localhost")
    committer = committer or Identity(*GITHUB_COMMITTER)
    env.update(GIT_AUTHOR_NAME=author.name, GIT_AUTHOR_EMAIL=author.email,
               GIT_COMMITTER_NAME=committer.name, GIT_COMMITTER_EMAIL=committer.email)
    env.update(extra or {})
    return env


def git(repo: Path, *args: str, input: bytes | None = None, env: dict | None = None,
        ok: tuple[int, ...] = (0,)) -> tuple[int, str]:
    proc = subprocess.run(["git", "--git-dir", str(repo), *args], input=input,
                          capture_output=True, env=env or _env())
    if proc.returncode not in ok:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.returncode, proc.stdout.decode(errors="replace")


def init_bare(path: Path, default_branch: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", default_branch, str(path)],
                   check=True, capture_output=True, env=_env())
    git(path, "config", "http.receivepack", "true")
    git(path, "config", "http.uploadpack", "true")
    git(path, "config", "uploadpack.allowReachableSHA1InWant", "true")


def rev_parse(repo: Path, rev: str) -> str | None:
    rc, out = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", ok=(0, 1, 128))
    return out.strip() if rc == 0 else None


def branches(repo: Path) -> dict[str, str]:
    _, out = git(repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
    result = {}
    for line in out.splitlines():
        sha, ref = line.split(" ", 1)
        result[ref[len("refs/heads/"):]] = sha
    return result


def commit_info(repo: Path, sha: str) -> dict:
    fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
    _, out = git(repo, "show", "-s", f"--format={fmt}", sha)
    h, tree, parents, an, ae, ad, cn, ce, cd, msg = out.split("\x00", 9)
    return {"sha": h, "tree": tree, "parents": parents.split(), "message": msg.rstrip("\n"),
            "author": {"name": an, "email": ae, "date": ad},
            "committer": {"name": cn, "email": ce, "date": cd}}


def update_ref(repo: Path, ref: str, new: str, old: str | None = None) -> None:
    args = ["update-ref", ref, new] + ([old] if old else [])
    git(repo, *args)


def delete_ref(repo: Path, ref: str) -> None:
    git(repo, "update-ref", "-d", ref)


def commit_files(repo: Path, parent: str | None, files: dict[str, str | bytes | None],
                 message: str, author: Identity | None = None) -> str:
    """Commit ``files`` (path -> content, None deletes) on top of ``parent``; return the sha."""
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(author, author, {"GIT_INDEX_FILE": str(Path(tmp) / "index")})
        git(repo, "read-tree", parent if parent else "--empty", env=env)
        lines = []
        for path, content in files.items():
            if content is None:
                git(repo, "update-index", "--force-remove", path, env=env)
                continue
            data = content.encode() if isinstance(content, str) else content
            _, blob = git(repo, "hash-object", "-w", "--stdin", input=data, env=env)
            lines.append(f"100644 {blob.strip()}\t{path}\n")
        if lines:
            git(repo, "update-index", "--index-info", input="".join(lines).encode(), env=env)
        _, tree = git(repo, "write-tree", env=env)
        parents = ["-p", parent] if parent else []
        _, sha = git(repo, "commit-tree", tree.strip(), *parents, "-m", message, env=env)
    return sha.strip()


def count_commits(repo: Path, base: str, head: str) -> int:
    _, out = git(repo, "rev-list", "--count", f"{base}..{head}")
    return int(out.strip())


def diff_stats(repo: Path, base: str, head: str) -> tuple[int, int, int]:
    """(additions, deletions, changed_files) of head against its merge base with base."""
    _, out = git(repo, "diff", "--numstat", f"{base}...{head}")
    adds = dels = files = 0
    for line in out.splitlines():
        a, d, _ = line.split("\t", 2)
        files += 1
        adds += int(a) if a.isdigit() else 0
        dels += int(d) if d.isdigit() else 0
    return adds, dels, files


def have_common_history(repo: Path, base: str, head: str) -> bool:
    rc, _ = git(repo, "merge-base", base, head, ok=(0, 1))
    return rc == 0


def merge_tree(repo: Path, base: str, head: str) -> str | None:
    """Tree of merging head into base, or None on conflict."""
    rc, out = git(repo, "merge-tree", "--write-tree", base, head, ok=(0, 1))
    return out.splitlines()[0].strip() if rc == 0 else None


def _rebase(repo: Path, onto: str, base: str, head: str, committer: Identity) -> str | None:
    _, out = git(repo, "rev-list", "--reverse", "--no-merges", f"{base}..{head}")
    tip = onto
    with tempfile.TemporaryDirectory() as tmp:
        for sha in out.split():
            info = commit_info(repo, sha)
            env = _env(Identity(info["author"]["name"], info["author"]["email"]), committer,
                       {"GIT_INDEX_FILE": str(Path(tmp) / "index"),
                        "GIT_AUTHOR_DATE": info["author"]["date"]})
            git(repo, "read-tree", tip, env=env)
            parent = info["parents"][0] if info["parents"] else EMPTY_TREE
            _, patch = git(repo, "diff", "--binary", "--full-index", parent, sha)
            if patch:
                rc, _ = git(repo, "apply", "--cached", input=patch.encode(), env=env, ok=(0, 1))
                if rc:
                    return None
            _, tree = git(repo, "write-tree", env=env)
            _, tip = git(repo, "commit-tree", tree.strip(), "-p", tip, "-m", info["message"], env=env)
            tip = tip.strip()
    return tip


def merge(repo: Path, base_branch: str, head_sha: str, method: str, title: str, message: str,
          author: Identity) -> str | None:
    """Merge head_sha into base_branch with GitHub's method; move the branch; return the new sha.

    Returns None when the change does not apply cleanly.
    """
    base_sha = rev_parse(repo, f"refs/heads/{base_branch}")
    if base_sha is None:
        return None
    committer = Identity(*GITHUB_COMMITTER)
    if method == "rebase":
        new = _rebase(repo, base_sha, base_sha, head_sha, committer)
    else:
        tree = merge_tree(repo, base_sha, head_sha)
        if tree is None:
            return None
        parents = ["-p", base_sha] + (["-p", head_sha] if method == "merge" else [])
        text = f"{title}\n\n{message}".rstrip("\n") if message else title
        _, new = git(repo, "commit-tree", tree, *parents, "-m", text, env=_env(author, committer))
        new = new.strip()
    if new is None:
        return None
    update_ref(repo, f"refs/heads/{base_branch}", new, base_sha)
    return new
