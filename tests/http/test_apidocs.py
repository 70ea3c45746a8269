"""``/docs`` and ``/redoc`` work offline: every script, stylesheet and icon comes from the app."""

from __future__ import annotations

import re

import pytest

from nerve import EventBus
from tests.http.conftest import serve

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_docs_load_nothing_from_another_host(page: str) -> None:
    async with serve(EventBus("memory://")) as client:
        html = await client.get(page)
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert "://" not in html.text  # no CDN, no Google fonts, no validator badge
        assets = ASSET.findall(html.text)
        assert len(assets) >= 2
        for url in assets:
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000
            kind = asset.headers["content-type"]
            assert kind.split(";")[0] in {"text/javascript", "text/css", "image/png"}, url
        spec = await client.get("/openapi.json")
        assert spec.json()["openapi"].startswith("3.1")


async def test_the_swagger_ui_served_reads_openapi_3_1() -> None:
    # FastAPI writes OpenAPI 3.1, which Swagger UI reads from version 5 on.
    async with serve(EventBus("memory://")) as client:
        bundle = (await client.get("/docs/assets/swagger-ui-bundle.js")).text
        versions = {int(v) for v in re.findall(r'"(\d+)\.\d+\.\d+"', bundle)}
        assert 5 in versions
        assert "SwaggerUIBundle" in bundle
        redirect = await client.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200


async def test_only_the_named_assets_are_served() -> None:
    async with serve(EventBus("memory://")) as client:
        for name in ("core.py", "..%2F__init__.py", "%2Fetc%2Fpasswd"):
            response = await client.get(f"/docs/assets/{name}")
            assert response.status_code == 404
            assert response.json()["error"] == "not_found"
