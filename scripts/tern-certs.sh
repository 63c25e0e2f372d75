#!/usr/bin/env bash
# Issues a private CA and the certificates of tern's client port with the openssl CLI
# (docs/operations.md: issue, rotate, revoke). Keys are EC P-256, written with mode 600.
# Usage: scripts/tern-certs.sh DIR [SERVER_NAME...]
#   DIR/ca.pem  DIR/ca.key            the CA: created when absent, reused when present
#   DIR/NAME.pem  DIR/NAME.key        one server certificate per SERVER_NAME (default: server),
#                                     for ternd --client-tls-cert/--client-tls-key
#   DIR/client.pem  DIR/client.key    a client certificate (CN $TERN_CLIENT_CN, default
#                                     tern-client), for ternadm --tls-cert/--tls-key
# Existing certificates are kept: delete one (or the whole DIR) and run again to reissue it.
# Server certificates name DNS:localhost and IP:127.0.0.1, plus $TERN_CERT_SANS (e.g.
# "DNS:tern1.example,IP:10.0.0.5"). kj-tls (Cap'n Proto 0.9.2) checks the name a client connects
# to against DNS names only, so every IP address is also written as a DNS name: clients may then
# connect by address. Validity: $TERN_CERT_DAYS days (default 365); the CA 3650 days.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
command -v openssl >/dev/null || { echo "tern-certs.sh: the openssl command is needed" >&2; exit 2; }
dir=$1
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(server)
days=${TERN_CERT_DAYS:-365}
mkdir -p "$dir"
umask 077

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca.key" ]; then
  newkey "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 -subj "/CN=tern local CA $(date -u +%Y%m%dT%H%M%SZ)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem" 2>/dev/null
fi

# issue NAME CN EXTENSIONS: a certificate for NAME.key signed by the CA.
issue() {
  local name=$1 cn=$2 ext=$3
  [ -s "$dir/$name.pem" ] && [ -s "$dir/$name.key" ] && return 0
  newkey "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "/CN=$cn" -out "$dir/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -sha256 \
    -days "$days" -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

sans="DNS:localhost,IP:127.0.0.1${TERN_CERT_SANS:+,$TERN_CERT_SANS}"
# Every IP:x also as DNS:x (see above).
dns_for_ips=$(tr ',' '\n' <<<"$sans" | sed -n 's/^IP:\(.*\)$/DNS:\1/p' | paste -sd, -)
for n in "${names[@]}"; do
  issue "$n" "$n" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$sans,$dns_for_ips"
done
issue client "${TERN_CLIENT_CN:-tern-client}" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
chmod 644 "$dir"/*.pem
