"""The stand-in condor_status and condor_advertise (glidein_triton/local/standin_collector.py), against what
HTCondor's sources say the real tools and the collector do (docs/pool-facts.md gives the files and lines)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from glidein_triton.local import standin_collector as collector
from glidein_triton.local.standin_collector import ToolError, advertise, install_condor_dir, status

SERVER_B = """# advertised by: pilot-b@pool
MyType = "Machine"
Name = "slot1@glidein_2@b.site"
Machine = "b.site"
TritonPoolRole = "server"
TritonQueueUs = 12.5
TritonModels = { "simple", "densenet" }
AuthenticatedIdentity = "frontend@pool"
"""
SERVER_A = """# advertised by: pilot-a@pool
MyType = "Machine"
Name = "slot1@glidein_1@a.site"
Machine = "a.site"
TritonPoolRole = "server"
TritonQueueUs = 3
"""
CLIENT_A = """MyType = "Machine"
Name = "slot1@glidein_3@a.site"
Machine = "a.site"
TritonPoolRole = "client"
AuthenticatedIdentity = "pilot-b@pool"
"""
DAEMON_A = """# advertised by: pilot-a@pool
MyType = "StartD"
Name = "glidein_1@a.site"
Machine = "a.site"
TritonPoolRole = "server"
"""


@pytest.fixture
def ads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "collector.ads"
    path.write_text("\n".join([SERVER_B, SERVER_A, CLIENT_A, DAEMON_A]))
    monkeypatch.setenv(collector.ADS_VARIABLE, str(path))
    monkeypatch.delenv(collector.IDENTITY_VARIABLE, raising=False)
    monkeypatch.delenv(collector.COLLECTOR_VARIABLE, raising=False)
    monkeypatch.delenv("CONDOR_CONFIG", raising=False)
    return path


def test_autoformat_prints_one_row_per_ad_columns_separated_by_one_space(ads: Path) -> None:
    # ad_printmask.cpp: SetAutoSep(NULL, " ", NULL, "\n"); %v prints strings bare, the rest in old syntax.
    out = status(
        ["-pool", "cm", "-af", "Name", "TritonQueueUs", "TritonModels", "Missing", "TritonQueueUs * 2"]
    )
    assert out == (
        "slot1@glidein_1@a.site 3 undefined undefined 6\n"
        "slot1@glidein_3@a.site undefined undefined undefined undefined\n"
        'slot1@glidein_2@b.site 12.5 { "simple","densenet" } undefined 25.0\n'
    )


def test_ads_come_sorted_by_machine_then_name(ads: Path) -> None:
    out = status(["-pool", "cm", "-af", "Machine", "Name"])
    assert out.splitlines() == [
        "a.site slot1@glidein_1@a.site",
        "a.site slot1@glidein_3@a.site",
        "b.site slot1@glidein_2@b.site",
    ]


def test_json_is_an_array_of_ads_with_the_requested_attributes_sorted(ads: Path) -> None:
    # prettyPrint.cpp printJSON: "[\n" before the first ad, ",\n" before the others, "\n" after each, "]\n".
    out = status(
        ["-pool", "cm", "-json", "-attributes", "tritonqueueus,Name", "-constraint", 'Machine == "b.site"']
    )
    assert out == '[\n{\n  "Name": "slot1@glidein_2@b.site",\n  "TritonQueueUs": 12.5\n}\n]\n'
    two = status(["-pool", "cm", "-json", "-attributes", "Name", "-constraint", 'TritonPoolRole == "server"'])
    assert (
        two == '[\n{\n  "Name": "slot1@glidein_1@a.site"\n}\n,\n{\n  "Name": "slot1@glidein_2@b.site"\n}\n]\n'
    )


def test_json_with_no_ads_prints_nothing(ads: Path) -> None:
    # The closing "]" is written only when an ad was (status.cpp: output_index > 0).
    assert status(["-pool", "cm", "-json", "-constraint", "false"]) == ""


def test_the_collector_sets_authenticated_identity_whatever_the_ad_claims(ads: Path) -> None:
    out = status(["-pool", "cm", "-af", "Name", "AuthenticatedIdentity", "AuthenticationMethod"])
    assert out.splitlines() == [
        "slot1@glidein_1@a.site pilot-a@pool TOKEN",
        # an ad sent without authentication loses the identity it claims (collector_engine.cpp)
        "slot1@glidein_3@a.site undefined undefined",
        # the collector's identity wins over the claimed one
        "slot1@glidein_2@b.site pilot-b@pool TOKEN",
    ]


def test_constraints_are_anded_and_evaluated_in_each_ad(ads: Path) -> None:
    out = status(
        [
            "-pool",
            "cm",
            "-con",
            'TritonPoolRole == "server"',
            "-constraint",
            "TritonQueueUs < 10",
            "-af",
            "Name",
        ]
    )
    assert out == "slot1@glidein_1@a.site\n"
    # a number counts as its truth value, undefined as false (the collector's EvalBool)
    assert (
        status(["-pool", "cm", "-af", "Name", "-constraint", "TritonQueueUs - 3"])
        == "slot1@glidein_2@b.site\n"
    )
    assert status(
        ["-pool", "cm", "-af", "Name", "-constraint", 'AuthenticatedIdentity =?= "pilot-b@pool"']
    ) == ("slot1@glidein_2@b.site\n")


def test_startd_selects_the_daemon_ads_and_no_mode_the_slot_ads(ads: Path) -> None:
    assert status(["-pool", "cm", "-startd", "-af", "Name"]) == "glidein_1@a.site\n"
    assert "glidein_1@a.site\n" not in status(["-pool", "cm", "-af", "Name"]).splitlines(keepends=True)


def test_limit_caps_the_number_of_ads(ads: Path) -> None:
    assert len(status(["-pool", "cm", "-limit", "2", "-af", "Name"]).splitlines()) == 2
    assert len(status(["-pool", "cm", "-lim", "1", "-af", "Name"]).splitlines()) == 1


def test_ads_past_their_lifetime_are_gone(ads: Path) -> None:
    ads.write_text(
        'MyType = "Machine"\nName = "old"\nLastHeardFrom = 1000\n\n'
        'MyType = "Machine"\nName = "short"\nLastHeardFrom = 1900\nClassAdLifetime = 60\n\n'
        'MyType = "Machine"\nName = "fresh"\nLastHeardFrom = 1900\n'
    )
    assert status(["-pool", "cm", "-af", "Name"], now=2000) == "fresh\n"
    assert status(["-pool", "cm", "-af", "Name"], now=1950).splitlines() == ["fresh", "short"]


def test_options_match_by_the_real_prefixes(ads: Path) -> None:
    # status.cpp: is_dash_arg_prefix(arg, "constraint", 3), "autoformat" 5, "json" 2, "attributes" 2, "limit" 2;
    # "--" asks for the whole word (match_prefix.cpp).
    for constraint in ("-con", "-constr", "--constraint"):
        assert (
            status(["-p", "cm", "-autof", "Name", constraint, 'Machine == "b.site"'])
            == "slot1@glidein_2@b.site\n"
        )
    assert status(["-pool", "cm", "-js", "-at", "Machine", "-li", "1", "-con", 'Machine == "b.site"']) == (
        '[\n{\n  "Machine": "b.site"\n}\n]\n'
    )


def test_unknown_and_incomplete_options_are_refused_as_the_real_tool_does(ads: Path) -> None:
    with pytest.raises(ToolError, match=r"^Error:  Unknown option -bogus\nUsage: condor_status "):
        status(["-pool", "cm", "-af", "Name", "-bogus", "false"])
    with pytest.raises(ToolError, match=r"^Error:  Unknown option --con\n"):
        status(["-pool", "cm", "-af", "Name", "--con", "false"])
    with pytest.raises(ToolError, match=r"^condor_status: -constraint requires another argument\n"):
        status(["-pool", "cm", "-af", "Name", "-constraint"])
    with pytest.raises(ToolError, match=r"^Error: Argument -af requires at least one attribute parameter\n"):
        status(["-pool", "cm", "-af", "-json"])


def test_a_constraint_that_does_not_parse_fails_the_query(ads: Path) -> None:
    with pytest.raises(ToolError, match=r"^Error: invalid constraint\n"):
        status(["-pool", "cm", "-af", "Name", "-constraint", "Name =="])


def test_without_pool_the_tool_needs_condor_config(ads: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ToolError, match="Neither the environment variable CONDOR_CONFIG"):
        status(["-af", "Name"])
    config = ads.parent / "condor_config"
    config.write_text("COLLECTOR_HOST = cm\n")
    monkeypatch.setenv("CONDOR_CONFIG", str(config))
    assert len(status(["-af", "Name"]).splitlines()) == 3


def test_a_pool_other_than_the_reachable_collector_fails(ads: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(collector.COLLECTOR_VARIABLE, "cm.pool:9618")
    assert status(["-pool", "cm.pool:9618", "-af", "Name"])
    with pytest.raises(ToolError, match=r"^Error: communication error\n"):
        status(["-pool", "site-collector", "-af", "Name"])


def test_an_ads_file_line_that_does_not_parse_is_named(ads: Path) -> None:
    ads.write_text('MyType = "Machine"\nName = "x"\nBroken = (1 +\n')
    with pytest.raises(ToolError, match=r"collector.ads:3: cannot parse the expression of Broken"):
        status(["-pool", "cm", "-af", "Name"])


def write_ad(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_advertise_stamps_the_advertiser_and_replaces_the_ad_of_that_name(
    ads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(collector.IDENTITY_VARIABLE, "pilot-c@pool")
    update = write_ad(
        ads.parent / "update.ad",
        'MyType = "Machine"\nName = "slot1@glidein_2@b.site"\nMachine = "b.site"\nTritonQueueUs = 99\n'
        'AuthenticatedIdentity = "pilot-b@pool"\n',
    )
    advertise(["-pool", "cm", "UPDATE_STARTD_AD", update], str, now=5000)
    out = status(
        ["-pool", "cm", "-af", "Name", "TritonQueueUs", "AuthenticatedIdentity", "LastHeardFrom"], now=5000
    )
    assert out.splitlines()[-1] == "slot1@glidein_2@b.site 99 pilot-c@pool 5000"
    assert len(out.splitlines()) == 3
    new = write_ad(ads.parent / "new.ad", 'MyType = "Machine"\nName = "slot1@d"\nMachine = "d"\n')
    advertise(["UPDATE_STARTD_AD", new], str, now=5000)
    assert status(["-pool", "cm", "-af", "Name"], now=5000).splitlines()[-1] == "slot1@d"


def test_an_unauthenticated_advertise_carries_no_identity(ads: Path) -> None:
    update = write_ad(
        ads.parent / "u.ad", 'MyType = "Machine"\nName = "n"\nAuthenticatedIdentity = "root@pool"\n'
    )
    advertise(["UPDATE_STARTD_AD", "-"], Path(update).read_text, now=1)
    assert status(["-pool", "cm", "-af", "AuthenticatedIdentity", "-constraint", 'Name == "n"'], now=1) == (
        "undefined\n"
    )


def test_invalidate_removes_the_ad(ads: Path) -> None:
    gone = write_ad(ads.parent / "gone.ad", 'MyType = "Machine"\nName = "slot1@glidein_1@a.site"\n')
    advertise(["INVALIDATE_STARTD_ADS", gone], str)
    assert "slot1@glidein_1@a.site" not in status(["-pool", "cm", "-af", "Name"])


def test_advertise_refuses_what_the_real_tool_refuses(ads: Path) -> None:
    two = write_ad(ads.parent / "two.ad", 'Name = "a"\n\nName = "b"\n')
    with pytest.raises(ToolError, match=r"^ERROR: multiple ads in .*two.ad$"):
        advertise(["UPDATE_STARTD_AD", two], str)
    with pytest.raises(ToolError, match=r"^Unknown command name UPDATE_STARTD\n"):
        advertise(["UPDATE_STARTD", two], str)
    with pytest.raises(ToolError, match=r"^Unknown argument: -multi\n"):
        advertise(["-multi", "UPDATE_STARTD_AD", two], str)
    with pytest.raises(ToolError, match=r"^couldn't open .*missing.ad: No such file or directory$"):
        advertise(["UPDATE_STARTD_AD", str(ads.parent / "missing.ad")], str)
    empty = write_ad(ads.parent / "empty.ad", "\n")
    with pytest.raises(ToolError, match=r"^.*empty.ad is empty$"):
        advertise(["UPDATE_STARTD_AD", empty], str)


def test_concurrent_advertisers_lose_no_update(ads: Path) -> None:
    files = [write_ad(ads.parent / f"c{n}.ad", f'MyType = "Machine"\nName = "c{n}"\n') for n in range(8)]
    threads = [threading.Thread(target=advertise, args=(["UPDATE_STARTD_AD", f], str)) for f in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = status(["-pool", "cm", "-af", "Name", "-constraint", 'regexp("^c[0-9]$", Name)']).split()
    assert sorted(names) == [f"c{n}" for n in range(8)]


def test_the_condor_dir_tools_run_and_exit_as_the_real_ones(ads: Path, tmp_path: Path) -> None:
    condor = install_condor_dir(tmp_path / "condor")
    ok = subprocess.run(
        [condor / "bin" / "condor_status", "-pool", "cm", "-af", "Name"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (ok.returncode, ok.stdout.split()[0]) == (0, "slot1@glidein_1@a.site")
    bad = subprocess.run(
        [condor / "bin" / "condor_status", "-pool", "cm", "-af", "Name", "-constraint", "Name =="],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (bad.returncode, bad.stdout, bad.stderr.splitlines()[0]) == (1, "", "Error: invalid constraint")
    sent = subprocess.run(
        [condor / "sbin" / "condor_advertise", "UPDATE_STARTD_AD", "-"],
        input='MyType = "Machine"\nName = "piped"\n',
        capture_output=True,
        text=True,
        check=False,
        env={collector.ADS_VARIABLE: str(ads), collector.IDENTITY_VARIABLE: "p@pool"},
    )
    assert sent.returncode == 0, sent.stderr
    assert (
        status(["-pool", "cm", "-af", "AuthenticatedIdentity", "-constraint", 'Name == "piped"'])
        == "p@pool\n"
    )
