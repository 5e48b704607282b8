"""The root of the validation domain's exceptions (inputs, settings, sign-off, notifications)."""


class ValidationDomainError(Exception):
    """Base of every exception the validation domain (b2cal_assets.validation) raises (named so it is
    not mistaken for pydantic's ValidationError)."""
