"""The root of the review web application's exceptions."""


class WebError(Exception):
    """Base of every exception the web application (b2cal_assets.web) raises."""
