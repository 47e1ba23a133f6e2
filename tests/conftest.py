import sys
from pathlib import Path

import pytest
import torch

# The support modules (images_fixture, reward_fixture) are also named by import path in configs under test
# ("images_fixture:brightness"), as a user names their own module: tests/ is on the path, as before tests/ was a
# package.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for the numerical tests: cpu | cuda")


@pytest.fixture(scope="session")
def device(request) -> str:
    dev = request.config.getoption("--device")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda asked for but CUDA is not available")
    return dev


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny tensors (restored after it): intra-op threads gain nothing there,
    and on a loaded 2-core machine they only wait for each other (each tiny UNet call 10-100x slower). A module
    asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def subspace():
    from benchmark.tasks import make_task

    return make_task("subspace")


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory):
    """A models folder with tiny digits networks (one epoch each, a few seconds in all) under the file
    names a digits cell loads; T = 50 for the denoiser and the noise-conditional classifier."""
    from benchmark.classifiers import pretrain_classifier, save_classifier
    from benchmark.denoisers import pretrain_unet, save_checkpoint
    from benchmark.tasks import make_task
    from benchmark.tasks.digits import MODEL_FILES

    folder = tmp_path_factory.mktemp("digits_models")
    task = make_task("digits")
    for kind in ("classifier", "noisy_classifier", "evaluator"):
        model, report = pretrain_classifier(task, kind, epochs=1, width=4, T=50)
        save_classifier(folder / MODEL_FILES[kind], model, kind, report)
    model, schedule, report = pretrain_unet(task, T=50, epochs=1, width=4)
    save_checkpoint(folder / MODEL_FILES["denoiser"], model, schedule, report)
    return folder
