package rabbitmq

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// passwordHash returns what RabbitMQ's rabbit_password_hashing_sha256 stores
// for password, with a fresh random 4-byte salt:
//
//	base64(salt ‖ SHA-256(salt ‖ password))
//
// Given to PUT /api/users as password_hash, it is stored as is, so RabbitMQ
// checks logins without ever receiving the plaintext.
func passwordHash(password string) string {
	salt := make([]byte, 4)
	_, _ = rand.Read(salt) // crypto/rand.Read never returns an error
	return saltedHash(salt, password)
}

func saltedHash(salt []byte, password string) string {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(password))
	out := append(append(make([]byte, 0, len(salt)+sha256.Size), salt...), h.Sum(nil)...)
	return base64.StdEncoding.EncodeToString(out)
}
