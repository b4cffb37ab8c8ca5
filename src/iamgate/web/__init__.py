"""The JSON API (and, later, the web UI) served beside the proxy on the same port."""
