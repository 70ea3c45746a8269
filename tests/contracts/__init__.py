"""The contract suites: what every transport (transports/, over the ``url`` fixture of
tests/conftest.py) and every store (stores/, over ``make_store``) must do."""
