import pytest
import torch
from torch import nn

from core.errors import UserError
from networks.googlenet import GoogLeNet, TorchvisionGoogLeNet, build_googlenet, out_channels


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_network_has_about_7m_parameters():
    net = GoogLeNet(1000, batch_norm=False, aux_classifiers=False)
    assert 6.95e6 < n_params(net) < 7.05e6          # 6,998,552
    assert out_channels("3a") == 256 and out_channels("4e") == 832 and out_channels("5b") == 1024


def test_5x5_branch_is_5x5_unlike_torchvision():
    ours = GoogLeNet(10, aux_classifiers=False)
    assert ours.stages["4a"].branch5[1][0].kernel_size == (5, 5)
    tv = TorchvisionGoogLeNet(10, aux_classifiers=False)
    assert tv.stages["4a"].branch3[1].conv.kernel_size == (3, 3)      # torchvision's "5x5" branch


def test_aux_heads_only_in_training_and_staged_run_matches_forward():
    torch.manual_seed(0)
    net = GoogLeNet(5, width=0.25)
    x = torch.randn(2, 3, 96, 96)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 5) and [a.shape for a in aux] == [(2, 5), (2, 5)]
    net.eval()
    with torch.no_grad():
        full = net(x)
        mid, _ = net.run(x, stop="4e")
        assert mid.shape[-1] == 96 // 16
        rest, _ = net.run(mid, start="4e")
        assert torch.allclose(net.head(net.pool(rest)), full, atol=1e-5)


def test_no_batch_norm_uses_lrn_and_biases():
    net = GoogLeNet(3, batch_norm=False, width=0.25, aux_classifiers=False)
    assert any(isinstance(m, nn.LocalResponseNorm) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_init_choices(tmp_path):
    with pytest.raises(UserError, match="needs arch: torchvision"):
        build_googlenet("googlenet", 3, init="imagenet")
    with pytest.raises(UserError, match="cannot load weights"):
        build_googlenet("googlenet", 3, width=0.25, init=str(tmp_path / "missing.pth"))
    src = GoogLeNet(7, width=0.25)                     # other class count: heads are skipped
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = build_googlenet("googlenet", 3, width=0.25, init=str(tmp_path / "w.pth"))
    assert torch.equal(dst.stages["3a"].branch1[0].weight, src.stages["3a"].branch1[0].weight)
    assert dst.classifier.out_features == 3
