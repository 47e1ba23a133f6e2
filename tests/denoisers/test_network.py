"""benchmark/denoisers/network.py: the residual MLP noise predictor of vector tasks (ScoreMLP): the sinusoidal time
embedding, the shapes and per-sample rows, and the v-parametrisation behind its eps interface."""

import math

import torch

from benchmark.denoisers.network import ScoreMLP, timestep_embedding
from benchmark.diffusion.schedules import make_schedule


def test_timestep_embedding_is_sin_and_cos_of_t_over_T():
    t = torch.tensor([0, 50, 100])
    emb = timestep_embedding(t, 8, T=100)
    assert emb.shape == (3, 8)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))               # t = 0: sin 0, cos 0
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(4) / 4)
    assert torch.allclose(emb[1], torch.cat([torch.sin(500 * freqs), torch.cos(500 * freqs)]))
    # t / T is what is embedded: t = 100 of T = 100 is t = 1000 of T = 1000
    assert torch.allclose(emb[2], timestep_embedding(torch.tensor([1000]), 8, T=1000)[0])


def test_score_mlp_rows_are_independent_and_config_is_recorded():
    torch.manual_seed(0)
    model = ScoreMLP(6, 20, hidden=16, depth=2, t_dim=8)
    assert model.config == dict(dim=6, T=20, schedule="cosine", hidden=16, depth=2, t_dim=8)
    x, t = torch.randn(4, 6), torch.tensor([1, 5, 10, 20])
    with torch.no_grad():
        batch = model(x, t)
        alone = torch.cat([model(x[i:i + 1], t[i:i + 1]) for i in range(4)])
    assert batch.shape == (4, 6) and torch.allclose(batch, alone, atol=1e-6)
    assert "ab" not in model.state_dict()                                            # rebuilt from the config


def test_score_mlp_is_a_v_parametrised_eps_model():
    """eps = sqrt(1 - ab) x + sqrt(ab) v on the model's own schedule (the pre-trained checkpoint's is checked in
    tests/denoisers/test_pretrain.py)."""
    torch.manual_seed(1)
    model = ScoreMLP(6, 50, schedule="linear", hidden=16, depth=1, t_dim=8)
    x, t = torch.randn(3, 6), torch.tensor([1, 25, 50])
    with torch.no_grad():
        e, v = model(x, t), model.velocity(x, t)
    ab = make_schedule("linear", 50).ab[t].float().unsqueeze(-1)
    assert torch.allclose(e, (1 - ab).sqrt() * x + ab.sqrt() * v, atol=1e-6)
    assert float(v.abs().max()) > 0
