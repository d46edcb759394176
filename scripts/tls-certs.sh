#!/usr/bin/env bash
# Makes the certificates the TLS tests, examples and bench use, with the
# `openssl` command, into DIR (default build/tls-certs). Nothing here is
# committed: every key is made fresh, and lives only in the build tree.
#
#   bash scripts/tls-certs.sh [DIR]
#
# ca.pem           a root CA (ca.key, RSA)
# server.pem/.key  signed by it, for localhost, 127.0.0.1 and ::1 (P-256)
# client.pem/.key  signed by it, for a client's certificate
# expired.pem/.key signed by it, for localhost, valid only in 2020
# self.pem/.key    self-signed, for localhost
# other-ca.pem     another root CA, which signed nothing here
set -euo pipefail

dir="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/tls-certs}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)" # absolute: the CA's database below names it
cd "$dir"
# One run at a time (ctest may start two fixtures' set-ups together).
exec 9>"$dir/.lock"
flock 9
[ -s server.pem ] && [ -s expired.pem ] && [ -s self.pem ] && [ -s client.pem ] &&
  grep -q "rsa-ca" .kind 2>/dev/null && exit 0

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# The CAs (and the self-signed certificate) sign with RSA: Wine 8's
# CryptoAPI refused a P-256 signature whose r had a leading zero byte
# (docs/wine.md, "Schannel"), one run in a few hundred.
rsa_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }
san_localhost="subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

rsa_key ca.key
openssl req -x509 -new -key ca.key -days 3650 -subj "/CN=cport test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem
rsa_key other-ca.key
openssl req -x509 -new -key other-ca.key -days 3650 -subj "/CN=cport other CA" \
  -addext "basicConstraints=critical,CA:TRUE" -out other-ca.pem

# leaf NAME SUBJECT EXTENSIONS: NAME.key and NAME.pem signed by ca, 2 years.
leaf() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "$3" basicConstraints=CA:FALSE >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 730 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
leaf server "/CN=localhost" "$san_localhost
extendedKeyUsage=serverAuth"
leaf client "/CN=cport test client" "extendedKeyUsage=clientAuth"

# Expired: `openssl ca` takes explicit dates (x509 -req does not, in 3.0).
key expired.key
openssl req -new -key expired.key -subj "/CN=localhost" -out expired.csr
mkdir -p ca-db
: >ca-db/index.txt
cat >ca-db/ca.cnf <<EOF
[ca]
default_ca = test
[test]
database = $dir/ca-db/index.txt
new_certs_dir = $dir/ca-db
serial = $dir/ca-db/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[ext]
$san_localhost
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
EOF
echo 1000 >ca-db/serial
openssl ca -batch -config ca-db/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
  -startdate 20200101000000Z -enddate 20200201000000Z -extensions ext -notext \
  -out expired.pem 2>/dev/null

rsa_key self.key
openssl req -x509 -new -key self.key -days 730 -subj "/CN=localhost" \
  -addext "$san_localhost" -out self.pem
rm -f ./*.csr ./*.ext
echo rsa-ca >.kind
echo "certificates in $dir"
