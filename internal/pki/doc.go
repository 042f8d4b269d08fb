// Package pki is vitalmq's built-in certificate authority: it creates the CA and the broker's server
// certificate, enrols devices (a generated key pair, or a CSR so the private key never leaves the
// device), revokes them, publishes a CRL, and verifies client certificates for the broker.
//
// It is layer 0: it uses only the standard library, imports no other vitalmq package and does not log.
//
// # Files
//
// A CA lives in one directory (mode 0700, enforced by [Init]):
//
//	ca.crt        CA certificate, PEM, 0644 (ECDSA P-256, 10 years, CN "vitalmq CA <random>")
//	ca.key        CA private key, PKCS#8 PEM, 0600
//	server.crt    broker server certificate, PEM, 0644 (ECDSA P-256, ServerAuth)
//	server.key    broker server private key, PKCS#8 PEM, 0600
//	devices.json  index of issued device certificates and revocations, 0600 (see below)
//	crl.pem       CRL of every revoked serial, PEM, 0644, rewritten on every revocation
//	.lock         empty lock file, 0600, flock(2)ed by every writer (on Unix; elsewhere .lock.excl is created
//	              with O_EXCL while a writer holds it)
//
// Every file is written atomically (temporary file in the same directory, fsync, rename), so a reader
// never sees a partial file. Writers to devices.json (issuance, revocation, CRL numbers) take an
// exclusive flock on .lock and re-read the index before changing it, so the broker and the
// `vitalmq device` CLI may run at the same time without losing each other's changes. [Open] refuses a
// key file that is readable by group or others (on Unix).
//
// devices.json holds, per issued device certificate, the device id, the serial (hex), the issue and
// expiry times, and once revoked the revocation time and reason; plus the number of the last CRL
// issued, so CRL numbers increase across processes. It holds no key material and no patient data.
//
// # Device identity
//
// A device id is 1 to 64 characters of [a-z0-9-]. It is carried in the certificate as the SAN URI
// "urn:vitalmq:device:<id>" (and as the subject CommonName, which is informative only); device
// certificates carry ExtKeyUsage ClientAuth only. [DeviceID] reads the id back from the SAN URI. For a
// CSR, the id is the one given to [CA.SignCSR], never anything the CSR asks for.
//
// # Broker use
//
//	cfg := &tls.Config{
//		ClientAuth:       tls.RequireAndVerifyClientCert,
//		ClientCAs:        ca.Pool(),
//		VerifyConnection: ca.VerifyConnection, // revocation, also on resumed sessions
//	}
//
// [CA.VerifyConnection] runs on every handshake, resumed ones included (tls.Config.VerifyPeerCertificate
// is skipped on resumption, so a revoked device could otherwise resume an old session). The broker
// calls [CA.Reload] periodically (it is cheap when nothing changed) to see revocations made by another
// process, then checks its live sessions' serials with [CA.IsRevoked].
//
// # An external CA
//
// [External] trusts a hospital's own device CA instead (a PEM bundle and its CRL file): the listener
// asks for a certificate without letting crypto/tls verify it (tls.RequestClientCert or
// tls.RequireAnyClientCert) and [External.VerifyConnection] verifies the chain and the CRL against
// the files' current contents; [External.Reload] picks up a rotated bundle or a new CRL, and
// [External.Revoked] with [CertKey] tells the broker which live sessions a new CRL revokes.
package pki
