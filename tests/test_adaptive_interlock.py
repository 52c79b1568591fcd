"""Adaptive K's own settings (--confidence, --wave, --adaptive-rule) without --adaptive are an error, as the
--uncertain-band rules are, in every command that takes the score options: through the CLI, in a subprocess."""

import pytest
from test_cli import run, solutions_file

FAST = ["--k", "2", "--max-tokens", "3", "--seed", "3", "--threads", "1"]


@pytest.mark.parametrize(("args", "message"), [
    (["--confidence", "0.9"], "confidence 0.9 only applies with adaptive K: turn it on (--adaptive) or leave it out"),
    (["--wave", "3"], "wave 3 only applies with adaptive K: turn it on (--adaptive) or leave it out"),
    (["--adaptive-rule", "window"], "adaptive_rule window only applies with adaptive K"),
    (["--wave", "3", "--confidence", "0.6"], "confidence 0.6, wave 3 only apply with adaptive K: turn it on "
                                             "(--adaptive) or leave them out"),
])
@pytest.mark.parametrize("command", ["score", "serve"])
def test_adaptive_settings_without_adaptive_exit_2_before_any_work(tiny_gguf, tmp_path, command, args, message):
    target = [solutions_file(tmp_path, 1)] if command == "score" else ["--port", "0"]
    result = run(command, *target, "--model", tiny_gguf, *FAST, *args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: invalid settings: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_with_adaptive_the_same_settings_are_used(tiny_gguf, tmp_path):
    result = run("score", solutions_file(tmp_path, 1), "--model", tiny_gguf, *FAST, "--adaptive", "--wave", "1",
                 "--confidence", "0.6", "--adaptive-rule", "window", "--json")
    assert result.returncode == 0, result.stderr
    assert '"wave": 1' in result.stdout and '"adaptive_rule": "window"' in result.stdout
    # a setting given at its own default cannot be told from one left out, and changes nothing
    assert run("score", solutions_file(tmp_path, 1), "--model", tiny_gguf, *FAST, "--wave", "2").returncode == 0
