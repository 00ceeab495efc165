"""PUT KEY: Py-GP puts a new secure channel key set (put_scp_key: ENC, MAC, DEK in one command,
P2=81), checks the key check values the card returns, authenticates with the new set, then
replaces it (P1 = its KVN) and authenticates with the replacement. The transport set keeps
working throughout. Key information (GET DATA E0) and `card-sim info` must agree at each step.

  put_key.py --card-sim BIN --image IMG --scp 03 --kvn 30 --new-kvn 31
"""

import argparse

import harness as h

NEW = (
    "1112131415161718191A1B1C1D1E1F10",
    "2122232425262728292A2B2C2D2E2F20",
    "3132333435363738393A3B3C3D3E3F30",
)
REPLACED = (
    "5152535455565758595A5B5C5D5E5F50",
    "6162636465666768696A6B6C6D6E6F60",
    "7172737475767778797A7B7C7D7E7F70",
)


def put_set(kvn, keys, key_type, replace):
    """PUT KEY through Py-GP's off-card key repository, as its users do."""
    h.api.set_key(*["%s/%d/%s/%s" % (kvn, i + 1, key_type, k) for i, k in enumerate(keys)])
    h.api.put_scp_key(kvn, replace)
    want = kvn + "".join(h.gpf.compute_key_check_value(key_type, k) for k in keys)
    got = h.response_data()
    h.check(
        got == want.upper(),
        "PUT KEY %s KVN %s: card answered %s, expected KVN + KCVs %s"
        % ("replace" if replace else "new", kvn, got, want),
    )
    return [h.gpf.compute_key_check_value(key_type, k).upper() for k in keys]


def check_set(args, kvn, kcvs, key_type_code, what):
    info = h.card_sim_info(args.card_sim, args.image)
    keys = info["key_sets"].get(kvn)
    h.check(keys is not None, "%s: card-sim info has no key set %s: %s" % (what, kvn, info["key_sets"]))
    got = [(kid, typ, n, kcv) for kid, typ, n, kcv in keys]
    want = [("%02X" % (i + 1), key_type_code, 16, kcv) for i, kcv in enumerate(kcvs)]
    h.check(got == want, "%s: card-sim info key set %s is %s, expected %s" % (what, kvn, got, want))
    e0 = [k for k in h.key_information() if k[0] == kvn]
    want_e0 = [(kvn, "%02X" % (i + 1), key_type_code, 16) for i in range(3)]
    h.check(e0 == want_e0, "%s: GET DATA E0 lists %s for KVN %s, expected %s" % (what, e0, kvn, want_e0))


def main():
    parser = argparse.ArgumentParser()
    h.common_args(parser)
    parser.add_argument("--scp", choices=["02", "03"], required=True)
    parser.add_argument("--kvn", required=True)
    parser.add_argument("--new-kvn", required=True)
    args = parser.parse_args()
    key_type = "AES" if args.scp == "03" else "DES"
    type_code = "88" if args.scp == "03" else "80"
    new = args.new_kvn

    h.connect()
    h.authenticate(args.kvn, 0x03)
    kcvs = put_set(new, NEW, key_type, replace=False)
    check_set(args, new, kcvs, type_code, "new key set")
    h.passed("PUT KEY new %s key set KVN %s under C-DEC: card returned KCVs %s" % (key_type, new, " ".join(kcvs)))

    h.authenticate(new, 0x01, NEW)
    h.passed("authenticated with the new key set KVN %s" % new)

    kcvs = put_set(new, REPLACED, key_type, replace=True)
    check_set(args, new, kcvs, type_code, "replaced key set")
    h.passed("PUT KEY replace KVN %s (P1=%s): card returned KCVs %s" % (new, new, " ".join(kcvs)))

    h.authenticate(new, 0x03, REPLACED)
    h.passed("authenticated with the replaced key set KVN %s" % new)
    try:
        h.authenticate(new, 0x01, NEW)
        h.fail("the keys KVN %s had before the replacement still authenticate" % new)
    except h.Failure:
        raise
    except BaseException as e:  # Py-GP refuses the card cryptogram before EXTERNAL AUTHENTICATE
        h.check("card cryptogram" in str(e), "old keys of KVN %s: %s" % (new, e))
    h.passed("the keys KVN %s had before the replacement no longer authenticate" % new)

    h.authenticate(args.kvn, 0x01)
    h.passed("the transport key set KVN %s still authenticates" % args.kvn)
    print("OK put_key SCP%s" % args.scp)


if __name__ == "__main__":
    h.run(main)
