"""Cases where the card answers a Py-GP command other than GlobalPlatform says. Each case is
written up in docs/interop.md (Findings); the Rust test that runs it stays ignored until the card
is fixed, then passes unchanged.

  findings.py --card-sim BIN --image IMG --kvn 30 --case manage-channel|store-data-sequence
"""

import argparse

import harness as h


def manage_channel(args):
    """GPC 2.3.1 §6.3 (Command Dispatch): a card aware of logical channels that supports only the
    basic one answers MANAGE CHANNEL from the OPEN with an error ('6881', §11.1.3); it is not
    dispatched to the ISD, so the ISD's secure channel is not involved and survives."""
    h.expect_sw("6881", lambda: h.api.manage_channel(True, 1), "MANAGE CHANNEL [open] outside a session")
    h.authenticate(args.kvn, 0x01)
    h.expect_sw("6881", lambda: h.api.manage_channel(True, 1), "MANAGE CHANNEL [open] in a C-MAC session")
    cf = h.get_data("00CF")
    h.check(cf.startswith("CF"), "the C-MAC session must survive MANAGE CHANNEL: %s" % h.status())
    h.passed("MANAGE CHANNEL [open] answers 6881 and leaves the secure channel open")


def store_data_sequence(args):
    """GPC 2.3.1 §11.11.2.2: the SD checks the block numbers of STORE DATA (from '00', reset after
    the last block); a wrong block number is refused ('6A86', §11.1.3) and stores nothing."""
    h.authenticate(args.kvn, 0x01)
    h.expect_sw("6A86", lambda: h.api.send("80E29005" + "054203AABBCC"), "STORE DATA starting at block 05")
    h.authenticate(args.kvn, 0x01)
    h.api.send("80E29000" + "054203123456")
    h.expect_sw("6A86", lambda: h.api.send("80E29001" + "054203AABBCC"), "STORE DATA block 01 after a last block")
    h.authenticate(args.kvn, 0x01)
    h.check(h.get_data("0042") == "4203123456", "IIN after refused blocks: %s" % h.response_data())
    h.passed("STORE DATA block numbers checked: 05 first and 01 after a last block refused with 6A86")


CASES = {"manage-channel": manage_channel, "store-data-sequence": store_data_sequence}


def main():
    parser = argparse.ArgumentParser()
    h.common_args(parser)
    parser.add_argument("--kvn", required=True)
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    args = parser.parse_args()
    h.connect()
    CASES[args.case](args)
    print("OK findings %s" % args.case)


if __name__ == "__main__":
    h.run(main)
