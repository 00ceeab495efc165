"""Shared plumbing for the interoperability scripts: Py-GP (a GlobalPlatform tool written in
2017, independently of this project) against the card the `card-sim serve` process plugs into
pcscd.

Every script prints one `PASS ...` line per checked step and ends with `OK <scenario>`; on any
mismatch it prints `FAIL: <what>` to standard error and exits with status 1. Set
`INTEROP_APDU_LOG=1` to see every APDU Py-GP exchanges.

Py-GP's own GlobalPlatform code is used unchanged. What this module adds:
- the PC/SC transport shim (`shims/_scard.py`, see there);
- readers for the two places where Py-GP 1.0.0 only logs what it parsed (GET STATUS and key
  information are taken from its `gp_functions` layer, which returns them);
- `response_data()`, which drops the R-MAC Py-GP leaves on responses at security levels with
  R-MAC but without R-ENC (Py-GP verifies that R-MAC and then returns it with the data).
"""

import os
import re
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "shims"))

import pygp  # noqa: E402,F401  (after the shim path is set)

api = sys.modules["pygp.pygp"]  # Py-GP's scripting API (auth, install, put_scp_key, ...)

gpf = sys.modules["pygp.gp.gp_functions"]  # Py-GP's APDU layer (returns what it parsed)
Loadfile = sys.modules["pygp.loadfile"].Loadfile  # Py-GP's CAP reader

ISD = "A000000151000000"
DEFAULT_KEY = "404142434445464748494A4B4C4D4E4F"
READER = os.environ.get("INTEROP_READER", "Virtual PCD 00 01")

LEVEL_NAMES = {
    0x00: "no secure messaging",
    0x01: "C-MAC",
    0x03: "C-DEC C-MAC",
    0x11: "C-MAC R-MAC",
    0x13: "C-DEC C-MAC R-MAC",
    0x33: "C-DEC R-ENC C-MAC R-MAC",
}


class Failure(Exception):
    """A mismatch between what the card answered and what the scenario expects."""


# Every command Py-GP sends, with the status word it got: (first 4 bytes as hex, SW).
TRACE = []
_send_apdu = gpf.send_APDU


def _traced_send_apdu(capdu, raw_mode=False, exsw=None, exdata=None):
    result = _send_apdu(capdu, raw_mode, exsw, exdata)
    TRACE.append((re.sub(r"\s", "", capdu)[:8].upper(), (gpf.last_status() or "").upper()))
    return result


# Observation only: Py-GP's functions call send_APDU through their module, so they all pass here.
gpf.send_APDU = _traced_send_apdu


def fail(message):
    raise Failure(message)


def check(condition, message):
    if not condition:
        fail(message)


def passed(message):
    print("PASS " + message, flush=True)


def run(main):
    """Run a scenario: exit 0 when it completes, 1 with one FAIL line on any mismatch.
    Py-GP signals card errors by raising BaseException, so that is caught too."""
    try:
        main()
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # Py-GP raises BaseException for card and tool errors
        sw = gpf.last_status()
        print(
            "FAIL: Py-GP raised %s: %s (last status word %s)" % (type(e).__name__, e, sw),
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)


# --- connection --------------------------------------------------------------------------------


def connect(timeout=20.0):
    """Open the Virtual PCD reader and power the card, as a user would with Py-GP:
    terminal(name) then card() (which also selects the ISD)."""
    log = api.CONSOLE_TRACE | api.ERROR_LEVEL
    if os.environ.get("INTEROP_APDU_LOG"):
        log = api.CONSOLE_TRACE | api.INFO_LEVEL | api.APDU
    deadline = time.monotonic() + timeout
    while True:
        try:
            api.set_log_mode(api.NONE)  # quiet while the card may still be arriving
            api.terminal(READER)
            atr = api.card()
            api.set_log_mode(log)
            return atr
        except BaseException as e:  # no card yet: card-sim may still be connecting
            if time.monotonic() > deadline:
                fail("no card in reader %r after %.0f s: %s" % (READER, timeout, e))
            try:
                api.close()
            except BaseException:
                pass
            time.sleep(0.25)


