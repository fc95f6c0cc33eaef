"""The model tables: every supported model is data (inputs, identity, grid, price), the strict fakes
know each one's own schema, and an operator's price wins over the table's."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.kie import KIE_MODELS, KieProvider, check_kie_model
from providers.replicate import MODEL_INPUTS, ReplicateProvider, check_replicate_model
from tests.fakes.kie import FAKE_MODELS
from tests.fakes.replicate import default_models


def test_every_model_has_a_price_in_usd_and_the_fakes_know_its_schema() -> None:
    for name, spec in KIE_MODELS.items():
        assert name in FAKE_MODELS, f"FakeKie does not validate {name}"
        assert spec.image_field in FAKE_MODELS[name]
        assert Decimal("0.001") <= spec.price_per_image <= Decimal(1), name  # USD, not credits
    for slug, replicate_spec in MODEL_INPUTS.items():
        fake = default_models().get(slug)
        assert fake is not None, f"FakeReplicate does not validate {slug}"
        assert replicate_spec.reference_field in fake.fields
        assert Decimal("0.001") <= replicate_spec.price_per_image <= Decimal(1), slug
    # The defaults are portrait models: they keep the face and can draw a grid of poses.
    for spec in (KIE_MODELS["nano-banana-2"], KIE_MODELS["nano-banana-pro"], MODEL_INPUTS["google/nano-banana-pro"]):
        assert spec.identity_ok and spec.grid_capable


def test_unknown_models_are_named_with_the_known_ones_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^unknown Kie model 'x'; known: .*nano-banana-2.*$"):
        check_kie_model("x")
    with pytest.raises(ValueError, match=r"^unknown Replicate model 'a/b'; known: .*google/nano-banana-pro.*$"):
        check_replicate_model("a/b")
    with pytest.raises(ValueError, match="unknown Kie model"):
        KieProvider("key", "https://api.kie.ai", "https://up.example", "x")


async def test_the_configured_price_wins_over_the_table() -> None:
    kie = KieProvider("key", "https://api.kie.ai", "https://up.example", "nano-banana-pro")
    cheap = KieProvider(
        "key", "https://api.kie.ai", "https://up.example", "nano-banana-pro", price_per_image=Decimal(0)
    )
    replicate = ReplicateProvider("r8_x", price_per_image=Decimal("0.2"))
    try:
        assert kie.price_per_image == KIE_MODELS["nano-banana-pro"].price_per_image
        assert cheap.price_per_image == Decimal(0)
        assert replicate.price_per_image == Decimal("0.2")
    finally:
        for provider in (kie, cheap, replicate):
            await provider.aclose()
