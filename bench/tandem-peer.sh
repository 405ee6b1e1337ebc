#!/usr/bin/env bash
# tandem-server as a peer of ../shared/bench/run-peers.sh (same three verbs as the
# scripts in shared/bench/peers/):
#   tandem-peer.sh install            build the release binary if missing
#   tandem-peer.sh PORT               exec it on 127.0.0.1:PORT ($! is the server), storing
#                                     in a new SQLite file under /tmp
#   tandem-peer.sh prepare PORT N P   nothing to do (documents appear on first connection)
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
BIN="$ROOT/target/release/tandem-server"
case "${1:-}" in
  install) (cd "$ROOT" && env -u CARGO_TARGET_DIR cargo build --locked --release -p tandem-server >&2); exit 0 ;;
  prepare) exit 0 ;;
esac
PORT="${1:?usage: $0 PORT|install|prepare}"
[ -x "$BIN" ] || (cd "$ROOT" && env -u CARGO_TARGET_DIR cargo build --locked --release -p tandem-server >&2)
# A fresh SQLite file per start (persistence on, as y-sweet's store dir): documents of an
# earlier measurement must not be loaded into this one.
DB="$(mktemp -d /tmp/tandem-peer-db.XXXXXX)"
# Every load client comes from 127.0.0.1, which --max-connections-per-ip would take for one
# abusive host: lifted here (the peers have no such limit). Rates stay at their defaults.
RUST_LOG=warn exec "$BIN" --listen "127.0.0.1:$PORT" --database-url "sqlite://$DB/tandem.db" \
  --max-connections-per-ip 0 ${TANDEM_PEER_FLAGS:-}
