"""images/ami/fleetbake-worker-config, the AMI's boot script: user data and SSM in, the worker's settings out."""

import pytest

from conftest import ROOT


def load_worker_config():
    import importlib.machinery
    import importlib.util

    path = ROOT / "images" / "ami" / "fleetbake-worker-config"
    loader = importlib.machinery.SourceFileLoader("fleetbake_worker_config", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_ami_boot_config_reads_user_data_and_ssm(moto, tmp_path, monkeypatch):
    config = load_worker_config()
    settings, password = config.parse("WORKERNAME=w1\r\nWORKERPASS=pw\nBUILDMASTER=m:9020\n")
    assert settings == {"WORKERNAME": "w1", "BUILDMASTER": "m:9020"} and password == "pw"
    import boto3

    boto3.client("ssm", region_name="us-east-1", endpoint_url=moto).put_parameter(
        Name="/fleet/w2", Value="from-ssm", Type="SecureString")
    monkeypatch.setenv("FLEETBAKE_SSM_ENDPOINT", moto)
    settings, password = config.parse("WORKERNAME=w2\nWORKERPASS_SSM=/fleet/w2\n", "us-east-1")
    assert password == "from-ssm" and "WORKERPASS_SSM" not in settings
    config.write(settings, password, str(tmp_path))
    assert (tmp_path / "workerpass").stat().st_mode & 0o777 == 0o400
    assert "from-ssm" not in (tmp_path / "env").read_text()
    with pytest.raises(ValueError, match="WORKERNAME= and WORKERPASS="):
        config.parse("BUILDMASTER=m\n")


def test_ami_boot_config_retries_imds_but_not_bad_user_data(monkeypatch, capsys):
    config = load_worker_config()
    calls = []

    def unreachable(path):
        calls.append(path)
        raise OSError("connection refused")

    monkeypatch.setattr(config, "imds", unreachable)
    assert config.main(attempts=3, pause=0) == 1
    assert len(calls) == 3 and "attempt 3/3: connection refused" in capsys.readouterr().err
    calls.clear()
    monkeypatch.setattr(config, "imds", lambda path: calls.append(path) or ("us-east-1" if "region" in path else "X=1\n"))
    assert config.main(attempts=3, pause=0) == 1
    assert len(calls) == 2, "incomplete user data is final: no retry"
    assert "needs WORKERNAME=" in capsys.readouterr().err
