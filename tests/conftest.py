import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for the numerical tests: cpu | cuda")


@pytest.fixture(scope="session")
def device(request) -> str:
    dev = request.config.getoption("--device")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda asked for but CUDA is not available")
    return dev


@pytest.fixture(scope="session")
def subspace():
    from benchmark.tasks import make_task

    return make_task("subspace")