def reset_card_keep_session():
    """Warm reset through PC/SC (power loss for the card) and reconnect, while Py-GP keeps its
    record of the secure channel: its next command is still wrapped with the old session keys."""
    conn = sys.modules["pygp.connection.connection"]
    pcsc = sys.modules["pygp.connection.pcsc"]
    saved = dict(session())
    err = conn.card_disconnect(pcsc.SCARD_RESET_CARD)
    check(err["errorStatus"] == 0, "SCardDisconnect(reset): %s" % err["errorMessage"])
    err = conn.card_connect(READER, api.current_protocol)
    check(err["errorStatus"] == 0, "SCardConnect after reset: %s" % err["errorMessage"])
    gpf.securityInfo[gpf.securityInfo[4]] = saved


def authenticate(kvn, level, keys=None):
    """SELECT ISD, INITIALIZE UPDATE + EXTERNAL AUTHENTICATE with Py-GP's auth()."""
    enc, mac, dek = keys or (DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY)
    api.select_isd()
    api.auth(enc, mac, dek, keysetversion=kvn, securitylevel=level)
    info = session()
    check(info.get("securityLevel") == level, "security level %02X not in force" % level)
    return info


def session():
    """Py-GP's record of the current secure channel (SCP, i, KVN, level)."""
    return gpf.securityInfo[gpf.securityInfo[4]]


def response_data():
    """Data of the last response (hex, no status word), without an R-MAC Py-GP left in it."""
    data = gpf.last_response() or ""
    info = session()
    level = info.get("securityLevel", 0)
    if info.get("secureChannelProtocol") == 3 and level & 0x10 and not level & 0x20:
        data = data[:-16] if len(data) >= 16 else data
    return data.upper()


def status():
    return (gpf.last_status() or "").upper()


def expect_sw(expected, action, what):
    """Run a Py-GP call that must end with status word `expected` (an error for Py-GP)."""
    api.stop_on_error(False)
    try:
        action()
    except BaseException:
        pass  # Py-GP still raises for some errors even with stop_on_error(False)
    finally:
        api.stop_on_error(True)
    check(status() == expected, "%s: expected SW %s, card answered %s" % (what, expected, status()))


# --- TLV -------------------------------------------------------------------------------------


