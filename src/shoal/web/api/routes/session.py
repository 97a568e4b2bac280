"""POST/DELETE /session: the login page trades a token for a cookie, so the browser needs no header."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from shoal.errors import PermissionDeniedError
from shoal.web.api.deps import PartsDep
from shoal.web.schemas import Problem, TokenCheck
from shoal.web.security import COOKIE

router = APIRouter(prefix="/session", tags=["session"])
COOKIE_AGE = 30 * 24 * 3600  #: seconds a login lasts


@router.post(
    "", status_code=204, summary="Log in: check a token and keep it in a cookie", responses={403: {"model": Problem}}
)
def login(body: TokenCheck, request: Request, response: Response, parts: PartsDep) -> None:
    if parts.guard.name_of(body.token) is None:
        raise PermissionDeniedError("that token is not valid here (create one with `shoal token create NAME`)")
    response.set_cookie(
        COOKIE,
        body.token,
        max_age=COOKIE_AGE,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


@router.delete("", status_code=204, summary="Log out")
def logout(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")
