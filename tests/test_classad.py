"""ClassAd literals have one home: the job ad's values read, the machine ad's strings written."""

from __future__ import annotations

from glidein_triton.local.glidein import cron_lines
from glidein_triton.worker import classad
from glidein_triton.worker.classad import attribute_line, literal_values, machine_ad_string, string_literal

JOB_AD = """MyType = "Job"
tritonmodels = "resnet, bert  ,resnet"
TritonModelsRequired = true
Environment = "A=1 B=2"
"""


def test_string_literals() -> None:
    assert string_literal(' "plain" ') == "plain"
    assert string_literal(r'"with \"quotes\" and \\ backslash"') == 'with "quotes" and \\ backslash'
    assert string_literal('"a" + "b"') is None
    assert string_literal("true") is None
    assert string_literal('"') is None


def test_literal_values_by_case_insensitive_name() -> None:
    values = literal_values(JOB_AD, ("TritonModels", "TritonModelsRequired", "Missing"))
    assert values == {"TritonModels": "resnet, bert  ,resnet", "TritonModelsRequired": "true"}


def test_a_machine_ad_string_is_safe_for_condor_startup_quoting() -> None:
    assert machine_ad_string('say "hi" \\ it\'s\r\n ok') == "say hi its ok"
    assert len(machine_ad_string("x" * 2000)) == classad.MAX_STRING == 500


def test_attribute_lines_of_the_startd_cron() -> None:
    assert attribute_line("TritonReady", True) == "TritonReady = True"
    assert attribute_line("TritonInferenceCount", 12) == "TritonInferenceCount = 12"
    assert attribute_line("TritonGPUUtilization", 0.25) == "TritonGPUUtilization = 0.25"
    assert attribute_line("TritonFailure", 'say "no"\\\nnow') == 'TritonFailure = "say no now"'
    assert cron_lines('A = 1\nB = "x = y"\nnoise\n') == {"A": "1", "B": '"x = y"'}


def test_quoted_text_stays_one_string_literal_in_an_expression() -> None:
    import classad2  # noqa: PLC0415 (the venv's, as the stand-in collector uses it)

    ad = classad2.ClassAd()
    ad["Owner"] = "victim"
    for text in ('a"b', 'x\\" || true || "', "back\\slash\\", "line\nbreak\x01\x7f", "é", ""):
        literal = classad.quoted(text)
        assert classad2.ExprTree(literal).eval() == text
        # an injection attempt does not make a constraint true
        assert classad2.ExprTree(f"Owner == {literal}").eval(ad) is False
    assert classad.quoted('" || true || "') == '"\\" || true || \\""'
