import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Small matrices: one thread is as fast alone and several times faster on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """A private SOFTEQUIV_CACHE for a whole test module (each simulation runs once)."""
    path = tmp_path_factory.mktemp("softequiv_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTEQUIV_CACHE", str(path))
        yield path
