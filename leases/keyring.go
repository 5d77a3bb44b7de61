package leases

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KEKSize is the size of a key-encryption key: AES-256.
const KEKSize = 32

// ErrNoKEK means the store was opened without a key-encryption key, so it
// keeps no admin secrets.
var ErrNoKEK = errors.New("leases: no key-encryption key (store.kek) is configured")

// ErrUnknownKEK means a stored data key is wrapped by a key-encryption key
// the keyring does not hold.
var ErrUnknownKEK = errors.New("leases: the data key is wrapped by a key-encryption key that is not configured")

// ErrDecrypt means a stored admin secret failed authentication: its row was
// altered, or its ciphertext was copied from another row.
var ErrDecrypt = errors.New("leases: an admin secret does not decrypt")

// ParseKEK returns the 32-byte key-encryption key material holds: exactly
// 32 raw bytes, or the standard base64 (padded or not) of 32 bytes, with
// surrounding white space ignored. Anything else is an error that says what
// to write; it never quotes material.
func ParseKEK(material []byte) ([]byte, error) {
	if len(material) == KEKSize {
		return bytes.Clone(material), nil
	}
	text := strings.TrimSpace(string(material))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if text == "" {
			break
		}
		if key, err := enc.DecodeString(text); err == nil {
			if len(key) != KEKSize {
				return nil, fmt.Errorf("the key is the base64 of %d bytes; want %d: make one with `head -c 32 /dev/urandom | base64`", len(key), KEKSize)
			}
			return key, nil
		}
	}
	return nil, fmt.Errorf("the key is %d bytes that are not base64: want exactly %d random bytes or their base64, e.g. `head -c 32 /dev/urandom | base64`", len(material), KEKSize)
}

// Keyring holds the key-encryption keys (KEKs) of the store, newest first:
// the first wraps every data key written from now on, every one unwraps the
// data keys it wrapped. Each KEK is known by an id derived from it, stored
// beside every data key it wraps, so rotating a KEK is: put the new key
// first, run [Store.Rewrap], then remove the old key.
type Keyring struct {
	keys []kek
}

type kek struct {
	id   string
	aead cipher.AEAD
}

// NewKeyring returns the keyring of keys, newest first. Each key must be
// [KEKSize] bytes (see [ParseKEK]); the same key twice is an error.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: the keyring is empty", ErrInvalidArgument)
	}
	k := &Keyring{}
	seen := map[string]int{}
	for i, key := range keys {
		if len(key) != KEKSize {
			return nil, fmt.Errorf("%w: key %d is %d bytes, want %d", ErrInvalidArgument, i, len(key), KEKSize)
		}
		id := KEKID(key)
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("%w: keys %d and %d are the same key (id %s)", ErrInvalidArgument, j, i, id)
		}
		seen[id] = i
		aead, err := newGCM(key)
		if err != nil {
			return nil, err
		}
		k.keys = append(k.keys, kek{id: id, aead: aead})
	}
	return k, nil
}

// KEKID returns the id of a key-encryption key: the hex of the first 8
// bytes of SHA-256 over a fixed label and the key. It names the key without
// revealing it.
func KEKID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("credbroker kek id\x00"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Newest is the id of the key that wraps new data keys.
func (k *Keyring) Newest() string { return k.keys[0].id }

// IDs are the ids of every key, newest first.
func (k *Keyring) IDs() []string {
	out := make([]string, len(k.keys))
	for i, key := range k.keys {
		out[i] = key.id
	}
	return out
}

func (k *Keyring) byID(id string) (cipher.AEAD, bool) {
	for _, key := range k.keys {
		if key.id == id {
			return key.aead, true
		}
	}
	return nil, false
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Purposes bound into the authenticated data, so a wrapped data key can
// never be taken for a secret's ciphertext or the other way round.
const (
	purposeDataKey = "credbroker/admin-secret/data-key/v1"
	purposeValue   = "credbroker/admin-secret/value/v1"
)

// secretAAD is the authenticated data of one stored secret: the purpose,
// the secret's id and its backend, each length-prefixed so that no two
// different triples encode alike.
func secretAAD(purpose, id, backend string) []byte {
	var b []byte
	for _, s := range []string{purpose, id, backend} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// sealed is a secret as the store keeps it.
type sealed struct {
	kekID      string
	wrappedKey []byte // nonce || AES-GCM(KEK, data key)
	nonce      []byte
	ciphertext []byte // AES-GCM(data key, value)
}

// seal encrypts plaintext under a fresh data key, wrapped by the newest KEK,
// both bound to id and backend.
func (k *Keyring) seal(id, backend string, plaintext []byte) (sealed, error) {
	dataKey := make([]byte, 32)
	if _, err := rand.Read(dataKey); err != nil {
		return sealed{}, err
	}
	defer clear(dataKey)
	aead, err := newGCM(dataKey)
	if err != nil {
		return sealed{}, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return sealed{}, err
	}
	out := sealed{nonce: nonce, ciphertext: aead.Seal(nil, nonce, plaintext, secretAAD(purposeValue, id, backend))}
	out.kekID, out.wrappedKey, err = k.wrap(id, backend, dataKey)
	return out, err
}

// wrap encrypts a data key under the newest KEK.
func (k *Keyring) wrap(id, backend string, dataKey []byte) (string, []byte, error) {
	newest := k.keys[0]
	nonce := make([]byte, newest.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, err
	}
	return newest.id, newest.aead.Seal(nonce, nonce, dataKey, secretAAD(purposeDataKey, id, backend)), nil
}

// unwrap decrypts the data key of s.
func (k *Keyring) unwrap(id, backend string, s sealed) ([]byte, error) {
	aead, ok := k.byID(s.kekID)
	if !ok {
		return nil, fmt.Errorf("%w: the admin secret of backend %s is wrapped by the key with id %s, and store.kek holds only %s: "+
			"put that key back in store.kek (after the newest), run `credbroker admin rewrap`, then remove it",
			ErrUnknownKEK, backend, s.kekID, strings.Join(k.IDs(), ", "))
	}
	n := aead.NonceSize()
	if len(s.wrappedKey) < n {
		return nil, fmt.Errorf("%w: the data key of backend %s's admin secret is truncated", ErrDecrypt, backend)
	}
	dataKey, err := aead.Open(nil, s.wrappedKey[:n], s.wrappedKey[n:], secretAAD(purposeDataKey, id, backend))
	if err != nil {
		return nil, fmt.Errorf("%w: the data key of backend %s's admin secret (id %s) fails authentication under key %s: "+
			"the row was altered or copied from another row", ErrDecrypt, backend, id, s.kekID)
	}
	return dataKey, nil
}

// open decrypts s.
func (k *Keyring) open(id, backend string, s sealed) ([]byte, error) {
	dataKey, err := k.unwrap(id, backend, s)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	plaintext, err := aead.Open(nil, s.nonce, s.ciphertext, secretAAD(purposeValue, id, backend))
	if err != nil {
		return nil, fmt.Errorf("%w: backend %s's admin secret (id %s) fails authentication: "+
			"the row was altered or its ciphertext copied from another row", ErrDecrypt, backend, id)
	}
	return plaintext, nil
}
