"""fleetbake/devtools/master.py: the local test master (what it can check without starting one)."""

from conftest import ROOT


def test_the_test_master_sends_steps_that_exist_and_its_config_reads_each_one():
    from fleetbake.devtools import master

    config = (ROOT / "fleetbake" / "devtools" / "master.cfg").read_text()
    names = [script.name for script in master.STEP_SCRIPTS]
    assert names == ["hunt.py", "forge_health.py", "fill_disk.py"]
    for script in master.STEP_SCRIPTS:
        assert script.is_file(), script
        assert f'os.path.join(basedir, "{script.name}")' in config, script.name
    assert all(s.parent.name == "devtools" for s in master.STEP_SCRIPTS[1:])
