"""Configuration: defaults, overridden by the INI file, overridden by
flags; unknown sections, unknown keys and bad values are reported by name
and the service does not start on them."""

import os
import subprocess
import sys

import pytest

from serve import ROOT
from vmjobs import config


def vmjobs(*args):
    return subprocess.run([sys.executable, "-m", "vmjobs", *args],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)


def test_show_defaults_file_and_flags(tmp_path):
    path = tmp_path / "vmjobs.conf"
    path.write_text("[pool]\nworkers = 8\nqueue_size = 50\n"
                    "[jobs]\nmax_ended = 7\n")
    result = vmjobs("config", "--show", "--config", str(path),
                    "--workers", "3", "--listen", "unix:/run/vmjobs.sock")
    assert result.returncode == 0, result.stderr
    shown = tmp_path / "shown.conf"
    shown.write_text(result.stdout)
    effective = config.load(str(shown))
    assert effective.workers == 3            # flag over file
    assert effective.queue_size == 50        # file over default
    assert effective.max_ended == 7
    assert effective.listen == "unix:/run/vmjobs.sock"
    assert effective.migration_destination_timeout == 21600   # default
    assert effective.max_incoming == 2
    assert effective.max_request_bytes == 4 * 1024 * 1024


@pytest.mark.parametrize("text,named", [
    ("[pool]\nworkers = many\n", "pool.workers"),
    ("[pool]\nworkers = 0\n", "pool.workers"),
    ("[pool]\nthreads = 4\n", "threads"),
    ("[pool]\nadaptive = maybe\n", "pool.adaptive"),
    ("[pools]\nworkers = 4\n", "[pools]"),
    ("[service]\nstop_mode = later\n", "service.stop_mode"),
    ("[rpc]\nmax_request_bytes = -1\n", "rpc.max_request_bytes"),
    ("[rpc]\ntls_cert = /x.pem\n", "tls_cert, tls_key and tls_ca"),
    ("not an ini file\n", "vmjobs.conf"),
])
def test_bad_file_stops_the_service_by_name(tmp_path, text, named):
    path = tmp_path / "vmjobs.conf"
    path.write_text(text)
    result = vmjobs("serve", "--config", str(path), "--listen",
                    "127.0.0.1:0", "--insecure")
    assert result.returncode == 2
    assert named in result.stderr
    assert "serving" not in result.stdout


def test_bad_flag_value_is_refused(tmp_path):
    result = vmjobs("serve", "--workers", "0", "--listen", "127.0.0.1:0",
                    "--insecure")
    assert result.returncode == 2
    assert "pool.workers" in result.stderr
    result = vmjobs("serve", "--listen", "nowhere")
    assert result.returncode == 2
    assert "listen" in result.stderr


def test_missing_file_is_refused(tmp_path):
    result = vmjobs("config", "--show", "--config", str(tmp_path / "no"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_dump_reads_back():
    defaults = config.Config()
    assert config.load_text(config.dump(defaults)) == defaults.validate()


def configuration_example():
    """docs/configuration.md's example configuration, verbatim."""
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        text = f.read()
    start = text.index("```ini\n") + len("```ini\n")
    return text[start:text.index("```", start)]


def test_configuration_example_loads_verbatim(tmp_path):
    path = tmp_path / "vmjobs.conf"
    path.write_text(configuration_example())
    loaded = config.load(str(path))
    assert loaded.workers == 4
    assert loaded.uri == config.DEFAULT_URI and loaded.tls_cert is None
    assert loaded.max_incoming == 2
    assert loaded.origin("workers") == f"{path}:2"
    # Every setting is there (the page says it lists them all).
    assert {f"{s.section}.{s.key}" for s in config.SETTINGS} == {
        f"{s.section}.{s.key}" for s in config.SETTINGS
        if loaded.origin(s.field) is not None and
        loaded.origin(s.field).startswith(str(path))}


def test_inline_and_whole_line_comments():
    loaded = config.load_text("# a comment\n[pool]   ; the pool\n"
                              "workers = 3 # three\n; another\n"
                              "queue_size = 9\t; nine\n"
                              "[rpc]\nlisten = unix:/run/a#b.sock\n")
    assert (loaded.workers, loaded.queue_size) == (3, 9)
    # No blank before it: part of the value, not a comment.
    assert loaded.listen == "unix:/run/a#b.sock"


@pytest.mark.parametrize("line,allowed", [
    ("workers = 0", "an integer from 1 to 1024"),
    ("workers = 2000", "an integer from 1 to 1024"),
    ("workers = many", "an integer from 1 to 1024"),
    ("queue_size = 1.5", "an integer from 1 to 10000000"),
])
def test_error_names_file_line_key_and_range(tmp_path, line, allowed):
    path = tmp_path / "vmjobs.conf"
    path.write_text(f"; pool\n[pool]\n\n{line}\n")
    with pytest.raises(config.ConfigError) as error:
        config.load(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}:4: pool.")
    assert line.split()[0] in message and allowed in message


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "infinity"])
def test_nan_and_infinities_are_refused(value):
    with pytest.raises(config.ConfigError, match="jobs.timeout.*finite"):
        config.load_text(f"[jobs]\ntimeout = {value}\n")


