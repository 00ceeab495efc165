#!/usr/bin/env bash
# The end-to-end demo: an issuer key ceremony on a throwaway SoftHSM token, a fab-fresh simulated card
# personalised with per-card keys derived in the token, and a package loaded and installed after issuance;
# then the vendor's side: its own token, its security domain on the card with that card's DAP key, and a
# package signed for that card and ciphered, loaded through the SSD; last, remote delivery: an admin
# server runs a campaign and the agent on the "device" relays its scripts to the card through PC/SC.
# Everything lives under target/demo and is made anew on every run; nothing asks for input.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "building"
cargo build --quiet --workspace --bins --examples
bin="${CARGO_TARGET_DIR:-target}/debug"

demo=target/demo
rm -rf "$demo"
mkdir -p "$demo/tokens"
cat >"$demo/softhsm2.conf" <<CONF
directories.tokendir = $PWD/$demo/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF="$PWD/$demo/softhsm2.conf"

# A throwaway token with random PINs. The user PIN reaches the tools through a named environment variable,
# never through an argument.
POSTISSUE_DEMO_PIN=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
export POSTISSUE_DEMO_PIN
so_pin=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
step "a throwaway SoftHSM token labelled 'issuer'"
softhsm2-util --init-token --free --label issuer --so-pin "$so_pin" --pin "$POSTISSUE_DEMO_PIN" >/dev/null
softhsm2-util --init-token --free --label vendor --so-pin "$so_pin" --pin "$POSTISSUE_DEMO_PIN" >/dev/null
softhsm2-util --show-slots | grep -E 'Label: +issuer' -B12 | grep -E 'Serial number|Label' | sed 's/^ */  /'

step "key ceremony: ceremonies/issuer-master.ron"
"$bin/keyman" ceremony run ceremonies/issuer-master.ron \
  --pin-source env:POSTISSUE_DEMO_PIN --ledger "$demo/issuer-ledger.jsonl" --anchor-token issuer

step "the ceremony started a new ledger and anchored its head in the issuer's token: verify against it"
"$bin/keyman" ledger verify "$demo/issuer-ledger.jsonl" --token issuer --pin-source env:POSTISSUE_DEMO_PIN

master="pkcs11:token=issuer;object=isd-kmc"

step "a fab-fresh card (OP_READY, ISD A000000151000000, transport key set = default key, SCP03)"
"$bin/card-sim" new --image "$demo/card.img"
"$bin/card-sim" info --image "$demo/card.img"

step "personalisation: per-card ISD keys derived in the token (EMV CPS), PUT KEY over SCP03, SECURED"
"$bin/signer" personalise --card "sim:$demo/card.img" --master "$master" --pin-source env:POSTISSUE_DEMO_PIN

step "the application: a CAP file built by the project"
"$bin/examples/demo-cap" "$demo/hello.cap"

step "package: CAP -> LFDB -> SHA-256 hash -> manifest"
"$bin/signer" package "$demo/hello.cap" --out "$demo/hello.pkg" --hash sha256
"$bin/signer" verify "$demo/hello.pkg"

step "post-issuance load over SCP03 with the card's ISD keys in the HSM"
"$bin/signer" deploy "$demo/hello.pkg" --card "sim:$demo/card.img" --master "$master" \
  --pin-source env:POSTISSUE_DEMO_PIN

step "the card's registry, as GET STATUS returns it"
"$bin/signer" card list --card "sim:$demo/card.img" --master "$master" --pin-source env:POSTISSUE_DEMO_PIN

step "the vendor's keys: ceremonies/vendor-keys.ron in its own token"
"$bin/keyman" ceremony run ceremonies/vendor-keys.ron \
  --pin-source env:POSTISSUE_DEMO_PIN --ledger "$demo/vendor-ledger.jsonl" --anchor-token vendor

step "a card's per-card keys, derived in the token: only their check values are shown"
kdd=$("$bin/card-sim" info --image "$demo/card.img" | awk '/^KDD:/ {print $2}')
"$bin/signer" keys derive --master "$master" --scheme emv --kdd "$kdd" --pin-source env:POSTISSUE_DEMO_PIN

step "the vendor's application: a second CAP file (package A000000647504902, applet A00000064750490201)"
"$bin/examples/demo-cap" "$demo/hello-vendor.cap" A000000647504902 A00000064750490201

step "a vendor package with one DAP per card (keys derived in the vendor's token) and a ciphered LFDB"
ssd=A0000001515350410001
printf 'identity,kdd\ndemo-card,%s\n' "$kdd" >"$demo/cards.csv"
"$bin/signer" package "$demo/hello-vendor.cap" --out "$demo/hello-vendor.pkg" \
  --dap aes --dap-key "pkcs11:token=vendor;object=dap-master" --dap-sd "$ssd" \
  --cards "$demo/cards.csv" --diversify aes \
  --encrypt --cipher-key "pkcs11:token=vendor;object=lfdb-cipher" \
  --pin-source env:POSTISSUE_DEMO_PIN --ledger "$demo/vendor-ledger.jsonl"
"$bin/signer" inspect "$demo/hello-vendor.pkg"
"$bin/signer" verify "$demo/hello-vendor.pkg" --dap-key "pkcs11:token=vendor;object=dap-master" \
  --cipher-key "pkcs11:token=vendor;object=lfdb-cipher" --pin-source env:POSTISSUE_DEMO_PIN

