"""The Starlette layer: upgrade, authentication, HTTP endpoints and drain."""
