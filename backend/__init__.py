"""headscope: per-head attention, head ablation and task scores of BERT-family classifiers.

The package is the repository's ``backend/`` folder: ``headscope.engine`` (the model engine, no web
imports), ``headscope.api`` (the HTTP API), ``headscope.app`` (the Dash dashboard, from ``app/``).
"""