def tlvs(hexdata):
    """Parse BER-TLV (hex string) into a list of (tag hex, value hex)."""
    b = bytes.fromhex(hexdata)
    out = []
    i = 0
    while i < len(b):
        if b[i] in (0x00, 0xFF):  # padding between objects
            i += 1
            continue
        start = i
        i += 1
        if b[start] & 0x1F == 0x1F:
            while b[i] & 0x80:
                i += 1
            i += 1
        tag = b[start:i].hex().upper()
        n = b[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(b[i : i + k], "big")
            i += k
        check(i + n <= len(b), "TLV %s runs past the end of %s" % (tag, hexdata))
        out.append((tag, b[i : i + n].hex().upper()))
        i += n
    return out


def tlv_value(hexdata, tag):
    for t, v in tlvs(hexdata):
        if t == tag:
            return v
    fail("tag %s not found in %s" % (tag, hexdata))


# --- GET STATUS and GET DATA through Py-GP ------------------------------------------------------


def get_status(p1):
    """GET STATUS (P2=02, with Py-GP's own '6310' continuation) -> list of dicts, [] on 6A88."""
    api.stop_on_error(False)
    try:
        err, entries = gpf.get_status(p1)
    finally:
        api.stop_on_error(True)
    if err["errorStatus"] != 0:
        check(status() == "6A88", "GET STATUS P1=%s failed: SW %s" % (p1, status()))
        return []
    return [
        {
            "aid": e["aid"].upper(),
            "lifecycle": e["lifecycle"].upper(),
            "privileges": (e["privileges"] or "").upper(),
            "module": (e["module_aid"] or "").upper(),
        }
        for e in entries
    ]


def get_data(p1p2):
    """GET DATA with Py-GP (P1P2 as 4 hex digits) -> response data without status word."""
    api.get_data(p1p2)
    return response_data()


def key_information():
    """GET DATA E0 through Py-GP -> sorted list of (KVN, key id, type, length in bytes)."""
    err, keys = gpf.get_key_information_template()
    check(err["errorStatus"] == 0, "GET DATA E0 failed: SW %s" % status())
    return sorted((kvn.upper(), kid.upper(), typ.upper(), int(length, 16)) for kid, kvn, length, typ in keys)


# --- card-sim info ---------------------------------------------------------------------------


def card_sim_info(card_sim, image):
    """Run `card-sim info` and parse what it prints (the card's own view of its state)."""
    out = subprocess.run(
        [card_sim, "info", "--image", image], capture_output=True, text=True, check=False
    )
    check(out.returncode == 0, "card-sim info failed: %s" % out.stderr.strip())
    info = {"key_sets": {}, "load_files": [], "applications": []}
    current_set = None
    current_file = None
    for line in out.stdout.splitlines():
        m = re.match(r"life cycle:\s+(\S+) \(([0-9A-F]{2})\)", line)
        if m:
            info["life_cycle"] = (m.group(1), m.group(2))
        m = re.match(r"KDD:\s+([0-9A-F]+)", line)
        if m:
            info["kdd"] = m.group(1)
        m = re.match(r"ISD:\s+([0-9A-F]+), SCP([0-9A-F]{2}) i=([0-9A-F]{2})", line)
        if m:
            info["isd"] = m.group(1)
            info["scp"] = (m.group(2), m.group(3))
        m = re.match(r"key set:\s+KVN ([0-9A-F]{2})", line)
        if m:
            current_set = m.group(1)
            info["key_sets"][current_set] = []
        m = re.match(r"\s+key ([0-9A-F]{2}):\s+type ([0-9A-F]{2}), (\d+) bytes, KCV ([0-9A-F]*)", line)
        if m:
            check(current_set is not None, "key line before any key set: %r" % line)
            info["key_sets"][current_set].append(
                (m.group(1), m.group(2), int(m.group(3)), m.group(4))
            )
        m = re.match(r"load file:\s+([0-9A-F]+) LOADED", line)
        if m:
            current_file = {"aid": m.group(1), "modules": []}
            info["load_files"].append(current_file)
        m = re.match(r"\s+module:\s+([0-9A-F]+)", line)
        if m:
            check(current_file is not None, "module line before any load file: %r" % line)
            current_file["modules"].append(m.group(1))
        m = re.match(
            r"application:\s+([0-9A-F]+) life cycle ([0-9A-F]{2}), privileges ([0-9A-F]+)", line
        )
        if m:
            info["applications"].append(
                {"aid": m.group(1), "lifecycle": m.group(2), "privileges": m.group(3)}
            )
    check("life_cycle" in info, "card-sim info printed no life cycle:\n" + out.stdout)
    return info


def privileges3(p):
    """Privileges as 3 bytes (GET STATUS may answer 1 or 3)."""
    return (p + "0000")[:6] if len(p) == 2 else p


def compare_registry(card_sim, image, what):
    """GET STATUS for the ISD, applications, load files and load files with modules, each
    compared with what `card-sim info` prints for the same image."""
    info = card_sim_info(card_sim, image)
    isd = get_status("80")
    check(len(isd) == 1, "%s: GET STATUS P1=80 returned %d entries" % (what, len(isd)))
    check(isd[0]["aid"] == ISD, "%s: ISD AID %s" % (what, isd[0]["aid"]))
    check(
        isd[0]["lifecycle"] == info["life_cycle"][1],
        "%s: GET STATUS says card life cycle %s, card-sim info %s"
        % (what, isd[0]["lifecycle"], info["life_cycle"]),
    )

    apps = get_status("40")
    got = sorted((a["aid"], a["lifecycle"], privileges3(a["privileges"])) for a in apps)
    want = sorted((a["aid"], a["lifecycle"], a["privileges"]) for a in info["applications"])
    check(got == want, "%s: GET STATUS P1=40 %s, card-sim info %s" % (what, got, want))

    files = get_status("20")
    got = sorted(f["aid"] for f in files)
    want = sorted(f["aid"] for f in info["load_files"])
    check(got == want, "%s: GET STATUS P1=20 %s, card-sim info %s" % (what, got, want))
    check(all(f["lifecycle"] == "01" for f in files), "%s: load file not LOADED: %s" % (what, files))

    with_modules = get_status("10")
    # Py-GP 1.0.0 keeps one module AID (the last) per load file.
    got = sorted((f["aid"], f["module"]) for f in with_modules)
    want = sorted((f["aid"], f["modules"][-1] if f["modules"] else "") for f in info["load_files"])
    check(got == want, "%s: GET STATUS P1=10 %s, card-sim info %s" % (what, got, want))
    passed(
        "%s: GET STATUS ISD/applications/load files match card-sim info (%d applications, %d load files)"
        % (what, len(apps), len(files))
    )
    return info


def common_args(parser):
    parser.add_argument("--card-sim", required=True, help="path of the card-sim binary")
    parser.add_argument("--image", required=True, help="the card image card-sim is serving")
