#!/usr/bin/env bash
# seal.sh - mkpki's encryption certificates: one per agency, key agreement only, its own key.
# (Sealing and opening, and `openssl cms` interoperability, are in tests/unit/seal_test.c.)
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

P=$IHALA_PKI
agencies="dma moh molsa hi auditor"
plan 30

# pubkey FILE: the certificate's public key, PEM.
pubkey() { openssl x509 -in "$1" -noout -pubkey; }
# chains CERT: it verifies against the federation CA.
chains() { openssl verify -CAfile "$P/ca.pem" "$1" >/dev/null 2>&1; }

for a in $agencies; do
	crt=$P/$a-enc.crt key=$P/$a-enc.key
	check "$a: encryption key is mode 600" test "$(stat -c %a "$key")" = 600
	check "$a: encryption certificate chains to the federation CA" chains "$crt"
	openssl x509 -in "$crt" -noout -ext keyUsage,extendedKeyUsage,subjectAltName \
		>"$T/$a.ext" 2>&1
	check "$a: keyUsage is critical and keyAgreement only, no extendedKeyUsage" \
		test "$(grep -A1 'Key Usage' "$T/$a.ext" | tr -d ' \n')" \
		= "X509v3KeyUsage:criticalKeyAgreement"
	check "$a: names the agency (SAN URI ihala:agency:$a)" \
		grep -qx "    URI:ihala:agency:$a" "$T/$a.ext"
	check "$a: key matches the certificate" \
		test "$(openssl pkey -in "$key" -pubout)" = "$(pubkey "$crt")"
	check "$a: key is not the TLS key" \
		test "$(pubkey "$crt")" != "$(pubkey "$P/$a.pem")"
done
