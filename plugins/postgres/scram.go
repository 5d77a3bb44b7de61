package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// scramIterations is the PBKDF2 iteration count PostgreSQL itself uses
// (scram_iterations' default).
const scramIterations = 4096

// SCRAMVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for
// password, with a fresh random 16-byte salt:
//
//	SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>
//
// Given to CREATE ROLE … PASSWORD, it is stored as is, so the server can check
// logins without ever receiving the plaintext. The password is used as given,
// without SASLprep; that matches what PostgreSQL does for printable ASCII such
// as [plugins.NewPassword] makes.
func SCRAMVerifier(password string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt) // crypto/rand.Read never returns an error
	return scramVerifier(password, salt, scramIterations)
}

// scramVerifier computes the verifier of RFC 5802 and RFC 7677 as PostgreSQL
// encodes it.
func scramVerifier(password string, salt []byte, iterations int) string {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		// Only a key length out of range or, in FIPS 140-only mode, a short
		// salt fail; neither can happen here.
		panic(fmt.Sprintf("postgres: scram: %v", err))
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(serverKey))
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
