import pytest

from events.settings import DEV_SECRET, ConfigError, check_secret, check_storage, from_env


def test_defaults_work_locally_and_empty_variables_keep_them():
    s = from_env({"JWT_SECRET": "", "CORS_ORIGINS": ""})
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/orders"
    assert s.rabbitmq_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert s.jwt_secret == DEV_SECRET and s.cors_origins == ()


def test_values_are_read_and_converted_from_the_environment():
    s = from_env({"ACCESS_TOKEN_MINUTES": "5", "CORS_ORIGINS": "https://a.example, https://b.example",
                  "ORDERS_DEV_MODE": "yes", "RELAY_POLL_SECONDS": "0.5", "LOG_LEVEL": "debug", "LOG_FORMAT": "text"})
    assert s.access_token_minutes == 5 and s.dev_mode is True and s.relay_poll_seconds == 0.5
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.log_level == "DEBUG" and s.log_format == "text"


@pytest.mark.parametrize(("env", "says"), [
    ({"ACCESS_TOKEN_MINUTES": "soon"}, "ACCESS_TOKEN_MINUTES='soon' is not valid: expected a whole number >= 1;"
                                       " fix it, or unset ACCESS_TOKEN_MINUTES to use the default (15)"),
    ({"RELAY_BATCH_SIZE": "0"}, "RELAY_BATCH_SIZE='0' is not valid: expected a whole number >= 1"),
    ({"READ_YOUR_WRITES_TIMEOUT": "-1"}, "READ_YOUR_WRITES_TIMEOUT='-1' is not valid: expected a number of seconds"
                                         " >= 0"),
    ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL='verbose' is not valid: expected one of DEBUG, INFO, WARNING, ERROR,"
                               " CRITICAL"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' is not valid: expected one of json, text"),
    ({"ORDERS_DEV_MODE": "maybe"}, "ORDERS_DEV_MODE='maybe' is not valid: use 1"),
])
def test_a_bad_value_is_one_line_naming_its_environment_variable(env, says):
    with pytest.raises(ConfigError) as refused:
        from_env(env)
    assert str(refused.value).startswith(says)
    assert "\n" not in str(refused.value) and "$." not in str(refused.value)


def test_outside_dev_mode_a_missing_or_short_jwt_secret_is_refused_with_what_to_do():
    with pytest.raises(ConfigError, match="^JWT_SECRET is not set: set it to a random string of 32"):
        check_secret(from_env({}))
    with pytest.raises(ConfigError, match="^JWT_SECRET is shorter than 32 bytes.*ORDERS_DEV_MODE=1"):
        check_secret(from_env({"JWT_SECRET": "short"}))
    check_secret(from_env({"JWT_SECRET": "x" * 32}))
    check_secret(from_env({"ORDERS_DEV_MODE": "1"}))


def test_s3_settings_without_a_bucket_are_refused_rather_than_ignored():
    with pytest.raises(ConfigError, match="^S3_ENDPOINT_URL is set but S3_BUCKET is not"):
        check_storage(from_env({"S3_ENDPOINT_URL": "http://127.0.0.1:9000", "S3_ACCESS_KEY_ID": "k"}))
    check_storage(from_env({"S3_BUCKET": "images", "S3_ENDPOINT_URL": "http://127.0.0.1:9000"}))
    check_storage(from_env({"S3_REGION": "eu-west-1"}))  # a region alone changes nothing: local files
    assert from_env({"MAX_IMAGE_BYTES": "2048"}).max_image_bytes == 2048
    with pytest.raises(ConfigError, match="^MAX_IMAGE_PIXELS='0' is not valid: expected a whole number >= 1"):
        from_env({"MAX_IMAGE_PIXELS": "0"})
