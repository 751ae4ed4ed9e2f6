"""Settings are parsed once, at load: typed values, or one ConfigError naming the setting."""

from __future__ import annotations

import logging
import os
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster import cli
from broadcaster.config import (
    FLAGS,
    Address,
    Config,
    ConfigError,
    parse_address,
    parse_tokens,
)
from broadcaster.domain.auth import Caller, TokenTable
from broadcaster.store.sealing import Sealer
from tests import tlscerts

TOKEN = "tokA-0123456789abc"
OLD_KEY = "an-old-passphrase-of-32-characters-or-more"
NEW_KEY = "a-new-passphrase-of-32-characters-or-more!"

# -- the values ---------------------------------------------------------------------------------


def test_defaults() -> None:
    config = Config.from_env({})
    assert config.database_url.get_backend_name() == "sqlite"
    assert config.grpc_listen == Address("127.0.0.1", 50051)
    assert config.http_listen == Address("127.0.0.1", 8080)
    assert config.tokens.empty
    assert config.plugins is None  # every installed plugin
    assert config.plugin_modules == ()
    assert config.secret_keys == ()
    assert (config.log_format, config.log_level) == ("json", logging.INFO)
    assert config.watch_streams_per_merchant == 16
    assert config.env == {}


def test_typed_values() -> None:
    env = {
        "BROADCASTER_DATABASE_URL": "postgresql+psycopg://u:secret@db:5432/broadcaster",
        "BROADCASTER_GRPC_LISTEN": "[::]:50051",
        "BROADCASTER_HTTP_LISTEN": "0.0.0.0:0",
        "BROADCASTER_AUTH_TOKENS": f"{TOKEN}=m1, m2",
        "BROADCASTER_PLUGINS": " line, sms ,",
        "BROADCASTER_PLUGIN_MODULES": "tests.fakechannel",
        "BROADCASTER_SECRET_KEY": f"{NEW_KEY} , {OLD_KEY}",
        "BROADCASTER_LOG_FORMAT": " Text",
        "BROADCASTER_LOG_LEVEL": "debug",
        "BROADCASTER_WATCH_STREAMS_PER_MERCHANT": " 4 ",
        "BROADCASTER_CHANNEL_CONNECTIONS": "4096",
        "BROADCASTER_CHANNEL_IN_FLIGHT": "48",
        "BROADCASTER_LINE_API_BASE": "http://127.0.0.1:9",
    }
    config = Config.from_env(env)
    assert config.database_url.host == "db" and config.database_url.password == "secret"
    assert config.grpc_listen == Address("::", 50051)
    assert config.http_listen == Address("0.0.0.0", 0)
    assert config.tokens.find(TOKEN) == Caller("token#1", frozenset({"m1", "m2"}))
    assert config.plugins == ("line", "sms")
    assert config.plugin_modules == ("tests.fakechannel",)
    assert config.secret_keys == (NEW_KEY, OLD_KEY)
    assert (config.log_format, config.log_level) == ("text", logging.DEBUG)
    assert config.watch_streams_per_merchant == 4
    assert config.channel_connections == 4096
    assert config.channel_in_flight == 48
    assert config.env == env  # plugins read their own settings from it


def test_an_empty_plugin_list_loads_none() -> None:
    assert Config.from_env({"BROADCASTER_PLUGINS": ""}).plugins == ()


def test_a_flag_takes_the_place_of_its_variable() -> None:
    env = {"BROADCASTER_GRPC_LISTEN": "127.0.0.1:1", "BROADCASTER_HTTP_LISTEN": "127.0.0.1:2"}
    config = Config.from_env(
        env, {"--grpc-listen": "localhost:3", "--http-listen": None, "--database-url": ""}
    )
    assert config.grpc_listen == Address("localhost", 3)
    assert config.http_listen == Address("127.0.0.1", 2)  # None or "": the variable stands
    with pytest.raises(ValueError, match="--grpc-port"):
        Config.from_env(env, {"--grpc-port": "1"})


# -- every bad value fails the load, naming its setting ----------------------------------------

