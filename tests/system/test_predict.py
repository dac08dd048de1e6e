"""A compiled model serves as the eager one: inductor on CPU runs a C compiler (a process), so not a unit test."""

from __future__ import annotations

import torch

from tagger.model.predict import compile_for_serving, predict

CPU = torch.device("cpu")


def test_a_compiled_model_serves_short_and_long_batches_as_the_eager_one() -> None:
    """Needs a C compiler (inductor on CPU); CI's machine has one, and a missing one must fail here."""
    from tagger.model.preprocess import Normalise

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5)
    ).eval()
    norm = Normalise()
    compiled = compile_for_serving(model, batch_size=4, input_size=16, normalise=norm, device=CPU, dtype=torch.float32)
    for n in (1, 4, 9):
        batch = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8)
        eager = predict(model, batch, normalise=norm, device=CPU, dtype=torch.float32)
        served = predict(compiled, batch, normalise=norm, device=CPU, dtype=torch.float32, pad_to=4)
        assert served.shape == (n, 5)
        assert torch.allclose(served, eager, atol=1e-5)
