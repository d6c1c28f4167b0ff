"""Speech encoder (SED) and image encoder (IED) on small inputs built here."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s2i_lib.config import ConfigError, load_config
from s2i_lib.sen import (MIN_FRAMES, ImageEncoder, SpeechEncoder, conv_output_lengths,
                         image_encoder_from_config)
from s2i_lib.sen.speech_encoder import BidirectionalGRU, reverse_within_length_index


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def small_encoder(**kw) -> SpeechEncoder:
    torch.manual_seed(0)
    args = dict(n_mels=40, conv_channels=(16, 24), gru_hidden=20, gru_layers=2, attention_hidden=12)
    args.update(kw)
    return SpeechEncoder(**args)


def utterances(lengths, n_mels=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.zeros(len(lengths), max(lengths), n_mels)
    for i, n in enumerate(lengths):
        feats[i, :n] = torch.randn(n, n_mels, generator=g)
    return feats, torch.tensor(lengths)


def warm_batchnorm(enc: SpeechEncoder) -> None:
    """Give BN non-trivial running statistics, so eval mode is not an identity BN."""
    enc.train()
    with torch.no_grad():
        for s in range(3):
            enc(*utterances([80, 60, 50], seed=10 + s))
    enc.eval()


def test_conv_output_lengths_equal_the_convolution_output():
    conv = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 6, 2), torch.nn.Conv1d(1, 1, 6, 2))
    for n in [16, 17, 18, 19, 20, 37, 100, 301]:
        assert int(conv_output_lengths(torch.tensor([n]))) == conv(torch.zeros(1, 1, n)).shape[-1]
    assert int(conv_output_lengths(torch.tensor([MIN_FRAMES]))) == 1


def test_reverse_within_length_index():
    idx = reverse_within_length_index(torch.tensor([3, 5, 1]), 5)
    assert idx.tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]]


def test_bidirectional_gru_equals_the_packed_torch_gru():
    torch.manual_seed(0)
    ours = BidirectionalGRU(6, 5, layers=2)
    ref = torch.nn.GRU(6, 5, num_layers=2, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for layer in range(2):
            for sfx, gru in (("", ours.forward_layers[layer]), ("_reverse", ours.backward_layers[layer])):
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(gru, f"{kind}_l0").copy_(getattr(ref, f"{kind}_l{layer}{sfx}"))
    lengths = torch.tensor([4, 9, 1, 7])                # unsorted, one of length 1
    x = torch.randn(4, 9, 6, requires_grad=True)
    got = ours(x, lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    want, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=9)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)   # padded frames are zero in both
    w = torch.randn_like(want)
    g_ours, = torch.autograd.grad((got * w).sum(), x)
    g_ref, = torch.autograd.grad((want * w).sum(), x)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-6, rtol=1e-5)


def test_output_is_unit_norm_and_2h_wide():
    enc = small_encoder()
    out = enc(*utterances([50, 33, 16]))
    assert out.shape == (3, 40) and enc.embed_dim == 40
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_embedding_does_not_depend_on_the_padding_of_the_batch():
    enc = small_encoder()
    warm_batchnorm(enc)
    feats, lengths = utterances([23, 90, 57, 41])
    with torch.no_grad():
        batched = enc(feats, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = enc(feats[i:i + 1, :n], lengths[i:i + 1])
            torch.testing.assert_close(alone[0], batched[i], atol=1e-5, rtol=0)
        # the same short utterance padded with garbage instead of zeros: still the same
        noisy = feats.clone()
        noisy[0, 23:] = 100.0
        torch.testing.assert_close(enc(noisy, lengths)[0], batched[0], atol=1e-5, rtol=0)


def test_without_the_mask_padding_would_change_the_embedding():
    # guards the test above: it must be able to fail if the attention stopped masking
    enc = small_encoder()
    warm_batchnorm(enc)
    feats, lengths = utterances([23, 90])
    with torch.no_grad():
        alone = enc(feats[:1, :23], lengths[:1])
        padded_but_told_full = enc(feats[:1], torch.tensor([90]))
    assert (alone - padded_but_told_full).abs().max() > 1e-3


def test_unsorted_lengths_and_list_lengths_work():
    enc = small_encoder().eval()
    feats, lengths = utterances([20, 64, 31])
    with torch.no_grad():
        a = enc(feats, lengths)
        b = enc(feats, lengths.tolist())
    torch.testing.assert_close(a, b)


def test_gradient_reaches_every_parameter():
    enc = small_encoder().train()
    feats, lengths = utterances([40, 70, 25, 66])
    feats.requires_grad_(True)
    loss = enc(feats, lengths)[:, 0].sum()
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_padded_frames_get_no_gradient_in_eval_mode():
    # (in train mode they do, through BatchNorm's batch statistics, as in the original)
    enc = small_encoder().eval()
    feats, lengths = utterances([40, 70, 25, 66])
    feats.requires_grad_(True)
    enc(feats, lengths).sum().backward()
    assert feats.grad[2, 25:].abs().max() == 0
    assert feats.grad[2, :25].abs().max() > 0


def test_too_short_utterance_is_an_error_naming_the_minimum():
    enc = small_encoder().eval()
    feats, lengths = utterances([40, MIN_FRAMES - 1])
    with pytest.raises(ValueError, match=rf"position\(s\) \[1\].*at least {MIN_FRAMES} frames"):
        enc(feats, lengths)
    enc(*utterances([40, MIN_FRAMES]))   # the minimum itself works


def test_bad_shapes_are_errors():
    enc = small_encoder()
    with pytest.raises(ValueError, match="expected features"):
        enc(torch.zeros(2, 50, 13), torch.tensor([50, 50]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        enc(torch.zeros(2, 50, 40), torch.tensor([50]))
    with pytest.raises(ValueError, match="exceeds the padded length"):
        enc(torch.zeros(2, 50, 40), torch.tensor([50, 51]))


def test_attention_init_is_orthogonal_for_both_layers():
    enc = small_encoder(gru_hidden=16, attention_hidden=8)
    for w in (enc.attention.w1.weight, enc.attention.w2.weight):  # (8, 32) and (32, 8)
        small = w @ w.t() if w.shape[0] < w.shape[1] else w.t() @ w
        torch.testing.assert_close(small, torch.eye(8), atol=1e-5, rtol=0)


def test_paper_architecture_has_the_reference_parameter_count():
    cfg = load_config("paper_cub").sen
    enc = SpeechEncoder.from_config(cfg)
    n = sum(p.numel() for p in enc.parameters())
    assert enc.embed_dim == 1024
    assert 6.95e6 < n < 7.1e6   # docs/paper_notes.md §2.1: about 7.03 M


def test_config_requires_embed_dim_to_be_twice_the_gru_hidden_size():
    with pytest.raises(ConfigError, match=r"sen.embed_dim' = 100.*2 \* gru_hidden = 64"):
        load_config("smoke", {"sen.embed_dim": 100})
    with pytest.raises(ConfigError, match="sen.attention_hidden"):
        load_config("smoke", {"sen.attention_hidden": 0})


def test_image_encoder_projects_features_to_unit_norm():
    torch.manual_seed(0)
    enc = ImageEncoder(feat_dim=32, embed_dim=8)
    feats = torch.randn(5, 32)
    out = enc(feats)
    assert out.shape == (5, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))
    expected = torch.nn.functional.normalize(feats @ enc.projection.weight.t() + enc.projection.bias)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert enc.projection.weight.grad is not None
    with pytest.raises(ValueError, match="no backbone"):
        enc(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"expected features \(B, 32\)"):
        enc(torch.zeros(2, 31))


def test_image_encoder_from_config_uses_the_backbone_feature_size():
    cfg = load_config("smoke").sen
    assert image_encoder_from_config(cfg).projection.in_features == 1280      # efficientnet_lite0
    cfg.backbone = "tf_inception"
    enc = image_encoder_from_config(cfg)
    assert (enc.projection.in_features, enc.projection.out_features) == (2048, cfg.embed_dim)
    assert enc.backbone is None
