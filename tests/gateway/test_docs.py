from __future__ import annotations

from gateway.docs import BEGIN, SECURITY_PAGE, render


def test_rule_catalogue_in_docs_matches_the_code() -> None:
    page = SECURITY_PAGE.read_text()
    assert BEGIN in page
    assert render(page) == page, "docs/security.md is stale: run `python -m gateway.docs`"