def test_a_key_twice_in_one_file_is_refused():
    with pytest.raises(config.ConfigError, match="<config>:3.*line 2"):
        config.load_text("[pool]\nworkers = 2\nworkers = 3\n")


def test_flag_errors_name_the_flag():
    result = vmjobs("config", "--show", "--config", os.devnull,
                    "--workers", "0")
    assert result.returncode == 2
    assert "flag --workers: pool.workers = 0" in result.stderr


def test_show_says_where_each_value_came_from(tmp_path):
    path = tmp_path / "vmjobs.conf"
    path.write_text("[pool]\nqueue_size = 50   ; small\n")
    result = vmjobs("config", "--show", "--config", str(path),
                    "--stop-mode", "drain")
    assert result.returncode == 0, result.stderr
    lines = {line.split("=")[0].strip(): line
             for line in result.stdout.splitlines() if " = " in line}
    assert len(lines) == len(config.SETTINGS)   # every key
    assert f"[{path}:2] jobs waiting" in lines["queue_size"]
    assert "[flag --stop-mode]" in lines["stop_mode"]
    assert f"[default: 2 x {os.cpu_count()} cores]" in lines["workers"]
    assert lines["workers"].startswith(f"workers = {2 * os.cpu_count()} ")
    for line in lines.values():   # a comment for each key
        assert line.split("] ", 1)[1].strip()


def test_default_file_then_conf_d_in_name_order(tmp_path):
    path = tmp_path / "vmjobs.conf"
    # Missing: the defaults, and the .d directory still read.
    assert config.load_default(str(path)) == config.Config()
    (tmp_path / "vmjobs.conf.d").mkdir()
    (tmp_path / "vmjobs.conf.d" / "20-b.conf").write_text(
        "[pool]\nworkers = 7\n")
    (tmp_path / "vmjobs.conf.d" / "10-a.conf").write_text(
        "[pool]\nworkers = 5\nqueue_size = 11\n")
    (tmp_path / "vmjobs.conf.d" / "30-c.conf.orig").write_text("junk")
    path.write_text("[pool]\nworkers = 3\n[jobs]\nmax_ended = 4\n")
    loaded = config.load_default(str(path))
    assert (loaded.workers, loaded.queue_size, loaded.max_ended) == \
        (7, 11, 4)
    assert loaded.origin("workers").endswith("20-b.conf:2")


def test_bool_and_list_keys():
    flag = config.Setting("rpc", "insecure", "insecure", bool)
    assert flag.parse("yes", "f:1") is True
    assert flag.parse("False", "f:1") is False
    with pytest.raises(config.ConfigError, match="true or false"):
        flag.parse("maybe", "f:1")
    dirs = config.Setting("storage", "state_dirs", "state_dirs", list)
    assert dirs.repeatable and dirs.parse(" /a ", "f:1") == ["/a"]
    dirs.check(["/a", "/b"], "f:1")
    with pytest.raises(config.ConfigError):
        dirs.check(["/a", ""], "f:1")


