"""kubernetes_asyncio's aiohttp sessions, without the per-request environment lookups.

kubernetes_asyncio opens its ``ClientSession`` with ``trust_env=True``. aiohttp then, on every
request, parses ``~/.netrc`` in a worker thread (basic auth for the API host) and resolves the proxy
environment in another (``*_PROXY``, ``NO_PROXY``, netrc again): two thread hand-offs and a file
read per call, a large share of aiohttp's CPU per request. ``detach_environment`` gives each
client a session with ``trust_env=False`` on the same connector (SSL context, pool limit) and read
buffer, and makes the environment's choice once, when the client is built:

- ``Configuration.proxy`` (kubeconfig ``proxy-url``) wins, as before: kubernetes_asyncio passes it
  (and ``proxy_headers``) with every unary request.
- Otherwise the proxy the environment names for the URL's scheme (``https_proxy`` for API calls,
  ``wss_proxy`` for exec), unless ``no_proxy`` exempts the host, with its credentials: what aiohttp
  chose per request, chosen once. Environment changes after start-up are not seen.
- ``~/.netrc`` basic auth for the API host is dropped. With a bearer token it made aiohttp refuse every
  request ("Cannot combine AUTHORIZATION header with AUTH argument"); kubeconfigs carry their own
  credentials.
"""

from __future__ import annotations

import warnings

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio.client.rest import RESTClientObject
from yarl import URL

#: kubernetes_asyncio's read buffer (rest.py): a watch line may hold a ~1.5 MiB object.
READ_BUFSIZE = 2**21


def env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy (and its credentials) the environment names for ``url``, as aiohttp reads it."""
    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


def detach_environment(rest: RESTClientObject, url: str | None, *, proxy_per_request: bool) -> None:
    """Swap ``rest``'s session for one that never consults the environment per request.

    ``url`` is where the session goes (the API host; its ``wss`` form for exec). With
    ``proxy_per_request`` (unary calls) an environment proxy is set where kubernetes_asyncio passes
    ``Configuration.proxy``; otherwise (exec, which passes no proxy) it becomes the session's default.
    """
    old: aiohttp.ClientSession = rest.pool_manager
    proxy, auth = (None, None) if rest.proxy or not url else env_proxy(url)
    if proxy is not None and proxy_per_request:
        rest.proxy = str(proxy)
        if auth is not None and not rest.proxy_headers:
            rest.proxy_headers = {"Proxy-Authorization": auth.encode()}
        proxy, auth = None, None
    with warnings.catch_warnings():
        # ``proxy_auth`` is deprecated in favour of per-request headers, which exec cannot pass.
        warnings.simplefilter("ignore", DeprecationWarning)
        rest.pool_manager = aiohttp.ClientSession(
            connector=old.connector,
            trust_env=False,
            read_bufsize=READ_BUFSIZE,
            proxy=proxy,
            proxy_auth=auth,
        )
    old.detach()  # the connector now belongs to the new session; the old one is closed, unused
