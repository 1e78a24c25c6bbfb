"""The encoder's stages run channels-last; contiguous NCHW (the bench's comparison) must be the same
function, forward and backward, and the two-pass channel statistics must match torch's var."""

from __future__ import annotations

import copy

import torch

from inference_service.models.style_encoder import StyleEncoder, _mean_std, resolve_encoder


def test_both_layouts_give_the_same_embeddings_and_gradients() -> None:
    model, _ = resolve_encoder(None)
    images = torch.rand(6, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    images[0] = 0.5  # a flat image: every channel constant, where eps guards the root

    def run(channels_last: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        trainee: StyleEncoder = copy.deepcopy(model).train()
        trainee.channels_last = channels_last
        embeddings = trainee(images)
        embeddings.pow(3).sum().backward()  # type: ignore[no-untyped-call]
        return embeddings.detach(), [p.grad.clone() for p in trainee.parameters() if p.grad is not None]

    fast, fast_grads = run(True)
    plain, plain_grads = run(False)
    assert torch.allclose(fast, plain, atol=1e-5)
    assert len(fast_grads) == len(plain_grads) == len(list(model.parameters()))
    for a, b in zip(fast_grads, plain_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)


def test_two_pass_statistics_match_var() -> None:
    x = torch.rand(4, 5, 9, 7, generator=torch.Generator().manual_seed(2)) * 3 + 10  # mean >> std
    stats = _mean_std(x)
    flat = x.flatten(2)
    expected = torch.cat([flat.mean(2), (flat.var(2, unbiased=False) + 1e-6).sqrt()], dim=1)
    assert torch.allclose(stats, expected, rtol=1e-5, atol=1e-6)