def test_adaptive_from_file_and_flag(tmp_path):
    path = tmp_path / "vmjobs.conf"
    path.write_text("[pool]\nadaptive = yes\n")
    assert config.load(str(path)).adaptive is True
    result = vmjobs("config", "--show", "--config", str(path),
                    "--no-adaptive")
    assert result.returncode == 0, result.stderr
    assert config.load_text(result.stdout).adaptive is False


def test_publish_mode_from_file_flag_and_default(tmp_path):
    """registry.publish: commit by default, accept from the file, the flag
    over the file, and nothing else accepted."""
    assert config.Config().publish == "commit"
    path = tmp_path / "vmjobs.conf"
    path.write_text("[registry]\npublish = accept\n")
    shown = vmjobs("config", "--show", "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    assert config.load_text(shown.stdout).publish == "accept"
    shown = vmjobs("config", "--show", "--config", str(path),
                   "--publish", "commit")
    assert config.load_text(shown.stdout).publish == "commit"
    path.write_text("[registry]\npublish = later\n")
    refused = vmjobs("config", "--show", "--config", str(path))
    assert refused.returncode == 2
    assert "registry.publish" in refused.stderr


def test_config_alone_shows_the_configuration(tmp_path):
    path = tmp_path / "vmjobs.conf"
    path.write_text("[pool]\nqueue_size = 50\n")
    alone = vmjobs("config", "--config", str(path))
    assert alone.returncode == 0, alone.stderr
    shown = vmjobs("config", "--show", "--config", str(path))
    assert alone.stdout == shown.stdout   # --show still accepted
    assert config.load_text(alone.stdout).queue_size == 50


def test_show_names_the_files_read_conf_d_included(tmp_path):
    path = tmp_path / "vmjobs.conf"
    path.write_text("[pool]\nworkers = 3\n")
    loaded = config.load_default(str(path))
    assert config.dump(loaded).splitlines()[0] == (
        f"; read: {path}, {path}.d/*.conf (none)")
    (tmp_path / "vmjobs.conf.d").mkdir()
    extra = tmp_path / "vmjobs.conf.d" / "10-a.conf"
    extra.write_text("[pool]\nqueue_size = 11\n")
    loaded = config.load_default(str(path))
    assert config.dump(loaded).splitlines()[0] == (
        f"; read: {path}, {extra}")
    absent = config.load_default(str(tmp_path / "none.conf"))
    assert config.dump(absent).splitlines()[0] == (
        f"; read: {tmp_path}/none.conf (absent), "
        f"{tmp_path}/none.conf.d/*.conf (none)")


def test_show_gives_each_item_of_a_repeated_key_its_own_line(tmp_path):
    path = tmp_path / "vmjobs.conf"
    path.write_text("[storage]\n; two state directories\nstate_dirs = /a\n"
                    "\nstate_dirs = /b\n")
    shown = [line for line in config.dump(config.load(str(path)))
             .splitlines() if line.startswith("state_dirs")]
    assert len(shown) == 2
    assert shown[0].startswith("state_dirs = /a ")
    assert f"[{path}:3]" in shown[0]
    assert shown[1].startswith("state_dirs = /b ")
    assert f"[{path}:5]" in shown[1]
    # A later file replaces the list, and its lines are named.
    later = tmp_path / "later.conf"
    later.write_text("[storage]\nstate_dirs = /c\n")
    replaced = config.load(str(later), config.load(str(path)))
    assert replaced.state_dirs == ["/c"]
    shown = [line for line in config.dump(replaced).splitlines()
             if line.startswith("state_dirs")]
    assert len(shown) == 1 and f"[{later}:2]" in shown[0]


def test_a_line_of_several_paths_gives_each(tmp_path):
    """`state_dirs = /a /b` is two directories, as whoever wrote it meant:
    it was read as one, "/a /b", which exists nowhere, so the service
    started and refused every state file in /a and in /b. A path with a
    blank in it, whose pieces are not all absolute paths, stays one (the
    control), and the key repeated still adds one per line. (Hosts and
    networks hold no blank: a line of several is refused, as before:
    test_security_config.)"""
    path = tmp_path / "vmjobs.conf"
    path.write_text("[storage]\nstate_dirs = /a /b\t/c\n"
                    "state_dirs = /srv/my states\n"
                    "image_dirs = /srv/images  /srv/more ; two\n"
                    "[migration]\nsocket_dirs = /run/a /run/b\n")
    loaded = config.load(str(path))
    assert loaded.state_dirs == ["/a", "/b", "/c", "/srv/my states"]
    assert loaded.image_dirs == ["/srv/images", "/srv/more"]
    assert loaded.migration_socket_dirs == ["/run/a", "/run/b"]
    shown = [line for line in config.dump(loaded).splitlines()
             if line.startswith("state_dirs")]
    assert [line.split(";")[0].strip() for line in shown] == [
        "state_dirs = /a", "state_dirs = /b", "state_dirs = /c",
        "state_dirs = /srv/my states"]
    assert all(f"[{path}:2]" in line for line in shown[:3])
    assert f"[{path}:3]" in shown[3]
    # A flag's one directory that a file would read as two is refused,
    # saying so, as what no file can hold is.
    result = vmjobs("config", "--config", os.devnull,
                    "--state-dir", "/srv/a /b")
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("vmjobs config: flag --state-dir: "
                                    "storage.state_dirs = ")
    assert "apart by blanks" in result.stderr


def test_a_file_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "vmjobs.conf"
    path.write_bytes(b"[pool]\nworkers = 4\nqueue_size = \xff\n")
    with pytest.raises(config.ConfigError,
                       match=rf"^{path}:3: not UTF-8 text \(byte 0xff\)"):
        config.load(str(path))
    result = vmjobs("config", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr == f"vmjobs config: {path}:3: not UTF-8 text " \
        "(byte 0xff); a configuration is a text file\n"
    # The control: the same file in UTF-8 (a non-ASCII comment) loads.
    path.write_bytes("[pool]\nworkers = 4 ; quatre \u00e9\n".encode())
    assert config.load(str(path)).workers == 4


@pytest.mark.parametrize("flags, named", [
    (["--uri", "test:///default\n[rpc]\ninsecure = true"], "libvirt.uri"),
    (["--image-dir", "/srv/img ;old"], "storage.image_dirs"),
    (["--state-dir", "/srv/states #2"], "storage.state_dirs"),
    (["--log-file", " /var/log/x.log"], "log.file"),
    (["--lock-file", "/run/x\x1b[31m.lock"], "service.lock_file"),
])
def test_a_flag_value_no_file_could_hold_is_refused(flags, named):
    """An operator audit: `vmjobs config` wrote such a value so that it
    read back as another one (a confinement directory cut at ' ;') or as
    lines of their own ([rpc] insecure = true from a --uri)."""
    result = vmjobs("config", "--config", os.devnull, *flags)
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith(f"vmjobs config: flag {flags[0]}: "
                                    f"{named} = ")
    assert "no configuration file can hold it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_flag_values_with_spaces_and_signs_round_trip(tmp_path):
    # The control: what a file can hold is taken, and reads back as is.
    result = vmjobs("config", "--config", os.devnull,
                    "--uri", "qemu:///system?socket=/run/a;b#c",
                    "--image-dir", "/srv/my images", "--state-dir",
                    "/srv/states\tx")
    assert result.returncode == 0, result.stderr
    shown = tmp_path / "shown.conf"
    shown.write_text(result.stdout)
    loaded = config.load(str(shown))
    assert loaded.uri == "qemu:///system?socket=/run/a;b#c"
    assert loaded.image_dirs == ["/srv/my images"]
    assert loaded.state_dirs == ["/srv/states\tx"]


@pytest.mark.parametrize("text", ["127.0.0.1:²", "127.0.0.1:" + "1" * 5000,
                                  "127.0.0.1:65536", "127.0.0.1:"])
def test_a_listen_port_not_a_port_is_refused_by_name(text):
    """The port is ASCII digits, 0 to 65535: '²' (which str.isdigit()
    takes) and a number past int()'s 4300 digits are a ConfigError, not a
    ValueError out of int(). The control: a port is read."""
    with pytest.raises(config.ConfigError, match="expected HOST:PORT"):
        config.parse_listen(text)
    assert config.parse_listen("127.0.0.1:0080") == ("tcp", ("127.0.0.1", 80))