BAD = [
    ("BROADCASTER_DATABASE_URL", "mysql://db/broadcaster"),
    ("BROADCASTER_DATABASE_URL", "not a url"),
    ("BROADCASTER_DATABASE_URL", "postgresql://u:secret@db:port/x"),
    ("BROADCASTER_DATABASE_URL", "sqlite+nosuchdriver:///x.db"),
    ("BROADCASTER_GRPC_LISTEN", "50051"),
    ("BROADCASTER_GRPC_LISTEN", "127.0.0.1:65536"),
    ("BROADCASTER_HTTP_LISTEN", ":8080"),
    ("BROADCASTER_HTTP_LISTEN", "127.0.0.1:http"),
    ("BROADCASTER_AUTH_TOKENS", "short=m1"),
    ("BROADCASTER_AUTH_TOKENS", f"{TOKEN}=*,m1"),
    ("BROADCASTER_PLUGIN_MODULES", "tests.fake-channel"),
    ("BROADCASTER_SECRET_KEY", f"{NEW_KEY},too-short"),
    ("BROADCASTER_LOG_FORMAT", "xml"),
    ("BROADCASTER_LOG_LEVEL", "LOUD"),
    ("BROADCASTER_WATCH_STREAMS_PER_MERCHANT", "0"),
    ("BROADCASTER_WATCH_STREAMS_PER_MERCHANT", "-1"),
    ("BROADCASTER_WATCH_STREAMS_PER_MERCHANT", "many"),
    ("BROADCASTER_WATCH_STREAMS_PER_MERCHANT", "9" * 30),
    ("BROADCASTER_CHANNEL_CONNECTIONS", "0"),
    ("BROADCASTER_CHANNEL_IN_FLIGHT", "0"),
]


@pytest.mark.parametrize(("variable", "value"), BAD)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as e:
        Config.from_env({variable: value})
    assert variable in str(e.value)
    assert "u:secret" not in str(e.value)  # a password in a URL is never shown


@pytest.mark.parametrize(
    ("flag", "value"),
    [(flag, value) for flag, variable in FLAGS.items() for v, value in BAD if v == variable],
)
def test_a_bad_flag_names_the_flag(flag: str, value: str) -> None:
    with pytest.raises(ConfigError) as e:
        Config.from_env({FLAGS[flag]: "127.0.0.1:1"}, {flag: value})
    assert flag in str(e.value) and FLAGS[flag] not in str(e.value)


def test_without_tokens_only_a_loopback_address_serves() -> None:
    for host in ("127.0.0.1", "[::1]", "localhost", "127.0.0.2"):
        assert Config.from_env({"BROADCASTER_GRPC_LISTEN": f"{host}:0"}).tokens.empty
    with pytest.raises(ConfigError) as e:
        Config.from_env({"BROADCASTER_GRPC_LISTEN": "0.0.0.0:50051"})
    assert "BROADCASTER_GRPC_LISTEN" in str(e.value)
    assert "no BROADCASTER_AUTH_TOKENS are configured" in str(e.value)
    with pytest.raises(ConfigError, match="--grpc-listen"):
        Config.from_env({}, {"--grpc-listen": "10.0.0.1:50051"})
    with pytest.raises(ConfigError, match="BROADCASTER_AUTH_TOKENS"):  # however it is built
        Config(
            database_url=Config.from_env({}).database_url,
            grpc_listen=Address("0.0.0.0", 0),
            http_listen=Address("127.0.0.1", 0),
            tokens=TokenTable(),
            plugins=(),
            plugin_modules=(),
            secret_keys=(),
            env={},
        )
    exposed = {"BROADCASTER_GRPC_LISTEN": "0.0.0.0:50051", "BROADCASTER_AUTH_TOKENS": f"{TOKEN}=*"}
    assert not Config.from_env(exposed).tokens.empty


# -- host:port ----------------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
hosts = st.one_of(
    st.builds(".".join, st.lists(_label, min_size=1, max_size=4)),
    st.ip_addresses().map(str),
)
ports = st.integers(0, 65535)


@given(host=hosts, port=ports)
def test_an_address_reads_back_what_it_writes(host: str, port: int) -> None:
    assert parse_address(str(Address(host, port)), "X") == Address(host, port)
    assert parse_address(f"{host}:{port}", "X") == Address(host, port)


@given(host=hosts, port=st.one_of(st.integers(65536), st.integers(max_value=-1)))
def test_a_port_out_of_range_is_refused(host: str, port: int) -> None:
    with pytest.raises(ConfigError, match="BROADCASTER_HTTP_LISTEN"):
        parse_address(f"{host}:{port}", "BROADCASTER_HTTP_LISTEN")


@given(st.text())
def test_any_text_is_an_address_or_an_error_naming_the_variable(text: str) -> None:
    try:
        address = parse_address(text, "BROADCASTER_GRPC_LISTEN")
    except ConfigError as e:
        assert str(e).startswith("BROADCASTER_GRPC_LISTEN must be host:port")
    else:
        assert address.host and 0 <= address.port <= 65535
        assert int(text.rpartition(":")[2]) == address.port


# -- token tables -------------------------------------------------------------------------------

