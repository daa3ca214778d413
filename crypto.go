package gfsession

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
)

const (
	// CryptoKeySize is the size in bytes of every key in `cryptoKeys`: AES-256.
	CryptoKeySize = 32

	keyIdSize   = 4
	nonceSize   = 12
	sealedExtra = keyIdSize + nonceSize + 16 // key id, nonce, GCM tag
)

// keyRing seals with its first key and opens with any of its keys, so keys
// rotate without logging anybody out: put the new key first, keep the old
// ones after it until every session has been used or has expired since (a
// storage seals a session opened with an old key again when it reads it:
// see envelope.staleSeal).
type keyRing struct {
	aeads []cipher.AEAD
	ids   []uint32 // first 4 bytes of SHA-256 of each key: picks the key to open with
}

// newKeyRing builds a key ring from raw 32-byte keys. It returns nil, nil for
// no keys (sealing disabled).
func newKeyRing(keys [][]byte) (*keyRing, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ring := &keyRing{}
	for i, key := range keys {
		if len(key) != CryptoKeySize {
			return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`cryptoKeys[%d]: key is %d bytes, want %d (AES-256); make one with: head -c 32 /dev/urandom | base64`,
				i, len(key), CryptoKeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `cryptoKeys[%d]`, i)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, gerror.WrapCodef(gcode.CodeInvalidConfiguration, err, `cryptoKeys[%d]`, i)
		}
		sum := sha256.Sum256(key)
		ring.aeads = append(ring.aeads, aead)
		ring.ids = append(ring.ids, binary.BigEndian.Uint32(sum[:keyIdSize]))
	}
	return ring, nil
}

// ParseCryptoKeys decodes base64 (standard or URL alphabet, padded or not)
// keys as written in the `cryptoKeys` config option. Each must decode to
// CryptoKeySize bytes.
func ParseCryptoKeys(encoded []string) ([][]byte, error) {
	keys := make([][]byte, 0, len(encoded))
	for i, s := range encoded {
		s = strings.TrimRight(strings.TrimSpace(s), "=")
		var (
			key []byte
			err error
		)
		if strings.ContainsAny(s, "-_") {
			key, err = base64.RawURLEncoding.DecodeString(s)
		} else {
			key, err = base64.RawStdEncoding.DecodeString(s)
		}
		if err != nil {
			return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`cryptoKeys[%d]: not valid base64: %v`, i, err)
		}
		if len(key) != CryptoKeySize {
			return nil, gerror.NewCodef(gcode.CodeInvalidConfiguration,
				`cryptoKeys[%d]: key is %d bytes, want %d (AES-256); make one with: head -c 32 /dev/urandom | base64`,
				i, len(key), CryptoKeySize)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// seal appends to `dst` the key id, a random nonce and the AES-256-GCM
// ciphertext of `plain`, authenticated together with `aad`.
func (r *keyRing) seal(dst, plain, aad []byte) []byte {
	var nonce [nonceSize]byte
	_, _ = rand.Read(nonce[:])
	dst = binary.BigEndian.AppendUint32(dst, r.ids[0])
	dst = append(dst, nonce[:]...)
	return r.aeads[0].Seal(dst, nonce[:], plain, aad)
}

// stale reports whether `sealed` names a key other than the one seal uses.
func (r *keyRing) stale(sealed string) bool {
	return binary.BigEndian.Uint32([]byte(sealed[:keyIdSize])) != r.ids[0]
}

// open reverses seal. It tries the key whose id matches first and then every
// other key (ids are only 32 bits), and fails when none authenticates.
func (r *keyRing) open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < sealedExtra {
		return nil, errCorrupt("sealed data too short")
	}
	id := binary.BigEndian.Uint32(sealed[:keyIdSize])
	nonce := sealed[keyIdSize : keyIdSize+nonceSize]
	ct := sealed[keyIdSize+nonceSize:]
	for i, aead := range r.aeads {
		if r.ids[i] != id {
			continue
		}
		if plain, err := aead.Open(nil, nonce, ct, aad); err == nil {
			return plain, nil
		}
	}
	for i, aead := range r.aeads {
		if r.ids[i] == id {
			continue
		}
		if plain, err := aead.Open(nil, nonce, ct, aad); err == nil {
			return plain, nil
		}
	}
	return nil, errCorrupt("no crypto key opens the sealed data (tampered, or sealed with a key no longer configured)")
}
