"""Secure channel: Py-GP authenticates to the fab card with its transport key set at each
security level, then sends commands under it (GET STATUS of the ISD, GET DATA KDD and sequence
counter) and checks the answers against `card-sim info`.

  secure_channel.py --card-sim BIN --image IMG --scp 03 --kvn 30 --levels 00,01,03,11,13,33
"""

import argparse

import harness as h


def main():
    parser = argparse.ArgumentParser()
    h.common_args(parser)
    parser.add_argument("--scp", choices=["02", "03"], required=True)
    parser.add_argument("--kvn", required=True, help="key version number of the fab key set")
    parser.add_argument("--levels", required=True, help="comma-separated security levels (hex)")
    args = parser.parse_args()

    info = h.card_sim_info(args.card_sim, args.image)
    atr = h.connect()
    h.passed("ATR %s through pcscd (reader %s)" % (atr.replace(" ", ""), h.READER))

    want_i = info["scp"][1]
    for level in [int(x, 16) for x in args.levels.split(",")]:
        s = h.authenticate(args.kvn, level)
        scp = "%02X" % s["secureChannelProtocol"]
        i = str(s["secureChannelProtocolImpl"]).upper()
        h.check(scp == args.scp, "INITIALIZE UPDATE answered SCP%s, expected SCP%s" % (scp, args.scp))
        h.check(i == want_i, "Py-GP runs i=%s, card-sim info says i=%s" % (i, want_i))
        kvn = "%02X" % s["keySetVersion"]
        h.check(kvn == args.kvn, "INITIALIZE UPDATE answered KVN %s, expected %s" % (kvn, args.kvn))

        # A command with response data under the session's protection.
        cf = h.get_data("00CF")
        h.check(
            h.tlv_value(cf, "CF") == info["kdd"],
            "level %02X: GET DATA CF %s, card-sim KDD %s" % (level, cf, info["kdd"]),
        )
        c1 = h.tlv_value(h.get_data("00C1"), "C1")
        h.check(len(c1) in (4, 6), "level %02X: sequence counter %s" % (level, c1))
        isd = h.get_data("00E0")  # key information: must parse under every level
        h.check(isd.startswith("E0"), "level %02X: GET DATA E0 answered %s" % (level, isd))
        h.passed(
            "SCP%s i=%s KVN %s level %02X (%s): EXTERNAL AUTHENTICATE, GET DATA CF/C1/E0 (counter %s)"
            % (scp, i, kvn, level, h.LEVEL_NAMES[level], c1)
        )

    # After a reset (power loss for the card) the session is gone: a wrapped command fails.
    h.authenticate(args.kvn, 0x01)
    h.reset_card_keep_session()
    h.expect_sw("6982", lambda: h.api.send("80CA00CF00"), "C-MAC command after reset")
    h.api.select_isd()
    h.passed("reset ends the secure channel: wrapped GET DATA after reset answers 6982")
    print("OK secure_channel SCP%s" % args.scp)


if __name__ == "__main__":
    h.run(main)
