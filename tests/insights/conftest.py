r"""Tests of captum_prune.integrations.insights and ``captum-prune insights``; they need
captum 0.8 and run through ``.ci/insights``.

Captum Insights was retired in captum 0.9, so in the main environment every test module
here skips itself. ``.ci/insights`` sets ``CAPTUM_PRUNE_INSIGHTS_CI=1``, under which a missing
package is an error rather than a skip. This file imports nothing from captum at module
level, so it loads under any captum.
"""
import pytest


@pytest.fixture
def spy(monkeypatch):
    r"""Records ``(inputs, kwargs, result)`` of every PrunedGradient.attribute call made the
    way Insights makes it (through ``attribute.__wrapped__``)."""
    import functools

    from captum_prune import PrunedGradient

    calls = []
    original = PrunedGradient.attribute.__wrapped__

    def recording(self, inputs, **kwargs):
        result = original(self, inputs, **kwargs)
        calls.append((inputs, kwargs, result))
        return result

    @functools.wraps(recording)
    def attribute(self, *args, **kwargs):
        return recording(self, *args, **kwargs)

    attribute.__wrapped__ = recording
    monkeypatch.setattr(PrunedGradient, "attribute", attribute)
    return calls
