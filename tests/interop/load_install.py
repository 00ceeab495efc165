"""Card content management: Py-GP loads a CAP file (INSTALL [for load] + LOAD blocks, its own
CAP-to-load-file conversion), installs and makes selectable its applet (and optionally more
instances, so that GET STATUS needs its '6310' continuation), selects it, deletes an instance
and then the load file with its related applications. After each step GET STATUS through Py-GP
must match `card-sim info`.

  load_install.py --card-sim BIN --image IMG --kvn 30 --cap FILE [--instances 12] [--level 03]
"""

import argparse

import harness as h

BLOCK = 200  # LOAD data per command: fits a short APDU with C-DEC padding and the C-MAC


def main():
    parser = argparse.ArgumentParser()
    h.common_args(parser)
    parser.add_argument("--kvn", required=True)
    parser.add_argument("--cap", required=True)
    parser.add_argument("--instances", type=int, default=0, help="extra instances to install")
    parser.add_argument("--level", default="03")
    args = parser.parse_args()

    loadfile = h.Loadfile(args.cap)
    pkg = loadfile.get_aid().upper()
    applets = [a.upper() for a in loadfile.get_applet_aid()]
    h.check(applets, "%s has no applet" % args.cap)
    applet = applets[0]
    blocks = len(loadfile.get_load_blocks(BLOCK))
    level = int(args.level, 16)

    h.connect()
    h.authenticate(args.kvn, level)
    before = h.card_sim_info(args.card_sim, args.image)
    h.check(all(f["aid"] != pkg for f in before["load_files"]), "%s already on the card" % pkg)

    h.api.install_load(args.cap, h.ISD)
    h.api.load_file(args.cap, BLOCK)
    loads = [sw for cmd, sw in h.TRACE if cmd.startswith(("80E8", "84E8"))]
    h.check(loads == ["9000"] * blocks, "LOAD answers %s for %d blocks" % (loads, blocks))
    info = h.card_sim_info(args.card_sim, args.image)
    got = [f for f in info["load_files"] if f["aid"] == pkg]
    h.check(got, "after LOAD, card-sim info lists no load file %s" % pkg)
    h.check(
        got[0]["modules"] == applets,
        "load file %s modules %s, CAP applets %s" % (pkg, got[0]["modules"], applets),
    )
    h.passed(
        "INSTALL [for load] + %d LOAD blocks of %s: load file %s with module %s"
        % (blocks, args.cap.rsplit("/", 1)[-1], pkg, " ".join(applets))
    )

    h.api.install(True, pkg, applet, applet)
    instances = [applet + "%02X" % i for i in range(args.instances)]
    for n, aid in enumerate(instances):
        h.api.install(True, pkg, applet, aid, ["CL"] if n == 0 else [])
    h.TRACE.clear()
    info = h.compare_registry(args.card_sim, args.image, "after INSTALL [for install and make selectable]")
    apps = {a["aid"]: a for a in info["applications"]}
    h.check(apps.get(applet, {}).get("lifecycle") == "07", "%s not SELECTABLE: %s" % (applet, apps))
    if instances:
        h.check(apps[instances[0]]["privileges"] == "100000", "Card Lock privilege: %s" % apps[instances[0]])
        pages = [sw for cmd, sw in h.TRACE if cmd[2:6] == "F240"]
        h.check(
            len(pages) > 1 and pages[:-1] == ["6310"] * (len(pages) - 1) and pages[-1] == "9000",
            "GET STATUS of %d applications answered %s, expected 6310 ... 9000" % (len(apps), pages),
        )
        h.passed("GET STATUS P1=40 over %d responses (6310 continuation), %d applications" % (len(pages), len(apps)))
    h.passed("INSTALL [for install and make selectable] %s (+%d instances): SELECTABLE" % (applet, len(instances)))

    # This card runs no Java Card bytecode: SELECT of a loaded applet is refused with 6999 and
    # the ISD stays selected (docs/interop.md, known differences).
    h.expect_sw("6999", lambda: h.api.select(applet), "SELECT %s" % applet)
    h.api.select_isd()
    h.passed("SELECT %s answers 6999 (the card does not execute loaded code); ISD selectable again" % applet)

    h.authenticate(args.kvn, level)
    if instances:
        h.api.delete(instances[-1])
        info = h.compare_registry(args.card_sim, args.image, "after DELETE of one instance")
        h.check(all(a["aid"] != instances[-1] for a in info["applications"]), "instance still registered")
        h.passed("DELETE %s (one application)" % instances[-1])
    h.expect_sw("6A88", lambda: h.api.delete("A0000006475049FFFFFF"), "DELETE of an unknown AID")
    h.api.delete_package(pkg)
    after = h.compare_registry(args.card_sim, args.image, "after DELETE of the load file and related objects")
    h.check(after["load_files"] == before["load_files"], "load files after DELETE: %s" % after["load_files"])
    h.check(after["applications"] == before["applications"], "applications after DELETE: %s" % after["applications"])
    h.passed("DELETE %s with related objects: registry back to %d load files, %d applications" % (
        pkg, len(after["load_files"]), len(after["applications"])))
    print("OK load_install %s" % pkg)


if __name__ == "__main__":
    h.run(main)
