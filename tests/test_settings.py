import msgspec
import pytest

from events.settings import DEV_SECRET, from_env


def test_defaults_work_locally_and_empty_variables_keep_them():
    s = from_env({"JWT_SECRET": "", "CORS_ORIGINS": ""})
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/orders"
    assert s.rabbitmq_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert s.jwt_secret == DEV_SECRET and s.cors_origins == ()


def test_values_are_read_and_converted_from_the_environment():
    s = from_env({"ACCESS_TOKEN_MINUTES": "5", "CORS_ORIGINS": "https://a.example, https://b.example",
                  "ORDERS_DEV_MODE": "yes", "RELAY_POLL_SECONDS": "0.5"})
    assert s.access_token_minutes == 5 and s.dev_mode is True and s.relay_poll_seconds == 0.5
    assert s.cors_origins == ("https://a.example", "https://b.example")


def test_a_bad_value_names_its_setting():
    with pytest.raises(msgspec.ValidationError, match="access_token_minutes"):
        from_env({"ACCESS_TOKEN_MINUTES": "soon"})
