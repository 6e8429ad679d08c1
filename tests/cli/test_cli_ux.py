"""The CLI a new user expects, driven as a user drives it: the real ``aios``
command in a subprocess against a real daemon (``aios up -d``).

One test per behaviour of the issue's list: a call that prints the answer,
agents named by name wherever an id is taken, ``--version``/``-h``/completion,
values as positional arguments, ``aios down`` with nothing running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def aios(home: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "AIOS_HOME": str(home), **(env or {})}
    r = subprocess.run([sys.executable, "-m", "aios.cli.main", *args], env=e, capture_output=True,
                       text=True, timeout=120, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError(f"aios {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("ux") / "home"
    aios(home, "up", "-d")
    yield home
    aios(home, "down", check=False)


def spawn_echo(home: Path, name: str) -> int:
    out = aios(home, "spawn", "aios.demos.remote_agents:echo", "--name", name, "-o", "json").stdout
    return int(json.loads(out)["aid"])


def test_call_prints_the_reply(daemon: Path) -> None:
    aid = spawn_echo(daemon, "caller-echo")
    by_name = aios(daemon, "call", "caller-echo", "hello there").stdout
    assert by_name.rstrip("\n").endswith(":hello there")  # echo replies "<pid>:<payload>"
    by_id = json.loads(aios(daemon, "call", str(aid), "again", "-o", "json").stdout)
    assert by_id["aid"] == aid and by_id["reply"].endswith(":again") and by_id["encoding"] == "utf-8"


def test_names_are_taken_wherever_ids_are(daemon: Path) -> None:
    aid = spawn_echo(daemon, "named-echo")
    assert f"to {aid}" in aios(daemon, "send", "named-echo", "hi").stdout
    assert json.loads(aios(daemon, "agent", "resume", "named-echo", "-o", "json").stdout) == []
    assert aios(daemon, "kill", "named-echo").stdout.strip() == f"killed {aid}"
    gone = aios(daemon, "kill", "named-echo", check=False)
    assert gone.returncode == 1 and "ESRCH" in gone.stderr and "no live agent is named 'named-echo'" in gone.stderr
    a, b = spawn_echo(daemon, "twin"), spawn_echo(daemon, "twin")
    both = aios(daemon, "kill", "twin", check=False)
    assert both.returncode == 1 and "EINVAL" in both.stderr and f"{a}, {b}" in both.stderr
    rows = json.loads(aios(daemon, "ps", "-o", "json").stdout)
    assert {r["state"] for r in rows if r["aid"] in (a, b)} <= {"running", "runnable", "blocked", "created"}


def test_down_with_nothing_running_exits_0(tmp_path: Path) -> None:
    r = aios(tmp_path / "nothing", "down", check=False)
    assert r.returncode == 0 and "no kernel is running" in r.stdout


def test_version_help_and_completion(tmp_path: Path) -> None:
    from aios import __version__

    assert aios(tmp_path, "--version").stdout.startswith(f"aios {__version__}")
    assert "Usage: aios" in aios(tmp_path, "-h").stdout
    assert "ID|NAME" in aios(tmp_path, "kill", "-h").stdout
    done = aios(tmp_path, env={"_AIOS_COMPLETE": "complete_bash", "COMP_WORDS": "aios ca",
                               "COMP_CWORD": "1"}).stdout
    assert done.split() == ["call"]
    # typer detects the user's shell from the process tree (sh under make); name it instead
    script = aios(tmp_path, "--show-completion", "bash",
                  env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}).stdout
    assert "_AIOS_COMPLETE=complete_bash" in script


def test_bench_help_lists_the_benchmark_options(tmp_path: Path) -> None:
    own = aios(tmp_path, "bench", "syscall", "--help").stdout
    assert "aios bench syscall" in own and "--batches" in own and "--no-xproc" in own
    assert "--senders" in aios(tmp_path, "bench", "ipc", "-h").stdout
    top = aios(tmp_path, "bench", "--help").stdout
    assert "Usage: aios bench" in top and "syscall" in top and "NAME --help" in top


def test_policy_reload_reports_what_changed(daemon: Path) -> None:
    # The kernel's file watcher may apply an edit before the command does; either
    # way the command reports the change that made the generation in force.
    extra = daemon / "policy" / "extra.cedar"
    extra.parent.mkdir(exist_ok=True)

    def write(text: str) -> None:  # atomically, so the watcher never sees half a file
        tmp = extra.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, extra)

    a = '@id("a")\npermit(principal, action == Action::"spawn", resource);\n'
    b = '@id("b")\npermit(principal, action == Action::"grant", resource);\n'
    write(a + b)
    first = json.loads(aios(daemon, "policy", "reload", "-o", "json").stdout)
    assert first["added"] == ["extra.cedar:a", "extra.cedar:b"]
    assert first["removed"] == [] and first["modified"] == []
    write(a.replace("spawn", "net_connect") + '@id("c")\n' + b.split("\n", 1)[1])
    table = " ".join(aios(daemon, "policy", "reload").stdout.split())
    assert f"generation {first['generation'] + 1}" in table and "1 added, 1 removed, 1 changed" in table
    assert all(s in table for s in ("added │ extra.cedar:c", "removed │ extra.cedar:b",
                                    "changed │ extra.cedar:a"))
    again = json.loads(aios(daemon, "policy", "reload", "-o", "json").stdout)
    assert again["changed"] is False and again["generation"] == first["generation"] + 1
    extra.unlink()
    last = json.loads(aios(daemon, "policy", "reload", "-o", "json").stdout)
    assert last["removed"] == ["extra.cedar:a", "extra.cedar:c"] and last["added"] == []


def test_sched_and_image_take_wide_and_json(daemon: Path, tmp_path: Path) -> None:
    spawn_echo(daemon, "sched-echo")
    rows = json.loads(aios(daemon, "sched", "-o", "json").stdout)
    assert any(r.get("name") == "sched-echo" for r in rows) and all("class" in r for r in rows)
    narrow, wide = aios(daemon, "sched").stdout, aios(daemon, "sched", "-o", "wide").stdout
    assert "sched-echo" in narrow and "throttles" not in narrow and max(map(len, narrow.splitlines())) <= 80
    assert "throttles" in wide and "vruntime" in wide
    bad = aios(daemon, "sched", "-o", "yaml", check=False)
    assert bad.returncode == 1 and "EINVAL" in bad.stderr and "table, wide, json" in bad.stderr

    home = tmp_path / "imghome"
    img = tmp_path / "img"
    img.mkdir()
    (img / "agent.toml").write_text('name="a"\nversion="1"\nentry="x.wat"\nexecutor="wasm"\n')
    (img / "x.wat").write_text("(module)")
    aios(home, "keys", "create", "acme")
    aios(home, "image", "build", str(img))
    aios(home, "image", "sign", str(img), "--key", "acme")
    meta = json.loads(aios(home, "image", "inspect", str(img), "-o", "json").stdout)
    assert meta["ok"] is True and meta["signed_by"] == "acme"
    digests = [v for v in meta.values() if isinstance(v, str) and len(v) >= 64]
    assert digests
    wide_img = aios(home, "image", "inspect", str(img), "-o", "wide").stdout
    assert all(d in wide_img for d in digests)  # whole, on one line, ready to copy
    assert "signed_by" in aios(home, "image", "inspect", str(img)).stdout
    assert aios(home, "image", "inspect", str(img), "-o", "xml", check=False).returncode == 1


def test_ask_on_a_fresh_daemon_says_how_to_start_a_skill_and_the_recipe_works(tmp_path: Path) -> None:
    import shlex
    import time

    home = tmp_path / "fresh"
    aios(home, "up", "-d")
    try:
        first = aios(home, "ask", "Will it rain in Lyon tomorrow?", check=False)
        assert first.returncode == 1 and "ENOENT" in first.stderr and "No skill agent is running" in first.stderr
        recipe = [ln.strip() for ln in first.stderr.splitlines() if ln.strip().startswith("aios ")]
        assert len(recipe) == 2
        for line in recipe:  # the hint's commands, run as printed
            for cmd in line.split("&&"):
                aios(home, *shlex.split(cmd)[1:])
        deadline = time.monotonic() + 60
        while not json.loads(aios(home, "skills", "ls", "-o", "json").stdout)["skills"]:
            assert time.monotonic() < deadline, "the forecaster never registered its skill"
            time.sleep(0.2)
        out = aios(home, "ask", "Will it rain in Lyon tomorrow?").stdout
        assert "skill weather" in out and "reply:" in out and "Lyon" in out
    finally:
        aios(home, "down", check=False)


def test_slow_work_shows_progress_on_stderr_and_quiet_silences_it(daemon: Path) -> None:
    loud = aios(daemon, "spawn", "aios.demos.remote_agents:echo", "-o", "json")
    assert "spawning aios.demos.remote_agents:echo" in loud.stderr and ": done in " in loud.stderr
    assert json.loads(loud.stdout)["aid"] > 0  # stdout stays the result alone
    hush = aios(daemon, "-q", "spawn", "aios.demos.remote_agents:echo", "-o", "json")
    assert hush.stderr == "" and json.loads(hush.stdout)["aid"] > 0
    env_hush = aios(daemon, "spawn", "aios.demos.remote_agents:echo", env={"AIOS_QUIET": "1"})
    assert env_hush.stderr == ""
    bench = aios(daemon, "bench", "sched", "--json", "--cycles", "200", "--rounds", "1", "--sizes", "100")
    assert "bench sched: measuring" in bench.stderr and isinstance(json.loads(bench.stdout), dict)
    assert aios(daemon, "--quiet", "bench", "sched", "--json", "--sizes", "100", "--rounds", "1").stderr == ""


def test_values_are_positional(daemon: Path) -> None:
    proof = json.loads(aios(daemon, "audit", "prove", "1", "-o", "json").stdout)
    assert proof["entry"] == 1 and proof["verified"] is True
    missing = aios(daemon, "audit", "prove", check=False)
    assert missing.returncode == 2 and "aios audit prove ENTRY" in missing.stderr
    quote = json.loads(aios(daemon, "attest", "quote", "c0ffee").stdout)
    assert quote["nonce"] == "c0ffee"


def test_home_defaults_to_the_xdg_state_dir_and_status_names_it(daemon: Path, tmp_path: Path) -> None:
    env = {"AIOS_HOME": "", "XDG_STATE_HOME": "", "HOME": str(tmp_path)}
    shown = json.loads(aios(tmp_path, "home", "-o", "json", env=env).stdout)
    assert shown["home"] == str(tmp_path / ".local" / "state" / "aios") and shown["source"] == "default"
    assert not (tmp_path / ".aios").exists()  # nothing is put in the current directory
    env["XDG_STATE_HOME"] = str(tmp_path / "st")
    assert aios(tmp_path, "home", env=env).stdout.strip() == str(tmp_path / "st" / "aios")
    st = json.loads(aios(daemon, "status", "-o", "json").stdout)
    assert st["home"] == str(daemon.resolve())
    assert json.loads(aios(daemon, "home", "-o", "json").stdout)["kernel_pid"] > 0


def test_home_remove_refuses_a_running_kernel_and_a_foreign_directory(daemon: Path, tmp_path: Path) -> None:
    busy = aios(daemon, "home", "--remove", "--yes", check=False)
    assert busy.returncode == 1 and "EBUSY" in busy.stderr and daemon.exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    refused = aios(foreign, "home", "--remove", "--yes", check=False)
    assert refused.returncode == 1 and "does not look like an AIOS home" in refused.stderr
    assert (foreign / "cat.jpg").exists()
    stopped = tmp_path / "old"
    aios(stopped, "keys", "create", "pub")
    assert "removed" in aios(stopped, "home", "--remove", "--yes").stdout and not stopped.exists()


def test_configuration_reference_lists_every_environment_variable() -> None:
    import re

    root = Path(__file__).resolve().parents[2]
    read = set()
    for f in (root / "src" / "aios").rglob("*.py"):
        read |= set(re.findall(r"[\"'](AIOS_[A-Z_]+|XDG_[A-Z_]+)[\"']", f.read_text()))
    doc = (root / "docs" / "configuration.md").read_text()
    assert {"AIOS_HOME", "AIOS_DEBUG", "XDG_STATE_HOME"} <= read
    assert sorted(v for v in read if f"`{v}`" not in doc) == []


def test_events_show_history_and_hide_the_cli_own_traffic(daemon: Path) -> None:
    spawn_echo(daemon, "hist-echo")
    past = aios(daemon, "events", "agent.lifecycle.spawned", "--since", "10m", "--tail", "0", "--no-follow",
                "-o", "json").stdout
    names = [json.loads(line)["data"]["name"] for line in past.splitlines()]
    assert "hist-echo" in names and "console" not in names
    everything = aios(daemon, "events", "agent.lifecycle.spawned", "--since", "10m", "--tail", "0",
                      "--no-follow", "--all", "-o", "json").stdout
    assert "console" in [json.loads(line)["data"]["name"] for line in everything.splitlines()]
    assert len(aios(daemon, "events", "--tail", "2", "--no-follow").stdout.splitlines()) == 2

    from lines import LineReader  # tests/support

    env = {**os.environ, "AIOS_HOME": str(daemon)}
    follower = subprocess.Popen([sys.executable, "-m", "aios.cli.main", "events", "agent.lifecycle.spawned",
                                 "--tail", "0", "-n", "1", "-o", "json"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    assert follower.stderr is not None
    import time

    said = LineReader(follower.stderr).next(time.monotonic() + 60, "the follower's banner")
    assert said is not None and "waiting for new events" in said and "--all" in said
    spawn_echo(daemon, "live-echo")  # its command's console is spawned first, and hidden
    out, _ = follower.communicate(timeout=60)
    assert json.loads(out)["data"]["name"] == "live-echo"
    bad = aios(daemon, "events", "--since", "yesterday", check=False)
    assert bad.returncode == 1 and "EINVAL" in bad.stderr and "--since takes a duration" in bad.stderr


def test_audit_log_is_newest_first_and_follows(daemon: Path) -> None:
    every = [r["entry"] for r in json.loads(aios(daemon, "audit", "log", "-n", "100000", "--oldest-first",
                                                  "-o", "json").stdout)]
    assert len(every) >= 2 and every == sorted(every)
    idx = [r["entry"] for r in json.loads(aios(daemon, "audit", "log", "-n", "2", "-o", "json").stdout)]
    assert idx[0] >= every[-1] and idx == sorted(idx, reverse=True) and len(idx) == 2

    import time

    from lines import LineReader

    env = {**os.environ, "AIOS_HOME": str(daemon)}
    follower = subprocess.Popen([sys.executable, "-m", "aios.cli.main", "audit", "log", "-f", "-n", "1", "-o", "json"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        lines = LineReader(follower.stdout)
        first = json.loads(lines.next(time.monotonic() + 60, "the latest entry") or "null")
        aid = spawn_echo(daemon, "audited-echo")  # agent.lifecycle.spawned is audited
        deadline = time.monotonic() + 60
        while True:
            line = lines.next(deadline, "the new entry")
            assert line is not None, "no new audit entry was followed"
            row = json.loads(line)
            assert row["entry"] > first["entry"]
            if row["type"] == "agent.lifecycle.spawned" and row["agent"] == aid:
                break
    finally:
        follower.kill()
        follower.wait(timeout=30)
        for pipe in (follower.stdout, follower.stderr):
            if pipe is not None:
                pipe.close()


GREETER = '''
from aios.sdk import Agent


class Greeter(Agent):
    async def on_message(self, msg):
        return b"hello, " + msg.payload
'''


def test_spawn_user_code_from_the_current_directory(daemon: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "greeter.py").write_text(GREETER)
    out = json.loads(aios(daemon, "spawn", "greeter.py:Greeter", "--name", "greeter", "-o", "json", cwd=work).stdout)
    assert out["entry"] == f"{work / 'greeter.py'}:Greeter"
    assert aios(daemon, "call", "greeter", "world").stdout == "hello, world\n"
    aios(daemon, "spawn", "greeter:Greeter", "--name", "greeter-mod", cwd=work)  # module:attr of the cwd
    assert aios(daemon, "call", "greeter-mod", "module").stdout == "hello, module\n"
    aios(daemon, "spawn", "greeter.py:Greeter", "--name", "greeter-w", "--executor", "worker", cwd=work)
    assert aios(daemon, "call", "greeter-w", "worker").stdout == "hello, worker\n"

    (work / "broken.py").write_text("x = 1\n\ndef f(:\n    pass\n")
    bad = aios(daemon, "spawn", "broken.py:f", cwd=work, check=False)
    assert bad.returncode == 1 and f"{work / 'broken.py'}:3" in bad.stderr
    assert "Traceback" not in bad.stderr and "aios/cli" not in bad.stderr
    missing = aios(daemon, "spawn", "nothere.py:X", cwd=work, check=False)
    assert missing.returncode == 1 and "ENOENT" in missing.stderr and "nothere.py" in missing.stderr


SPAWNER = '''
from aios.sdk import Agent, Context


class Echo(Agent):
    async def on_message(self, msg):
        return msg.payload


async def main(ctx: Context):
    await ctx.spawn(Echo, name="e")
'''

BOOM = '''
from aios.sdk import Context


def helper(x):
    return 1 / x


async def main(ctx: Context):
    helper(0)
'''


def test_run_rights_add_replace_and_name_the_missing_flag(tmp_path: Path) -> None:
    (tmp_path / "spawner.py").write_text(SPAWNER)
    ok = aios(tmp_path, "run", "spawner.py", "--right", "ACCESS_NET", cwd=tmp_path)  # added to the defaults
    assert "lacks" not in ok.stdout + ok.stderr
    refused = aios(tmp_path, "run", "spawner.py", "--only-right", "KILL_AGENT", cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "PermissionDenied" in refused.stdout and "SPAWN_AGENT" in refused.stdout
    assert "`aios run --only-right SPAWN_AGENT spawner.py` grants it" in refused.stderr
    bad = aios(tmp_path, "run", "spawner.py", "--right", "ROOT", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "EINVAL" in bad.stderr and "unknown right ROOT" in bad.stderr


def test_run_defaults_carry_what_the_memory_docs_need() -> None:
    from aios.cli.run import root_rights

    assert {"SEMANTIC_SEND", "SPAWN_AGENT", "ALLOC_MEMORY"} <= set(root_rights([], []))
    assert root_rights([], ["KILL_AGENT"]) == ["KILL_AGENT"]


def test_faults_name_the_file_and_line_in_run_ps_and_events(daemon: Path, tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text(BOOM)
    where = f"{tmp_path / 'boom.py'}:6 in helper"
    ran = aios(tmp_path, "run", "boom.py", "-o", "json", cwd=tmp_path, check=False)
    assert ran.returncode == 1
    [row] = json.loads(ran.stdout)
    assert row["fault"].startswith("ZeroDivisionError: division by zero at ") and where in row["fault"]
    aid = int(json.loads(aios(daemon, "spawn", "boom.py:main", "--name", "boom", "-o", "json", cwd=tmp_path).stdout)["aid"])
    exited = aios(daemon, "events", "agent.lifecycle.exited", "--since", "10m", "--tail", "0", "--no-follow",
                  "-o", "json").stdout
    record = next(json.loads(line)["data"] for line in exited.splitlines() if json.loads(line)["data"]["agent"] == aid)
    assert where in record["fault"]


def test_tables_fit_80_columns_and_wide_shows_every_column(daemon: Path) -> None:
    spawn_echo(daemon, "a-rather-long-agent-name-for-the-table")
    env = {"COLUMNS": "80"}
    table = aios(daemon, "ps", env=env).stdout
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "protections" not in table
    wide = aios(daemon, "ps", "-o", "wide", env=env).stdout
    assert "protections" in wide and "parent" in wide
    status = aios(daemon, "status", env=env).stdout
    assert max(len(line) for line in status.splitlines()) <= 80
    bad = aios(daemon, "ps", "-o", "yaml", check=False)
    assert bad.returncode == 1 and "-o must be one of table, wide, json" in bad.stderr
