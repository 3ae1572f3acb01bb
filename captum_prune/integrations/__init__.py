r"""Support for other tools built on Captum: :mod:`captum_prune.integrations.insights` (Captum
Insights, captum 0.8)."""
