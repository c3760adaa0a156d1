"""The headscope dashboard: a Dash app that talks to the backend only through its HTTP API."""