step "the issuer creates the vendor's security domain $ssd (DAP verification, ciphered load files)"
"$bin/signer" card create-sd --card "sim:$demo/card.img" --master "$master" --sd "$ssd" \
  --privileges dap-verification,ciphered-load-file-data-block --scp 03 \
  --pin-source env:POSTISSUE_DEMO_PIN --ledger "$demo/issuer-ledger.jsonl"

step "the vendor puts this card's DAP key and its cipher key into its SSD, through the SSD's own channel"
"$bin/signer" sd put-keys --card "sim:$demo/card.img" --sd "$ssd" \
  --dap-master "pkcs11:token=vendor;object=dap-master" --diversify aes \
  --cipher-key "pkcs11:token=vendor;object=lfdb-cipher" \
  --pin-source env:POSTISSUE_DEMO_PIN --ledger "$demo/vendor-ledger.jsonl"

step "post-issuance load of the signed vendor package: the SSD checks this card's DAP and deciphers the LFDB"
"$bin/signer" deploy "$demo/hello-vendor.pkg" --card "sim:$demo/card.img" --master "$master" --sd "$ssd" \
  --pin-source env:POSTISSUE_DEMO_PIN --ledger "$demo/issuer-ledger.jsonl"

step "the card's registry: the vendor's SSD and its application, SELECTABLE"
"$bin/signer" card list --card "sim:$demo/card.img" --master "$master" --pin-source env:POSTISSUE_DEMO_PIN

step "both ledgers against their anchors: every append above moved the anchor in its token"
"$bin/keyman" ledger verify "$demo/issuer-ledger.jsonl" --token issuer --pin-source env:POSTISSUE_DEMO_PIN
"$bin/keyman" ledger verify "$demo/vendor-ledger.jsonl" --token vendor --pin-source env:POSTISSUE_DEMO_PIN

step "remote delivery: the issuer's admin server on loopback, PSK-TLS 1.2 (SCP81 suites), a campaign"
"$bin/examples/demo-cap" "$demo/hello-remote.cap" A000000647504903 A00000064750490301
"$bin/signer" package "$demo/hello-remote.cap" --out "$demo/hello-remote.pkg" --hash sha256
(umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$demo/device.psk")
# The server appends to a ledger the operator starts explicitly, anchored in the issuer's token.
"$bin/keyman" ledger init "$demo/remote-ledger.jsonl" --token issuer --pin-source env:POSTISSUE_DEMO_PIN
cat >"$demo/admin-server.ron" <<RON
(
    listen: "127.0.0.1:38443",
    tls: (psk: [(identity: "demo-device", key_file: "device.psk")]),
    database: "admin.db",
    issuer_master: "$master",
    scheme: "emv",
    pin_source: "env:POSTISSUE_DEMO_PIN",
    ledger: Some("remote-ledger.jsonl"),
    ops: Some((listen: "127.0.0.1:39464")),
)
RON
"$bin/admin-server" campaign --config "$demo/admin-server.ron" add demo \
  --package "$demo/hello-remote.pkg" --cards "$demo/cards.csv"
# Only the processes started here are stopped, by their ids.
started=()
cleanup() {
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  started=()
}
trap cleanup EXIT
"$bin/admin-server" serve --config "$demo/admin-server.ron" >"$demo/admin-server.out" 2>"$demo/admin-server.log" &
started+=($!)
for _ in $(seq 50); do grep -q listening "$demo/admin-server.out" 2>/dev/null && break; sleep 0.2; done
cat "$demo/admin-server.out"

step "the device: admin-agent relays the server's scripts to the card (through pcscd and vpcd)"
reader="Virtual PCD 00 00"
if command -v pcscd >/dev/null && [ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ]; then
  if ! opensc-tool --list-readers 2>/dev/null | grep -q "Virtual PCD"; then
    pcscd --foreground --error >"$demo/pcscd.log" 2>&1 &
    started+=($!)
    sleep 1
  fi
  "$bin/card-sim" serve --image "$demo/card.img" --vpcd 127.0.0.1:35963 2>"$demo/card-sim.log" &
  sim_pid=$!
  started+=("$sim_pid")
  for _ in $(seq 40); do opensc-tool --reader "$reader" --atr >/dev/null 2>&1 && break; sleep 0.25; done
  card="pcsc:$reader"
else
  echo "(pcscd or vsmartcard-vpcd is not installed: the agent talks to the card image directly)"
  sim_pid=""
  card="sim:$demo/card.img"
fi
ADMIN_LOG=info "$bin/admin-agent" --server https://127.0.0.1:38443/admin --card "$card" \
  --psk-identity demo-device --psk-file "$demo/device.psk" --from demo-kiosk
if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi

step "the campaign and the card agree: the application A00000064750490301 is installed"
"$bin/admin-server" campaign --config "$demo/admin-server.ron" show demo
"$bin/admin-server" campaign --config "$demo/admin-server.ron" report demo --format csv
# What the operations team scrapes (the status page is http://127.0.0.1:39464/status).
exec 3<>/dev/tcp/127.0.0.1/39464
printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
grep -E '^postissue_admin_(campaign_cards|sessions_total|hsm_call_duration_seconds_count)' <&3 || true
exec 3<&-
"$bin/signer" card list --card "sim:$demo/card.img" --master "$master" --pin-source env:POSTISSUE_DEMO_PIN
cleanup
"$bin/keyman" ledger verify "$demo/remote-ledger.jsonl" --token issuer --pin-source env:POSTISSUE_DEMO_PIN

step "done: tokens, ledgers, card image and packages are in $demo"
