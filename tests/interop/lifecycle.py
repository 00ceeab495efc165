"""Life cycles with SET STATUS through Py-GP: an application is locked and unlocked; the card
goes OP_READY -> INITIALIZED -> SECURED -> CARD_LOCKED -> SECURED -> TERMINATED, refusing
backward transitions. A locked card still lets the issuer authenticate and audit it (GET STATUS,
GET DATA) and nothing else; a terminated card answers GET DATA only. The life cycle GET STATUS
reports must match `card-sim info` after each step.

  lifecycle.py --card-sim BIN --image IMG --kvn 30 --cap FILE
"""

import argparse

import harness as h

LEVEL = 0x01  # SET STATUS has no response data: Py-GP cannot take it under R-ENC (docs/interop.md)
STATES = {"01": "OP_READY", "07": "INITIALIZED", "0F": "SECURED", "7F": "CARD_LOCKED", "FF": "TERMINATED"}


def card_state(args, want):
    info = h.card_sim_info(args.card_sim, args.image)
    h.check(
        info["life_cycle"] == (STATES[want], want),
        "card-sim info says %s, expected %s (%s)" % (info["life_cycle"], STATES[want], want),
    )
    return info


def set_card(args, state, aid, what):
    h.api.set_status(h.api.CARD_ELEMENT_ISD, state, aid)
    isd = h.get_status("80")
    h.check(isd and isd[0]["lifecycle"] == state, "GET STATUS after SET STATUS %s: %s" % (state, isd))
    card_state(args, state)
    h.passed("SET STATUS card -> %s (%s), %s; GET STATUS and card-sim info agree" % (STATES[state], state, what))


def main():
    parser = argparse.ArgumentParser()
    h.common_args(parser)
    parser.add_argument("--kvn", required=True)
    parser.add_argument("--cap", required=True)
    args = parser.parse_args()

    loadfile = h.Loadfile(args.cap)
    pkg = loadfile.get_aid().upper()
    applet = loadfile.get_applet_aid()[0].upper()

    h.connect()
    card_state(args, "01")
    h.authenticate(args.kvn, LEVEL)
    h.api.upload_install(args.cap, h.ISD, applet, applet)
    h.check(h.status() == "9000", "upload_install: SW %s" % h.status())

    # Application: lock, lock again (refused), unlock.
    h.api.set_app_state("80", applet)
    apps = h.get_status("40")
    h.check([(a["aid"], a["lifecycle"]) for a in apps] == [(applet, "87")], "after lock: %s" % apps)
    info = h.card_sim_info(args.card_sim, args.image)
    h.check([a["lifecycle"] for a in info["applications"]] == ["87"], "card-sim info: %s" % info["applications"])
    h.expect_sw("6A80", lambda: h.api.set_app_state("80", applet), "locking a LOCKED application")
    h.expect_sw("6A82", lambda: h.api.select(applet), "SELECT of a LOCKED application")
    h.authenticate(args.kvn, LEVEL)
    h.api.set_app_state("00", applet)
    h.check([a["lifecycle"] for a in h.get_status("40")] == ["07"], "after unlock: %s" % h.get_status("40"))
    h.passed("SET STATUS application LOCKED (87, SELECT 6A82) and back to SELECTABLE (07)")

    # Card: forwards only. For P1=80 the data field is ignored (GPC 11.10.2.3): empty, the ISD
    # AID and another AID must all work.
    set_card(args, "07", "", "empty data field")
    h.expect_sw("6A80", lambda: h.api.set_status("80", "01", ""), "card back to OP_READY")
    set_card(args, "0F", h.ISD, "ISD AID in the data field")
    h.expect_sw("6A80", lambda: h.api.set_status("80", "07", h.ISD), "card back to INITIALIZED")
    card_state(args, "0F")
    h.passed("backward card transitions refused with 6A80, state unchanged")
    set_card(args, "7F", "A0000000031010", "another AID in the data field (ignored)")

    # CARD_LOCKED: audit works, content management does not, only the ISD is selectable.
    h.expect_sw("6A82", lambda: h.api.select(applet), "SELECT of an application on a locked card")
    h.authenticate(args.kvn, LEVEL)
    h.compare_registry(args.card_sim, args.image, "CARD_LOCKED")
    h.get_data("9F7F")
    h.expect_sw("6985", lambda: h.api.install(True, pkg, applet, applet + "01"), "INSTALL on a locked card")
    h.passed("CARD_LOCKED: authenticate, GET STATUS, GET DATA work; INSTALL 6985; SELECT application 6A82")
    h.authenticate(args.kvn, LEVEL)
    set_card(args, "0F", h.ISD, "unlocked")

    # TERMINATED: only GET DATA is processed (GPC 5.1.1.5).
    h.api.set_status("80", "FF", h.ISD)
    card_state(args, "FF")
    h.reset_card_keep_session()
    h.gpf.securityInfo[0] = {"channelStatus": "ON", "securityLevel": 0x00}
    h.expect_sw("6985", lambda: h.api.send("00A4040008" + h.ISD, raw_mode=True), "SELECT ISD on a terminated card")
    h.api.send("80CA9F7F00", raw_mode=True)
    h.check(h.tlvs(h.gpf.last_response())[0][0] == "9F7F", "GET DATA CPLC on a terminated card")
    h.expect_sw(
        "6985", lambda: h.api.send("8050%s0008%s00" % (args.kvn, "0102030405060708"), raw_mode=True),
        "INITIALIZE UPDATE on a terminated card",
    )
    h.passed("TERMINATED: SELECT and INITIALIZE UPDATE 6985, GET DATA CPLC answers")
    print("OK lifecycle")


if __name__ == "__main__":
    h.run(main)