tokens = st.text(string.ascii_letters + string.digits + "-_.~+/", min_size=16)
merchants = st.from_regex(r"[a-z0-9][a-z0-9-]{0,15}", fullmatch=True)
scopes = st.one_of(st.none(), st.frozensets(merchants, min_size=1, max_size=4))
tables = st.dictionaries(tokens, scopes, max_size=5)
blank = st.sampled_from(["", " ", "  "])


@given(table=tables, pad=blank)
def test_a_token_table_finds_each_caller_by_its_token(
    table: dict[str, frozenset[str] | None], pad: str
) -> None:
    spec = ";".join(
        f"{pad}{token}{pad}={pad}{'*' if scope is None else (',' + pad).join(sorted(scope))}"
        for token, scope in table.items()
    )
    parsed = parse_tokens(spec)
    assert parsed.empty == (not table)
    for n, (token, scope) in enumerate(table.items(), start=1):
        assert parsed.find(token) == Caller(f"token#{n}", scope)
    assert parsed.find("not-a-token-of-this-table!") is None


@given(token=st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=15))
def test_a_short_token_is_refused(token: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_tokens(f"{TOKEN}=*;{token}=m1")
    # The entry is named by its place: the message never shows a token.
    assert str(e.value) == "BROADCASTER_AUTH_TOKENS entry 2: use 16 or more characters"


# -- secret keys --------------------------------------------------------------------------------


def test_keys_rotate_new_first() -> None:
    sealed = Sealer(Config.from_env({"BROADCASTER_SECRET_KEY": OLD_KEY}).sealing_keys()).seal(
        {"token": "t"}
    )
    rotated = Config.from_env({"BROADCASTER_SECRET_KEY": f"{NEW_KEY},{OLD_KEY}"})
    assert Sealer(rotated.sealing_keys()).open(sealed) == {"token": "t"}


def test_a_sqlite_file_keeps_its_key_beside_it(tmp_path: Path) -> None:
    config = Config.from_env({"BROADCASTER_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}"})
    assert not (tmp_path / "b.db.key").exists()  # loading makes nothing
    (key,) = config.sealing_keys()
    assert config.sealing_keys() == (key,)
    assert (tmp_path / "b.db.key").read_text().strip() == key


def test_a_server_database_needs_the_key() -> None:
    config = Config.from_env({"BROADCASTER_DATABASE_URL": "postgresql+psycopg://db/b"})
    with pytest.raises(ConfigError, match="BROADCASTER_SECRET_KEY is required"):
        config.sealing_keys()


# -- `broadcaster serve` ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "argv", "named"),
    [
        ({"BROADCASTER_LOG_LEVEL": "LOUD"}, ["serve"], "BROADCASTER_LOG_LEVEL"),
        ({"BROADCASTER_AUTH_TOKENS": "short=*"}, ["serve"], "BROADCASTER_AUTH_TOKENS"),
        ({}, ["serve", "--http-listen", "8080"], "--http-listen"),
        ({}, ["serve", "--grpc-listen", "0.0.0.0:0"], "--grpc-listen"),
        ({}, ["migrate", "--database-url", "mysql://db/b"], "--database-url"),
    ],
)
def test_a_bad_setting_stops_the_command_with_one_line(
    env: dict[str, str],
    argv: list[str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    database = {"BROADCASTER_DATABASE_URL": f"sqlite:///{tmp_path}/b.db"}
    monkeypatch.setattr(os, "environ", database | env)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("broadcaster: ") and named in err
    assert not (tmp_path / "b.db").exists()  # nothing started


# -- transport and limits -----------------------------------------------------------------------


def test_tls_is_off_unless_both_files_are_given() -> None:
    assert Config.from_env({}).tls is None


def test_tls_files_are_read_and_checked_at_load(tmp_path: Path) -> None:
    files = tlscerts.make(tmp_path)
    env = {
        "BROADCASTER_TLS_CERT": str(files.server_cert),
        "BROADCASTER_TLS_KEY": str(files.server_key),
    }
    tls = Config.from_env(env).tls
    assert tls is not None and tls.client_ca is None
    assert tls.cert_chain == files.server_cert.read_bytes()
    assert tls.private_key == files.server_key.read_bytes()
    with_ca = Config.from_env({**env, "BROADCASTER_TLS_CLIENT_CA": str(files.ca)}).tls
    assert with_ca is not None and with_ca.client_ca == files.ca.read_bytes()
    assert with_ca.http_context().verify_mode.name == "CERT_NONE"  # webhooks carry no client cert


@pytest.mark.parametrize(
    ("changes", "blamed"),
    [
        ({"BROADCASTER_TLS_KEY": ""}, "BROADCASTER_TLS_KEY"),
        ({"BROADCASTER_TLS_CERT": ""}, "BROADCASTER_TLS_CERT"),
        ({"BROADCASTER_TLS_CERT": "{tmp}/missing.pem"}, "BROADCASTER_TLS_CERT"),
        ({"BROADCASTER_TLS_KEY": "{tmp}/missing.pem"}, "BROADCASTER_TLS_KEY"),
        ({"BROADCASTER_TLS_KEY": "{tmp}/client-key.pem"}, "BROADCASTER_TLS_KEY"),
        ({"BROADCASTER_TLS_CERT": "{tmp}/server-key.pem"}, "BROADCASTER_TLS_CERT"),
        ({"BROADCASTER_TLS_CLIENT_CA": "{tmp}/missing.pem"}, "BROADCASTER_TLS_CLIENT_CA"),
        ({"BROADCASTER_TLS_CLIENT_CA": "{tmp}/server-key.pem"}, "BROADCASTER_TLS_CLIENT_CA"),
        (
            {
                "BROADCASTER_TLS_CERT": "",
                "BROADCASTER_TLS_KEY": "",
                "BROADCASTER_TLS_CLIENT_CA": "{tmp}/ca.pem",
            },
            "BROADCASTER_TLS_CLIENT_CA",
        ),
    ],
)
def test_a_tls_setting_that_cannot_be_used_names_its_variable(
    tmp_path: Path, changes: dict[str, str], blamed: str
) -> None:
    files = tlscerts.make(tmp_path)
    env = {
        "BROADCASTER_TLS_CERT": str(files.server_cert),
        "BROADCASTER_TLS_KEY": str(files.server_key),
    }
    env.update({k: v.format(tmp=tmp_path) for k, v in changes.items()})
    with pytest.raises(ConfigError) as e:
        Config.from_env({k: v for k, v in env.items() if v})
    assert blamed in str(e.value)


def test_limits_and_timeouts() -> None:
    config = Config.from_env({})
    assert config.max_concurrent_rpcs == 1000
    assert (config.http_header_timeout, config.http_body_timeout) == (10.0, 30.0)
    config = Config.from_env(
        {
            "BROADCASTER_MAX_CONCURRENT_RPCS": "20",
            "BROADCASTER_HTTP_HEADER_TIMEOUT": "2.5",
            "BROADCASTER_HTTP_BODY_TIMEOUT": "4",
        }
    )
    assert config.max_concurrent_rpcs == 20
    assert (config.http_header_timeout, config.http_body_timeout) == (2.5, 4.0)
    for variable, value in [
        ("BROADCASTER_MAX_CONCURRENT_RPCS", "0"),
        ("BROADCASTER_MAX_CONCURRENT_RPCS", "many"),
        ("BROADCASTER_HTTP_HEADER_TIMEOUT", "-1"),
        ("BROADCASTER_HTTP_HEADER_TIMEOUT", "nan"),
        ("BROADCASTER_HTTP_BODY_TIMEOUT", "soon"),
        ("BROADCASTER_HTTP_BODY_TIMEOUT", "0"),
    ]:
        with pytest.raises(ConfigError, match=variable):
            Config.from_env({variable: value})


def test_channel_upkeep_settings() -> None:
    config = Config.from_env({})
    assert (config.follower_sync_interval, config.public_url) == (86_400.0, "")
    config = Config.from_env(
        {
            "BROADCASTER_FOLLOWER_SYNC_INTERVAL": "3600",
            "BROADCASTER_PUBLIC_URL": " https://hooks.example.com/base/ ",
        }
    )
    assert config.follower_sync_interval == 3600.0
    off = Config.from_env({"BROADCASTER_FOLLOWER_SYNC_INTERVAL": "off"})
    assert off.follower_sync_interval is None  # no automatic syncs
    assert config.public_url == "https://hooks.example.com/base"  # no trailing slash
    for variable, value in [
        ("BROADCASTER_FOLLOWER_SYNC_INTERVAL", "0"),
        ("BROADCASTER_FOLLOWER_SYNC_INTERVAL", "daily"),
        ("BROADCASTER_PUBLIC_URL", "hooks.example.com"),
        ("BROADCASTER_PUBLIC_URL", "ftp://hooks.example.com"),
        ("BROADCASTER_PUBLIC_URL", "https://hooks.example.com/?a=1"),
        ("BROADCASTER_PUBLIC_URL", "https:///path"),
    ]:
        with pytest.raises(ConfigError, match=variable):
            Config.from_env({variable: value})
