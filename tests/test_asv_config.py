"""asv_bench/asv.conf.json points at this repository and can build past commits (the
README's asv recipe: `asv run HEAD~3..HEAD`, `asv publish`)."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "asv_bench")


def _conf():
    with open(os.path.join(BENCH, "asv.conf.json")) as f:
        return json.load(f)


def test_config_points_at_this_repository():
    conf = _conf()
    assert os.path.realpath(os.path.join(BENCH, conf["repo"])) == os.path.realpath(ROOT)
    assert os.path.isdir(os.path.join(BENCH, conf["benchmark_dir"]))
    # the published history follows whatever branch is checked out
    assert conf["branches"] == ["HEAD"]


def test_config_builds_commits_in_their_own_environment():
    conf = _conf()
    assert conf["environment_type"] == "virtualenv"
    # pip wheel without --no-deps leaves numba's wheels next to jitconv's in the build
    # cache, and asv then refuses to pick one ("Found multiple wheels")
    assert any("--no-deps" in c for c in conf["build_command"])


def test_asv_outputs_are_not_committed():
    for path in ("results", "html", ".asv/env"):
        target = os.path.join("asv_bench", path, "x.json")
        r = subprocess.run(["git", "check-ignore", "-q", target], cwd=ROOT)
        assert r.returncode == 0, f"{target} is not ignored by git"
