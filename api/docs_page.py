"""The API reference at ``/docs``: Swagger UI from the installed swagger-ui-bundle package, so the page works on a
machine with no network (FastAPI's own page loads it from a CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

DOCS = "/docs"
ASSETS = f"{DOCS}/assets"
# Only what the page loads: the bundle's folder also holds a demo page that fetches a spec from the internet.
_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}
# No online validator badge: it would send the document to validator.swagger.io.
_PARAMETERS = {"validatorUrl": None, "persistAuthorization": True}


def install(app: FastAPI) -> None:
    """Serve the page and its assets; create the app with ``docs_url=None, redoc_url=None``."""

    @app.get(DOCS, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png", swagger_ui_parameters=_PARAMETERS)

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in _FILES:
            raise HTTPException(404, f"No docs asset '{name}'.")
        # the bundle's version is pinned with the package: browsers may keep it a day
        return FileResponse(Path(swagger_ui_path) / name, media_type=_FILES[name],
                            headers={"Cache-Control": "public, max-age=86400"})
