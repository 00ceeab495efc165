"""Audit: what Py-GP reads from the card (GET STATUS of the ISD, applications, load files and
modules; GET DATA CPLC, card data, key information) must match `card-sim info` for the image.

  audit.py --card-sim BIN --image IMG --kvn 30 --level 03
"""

import argparse

import harness as h

GP_OID = "2A864886FC6B"
IIN = "42" + "03" + "123456"
CIN = "45" + "08" + "0011223344556677"


def card_data(info):
    """GET DATA 0066: Card Recognition Data (GPC 2.3.1 H.2)."""
    data = h.get_data("0066")
    crd = h.tlv_value(h.tlv_value(data, "66"), "73")
    fields = dict(h.tlvs(crd))
    h.check(fields.get("06") == GP_OID + "01", "card data: OID %s" % fields.get("06"))
    version = h.tlv_value(fields["60"], "06")
    h.check(version.startswith(GP_OID + "02"), "card data: version OID %s" % version)
    gp_version = ".".join(str(int(version[i : i + 2], 16)) for i in range(14, len(version), 2))
    scp = h.tlv_value(fields["64"], "06")
    h.check(scp.startswith(GP_OID + "04"), "card data: SCP OID %s" % scp)
    scp_i = (scp[14:16], scp[16:18])
    h.check(scp_i == info["scp"], "card data: SCP%s i=%s, card-sim info %s" % (scp_i + (info["scp"],)))
    h.passed("GET DATA 66: card recognition data, GP %s, SCP%s i=%s" % ((gp_version,) + scp_i))


def cplc():
    """GET DATA 9F7F with Py-GP's own CPLC reader (it checks the tag)."""
    err, value = h.gpf.get_cplc_data()
    h.check(err["errorStatus"] == 0, "GET DATA 9F7F: SW %s" % h.status())
    h.check(len(value) == 2 * 42, "CPLC is %d bytes, GPC H.4 defines 42" % (len(value) // 2))
    h.passed("GET DATA 9F7F: CPLC, 42 bytes, IC fabricator %s IC type %s" % (value[0:4], value[4:8]))


def key_information(info):
    got = h.key_information()
    want = sorted(
        (kvn, kid, typ, length) for kvn, keys in info["key_sets"].items() for kid, typ, length, _ in keys
    )
    h.check(got == want, "GET DATA E0 %s, card-sim info %s" % (got, want))
    h.passed("GET DATA E0: key information matches card-sim info (%d keys)" % len(got))


def main():
    parser = argparse.ArgumentParser()
    h.common_args(parser)
    parser.add_argument("--kvn", required=True)
    parser.add_argument("--level", default="03")
    args = parser.parse_args()

    info = h.card_sim_info(args.card_sim, args.image)
    h.connect()
    h.authenticate(args.kvn, int(args.level, 16))
    h.compare_registry(args.card_sim, args.image, "fab card")
    cplc()
    card_data(info)
    key_information(info)
    kdd = h.tlv_value(h.get_data("00CF"), "CF")
    h.check(kdd == info["kdd"], "GET DATA CF %s, card-sim KDD %s" % (kdd, info["kdd"]))
    h.passed("GET DATA CF: key diversification data %s" % kdd)

    # The ISD's own data: IIN (42) and CIN (45) by STORE DATA, read back with GET DATA. Py-GP's
    # store_data() sends P1 without a data structure indication (b5b4=00), which this card's ISD
    # refuses (6A86); its send() carries the BER-TLV indication (P1=90, GPC Table 11-89).
    h.expect_sw("6A86", lambda: h.api.store_data(IIN), "Py-GP store_data() (P1 b5b4=00) to the ISD")
    h.authenticate(args.kvn, int(args.level, 16))
    h.api.send("80E29000" + "%02X" % (len(IIN + CIN) // 2) + IIN + CIN)
    h.check(h.get_data("0042") == IIN, "GET DATA 42 after STORE DATA: %s" % h.response_data())
    h.check(h.get_data("0045") == CIN, "GET DATA 45 after STORE DATA: %s" % h.response_data())
    h.passed("STORE DATA (BER-TLV) IIN and CIN; GET DATA 42 and 45 read them back")
    print("OK audit")


if __name__ == "__main__":
    h.run(main)
