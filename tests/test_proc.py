import sys

import pytest

from fleetbake import proc
from fleetbake.errors import FleetbakeError

PY = sys.executable


def script(code):
    return [PY, "-c", code]


def test_output_is_returned():
    assert proc.run(script("print('hello')")) == "hello\n"


def test_a_failing_command_is_one_line_naming_its_last_error_line():
    noisy = "import sys; print('progress'); sys.stderr.write('warning: x\\nerror: the cause\\n\\n'); sys.exit(3)"
    with pytest.raises(FleetbakeError) as info:
        proc.run(script(noisy), what="the step")
    assert str(info.value) == "the step failed: error: the cause"
    assert isinstance(info.value, proc.ProcError) and info.value.code == 3 and info.value.output == "progress\n"


def test_without_stderr_the_cause_is_the_last_line_of_stdout_and_without_output_the_exit_code():
    with pytest.raises(proc.ProcError, match=r"^python\S* failed: second$"):
        proc.run(script("print('first'); print('second'); raise SystemExit(1)"))
    with pytest.raises(proc.ProcError, match=r"^quiet failed: exit 4, no output$"):
        proc.run(script("raise SystemExit(4)"), what="quiet")


def test_a_reason_picker_chooses_the_cause():
    code = "print(\"Build 'x' errored after 3s: no SSH\"); print('==> Builds finished'); raise SystemExit(1)"
    pick = lambda result: next((l for l in result.output.splitlines() if " errored after " in l), None)  # noqa: E731
    with pytest.raises(proc.ProcError, match=r"^packer build failed: Build 'x' errored after 3s: no SSH$"):
        proc.run(script(code), what="packer build", reason=pick)
    with pytest.raises(proc.ProcError, match=r"^other failed: last$"):  # the picker found nothing: the last line
        proc.run(script("print('last'); raise SystemExit(1)"), what="other", reason=pick)


def test_a_callers_own_error_class_is_raised():
    class StepError(proc.ProcError):
        pass

    with pytest.raises(StepError, match="^step failed: boom$"):
        proc.run(script("raise SystemExit('boom')"), what="step", error=StepError)


def test_a_missing_binary_is_one_line():
    with pytest.raises(proc.ProcError) as info:
        proc.run(["fleetbake-no-such-tool", "--flag"], what="the tool")
    assert str(info.value) == "the tool failed: fleetbake-no-such-tool: command not found"
    with pytest.raises(proc.ProcError, match="^ls failed: no directory /nonexistent/fleetbake$"):
        proc.run(["ls"], cwd="/nonexistent/fleetbake")
    with pytest.raises(proc.ProcError, match="command not found"):  # also when streamed
        proc.run(["fleetbake-no-such-tool"], stream=lambda line: None)


def test_a_timeout_is_one_line_and_the_program_is_stopped():
    for stream in (None, lambda line: None):
        with pytest.raises(proc.ProcError, match=r"^sleeper failed: still running after 0.5s, stopped$"):
            proc.run(script("import time; print('started', flush=True); time.sleep(30)"), what="sleeper",
                     timeout=0.5, stream=stream)


def test_streaming_calls_back_once_per_line_in_order_with_stderr_among_stdout():
    lines = []
    code = "import sys\nfor n in range(3):\n print(n, flush=True); print('e', n, file=sys.stderr, flush=True)"
    out = proc.run(script(code), stream=lines.append)
    assert lines == ["0", "e 0", "1", "e 1", "2", "e 2"]
    assert out == "0\ne 0\n1\ne 1\n2\ne 2\n"


def test_streamed_failure_names_the_last_line_and_input_reaches_the_program():
    lines = []
    with pytest.raises(proc.ProcError, match="^cat-ish failed: fatal: b$"):
        proc.run(script("import sys\nfor l in sys.stdin: print('fatal:', l.strip())\nraise SystemExit(2)"),
                 input="a\nb\n", stream=lines.append, what="cat-ish")
    assert lines == ["fatal: a", "fatal: b"]
    assert proc.run(script("import sys; print(sys.stdin.read().upper(), end='')"), input="quiet\n") == "QUIET\n"


def test_call_gives_the_exit_code_and_does_not_raise():
    result = proc.call(script("import sys; print('out'); print('err', file=sys.stderr); sys.exit(5)"))
    assert (result.code, result.output, result.errors) == (5, "out\n", "err\n")
    with pytest.raises(proc.ProcError, match="command not found"):  # a program that never ran has no exit code
        proc.call(["fleetbake-no-such-tool"])


def test_env_and_cwd_reach_the_program(tmp_path):
    code = "import os; print(os.getcwd()); print(os.environ.get('FLEETBAKE_X'), os.environ.get('HOME'))"
    out = proc.run(script(code), cwd=tmp_path, env={"FLEETBAKE_X": "1"}).splitlines()
    assert out == [str(tmp_path), "1 None"]  # env replaces the environment, it does not add to it
