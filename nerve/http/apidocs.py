"""The API's documentation pages, offline: Swagger UI at ``/docs``, ReDoc at ``/redoc``.

FastAPI's own pages load Swagger UI and ReDoc from a CDN: on a host without internet
access they stay blank. These are the same pages (FastAPI's ``get_swagger_ui_html`` and
``get_redoc_html``) with their scripts, stylesheet and icon served by this app from the
``fastapi-offline`` package (Swagger UI 5, ReDoc 2), as ``/ui`` serves its own files. No
page asks another host for anything: no Google fonts, no Swagger validator badge.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse

from nerve.http import routers
from nerve.http.intake import Intake
from nerve.http.problems import HTTPProblem

#: Where the assets are served, and the files there with their media types.
ASSETS_PATH = "/docs/assets"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
#: The assets change only with the package: browsers keep them a day.
ASSET_HEADERS = {"Cache-Control": "public, max-age=86400"}
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def assets_dir() -> Path:
    """The directory of the ``fastapi-offline`` package's assets."""
    return Path(str(files("fastapi_offline") / "static"))


def routes(intake: Intake, *, title: str, openapi_url: str) -> APIRouter:
    """``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and their assets."""
    router = routers.router(intake, include_in_schema=False)
    directory = assets_dir()

    @router.get("/docs")
    async def swagger_ui(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT,
            swagger_ui_parameters={"validatorUrl": None},  # the badge asks swagger.io
        )

    @router.get(OAUTH2_REDIRECT)
    async def swagger_ui_redirect() -> Response:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc")
    async def redoc(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    @router.get(ASSETS_PATH + "/{name}")
    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:  # only the files named above: never a path from the request
            raise HTTPProblem(404, "not_found", f"no asset {name!r}")
        return FileResponse(directory / name, media_type=media_type, headers=ASSET_HEADERS)

    return router
