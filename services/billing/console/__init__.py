"""The billing console: one page at `GET /billing` for a company's finance user.

The page and its assets are plain files served by billing itself (no CDN, no
build step); everything it shows comes from the billing read API, fetched by
the page with the bearer token the user opened it with.
"""
