"""model.backbone = torchvision:NAME / timm:NAME (models.hub): pretrained weights from caches.

The caches are built in tmp_path in the real on-disk layouts; nothing here may use the network.
"""

import socket
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.models import hub as pretrained
from cnnlab.models.hub import Pretrained, cache_location, load_pretrained

REAL_DOWNLOAD = pretrained._download  # kept before the autouse fixture replaces it

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TIMM_NAME = "test_resnet.r160_in1k"  # timm's smallest pretrained resnet (0.5M parameters)


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Any connection attempt fails the test; the caches start empty under tmp_path."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to use the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(pretrained, "_download", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture
def hf_cache(monkeypatch, tmp_path) -> Path:
    """An empty Hugging Face hub cache, offline. huggingface_hub reads HF_HUB_CACHE and
    HF_HUB_OFFLINE into its constants at import, so the env alone is not enough."""
    hub = pytest.importorskip("huggingface_hub")
    pytest.importorskip("timm")
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def random_state(name: str) -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(1)
    return torchvision.models.get_model(name, weights=None).state_dict()


def assert_same_state(net, state):
    got = net.state_dict()
    assert got.keys() == state.keys()
    assert all(torch.equal(got[k], state[k]) for k in state)


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


@pytest.mark.slow
def test_torchvision_weights_load_from_torch_hub_cache(tmp_path):
    path = cache_location("torchvision:resnet18")
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    state = random_state("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(state, path)

    got = load_pretrained("torchvision:resnet18")
    assert isinstance(got, Pretrained)
    assert_same_state(got.net, state)
    assert got.net.training and got.net.fc.out_features == 1000
    assert (got.mean, got.std) == IMAGENET
    assert (got.channels, got.image_size) == (3, (224, 224))


def test_torchvision_failed_download_names_the_cache_path_and_leaves_nothing(monkeypatch):
    def offline(url, path):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(pretrained, "_download", offline)
    path = cache_location("torchvision:resnet18")
    with pytest.raises(ConfigError) as e:
        load_pretrained("torchvision:resnet18")
    msg = str(e.value)
    assert msg.startswith("model.backbone = 'torchvision:resnet18': ")
    assert str(path) in msg and "name resolution" in msg and "'resnet18'" in msg
    assert "\n" not in msg
    assert files_under(path.parent) == []


@pytest.mark.slow
def test_torchvision_absent_weights_are_downloaded(monkeypatch):
    state = random_state("resnet18")
    calls = []

    def fake_download(url, path):
        calls.append(url)
        torch.save(state, path)

    monkeypatch.setattr(pretrained, "_download", fake_download)
    got = load_pretrained("torchvision:resnet18")
    assert calls == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert_same_state(got.net, state)
    load_pretrained("torchvision:resnet18")  # cached now: no second download
    assert len(calls) == 1


@pytest.mark.slow
def test_real_download_writes_the_file_whole(tmp_path):
    """torch.hub's downloader over a file:// url: the real code path, no network."""
    source = tmp_path / "served.pth"
    torch.save(random_state("resnet18"), source)
    target = tmp_path / "checkpoints" / "resnet18.pth"  # no hash in the name: none checked
    target.parent.mkdir()
    REAL_DOWNLOAD(source.as_uri(), target)
    assert target.read_bytes() == source.read_bytes()
    assert files_under(target.parent) == [target]


@pytest.mark.parametrize("served", [True, False], ids=["hash-differs", "missing"])
def test_real_download_that_fails_leaves_no_partial_file(tmp_path, monkeypatch, served):
    source = tmp_path / "served.pth"
    if served:
        torch.save(random_state("resnet18"), source)  # not the file resnet18-f37072fd names
    monkeypatch.setattr(
        pretrained, "_download", lambda url, path: REAL_DOWNLOAD(source.as_uri(), path)
    )
    path = cache_location("torchvision:resnet18")
    with pytest.raises(ConfigError, match="could not be downloaded"):
        load_pretrained("torchvision:resnet18")
    assert files_under(path.parent) == []


def test_torchvision_torn_cache_file_is_named():
    path = cache_location("torchvision:resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    with pytest.raises(ConfigError, match="cached weights file .*resnet18-f37072fd.pth does not"):
        load_pretrained("torchvision:resnet18")


@pytest.mark.slow
def test_torchvision_googlenet_untrained_matches_the_pretrained_architecture():
    import torchvision

    # torchvision saves googlenet with its aux heads and drops them after loading
    torch.manual_seed(0)
    saved = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    path = cache_location("torchvision:googlenet")
    path.parent.mkdir(parents=True)
    torch.save(saved.state_dict(), path)

    trained = load_pretrained("torchvision:googlenet").net
    untrained = load_pretrained("torchvision:googlenet", weights=False).net
    shapes = {k: v.shape for k, v in trained.state_dict().items()}
    assert shapes == {k: v.shape for k, v in untrained.state_dict().items()}
    assert trained.transform_input and untrained.transform_input
    assert trained.aux1 is None and untrained.aux1 is None


def test_torchvision_without_weights_touches_no_file(tmp_path):
    got = load_pretrained("torchvision:mobilenet_v3_small", weights=False)
    assert (got.mean, got.std, got.channels, got.image_size) == (*IMAGENET, 3, (224, 224))
    assert got.net.training
    assert files_under(tmp_path) == []


def test_unknown_torchvision_name_suggests_a_close_one():
    with pytest.raises(ConfigError) as e:
        load_pretrained("torchvision:resnet181")
    msg = str(e.value)
    assert msg.startswith("model.backbone = 'torchvision:resnet181': torchvision has no model")
    assert "resnet18" in msg.split("close:")[1]


@pytest.mark.parametrize(
    "name, expected",
    [("tensorflow:resnet18", "unknown pretrained source 'tensorflow'"), ("timm:", "timm:NAME")],
)
def test_malformed_names(name, expected):
    with pytest.raises(ConfigError, match=expected):
        load_pretrained(name)


def fake_hub_snapshot(cache: Path, name: str) -> dict[str, torch.Tensor]:
    """A model's weights laid out as huggingface_hub stores them: refs/main names the commit
    whose snapshot folder holds model.safetensors (timm needs no config.json for these)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(2)
    state = timm.create_model(name, pretrained=False).state_dict()
    repo = cache / f"models--timm--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        repo / "snapshots" / commit / "model.safetensors",
    )
    return state


@pytest.mark.slow
def test_timm_weights_load_from_the_hub_cache_offline(hf_cache):
    state = fake_hub_snapshot(hf_cache, TIMM_NAME)
    assert cache_location(f"timm:{TIMM_NAME}") == hf_cache / f"models--timm--{TIMM_NAME}"

    got = load_pretrained(f"timm:{TIMM_NAME}")
    assert_same_state(got.net, state)
    assert got.net.training
    assert (got.mean, got.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert (got.channels, got.image_size) == (3, (160, 160))


def test_timm_name_without_tag_uses_the_default_tag(hf_cache):
    state = fake_hub_snapshot(hf_cache, TIMM_NAME)
    assert_same_state(load_pretrained("timm:test_resnet").net, state)


def test_timm_torn_cache_file_is_named(hf_cache):
    fake_hub_snapshot(hf_cache, TIMM_NAME)
    (weights,) = hf_cache.rglob("model.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=f"cached weights in .*models--timm--{TIMM_NAME} do not"):
        load_pretrained(f"timm:{TIMM_NAME}")


def test_timm_absent_offline_names_the_cache_folder(hf_cache):
    with pytest.raises(ConfigError) as e:
        load_pretrained(f"timm:{TIMM_NAME}")
    msg = str(e.value)
    assert msg.startswith(f"model.backbone = 'timm:{TIMM_NAME}': pretrained weights are not")
    assert str(hf_cache / f"models--timm--{TIMM_NAME}") in msg and "\n" not in msg


def test_timm_without_weights_touches_no_file(hf_cache, tmp_path):
    got = load_pretrained("timm:resnet10t", weights=False)
    assert (got.mean, got.std, got.channels, got.image_size) == (*IMAGENET, 3, (176, 176))
    assert got.net.training
    assert files_under(tmp_path) == []


def test_unknown_timm_name_suggests_a_close_one(hf_cache):
    with pytest.raises(ConfigError) as e:
        load_pretrained("timm:resnet10x")
    msg = str(e.value)
    assert msg.startswith("model.backbone = 'timm:resnet10x': timm has no model")
    assert "resnet10t" in msg.split("close:")[1]


@pytest.mark.parametrize("model", ["coatnet_0_224", "resnet18.no_such_tag"])
def test_timm_model_without_those_weights_says_so(hf_cache, model):
    with pytest.raises(ConfigError, match=f"timm has no pretrained weights for '{model}'"):
        load_pretrained(f"timm:{model}")
