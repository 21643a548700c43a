"""The reference's LinkHeaderPagination: `X-Result-Count` and an RFC 8288 `Link` header."""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import URL

from api.params import MIN_POSITION, Pagination
from schemas.position import Position


def headers(
    url: URL, total: int, pagination: Pagination | None, last_page: int, position: Position | None = None
) -> dict[str, str]:
    """The headers of one page; only `X-Result-Count` for a list served whole. The links carry
    `min_position` = this page's `position`, so that the next page, wherever a load balancer sends it,
    is answered from the same or a later position, never an earlier one."""
    result = {"X-Result-Count": str(total)}
    if pagination is None:
        return result
    page = pagination.page
    links = [("first", 1)]
    if page > 1:
        links.append(("prev", page - 1))
    if page < last_page:
        links.append(("next", page + 1))
    links.append(("last", last_page))
    # The path arrives decoded: encode it again (commas too, since naive clients split the header on
    # them), so the header stays ASCII whatever a session id or slug contains.
    base = url.replace(path=quote(url.path, safe="/"))
    # Absolute URLs that keep every other query parameter (repeated ones too) and set `page`.
    # `page` stays last, where clients that read the page number off the URL's end expect it.
    base = base.remove_query_params(["page", MIN_POSITION])
    if position is not None:
        base = base.include_query_params(**{MIN_POSITION: position.token()})
    result["Link"] = ", ".join(f'<{base.include_query_params(page=n)}>; rel="{rel}"' for rel, n in links)
    return result
